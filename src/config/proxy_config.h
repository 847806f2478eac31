#pragma once

// Turns a loaded, checked Bootstrap into the proxy's runtime objects: listeners with their
// connection manager configs (routes, filters, access logs), clusters, and the admin
// listener. Built once per config; immutable afterwards.

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/init_target.h"
#include "config/tls_config.h"
#include "config/subscription.h"
#include "config/xds_resources.h"
#include "filters/network/tcp_proxy.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "http/conn_manager_config.h"
#include "network/address.h"
#include "network/transport_socket.h"
#include "upstream/cluster_manager.h"

namespace sluice::stats {
class Store;
}
namespace sluice::access_log {
class FileSinkManager;
}

namespace sluice::config {

struct FilterChainConfig {
  std::optional<uint32_t> destination_port;
  // The chain's network filter: the HTTP connection manager or the TCP proxy (one is set).
  http::ConnectionManagerConfigConstSharedPtr hcm;
  filters::tcp::TcpProxyConfigConstSharedPtr tcp_proxy;
  // filter_chain_match by what the TLS inspector saw; empty: any.
  std::vector<std::string> server_names;  // "example.com" or "*.example.com"
  std::string transport_protocol;         // "tls" or "raw_buffer"
  std::vector<std::string> application_protocols;
  network::TransportSocketFactoryConstSharedPtr transport_socket;  // null: plain TCP
};

struct ListenerConfig {
  std::string name;
  network::AddressConstSharedPtr address;
  bool reuse_port{true};
  uint32_t buffer_limit{1024 * 1024};
  std::vector<FilterChainConfig> chains;
  // envoy.filters.listener.tls_inspector: peek at the ClientHello before choosing a chain.
  bool tls_inspector{false};
  // envoy.filters.listener.http_inspector: peek at a plain connection's first bytes for
  // "http/1.1", "http/1.0" or "h2c" (matched by application_protocols).
  bool http_inspector{false};
  // envoy.filters.listener.proxy_protocol: the PROXY header (v1 or v2) is read, and
  // consumed, before the other listener filters look; its source address becomes the
  // connection's remote address.
  struct ProxyProtocol {
    bool allow_requests_without_proxy_protocol{false};
  };
  std::optional<ProxyProtocol> proxy_protocol;
  bool hasListenerFilters() const { return tls_inspector || http_inspector || proxy_protocol; }
  std::chrono::milliseconds listener_filters_timeout{15000};
  // What the listener warms for before it serves: route tables (RDS) and secrets (SDS over
  // ADS) whose first version has not come yet.
  std::vector<init::TargetSharedPtr> init_targets;
  // The chain for a connection to `port`, or null. Envoy's order: the most specific match
  // of destination port, then server name (exact, then the longest wildcard), then transport
  // protocol, then application protocols; at each step a chain that does not name the
  // criterion is the fallback.
  const FilterChainConfig* chainFor(uint32_t port, std::string_view server_name = {},
                                    std::string_view transport_protocol = "raw_buffer",
                                    const std::vector<std::string>& alpn = {}) const;
};

struct AdminConfig {
  network::AddressConstSharedPtr address;
  std::vector<http::AccessLogSharedPtr> access_logs;
};

struct ProxyConfig {
  std::vector<ListenerConfig> listeners;
  std::vector<upstream::ClusterConfig> clusters;
  std::optional<AdminConfig> admin;
  // dynamic_resources.cds_config and lds_config (a file or the ADS stream), if any.
  std::optional<SourceSpec> cds;
  std::optional<SourceSpec> lds;
  // dynamic_resources.ads_config, if any.
  std::optional<AdsConfig> ads;
};

// Builds the runtime config; false with errors ("path: message").
bool buildProxyConfig(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                      stats::Store& store, access_log::FileSinkManager& sinks, ProxyConfig& out,
                      std::vector<std::string>& errors);

// One cluster (from the bootstrap or CDS); `path` prefixes errors. False with errors.
// `secrets` are the bootstrap's static secrets (indexSecrets), for TLS transport sockets.
bool buildClusterConfig(const envoy::config::cluster::v3::Cluster& proto, const std::string& path,
                        const SecretMap& secrets, stats::Store& store,
                        upstream::ClusterConfig& out, std::vector<std::string>& errors);

// The endpoints of a ClusterLoadAssignment (a cluster's load_assignment or an EDS resource),
// in order: with `ip_addresses` each address is parsed (STATIC, EDS), else it is a DNS name.
// `path` (the assignment's) prefixes errors.
bool buildEndpoints(const envoy::config::endpoint::v3::ClusterLoadAssignment& la,
                    const std::string& path, bool ip_addresses,
                    std::vector<upstream::EndpointConfig>& out, std::vector<std::string>& errors);

// One listener (from the bootstrap or LDS); `path` prefixes errors. Routes inline in a
// connection manager must name clusters of `cluster_names` (Envoy's validate_clusters).
bool buildListenerConfig(const envoy::config::listener::v3::Listener& proto, const std::string& path,
                         const SecretMap& secrets, const std::set<std::string>& cluster_names,
                         stats::Store& store, access_log::FileSinkManager& sinks,
                         ListenerConfig& out, std::vector<std::string>& errors);

// "127.0.0.1_10000", the form Envoy's listener stats use.
std::string statAddress(const network::Address& address);

}  // namespace sluice::config
