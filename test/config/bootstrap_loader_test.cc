#include "config/bootstrap_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace sluice::config {
namespace {

using envoy::config::bootstrap::v3::Bootstrap;
using testing::ElementsAre;
using testing::UnorderedElementsAre;

// A front proxy as an Envoy user writes it: one listener with an HTTP connection manager,
// routes of every kind Sluice implements, and two clusters.
constexpr const char* kFrontProxy = R"(
node:
  id: front-proxy-1
  cluster: front-proxy
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
  access_log:
  - name: envoy.access_loggers.file
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
      path: /dev/null
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: {address: 0.0.0.0, port_value: 8080}
    per_connection_buffer_limit_bytes: 32768
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          codec_type: AUTO
          use_remote_address: true
          stream_idle_timeout: 300s
          common_http_protocol_options:
            idle_timeout: 60s
            headers_with_underscores_action: REJECT_REQUEST
          upgrade_configs:
          - upgrade_type: websocket
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\n"
          route_config:
            name: local_route
            response_headers_to_add:
            - header: {key: x-served-by, value: sluice}
              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match:
                  prefix: /service/1
                  headers:
                  - name: x-canary
                    string_match: {exact: "yes"}
                route:
                  weighted_clusters:
                    clusters:
                    - {name: service1, weight: 90}
                    - {name: service2, weight: 10}
              - match: {prefix: /service/1}
                route: {cluster: service1, timeout: 15s, prefix_rewrite: /}
              - match:
                  safe_regex: {regex: "^/service/2/.*"}
                route: {cluster: service2, host_rewrite_literal: service2.internal}
              - match: {path: /old}
                redirect: {path_redirect: /new, response_code: PERMANENT_REDIRECT}
              - match: {prefix: /health}
                direct_response:
                  status: 200
                  body: {inline_string: ok}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: service1
    type: STRICT_DNS
    connect_timeout: 0.25s
    lb_policy: ROUND_ROBIN
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: service1
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: service1, port_value: 8000}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {idle_timeout: 30s, max_requests_per_connection: 100}
        explicit_http_config:
          http_protocol_options: {}
  - name: service2
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: service2
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 10.0.0.2, port_value: 8000}
          load_balancing_weight: 2
        - endpoint:
            address:
              socket_address: {address: 10.0.0.3, port_value: 8000}
          health_status: HEALTHY
)";

constexpr const char* kHcmPath =
    "static_resources.listeners[0].filter_chains[0].filters[0].typed_config";

// Writes `contents` to a file named `name` in the test's temporary directory.
std::string writeFile(const std::string& name, const std::string& contents) {
  const std::string path = testing::TempDir() + name;
  std::ofstream out(path, std::ios::trunc);
  out << contents;
  return path;
}

std::vector<std::string> loadErrors(const std::string& yaml) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  EXPECT_FALSE(loadBootstrap({"", yaml}, bootstrap, errors));
  return errors;
}

// A listener whose HTTP connection manager has `hcm_fields` (YAML lines indented by 10).
std::string listenerWithHcm(const std::string& hcm_fields) {
  return R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}]}]}
)" + hcm_fields;
}

constexpr const char* kRouterFilter = R"(
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
)";

// A cluster with `fields` (YAML lines indented by 4) added to a valid one.
std::string cluster(const std::string& fields) {
  return R"(
static_resources:
  clusters:
  - name: c
    connect_timeout: 1s
)" + fields;
}

TEST(BootstrapLoaderTest, FrontProxyYamlLoads) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({writeFile("front-proxy.yaml", kFrontProxy), ""}, bootstrap, errors))
      << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.node().id(), "front-proxy-1");
  EXPECT_EQ(bootstrap.admin().address().socket_address().port_value(), 9901u);
  ASSERT_EQ(bootstrap.static_resources().listeners_size(), 1);
  const auto& listener = bootstrap.static_resources().listeners(0);
  EXPECT_EQ(listener.per_connection_buffer_limit_bytes().value(), 32768u);
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager hcm;
  ASSERT_TRUE(listener.filter_chains(0).filters(0).typed_config().UnpackTo(&hcm));
  EXPECT_EQ(hcm.stat_prefix(), "ingress_http");
  EXPECT_EQ(hcm.stream_idle_timeout().seconds(), 300);
  ASSERT_EQ(hcm.route_config().virtual_hosts(0).routes_size(), 5);
  EXPECT_EQ(hcm.route_config().virtual_hosts(0).routes(0).match().headers(0).string_match().exact(),
            "yes");  // a quoted "yes" stays a string
  ASSERT_EQ(bootstrap.static_resources().clusters_size(), 2);
  const auto& service1 = bootstrap.static_resources().clusters(0);
  EXPECT_EQ(service1.type(), envoy::config::cluster::v3::Cluster::STRICT_DNS);
  EXPECT_EQ(service1.connect_timeout().nanos(), 250000000);
  EXPECT_EQ(
      bootstrap.static_resources().clusters(1).load_assignment().endpoints(0).lb_endpoints_size(),
      2);
}

TEST(BootstrapLoaderTest, JsonFormLoadsWithCamelCaseOrSnakeCaseNames) {
  const std::string json = R"({
    "node": {"id": "n1", "cluster": "c1"},
    "staticResources": {
      "listeners": [{
        "name": "l0",
        "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 10000}},
        "filterChains": [{"filters": [{
          "name": "envoy.filters.network.http_connection_manager",
          "typedConfig": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "statPrefix": "ingress_http",
            "route_config": {"virtualHosts": [{"name": "all", "domains": ["*"],
              "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
            "httpFilters": [{"name": "envoy.filters.http.router", "typedConfig": {
              "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
          }}]}]
      }],
      "clusters": [{
        "name": "backend", "connectTimeout": "5s", "type": "STATIC",
        "loadAssignment": {"clusterName": "backend", "endpoints": [{"lbEndpoints": [
          {"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 8080}}}}]}]}
      }]
    }
  })";
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({writeFile("bootstrap.json", json), ""}, bootstrap, errors))
      << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.static_resources().listeners(0).address().socket_address().port_value(),
            10000u);
  EXPECT_EQ(bootstrap.static_resources().clusters(0).connect_timeout().seconds(), 5);
}

TEST(BootstrapLoaderTest, AFileWithAnotherExtensionIsReadAsYaml) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(
      loadBootstrap({writeFile("bootstrap.conf", "node: {id: n1}\n"), ""}, bootstrap, errors))
      << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.node().id(), "n1");
}

TEST(BootstrapLoaderTest, ConfigYamlMergesOverTheFile) {
  const std::string path = writeFile("merge.yaml", kFrontProxy);
  const std::string overlay = R"(
node: {id: front-proxy-2}
static_resources:
  clusters:
  - name: service3
    connect_timeout: 2s
)";
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({path, overlay}, bootstrap, errors)) << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.node().id(), "front-proxy-2");           // a scalar is replaced
  EXPECT_EQ(bootstrap.node().cluster(), "front-proxy");        // the rest of the message stays
  ASSERT_EQ(bootstrap.static_resources().clusters_size(), 3);  // a list is appended to
  EXPECT_EQ(bootstrap.static_resources().clusters(2).name(), "service3");
  EXPECT_EQ(bootstrap.static_resources().listeners_size(), 1);
}

TEST(BootstrapLoaderTest, ConfigYamlAlone) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({"", cluster("")}, bootstrap, errors))
      << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.static_resources().clusters(0).name(), "c");
}

TEST(BootstrapLoaderTest, YamlAnchorsAndMergeKeys) {
  const std::string yaml = R"(
static_resources:
  clusters:
  - &base
    name: a
    type: STRICT_DNS
    connect_timeout: 1s
    dns_refresh_rate: 10s
  - <<: *base
    name: b
  - <<: [{connect_timeout: 3s}, *base]
    name: c
)";
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({"", yaml}, bootstrap, errors)) << testing::PrintToString(errors);
  const auto& clusters = bootstrap.static_resources().clusters();
  ASSERT_EQ(clusters.size(), 3);
  EXPECT_EQ(clusters[1].name(), "b");  // the map's own key wins over the merged one
  EXPECT_EQ(clusters[1].type(), envoy::config::cluster::v3::Cluster::STRICT_DNS);
  EXPECT_EQ(clusters[1].dns_refresh_rate().seconds(), 10);
  EXPECT_EQ(clusters[2].connect_timeout().seconds(), 3);  // the first merged map wins
  EXPECT_EQ(clusters[2].dns_refresh_rate().seconds(), 10);
}

TEST(BootstrapLoaderTest, QuotedNumbersStayStringsAndPlainNumbersAreNumbers) {
  const std::string yaml = R"(
node: {id: "123", cluster: '456'}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
)";
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(loadBootstrap({"", yaml}, bootstrap, errors)) << testing::PrintToString(errors);
  EXPECT_EQ(bootstrap.node().id(), "123");
  EXPECT_EQ(bootstrap.node().cluster(), "456");
  EXPECT_EQ(bootstrap.admin().address().socket_address().port_value(), 9901u);

  EXPECT_THAT(loadErrors("node: {id: 123}"),
              ElementsAre("--config-yaml: node.id: expected a string, got the number 123 (quote "
                          "it to make it a string)"));
}

TEST(BootstrapLoaderTest, AFileThatDoesNotExist) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  EXPECT_FALSE(loadBootstrap({"/nonexistent/bootstrap.yaml", ""}, bootstrap, errors));
  EXPECT_THAT(errors,
              ElementsAre("cannot read /nonexistent/bootstrap.yaml: No such file or directory"));
}

TEST(BootstrapLoaderTest, NoSourceAtAll) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  EXPECT_FALSE(loadBootstrap({"", ""}, bootstrap, errors));
  EXPECT_THAT(errors, ElementsAre("no config: give a config file (-c) or --config-yaml"));
}

TEST(BootstrapLoaderTest, AnEmptyFile) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  const std::string path = writeFile("empty.yaml", "# nothing\n");
  EXPECT_FALSE(loadBootstrap({path, ""}, bootstrap, errors));
  EXPECT_THAT(errors, ElementsAre(path + ": the document is empty"));
}

TEST(BootstrapLoaderTest, YamlSyntaxErrorHasLineAndColumn) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  const std::string path = writeFile("broken.yaml", "node:\n  id: [a, b\n");
  EXPECT_FALSE(loadBootstrap({path, ""}, bootstrap, errors));
  EXPECT_THAT(errors,
              ElementsAre(path + ": yaml: line 3, column 1: did not find expected ',' or ']' "
                                 "(while parsing a flow sequence at line 2, column 7)"));
}

TEST(BootstrapLoaderTest, JsonSyntaxErrorHasLineAndColumn) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  const std::string path = writeFile("broken.json", "{\n  \"node\" {}\n}\n");
  EXPECT_FALSE(loadBootstrap({path, ""}, bootstrap, errors));
  EXPECT_THAT(errors,
              ElementsAre(path + ": json: line 2, column 10: syntax error while parsing object "
                                 "separator - unexpected '{'; expected ':'"));
}

TEST(BootstrapLoaderTest, UnknownFieldNamesItsPath) {
  EXPECT_THAT(loadErrors("static_resources: {listeners: [{name: l, adress: {}}]}"),
              ElementsAre("--config-yaml: static_resources.listeners[0].adress: unknown field"));
  // Inside an Any, too.
  EXPECT_THAT(
      loadErrors(listenerWithHcm("          stat_prefx: x\n")),
      ElementsAre(std::string("--config-yaml: ") + kHcmPath + ".stat_prefx: unknown field"));
}

TEST(BootstrapLoaderTest, BadTypesNameTheirPath) {
  EXPECT_THAT(
      loadErrors(cluster("    per_connection_buffer_limit_bytes: [1]\n")),
      ElementsAre("--config-yaml: static_resources.clusters[0]."
                  "per_connection_buffer_limit_bytes: expected a single value, not a list"));
  EXPECT_THAT(loadErrors("static_resources: {clusters: [{name: c, connect_timeout: 5}]}"),
              ElementsAre("--config-yaml: static_resources.clusters[0].connect_timeout: invalid "
                          "duration (write seconds with an 's' suffix, like \"5s\" or \"0.25s\")"));
  EXPECT_THAT(loadErrors(cluster("    type: STRICT\n")),
              ElementsAre("--config-yaml: static_resources.clusters[0].type: unknown value "
                          "\"STRICT\" for DiscoveryType (one of STATIC, STRICT_DNS, LOGICAL_DNS, "
                          "EDS, ORIGINAL_DST)"));
  EXPECT_THAT(loadErrors("admin: {address: {socket_address: {address: a, port_value: -1}}}"),
              ElementsAre("--config-yaml: admin.address.socket_address.port_value: invalid value "
                          "-1 (expected a uint32)"));
  EXPECT_THAT(loadErrors("static_resources: {listeners: [{name: l, address: 5}]}"),
              ElementsAre("--config-yaml: static_resources.listeners[0].address: expected a map "
                          "(envoy.config.core.v3.Address), got the number 5"));
  EXPECT_THAT(
      loadErrors("static_resources: {listeners: [{name: l, filter_chains: [{filters: [{name: f, "
                 "typed_config: {'@type': type.googleapis.com/envoy.Nope}}]}]}]}"),
      ElementsAre("--config-yaml: static_resources.listeners[0].filter_chains[0].filters[0]."
                  "typed_config: unknown type type.googleapis.com/envoy.Nope (not a message of "
                  "the Envoy v3 API)"));
}

TEST(BootstrapLoaderTest, UnsupportedFieldsAreRefusedWithTheirPath) {
  EXPECT_THAT(loadErrors(R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    listener_filters:
    - name: envoy.filters.listener.original_dst
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst
)"),
              ElementsAre("static_resources.listeners[0].listener_filters[0]: "
                          "envoy.filters.listener.original_dst is not supported"));
  EXPECT_THAT(loadErrors(cluster(R"(
    health_checks:
    - timeout: 1s
      interval: 5s
      unhealthy_threshold: 3
      healthy_threshold: 1
      initial_jitter: 1s
      grpc_health_check: {service_name: a}
)")),
              ElementsAre("static_resources.clusters[0].health_checks[0].initial_jitter: "
                          "initial_jitter is not supported"));
  // A refused field with a supported replacement says so.
  EXPECT_THAT(
      loadErrors("admin: {access_log_path: /dev/null, address: {socket_address: {address: a, "
                 "port_value: 1}}}"),
      ElementsAre("admin.access_log_path: access_log_path is not supported (use access_log)"));
}

TEST(BootstrapLoaderTest, UnsupportedExtensionIsNamed) {
  const std::string yaml = listenerWithHcm(std::string(R"(
          http_filters:
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
              default_source_code: {inline_string: "function envoy_on_request(h) end"}
)") + kRouterFilter);
  EXPECT_THAT(loadErrors(yaml),
              ElementsAre(std::string(kHcmPath) + ".http_filters[0]: envoy.filters.http.lua is not "
                                                  "supported"));
}

TEST(BootstrapLoaderTest, TheRouterMustBeTheLastHttpFilter) {
  const std::string yaml =
      listenerWithHcm(std::string("          http_filters:") + kRouterFilter + R"(
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
)");
  EXPECT_THAT(
      loadErrors(yaml),
      UnorderedElementsAre(
          std::string(kHcmPath) + ".http_filters[1]: envoy.filters.http.lua is not supported",
          std::string(kHcmPath) +
              ".http_filters[0]: the router (envoy.filters.http.router) must be the last HTTP "
              "filter",
          std::string(kHcmPath) + ".http_filters: the last HTTP filter must be the router "
                                  "(envoy.filters.http.router)"));
  EXPECT_THAT(
      loadErrors(listenerWithHcm("")),
      ElementsAre(std::string(kHcmPath) + ".http_filters: the last HTTP filter must be the router "
                                          "(envoy.filters.http.router)"));
}

TEST(BootstrapLoaderTest, TheRouterMayBeNamedWithoutTypedConfig) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  EXPECT_TRUE(loadBootstrap(
      {"", listenerWithHcm("          http_filters: [{name: envoy.filters.http.router}]\n")},
      bootstrap, errors))
      << testing::PrintToString(errors);
}

TEST(BootstrapLoaderTest, UnsupportedEnumValuesAreNamed) {
  EXPECT_THAT(loadErrors(listenerWithHcm(std::string("          codec_type: HTTP3\n") +
                                         "          http_filters:" + kRouterFilter)),
              ElementsAre(std::string(kHcmPath) +
                          ".codec_type: HTTP3 is not supported (supported: AUTO, HTTP1, HTTP2)"));
  EXPECT_THAT(loadErrors(cluster("    type: ORIGINAL_DST\n")),
              ElementsAre("static_resources.clusters[0].type: ORIGINAL_DST is not supported "
                          "(supported: STATIC, STRICT_DNS, LOGICAL_DNS, EDS)"));
  EXPECT_THAT(loadErrors(cluster("    lb_policy: CLUSTER_PROVIDED\n")),
              ElementsAre("static_resources.clusters[0].lb_policy: CLUSTER_PROVIDED is not "
                          "supported (supported: ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, "
                          "MAGLEV)"));
  EXPECT_THAT(loadErrors(cluster("    ring_hash_lb_config: {hash_function: MURMUR_HASH_2}\n")),
              ElementsAre("static_resources.clusters[0].ring_hash_lb_config.hash_function: "
                          "MURMUR_HASH_2 is not supported (supported: XX_HASH)"));
}

TEST(BootstrapLoaderTest, ValidationRulesAreEnforced) {
  EXPECT_THAT(loadErrors("static_resources: {clusters: [{name: '', connect_timeout: 1s}]}"),
              ElementsAre("static_resources.clusters[0].name: value length must be at least 1 "
                          "characters"));
  EXPECT_THAT(loadErrors("static_resources: {clusters: [{name: c, connect_timeout: 0s}]}"),
              ElementsAre("static_resources.clusters[0].connect_timeout: value must be greater "
                          "than 0s"));
  EXPECT_THAT(loadErrors("static_resources: {clusters: [{name: c, connect_timeout: -1.5s}]}"),
              ElementsAre("static_resources.clusters[0].connect_timeout: value must be greater "
                          "than 0s"));
  EXPECT_THAT(loadErrors("admin: {address: {socket_address: {address: a, port_value: 65536}}}"),
              ElementsAre("admin.address.socket_address.port_value: value must be less than or "
                          "equal to 65535"));
}

TEST(BootstrapLoaderTest, HeaderNamesAreValidated) {
  const std::string yaml = R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config:
            request_headers_to_add:
            - header: {key: "x-bad\nname", value: v}
            virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}]}]
          http_filters: [{name: envoy.filters.http.router}]
)";
  EXPECT_THAT(loadErrors(yaml),
              ElementsAre(std::string(kHcmPath) +
                          ".route_config.request_headers_to_add[0].header.key: value must be a "
                          "valid HTTP header name (no NUL, CR or LF)"));
}

TEST(BootstrapLoaderTest, MissingRequiredFieldsAreNamed) {
  const std::string hcm = R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 80}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - route: {cluster: c}
              - match: {prefix: /}
          http_filters: [{name: envoy.filters.http.router}]
)";
  const std::string routes = std::string(kHcmPath) + ".route_config.virtual_hosts[0].routes";
  EXPECT_THAT(loadErrors(hcm),
              ElementsAre(routes + "[0].match: value is required",
                          routes + "[1].action: one of route, redirect, direct_response, "
                                   "filter_action, non_forwarding_action must be set"));
}

TEST(BootstrapLoaderTest, ErrorsFromTheFileNameTheFile) {
  Bootstrap bootstrap;
  std::vector<std::string> errors;
  const std::string path = writeFile("typo.yaml", "nod: {id: x}\n");
  EXPECT_FALSE(loadBootstrap({path, ""}, bootstrap, errors));
  EXPECT_THAT(errors, ElementsAre(path + ": nod: unknown field"));
}

TEST(MessageFromYamlTest, ParsesAnyTypeOfTheApi) {
  envoy::config::cluster::v3::Cluster cluster;
  std::vector<std::string> errors;
  ASSERT_TRUE(messageFromYaml("{name: c, connect_timeout: 2s, type: LOGICAL_DNS}",
                              "envoy.config.cluster.v3.Cluster", cluster, errors))
      << testing::PrintToString(errors);
  EXPECT_EQ(cluster.name(), "c");
  EXPECT_EQ(cluster.type(), envoy::config::cluster::v3::Cluster::LOGICAL_DNS);

  // A type URL names the type as well.
  ASSERT_TRUE(messageFromYaml("{name: d}", "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                              cluster, errors));
  EXPECT_EQ(cluster.name(), "d");
}

TEST(MessageFromYamlTest, Errors) {
  envoy::config::cluster::v3::Cluster cluster;
  std::vector<std::string> errors;
  EXPECT_FALSE(messageFromYaml("{nam: c}", "envoy.config.cluster.v3.Cluster", cluster, errors));
  EXPECT_FALSE(messageFromYaml("{}", "envoy.config.listener.v3.Listener", cluster, errors));
  EXPECT_FALSE(messageFromYaml("{}", "envoy.Nope", cluster, errors));
  EXPECT_THAT(errors, ElementsAre("nam: unknown field",
                                  "cannot parse envoy.config.listener.v3.Listener into a "
                                  "envoy.config.cluster.v3.Cluster",
                                  "unknown type envoy.Nope"));
}

}  // namespace
}  // namespace sluice::config
