#include "config/supported_fields.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "config/validation.h"

namespace sluice::config {

namespace pb = google::protobuf;

namespace {

constexpr std::string_view kHcm =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
constexpr std::string_view kTcpProxy = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
constexpr std::string_view kRouter = "envoy.extensions.filters.http.router.v3.Router";
constexpr std::string_view kRouterName = "envoy.filters.http.router";
constexpr std::string_view kFault = "envoy.extensions.filters.http.fault.v3.HTTPFault";
constexpr std::string_view kLocalRateLimit =
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
constexpr std::string_view kHttpFilterSlot =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter.typed_config";
constexpr std::string_view kRouteFilterSlot = "envoy.config.route.v3.Route.typed_per_filter_config";
constexpr std::string_view kVhostFilterSlot =
    "envoy.config.route.v3.VirtualHost.typed_per_filter_config";

}  // namespace

const std::vector<SupportedMessage>& supportedMessages() {
  static const auto* table = new std::vector<SupportedMessage>{
      // Bootstrap.
      {"envoy.config.bootstrap.v3.Bootstrap",
       {"node", "static_resources", "dynamic_resources", "admin"}},
      // Dynamic config: CDS and LDS from watched files (a DiscoveryResponse), as Envoy reads
      // one; CDS also over ADS (state of the world, gRPC to a static HTTP/2 cluster).
      {"envoy.config.bootstrap.v3.Bootstrap.DynamicResources",
       {"cds_config", "lds_config", "ads_config"}},
      {"envoy.config.core.v3.ConfigSource",
       {"path", "path_config_source", "ads", "initial_fetch_timeout", "resource_api_version"}},
      {"envoy.config.core.v3.PathConfigSource", {"path"}},
      {"envoy.config.core.v3.AggregatedConfigSource", {}},
      {"envoy.config.core.v3.ApiConfigSource",
       {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"}},
      {"envoy.config.core.v3.GrpcService", {"envoy_grpc"}},
      {"envoy.config.core.v3.GrpcService.EnvoyGrpc", {"cluster_name"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.Rds",
       {"config_source", "route_config_name"}},
      {"envoy.config.core.v3.Node", {"id", "cluster", "metadata", "locality", "user_agent_name"}},
      {"envoy.config.core.v3.Locality", {kAllFields}},
      {"envoy.config.bootstrap.v3.Bootstrap.StaticResources", {"listeners", "clusters", "secrets"}},
      {"envoy.config.bootstrap.v3.Admin", {"address", "access_log"}},
      // Access logs (admin and HTTP connection manager).
      {"envoy.config.accesslog.v3.AccessLog", {"name", "typed_config"}},
      {"envoy.extensions.access_loggers.file.v3.FileAccessLog", {"path", "log_format"}},
      {"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", {"log_format"}},
      {"envoy.extensions.access_loggers.stream.v3.StderrAccessLog", {"log_format"}},
      {"envoy.config.core.v3.SubstitutionFormatString",
       {"text_format_source", "json_format", "text_format"}},
      {"envoy.config.core.v3.DataSource", {"filename", "inline_string", "inline_bytes"}},
      // TLS (transport_socket envoy.transport_sockets.tls) and static secrets.
      {"envoy.config.core.v3.TransportSocket", {"name", "typed_config"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager."
       "SetCurrentClientCertDetails",
       {"subject", "uri", "dns"}},
      {"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
       {"common_tls_context", "require_client_certificate", "session_ticket_keys",
        "disable_stateless_session_resumption", "disable_stateful_session_resumption",
        "session_timeout"}},
      {"envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys", {"keys"}},
      {"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
       {"common_tls_context", "sni", "max_session_keys"}},
      {"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
       {"tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
        "validation_context", "validation_context_sds_secret_config", "alpn_protocols"}},
      {"envoy.extensions.transport_sockets.tls.v3.TlsParameters",
       {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites",
        "ecdh_curves"}},
      {"envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
       {"certificate_chain", "private_key", "watched_directory"}},
      {"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
       {"trusted_ca", "match_typed_subject_alt_names", "crl", "allow_expired_certificate",
        "watched_directory"}},
      {"envoy.config.core.v3.WatchedDirectory", {"path"}},
      {"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", {"san_type", "matcher"}},
      {"envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig", {"name", "sds_config"}},
      {"envoy.extensions.transport_sockets.tls.v3.Secret",
       {"name", "tls_certificate", "validation_context"}},
      {"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer", {}},
      // Listeners.
      {"envoy.config.listener.v3.Listener",
       {"name", "address", "filter_chains", "per_connection_buffer_limit_bytes",
        "enable_reuse_port", "listener_filters", "listener_filters_timeout", "drain_type"}},
      {"envoy.config.core.v3.Address", {"socket_address"}},
      {"envoy.config.core.v3.SocketAddress", {"address", "port_value", "ipv4_compat", "protocol"}},
      {"envoy.config.listener.v3.FilterChain", {"filters", "filter_chain_match", "transport_socket"}},
      {"envoy.config.listener.v3.FilterChainMatch",
       {"destination_port", "server_names", "transport_protocol", "application_protocols"}},
      {"envoy.config.listener.v3.ListenerFilter", {"name", "typed_config"}},
      {"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector", {}},
      {"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector", {}},
      {"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
       {"allow_requests_without_proxy_protocol"}},
      {"envoy.config.listener.v3.Filter", {"name", "typed_config"}},
      // TCP proxy.
      {kTcpProxy,
       {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts",
        "access_log"}},
      {"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster", {"clusters"}},
      {"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
       {"name", "weight"}},
      // HTTP connection manager.
      {kHcm,
       {"stat_prefix",
        "codec_type",
        "route_config",
        "rds",
        "http_filters",
        "access_log",
        "use_remote_address",
        "forward_client_cert_details",
        "set_current_client_cert_details",
        "xff_num_trusted_hops",
        "generate_request_id",
        "preserve_external_request_id",
        "server_name",
        "server_header_transformation",
        "stream_idle_timeout",
        "request_timeout",
        "request_headers_timeout",
        "common_http_protocol_options",
        "max_request_headers_kb",
        "normalize_path",
        "merge_slashes",
        "upgrade_configs",
        "via",
        "delayed_close_timeout",
        "drain_timeout",
        "http_protocol_options",
        "http2_protocol_options"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
       {"name", "typed_config"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager."
       "UpgradeConfig",
       {"upgrade_type", "enabled"}},
      {"envoy.config.core.v3.HttpProtocolOptions",
       {"idle_timeout", "max_headers_count", "max_stream_duration",
        "headers_with_underscores_action", "max_requests_per_connection"}},
      {"envoy.config.core.v3.Http1ProtocolOptions", {"accept_http_10", "default_host_for_http_10"}},
      {"envoy.config.core.v3.Http2ProtocolOptions",
       {"max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size",
        "connection_keepalive"}},
      {"envoy.config.core.v3.KeepaliveSettings",
       {"interval", "timeout", "interval_jitter", "connection_idle_interval"}},
      {kRouter, {}},
      // HTTP filters (src/filters/http).
      {kFault,
       {"delay", "abort", "headers", "downstream_nodes", "max_active_faults",
        "response_rate_limit", "delay_percent_runtime", "abort_percent_runtime",
        "delay_duration_runtime", "abort_http_status_runtime", "max_active_faults_runtime",
        "response_rate_limit_percent_runtime", "abort_grpc_status_runtime",
        "disable_downstream_cluster_stats"}},
      {"envoy.extensions.filters.common.fault.v3.FaultDelay",
       {"fixed_delay", "header_delay", "percentage"}},
      {"envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay", {}},
      {"envoy.extensions.filters.http.fault.v3.FaultAbort",
       {"http_status", "grpc_status", "header_abort", "percentage"}},
      {"envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort", {}},
      {"envoy.extensions.filters.common.fault.v3.FaultRateLimit", {"fixed_limit", "percentage"}},
      {"envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit", {"limit_kbps"}},
      {"envoy.type.v3.FractionalPercent", {"numerator", "denominator"}},
      {kLocalRateLimit,
       {"stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
        "request_headers_to_add_when_not_enforced", "response_headers_to_add"}},
      {"envoy.type.v3.TokenBucket", {"max_tokens", "tokens_per_fill", "fill_interval"}},
      {"envoy.type.v3.HttpStatus", {"code"}},
      {"envoy.config.core.v3.RuntimeFractionalPercent", {"default_value", "runtime_key"}},
      // Routes.
      {"envoy.config.route.v3.RouteConfiguration",
       {"name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove",
        "response_headers_to_add", "response_headers_to_remove", "internal_only_headers",
        "validate_clusters"}},
      {"envoy.config.core.v3.HeaderValueOption", {"header", "append_action", "keep_empty_value"}},
      {"envoy.config.core.v3.HeaderValue", {"key", "value"}},
      {"envoy.config.route.v3.VirtualHost",
       {"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
        "response_headers_to_add", "response_headers_to_remove", "require_tls",
        "typed_per_filter_config", "retry_policy", "hedge_policy", "per_request_buffer_limit_bytes",
        "include_request_attempt_count", "include_attempt_count_in_response"}},
      {"envoy.config.route.v3.Route",
       {"name", "match", "route", "redirect", "direct_response", "request_headers_to_add",
        "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
        "typed_per_filter_config", "per_request_buffer_limit_bytes"}},
      {"envoy.config.route.v3.RouteMatch",
       {"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
        "query_parameters"}},
      {"envoy.type.matcher.v3.RegexMatcher", {"google_re2", "regex"}},
      {"envoy.type.matcher.v3.RegexMatcher.GoogleRE2", {}},
      {"envoy.config.route.v3.HeaderMatcher",
       {"name", "string_match", "present_match", "invert_match"}},
      {"envoy.type.matcher.v3.StringMatcher",
       {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"}},
      {"envoy.config.route.v3.QueryParameterMatcher", {"name", "string_match", "present_match"}},
      {"envoy.config.route.v3.RouteAction",
       {"cluster", "weighted_clusters", "cluster_header", "prefix_rewrite", "regex_rewrite",
        "host_rewrite_literal", "auto_host_rewrite", "timeout", "idle_timeout",
        "retry_policy", "hedge_policy", "request_mirror_policies", "hash_policy", "priority",
        "max_stream_duration", "max_grpc_timeout", "grpc_timeout_offset"}},
      {"envoy.config.route.v3.RouteAction.MaxStreamDuration",
       {"max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"}},
      // Resilience: retries, hedging, mirroring.
      {"envoy.config.route.v3.RetryPolicy",
       {"retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout", "retry_back_off",
        "retry_host_predicate", "host_selection_retry_max_attempts", "retriable_status_codes",
        "retriable_headers"}},
      {"envoy.config.route.v3.RetryPolicy.RetryBackOff", {"base_interval", "max_interval"}},
      {"envoy.config.route.v3.RetryPolicy.RetryHostPredicate", {"name", "typed_config"}},
      {"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", {}},
      {"envoy.config.route.v3.HedgePolicy", {"hedge_on_per_try_timeout"}},
      {"envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
       {"cluster", "runtime_fraction", "trace_sampled"}},
      // (runtime_fraction's RuntimeFractionalPercent and FractionalPercent: with the filters'.)
      {"envoy.config.route.v3.RouteAction.HashPolicy",
       {"header", "cookie", "connection_properties", "query_parameter", "terminal"}},
      {"envoy.config.route.v3.RouteAction.HashPolicy.Header", {"header_name"}},
      {"envoy.config.route.v3.RouteAction.HashPolicy.Cookie", {"name", "ttl", "path"}},
      {"envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", {"source_ip"}},
      {"envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter", {"name"}},
      {"envoy.config.route.v3.WeightedCluster", {"clusters"}},
      {"envoy.config.route.v3.WeightedCluster.ClusterWeight",
       {"name", "weight", "request_headers_to_add", "request_headers_to_remove",
        "response_headers_to_add", "response_headers_to_remove"}},
      {"envoy.type.matcher.v3.RegexMatchAndSubstitute", {"pattern", "substitution"}},
      {"envoy.config.route.v3.RedirectAction",
       {"scheme_redirect", "https_redirect", "host_redirect", "port_redirect", "path_redirect",
        "prefix_rewrite", "response_code", "strip_query"}},
      {"envoy.config.route.v3.DirectResponseAction", {"status", "body"}},
      // Clusters.
      {"envoy.config.cluster.v3.Cluster",
       {"name", "type", "connect_timeout", "load_assignment", "lb_policy", "dns_refresh_rate",
        "transport_socket",
        "dns_lookup_family", "per_connection_buffer_limit_bytes",
        "typed_extension_protocol_options", "circuit_breakers", "health_checks",
        "outlier_detection", "least_request_lb_config", "ring_hash_lb_config",
        "maglev_lb_config", "common_lb_config", "eds_cluster_config",
        "ignore_health_on_host_removal"}},
      // EDS: eds_config is a path_config_source (checked at load).
      {"envoy.config.cluster.v3.Cluster.EdsClusterConfig", {"eds_config", "service_name"}},
      {"envoy.config.cluster.v3.CircuitBreakers", {"thresholds"}},
      {"envoy.config.cluster.v3.CircuitBreakers.Thresholds",
       {"priority", "max_connections", "max_pending_requests", "max_requests", "max_retries",
        "retry_budget", "track_remaining"}},
      {"envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget",
       {"budget_percent", "min_retry_concurrency"}},
      {"envoy.type.v3.Percent", {"value"}},
      {"envoy.config.core.v3.HealthCheck",
       {"timeout", "interval", "interval_jitter", "interval_jitter_percent",
        "unhealthy_threshold", "healthy_threshold", "reuse_connection", "http_health_check",
        "tcp_health_check", "grpc_health_check", "no_traffic_interval", "unhealthy_interval",
        "unhealthy_edge_interval", "healthy_edge_interval", "always_log_health_check_failures"}},
      {"envoy.config.core.v3.HealthCheck.HttpHealthCheck",
       {"host", "path", "expected_statuses", "request_headers_to_add"}},
      {"envoy.config.core.v3.HealthCheck.TcpHealthCheck", {"send", "receive"}},
      {"envoy.config.core.v3.HealthCheck.GrpcHealthCheck",
       {"service_name", "authority", "initial_metadata"}},
      {"envoy.config.core.v3.HealthCheck.Payload", {"text", "binary"}},
      {"envoy.type.v3.Int64Range", {"start", "end"}},
      {"envoy.config.cluster.v3.OutlierDetection",
       {"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent",
        "enforcing_consecutive_5xx", "enforcing_success_rate", "success_rate_minimum_hosts",
        "success_rate_request_volume", "success_rate_stdev_factor", "consecutive_gateway_failure",
        "enforcing_consecutive_gateway_failure", "split_external_local_origin_errors",
        "consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure",
        "enforcing_local_origin_success_rate", "failure_percentage_threshold",
        "enforcing_failure_percentage", "enforcing_failure_percentage_local_origin",
        "failure_percentage_minimum_hosts", "failure_percentage_request_volume",
        "max_ejection_time", "successful_active_health_check_uneject_host",
        "always_eject_one_host"}},
      {"envoy.config.cluster.v3.Cluster.LeastRequestLbConfig",
       {"choice_count", "active_request_bias"}},
      {"envoy.config.core.v3.RuntimeDouble", {"default_value", "runtime_key"}},
      {"envoy.config.cluster.v3.Cluster.RingHashLbConfig",
       {"minimum_ring_size", "maximum_ring_size", "hash_function"}},
      {"envoy.config.cluster.v3.Cluster.MaglevLbConfig", {"table_size"}},
      {"envoy.config.cluster.v3.Cluster.CommonLbConfig",
       {"healthy_panic_threshold", "locality_weighted_lb_config"}},
      {"envoy.config.cluster.v3.Cluster.CommonLbConfig.LocalityWeightedLbConfig", {}},
      {"envoy.config.endpoint.v3.ClusterLoadAssignment", {"cluster_name", "endpoints", "policy"}},
      {"envoy.config.endpoint.v3.ClusterLoadAssignment.Policy", {"overprovisioning_factor"}},
      {"envoy.config.endpoint.v3.LocalityLbEndpoints",
       {"locality", "lb_endpoints", "load_balancing_weight", "priority"}},
      {"envoy.config.endpoint.v3.LbEndpoint",
       {"endpoint", "load_balancing_weight", "health_status"}},
      {"envoy.config.endpoint.v3.Endpoint", {"address"}},
      {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
       {"common_http_protocol_options", "explicit_http_config", "use_downstream_protocol_config",
        "auto_config"}},
      {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
      {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.UseDownstreamHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
      {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig",
       {"http_protocol_options", "http2_protocol_options"}},
  };
  return *table;
}

const std::vector<SupportedValues>& supportedValues() {
  static const auto* table = new std::vector<SupportedValues>{
      {kHcm, "codec_type", {"AUTO", "HTTP1", "HTTP2"}},
      {"envoy.config.core.v3.ConfigSource", "resource_api_version", {"V3"}},
      {"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager."
       "UpgradeConfig",
       "upgrade_type",
       {"websocket"},
       true},
      {"envoy.config.cluster.v3.Cluster", "type", {"STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS"}},
      {"envoy.config.listener.v3.FilterChainMatch", "transport_protocol", {"tls", "raw_buffer"}},
      {"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher", "san_type",
       {"EMAIL", "DNS", "URI", "IP_ADDRESS"}},
      {"envoy.config.cluster.v3.Cluster", "lb_policy",
       {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH", "MAGLEV"}},
      {"envoy.config.cluster.v3.Cluster.RingHashLbConfig", "hash_function", {"XX_HASH"}},
      {"envoy.config.core.v3.SocketAddress", "protocol", {"TCP"}},
  };
  return *table;
}

const std::vector<SupportedExtension>& supportedExtensions() {
  static const auto* table = new std::vector<SupportedExtension>{
      {"envoy.filters.network.http_connection_manager", kHcm,
       "envoy.config.listener.v3.Filter.typed_config"},
      {"envoy.filters.network.tcp_proxy", kTcpProxy, "envoy.config.listener.v3.Filter.typed_config"},
      {kRouterName, kRouter, kHttpFilterSlot, true},
      {"envoy.filters.http.fault", kFault, kHttpFilterSlot},
      {"envoy.filters.http.fault", kFault, kRouteFilterSlot},
      {"envoy.filters.http.fault", kFault, kVhostFilterSlot},
      {"envoy.filters.http.local_ratelimit", kLocalRateLimit, kHttpFilterSlot},
      {"envoy.filters.http.local_ratelimit", kLocalRateLimit, kRouteFilterSlot},
      {"envoy.filters.http.local_ratelimit", kLocalRateLimit, kVhostFilterSlot},
      {"envoy.access_loggers.file", "envoy.extensions.access_loggers.file.v3.FileAccessLog",
       "envoy.config.accesslog.v3.AccessLog.typed_config"},
      {"envoy.access_loggers.stdout", "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
       "envoy.config.accesslog.v3.AccessLog.typed_config"},
      {"envoy.access_loggers.stderr", "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
       "envoy.config.accesslog.v3.AccessLog.typed_config"},
      {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
       "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
       "envoy.config.cluster.v3.Cluster.typed_extension_protocol_options"},
      {"envoy.filters.listener.tls_inspector",
       "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
       "envoy.config.listener.v3.ListenerFilter.typed_config", true},
      {"envoy.filters.listener.http_inspector",
       "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
       "envoy.config.listener.v3.ListenerFilter.typed_config", true},
      {"envoy.filters.listener.proxy_protocol",
       "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
       "envoy.config.listener.v3.ListenerFilter.typed_config", true},
      {"envoy.transport_sockets.tls",
       "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
       "envoy.config.core.v3.TransportSocket.typed_config"},
      {"envoy.transport_sockets.tls", "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
       "envoy.config.core.v3.TransportSocket.typed_config"},
      {"envoy.transport_sockets.raw_buffer",
       "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
       "envoy.config.core.v3.TransportSocket.typed_config", true},
      {"envoy.retry_host_predicates.previous_hosts",
       "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
       "envoy.config.route.v3.RetryPolicy.RetryHostPredicate.typed_config", true},
  };
  return *table;
}

const std::vector<FieldHint>& fieldHints() {
  static const auto* table = new std::vector<FieldHint>{
      {"envoy.config.bootstrap.v3.Admin", "access_log_path", "use access_log"},
      {"envoy.config.core.v3.HeaderValueOption", "append", "use append_action"},
      {"envoy.config.route.v3.HeaderMatcher", "exact_match", "use string_match"},
      {"envoy.config.route.v3.HeaderMatcher", "safe_regex_match", "use string_match"},
      {"envoy.config.route.v3.HeaderMatcher", "prefix_match", "use string_match"},
      {"envoy.config.route.v3.HeaderMatcher", "suffix_match", "use string_match"},
      {"envoy.config.route.v3.HeaderMatcher", "contains_match", "use string_match"},
      {"envoy.config.route.v3.WeightedCluster", "total_weight",
       "deprecated in Envoy; weights are relative to their sum"},
      {"envoy.extensions.access_loggers.file.v3.FileAccessLog", "format", "use log_format"},
      {"envoy.extensions.access_loggers.file.v3.FileAccessLog", "json_format", "use log_format"},
      {"envoy.config.cluster.v3.Cluster", "http_protocol_options",
       "use typed_extension_protocol_options"},
      {"envoy.config.cluster.v3.Cluster", "common_http_protocol_options",
       "use typed_extension_protocol_options"},
      {"envoy.config.cluster.v3.Cluster", "http2_protocol_options",
       "use typed_extension_protocol_options"},
  };
  return *table;
}

namespace {

// The tables, indexed for the walk.
struct Index {
  Index() {
    for (const auto& m : supportedMessages()) {
      auto& fields = messages[std::string(m.message)];
      for (auto f : m.fields) {
        fields.insert(std::string(f));
      }
    }
    for (const auto& v : supportedValues()) {
      values[std::string(v.message) + "." + std::string(v.field)] = &v;
    }
    for (const auto& e : supportedExtensions()) {
      extension_names.insert(std::string(e.name));
    }
    for (const auto& h : fieldHints()) {
      hints[std::string(h.message) + "." + std::string(h.field)] = h.hint;
    }
  }
  std::unordered_map<std::string, std::unordered_set<std::string>> messages;
  std::unordered_map<std::string, const SupportedValues*> values;
  std::unordered_set<std::string> extension_names;
  std::unordered_map<std::string, std::string_view> hints;
};

const Index& index() {
  static const auto* index = new Index();
  return *index;
}

const SupportedExtension* findExtension(std::string_view slot, std::string_view type) {
  for (const auto& e : supportedExtensions()) {
    if (e.slot == slot && e.type == type) {
      return &e;
    }
  }
  return nullptr;
}

const SupportedExtension* findExtensionByName(std::string_view slot, std::string_view name) {
  for (const auto& e : supportedExtensions()) {
    if (e.slot == slot && e.name == name) {
      return &e;
    }
  }
  return nullptr;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return tolower(static_cast<unsigned char>(x)) == tolower(static_cast<unsigned char>(y));
         });
}

std::string joinValues(const std::vector<std::string_view>& values) {
  std::string out;
  for (auto v : values) {
    out += (out.empty() ? "" : ", ") + std::string(v);
  }
  return out;
}

// The string `name` field of a message, if it has one.
std::string nameOf(const pb::Message& msg) {
  const pb::FieldDescriptor* name = msg.GetDescriptor()->FindFieldByName("name");
  if (name == nullptr || name->is_repeated() || name->type() != pb::FieldDescriptor::TYPE_STRING) {
    return "";
  }
  return msg.GetReflection()->GetString(msg, name);
}

bool isValueType(const pb::Descriptor* d) {
  // Well-known types (Duration, Struct, wrappers, ...) are plain values; Any is walked into.
  return d->file()->package() == "google.protobuf" && d->full_name() != "google.protobuf.Any";
}

class Checker {
 public:
  explicit Checker(std::vector<std::string>& errors) : errors_(errors) {}

  void walkMessage(const pb::Message& msg, const std::string& path, int depth) {
    if (depth > 100) {
      return;
    }
    const pb::Descriptor* desc = msg.GetDescriptor();
    const pb::Reflection* refl = msg.GetReflection();
    const auto entry = index().messages.find(desc->full_name());
    std::vector<const pb::FieldDescriptor*> fields;
    refl->ListFields(msg, &fields);
    for (const pb::FieldDescriptor* f : fields) {
      const std::string field_path = joinPath(path, f->name());
      if (entry == index().messages.end() || (entry->second.count(std::string(kAllFields)) == 0 &&
                                              entry->second.count(f->name()) == 0)) {
        std::string message = f->name() + " is not supported";
        const auto hint = index().hints.find(f->full_name());
        if (hint != index().hints.end()) {
          message += " (" + std::string(hint->second) + ")";
        }
        fail(field_path, message);
        continue;
      }
      checkValues(msg, f, field_path);
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        walkMessageField(msg, f, path, field_path, depth);
      }
    }
    if (!refl->GetUnknownFields(msg).empty()) {
      const pb::UnknownFieldSet& unknown = refl->GetUnknownFields(msg);
      for (int i = 0; i < unknown.field_count(); ++i) {
        fail(path, "unknown field number " + std::to_string(unknown.field(i).number()) +
                       " is not supported");
      }
    }
    // An extension named without its typed_config.
    const pb::FieldDescriptor* typed_config = desc->FindFieldByName("typed_config");
    if (typed_config != nullptr && !typed_config->is_repeated() &&
        typed_config->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        typed_config->message_type()->full_name() == "google.protobuf.Any" &&
        !refl->HasField(msg, typed_config)) {
      checkNamedOnly(msg, typed_config, path);
    }
    if (desc->full_name() == kHcm) {
      checkRouterIsLast(msg, path);
    }
  }

 private:
  void fail(const std::string& path, const std::string& message) {
    errors_.push_back(path.empty() ? message : path + ": " + message);
  }

  void walkMessageField(const pb::Message& msg, const pb::FieldDescriptor* f,
                        const std::string& path, const std::string& field_path, int depth) {
    const pb::Reflection* refl = msg.GetReflection();
    if (f->is_map()) {
      const pb::FieldDescriptor* value_field = f->message_type()->FindFieldByNumber(2);
      if (value_field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE ||
          isValueType(value_field->message_type())) {
        return;
      }
      for (int i = 0; i < refl->FieldSize(msg, f); ++i) {
        const pb::Message& entry = refl->GetRepeatedMessage(msg, f, i);
        const std::string key = mapKeyText(entry);
        const std::string entry_path = field_path + "[" + key + "]";
        const pb::Message& value = entry.GetReflection()->GetMessage(entry, value_field);
        if (value_field->message_type()->full_name() == "google.protobuf.Any") {
          // typed_per_filter_config keys are http_filters names, which the config chooses.
          const bool key_is_name = f->name() != "typed_per_filter_config";
          checkAny(value, f, key, entry_path, entry_path, key_is_name, depth);
        } else {
          walkMessage(value, entry_path, depth + 1);
        }
      }
      return;
    }
    if (isValueType(f->message_type())) {
      return;
    }
    const bool is_any = f->message_type()->full_name() == "google.protobuf.Any";
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(msg, f); ++i) {
        const std::string element_path = field_path + "[" + std::to_string(i) + "]";
        const pb::Message& element = refl->GetRepeatedMessage(msg, f, i);
        if (is_any) {
          checkAny(element, f, "", element_path, element_path, false, depth);
        } else {
          walkMessage(element, element_path, depth + 1);
        }
      }
      return;
    }
    if (is_any) {
      // An unsupported extension is reported at the message that names it (its `name`).
      checkAny(refl->GetMessage(msg, f), f, nameOf(msg), path, field_path, false, depth);
    } else {
      walkMessage(refl->GetMessage(msg, f), field_path, depth + 1);
    }
  }

  // `name`: the extension name the config gives (the enclosing message's `name`, or the map
  // key); `report_path`: where an unsupported extension is reported; `any_path`: the path of
  // the Any itself, which its contents continue.
  void checkAny(const pb::Message& any, const pb::FieldDescriptor* slot, const std::string& name,
                const std::string& report_path, const std::string& any_path, bool key_is_name,
                int depth) {
    const std::string url = anyTypeUrl(any);
    if (url.empty()) {
      return;
    }
    const SupportedExtension* ext = findExtension(slot->full_name(), typeNameOfUrl(url));
    if (ext != nullptr && key_is_name && ext->name != name) {
      ext = nullptr;
    }
    if (ext == nullptr) {
      const bool name_is_informative = !name.empty() && index().extension_names.count(name) == 0;
      fail(report_path, (name_is_informative ? name : url) + " is not supported");
      return;
    }
    std::string error;
    std::unique_ptr<pb::Message> inner = unpackAny(any, error);
    if (inner == nullptr) {
      fail(any_path, error);
      return;
    }
    walkMessage(*inner, any_path, depth + 1);
  }

  void checkNamedOnly(const pb::Message& msg, const pb::FieldDescriptor* typed_config,
                      const std::string& path) {
    const std::string name = nameOf(msg);
    if (name.empty()) {
      return;  // nothing names an extension; validation reports a required name
    }
    const SupportedExtension* ext = findExtensionByName(typed_config->full_name(), name);
    if (ext == nullptr) {
      fail(path, name + " is not supported");
    } else if (!ext->config_optional) {
      fail(joinPath(path, "typed_config"), "value is required (the config of " + name + ")");
    }
  }

  void checkValues(const pb::Message& msg, const pb::FieldDescriptor* f,
                   const std::string& field_path) {
    const auto it = index().values.find(f->full_name());
    if (it == index().values.end()) {
      return;
    }
    const SupportedValues& allowed = *it->second;
    const pb::Reflection* refl = msg.GetReflection();
    const int n = f->is_repeated() ? refl->FieldSize(msg, f) : 1;
    for (int i = 0; i < n; ++i) {
      std::string value;
      if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
        const int number =
            f->is_repeated() ? refl->GetRepeatedEnumValue(msg, f, i) : refl->GetEnumValue(msg, f);
        const pb::EnumValueDescriptor* v = f->enum_type()->FindValueByNumber(number);
        value = v != nullptr ? v->name() : std::to_string(number);
      } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
        value = f->is_repeated() ? refl->GetRepeatedString(msg, f, i) : refl->GetString(msg, f);
      } else {
        continue;
      }
      const bool ok = std::any_of(allowed.values.begin(), allowed.values.end(), [&](auto a) {
        return allowed.ignore_case ? equalsIgnoreCase(a, value) : a == value;
      });
      if (!ok) {
        fail(f->is_repeated() ? field_path + "[" + std::to_string(i) + "]" : field_path,
             value + " is not supported (supported: " + joinValues(allowed.values) + ")");
      }
    }
  }

  // The router must be the last HTTP filter, and there must be one (no other filter ends a
  // request).
  void checkRouterIsLast(const pb::Message& hcm, const std::string& path) {
    const pb::FieldDescriptor* filters = hcm.GetDescriptor()->FindFieldByName("http_filters");
    if (filters == nullptr) {
      return;
    }
    const pb::Reflection* refl = hcm.GetReflection();
    const int n = refl->FieldSize(hcm, filters);
    const std::string filters_path = joinPath(path, "http_filters");
    bool last_is_router = false;
    for (int i = 0; i < n; ++i) {
      const pb::Message& filter = refl->GetRepeatedMessage(hcm, filters, i);
      const pb::FieldDescriptor* typed_config =
          filter.GetDescriptor()->FindFieldByName("typed_config");
      bool is_router = false;
      if (typed_config != nullptr && filter.GetReflection()->HasField(filter, typed_config)) {
        is_router =
            typeNameOfUrl(anyTypeUrl(filter.GetReflection()->GetMessage(filter, typed_config))) ==
            kRouter;
      } else {
        is_router = nameOf(filter) == kRouterName;
      }
      if (is_router && i != n - 1) {
        fail(filters_path + "[" + std::to_string(i) + "]",
             "the router (" + std::string(kRouterName) + ") must be the last HTTP filter");
      }
      last_is_router = is_router;
    }
    if (!last_is_router) {
      fail(filters_path,
           "the last HTTP filter must be the router (" + std::string(kRouterName) + ")");
    }
  }

  std::vector<std::string>& errors_;
};

std::string code(std::string_view s) {
  return "`" + std::string(s) + "`";
}

}  // namespace

bool checkSupported(const pb::Message& msg, std::vector<std::string>& errors,
                    std::string_view root_path) {
  const size_t before = errors.size();
  Checker(errors).walkMessage(msg, std::string(root_path), 0);
  return errors.size() == before;
}

std::string supportedFieldsMarkdown() {
  std::string out;
  out += "### Messages and their supported fields\n\n";
  out += "| Message | Supported fields |\n";
  out += "| --- | --- |\n";
  for (const auto& m : supportedMessages()) {
    std::string fields;
    for (auto f : m.fields) {
      fields += (fields.empty() ? "" : ", ") + (f == kAllFields ? "all fields" : code(f));
    }
    out += "| " + code(m.message) + " | " + (fields.empty() ? "none (must be empty)" : fields) +
           " |\n";
  }
  out += "\n### Fields that accept only some values\n\n";
  out += "| Field | Accepted values |\n";
  out += "| --- | --- |\n";
  for (const auto& v : supportedValues()) {
    std::string values;
    for (auto value : v.values) {
      values += (values.empty() ? "" : ", ") + code(value);
    }
    out += "| " + code(std::string(v.message) + "." + std::string(v.field)) + " | " + values +
           (v.ignore_case ? " (any case)" : "") + " |\n";
  }
  out += "\n### Extensions\n\n";
  out += "| Name | Type URL | In |\n";
  out += "| --- | --- | --- |\n";
  for (const auto& e : supportedExtensions()) {
    out += "| " + code(e.name) + " | " + code("type.googleapis.com/" + std::string(e.type)) +
           " | " + code(e.slot) + " |\n";
  }
  out += "\n### Refused fields that have a replacement\n\n";
  out += "| Field | Instead |\n";
  out += "| --- | --- |\n";
  for (const auto& h : fieldHints()) {
    out += "| " + code(std::string(h.message) + "." + std::string(h.field)) + " | " +
           std::string(h.hint) + " |\n";
  }
  return out;
}

}  // namespace sluice::config
