#pragma once

// envoy.filters.network.tcp_proxy: forwards the bytes of a downstream connection to one
// upstream connection and back. The cluster is fixed or picked by weight per connection; a
// failed connect is tried again, on a host chosen again, up to max_connect_attempts. Each
// side's write buffer above its high watermark pauses reading on the other side. A half
// close (FIN) is passed on; the connection ends when both directions have ended or either
// side resets. An idle timeout (1h by default, as Envoy's) closes both sides.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "http/access_log.h"
#include "network/connection.h"
#include "upstream/cluster_manager.h"

namespace sluice::stats {
class Store;
class Counter;
class Gauge;
}  // namespace sluice::stats

namespace sluice::filters::tcp {

// tcp.<stat_prefix>.*, Envoy's names.
#define ALL_TCP_PROXY_STATS(COUNTER, GAUGE)            \
  COUNTER(downstream_cx_total)                         \
  COUNTER(downstream_cx_no_route)                      \
  COUNTER(downstream_cx_tx_bytes_total)                \
  GAUGE(downstream_cx_tx_bytes_buffered)               \
  COUNTER(downstream_cx_rx_bytes_total)                \
  GAUGE(downstream_cx_rx_bytes_buffered)               \
  COUNTER(downstream_flow_control_paused_reading_total) \
  COUNTER(downstream_flow_control_resumed_reading_total) \
  COUNTER(idle_timeout)                                \
  COUNTER(upstream_flush_total)                        \
  GAUGE(upstream_flush_active)

struct TcpProxyStats {
#define SLUICE_TCP_COUNTER(name) stats::Counter& name;
#define SLUICE_TCP_GAUGE(name) stats::Gauge& name;
  ALL_TCP_PROXY_STATS(SLUICE_TCP_COUNTER, SLUICE_TCP_GAUGE)
#undef SLUICE_TCP_COUNTER
#undef SLUICE_TCP_GAUGE
  // The downstream byte counts above as each downstream connection updates them.
  network::ConnectionStats downstream_cx_bytes;
  static TcpProxyStats create(stats::Store& store, const std::string& stat_prefix);
};

// Built once per config; shared by every connection of the filter chain.
struct TcpProxyConfig {
  TcpProxyConfig(stats::Store& store, const std::string& stat_prefix)
      : stats(TcpProxyStats::create(store, stat_prefix)) {}
  struct WeightedCluster {
    std::string name;
    uint32_t weight;
  };
  // One entry for `cluster`; several for `weighted_clusters`.
  std::vector<WeightedCluster> clusters;
  uint64_t total_weight{0};
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};  // 0: none
  uint32_t max_connect_attempts{1};
  std::vector<http::AccessLogSharedPtr> access_logs;
  mutable TcpProxyStats stats;

  // The cluster for a new connection; `random` is any uniform 64-bit value.
  const std::string& pickCluster(uint64_t random) const;
};
using TcpProxyConfigConstSharedPtr = std::shared_ptr<const TcpProxyConfig>;

// The filter of one downstream connection (its only read filter).
network::ReadFilterSharedPtr createTcpProxyFilter(TcpProxyConfigConstSharedPtr config);

// Closes the upstreams of this thread that are still flushing what a closed downstream sent
// (the worker calls it as it stops).
void closeFlushingUpstreams();

}  // namespace sluice::filters::tcp
