// TLS in the proxy's config: transport_socket, secrets and filter chain matching, through the
// real loader and buildProxyConfig.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "access_log/file_sink.h"
#include "config/bootstrap_loader.h"
#include "config/proxy_config.h"
#include "stats/stats.h"

namespace sluice::config {
namespace {

struct Loaded {
  std::vector<std::string> errors;
  ProxyConfig config;
};

// A listener with `chains` (YAML list items, indented for filter_chains) and `listener_extra`.
Loaded load(const std::string& chains, const std::string& listener_extra = "",
            const std::string& clusters = "") {
  const std::string yaml = R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
)" + listener_extra + R"(
    filter_chains:
)" + chains + R"(
  clusters:
  - name: app
    connect_timeout: 1s
)" + clusters;
  Loaded out;
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  if (!loadBootstrap({"", yaml}, bootstrap, out.errors)) return out;
  static stats::Store store;
  static access_log::FileSinkManager sinks;
  buildProxyConfig(bootstrap, store, sinks, out.config, out.errors);
  return out;
}

std::string chain(const std::string& match) {
  return R"(
    - filter_chain_match: )" + match + R"(
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}
          http_filters: [{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
)";
}

const std::string kInspector = R"(
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
    listener_filters_timeout: 2s
)";

TEST(FilterChainMatchTest, MostSpecificChainWins) {
  Loaded l = load(chain("{server_names: [api.example.com]}") +        // 0
                      chain("{server_names: ['*.example.com']}") +    // 1
                      chain("{server_names: ['*.b.example.com']}") +  // 2
                      chain("{transport_protocol: tls}") +            // 3
                      chain("{}") +                                   // 4
                      chain("{transport_protocol: tls, application_protocols: [h2]}") +  // 5
                      chain("{destination_port: 8443}"),              // 6
                  kInspector);
  ASSERT_TRUE(l.errors.empty()) << l.errors[0];
  const ListenerConfig& lc = l.config.listeners[0];
  EXPECT_TRUE(lc.tls_inspector);
  EXPECT_EQ(lc.listener_filters_timeout.count(), 2000);
  auto idx = [&](const FilterChainConfig* c) { return c ? c - lc.chains.data() : -1; };
  EXPECT_EQ(idx(lc.chainFor(443, "api.example.com", "tls")), 0);
  EXPECT_EQ(idx(lc.chainFor(443, "web.example.com", "tls")), 1);
  EXPECT_EQ(idx(lc.chainFor(443, "x.b.example.com", "tls")), 2);  // the longer wildcard
  EXPECT_EQ(idx(lc.chainFor(443, "example.com", "tls")), 3);      // "*." needs a label
  EXPECT_EQ(idx(lc.chainFor(443, "other.test", "tls", {"h2"})), 5);
  EXPECT_EQ(idx(lc.chainFor(443, "", "raw_buffer")), 4);
  EXPECT_EQ(idx(lc.chainFor(8443, "api.example.com", "tls")), 6);  // port first
}

TEST(FilterChainMatchTest, NoMatchIsNull) {
  Loaded l = load(chain("{server_names: [a.test]}"), kInspector);
  ASSERT_TRUE(l.errors.empty()) << l.errors[0];
  EXPECT_EQ(l.config.listeners[0].chainFor(443, "b.test", "tls"), nullptr);
  EXPECT_NE(l.config.listeners[0].chainFor(443, "a.test", "tls"), nullptr);
}

TEST(FilterChainMatchTest, ServerNamesNeedTheInspector) {
  Loaded l = load(chain("{server_names: [a.test]}"));
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0].rfind("static_resources.listeners[0].filter_chains[0].filter_chain_match: "
                              "server_names", 0),
            0u)
      << l.errors[0];
}

TEST(FilterChainMatchTest, UnknownTransportProtocolIsRefused) {
  Loaded l = load(chain("{transport_protocol: quic}"), kInspector);
  ASSERT_FALSE(l.errors.empty());
  EXPECT_NE(l.errors[0].find("transport_protocol"), std::string::npos) << l.errors[0];
}

TEST(TlsConfigTest, WrongContextTypeAndMissingSecretAreRefused) {
  const std::string ts = R"(
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
)";
  Loaded l = load(chain("{}") + ts);
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_EQ(l.errors[0],
            "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config: a "
            "listener needs a DownstreamTlsContext");

  Loaded c = load(chain("{}"), "", R"(
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context_sds_secret_config: {name: missing}
)");
  ASSERT_EQ(c.errors.size(), 1u);
  EXPECT_EQ(c.errors[0],
            "static_resources.clusters[0].transport_socket.typed_config.common_tls_context."
            "validation_context_sds_secret_config.name: unknown secret 'missing' "
            "(static_resources.secrets)");
}

TEST(TlsConfigTest, UpstreamContextWithoutCertificatesLoads) {
  Loaded c = load(chain("{}"), "", R"(
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: upstream.test
        common_tls_context:
          alpn_protocols: [h2, http/1.1]
          tls_params: {tls_maximum_protocol_version: TLSv1_3}
)");
  ASSERT_TRUE(c.errors.empty()) << c.errors[0];
  ASSERT_NE(c.config.clusters[0].info->transport_socket_factory, nullptr);
  EXPECT_TRUE(c.config.clusters[0].info->transport_socket_factory->implementsSecureTransport());
}

TEST(TlsConfigTest, SafeRegexSanMatcherIsRefusedWithItsPath) {
  Loaded c = load(chain("{}"), "", R"(
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          validation_context:
            trusted_ca: {inline_string: "x"}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {safe_regex: {regex: "spiffe://.*"}}
)");
  ASSERT_EQ(c.errors.size(), 1u);
  EXPECT_EQ(c.errors[0].rfind("static_resources.clusters[0].transport_socket.typed_config."
                              "common_tls_context.validation_context."
                              "match_typed_subject_alt_names[0].matcher: ", 0),
            0u)
      << c.errors[0];
}

}  // namespace
}  // namespace sluice::config
