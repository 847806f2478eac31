#include "config/proxy_config.h"
#include "config/rds_api.h"

#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <map>
#include <algorithm>
#include <set>

#include "access_log/file_sink.h"
#include "access_log/formatter.h"
#include "config/api_descriptors.h"
#include "config/eds_api.h"
#include "config/proto_duration.h"
#include "config/tls_config.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "filters/http/factory.h"
#include "router/config_impl.h"
#include "router/router.h"
#include "stats/stats.h"

namespace sluice::config {

namespace hcm_v3 = envoy::extensions::filters::network::http_connection_manager::v3;

namespace {

// One access log line per stream, formatted once per config, written to a shared sink.
class FileAccessLog : public http::AccessLog {
 public:
  FileAccessLog(access_log::FormatterPtr formatter, std::shared_ptr<access_log::FileSink> sink)
      : formatter_(std::move(formatter)), sink_(std::move(sink)) {}
  void log(const http::RequestHeaderMap* request, const http::ResponseHeaderMap* response,
           const http::ResponseTrailerMap* trailers, const http::StreamInfo& info) override {
    std::string line;
    formatter_->format(access_log::FormatContext{request, response, trailers, info}, line);
    if (line.empty() || line.back() != '\n') line.push_back('\n');
    sink_->write(line);
  }

 private:
  access_log::FormatterPtr formatter_;
  std::shared_ptr<access_log::FileSink> sink_;
};

// The format of an access logger's log_format (SubstitutionFormatString), or Envoy's default.
access_log::FormatterPtr makeFormatter(
    const envoy::config::core::v3::SubstitutionFormatString* fmt, const std::string& path,
    std::string* error) {
  if (!fmt) return access_log::createTextFormatter(access_log::defaultFormat(), error);
  if (fmt->has_json_format()) {
    std::string json;
    google::protobuf::util::MessageToJsonString(fmt->json_format(), &json);
    return access_log::createJsonFormatter(nlohmann::json::parse(json), error);
  }
  if (fmt->has_text_format_source()) {
    const auto& src = fmt->text_format_source();
    // DataSource takes a filename too (for certificates); a log format is inline only.
    if (src.has_filename()) {
      *error = "text_format_source.filename: only inline_string and inline_bytes are supported";
      return nullptr;
    }
    return access_log::createTextFormatter(
        src.has_inline_string() ? src.inline_string() : src.inline_bytes(), error);
  }
  // text_format is deprecated in the API but still accepted by Envoy.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  if (!fmt->text_format().empty()) return access_log::createTextFormatter(fmt->text_format(), error);
#pragma GCC diagnostic pop
  return access_log::createTextFormatter(access_log::defaultFormat(), error);
}

bool buildAccessLogs(
    const google::protobuf::RepeatedPtrField<envoy::config::accesslog::v3::AccessLog>& logs,
    const std::string& path, access_log::FileSinkManager& sinks,
    std::vector<http::AccessLogSharedPtr>& out, std::vector<std::string>& errors) {
  for (int i = 0; i < logs.size(); ++i) {
    const auto& log = logs[i];
    const std::string p = path + "[" + std::to_string(i) + "]";
    const auto& any = log.typed_config();
    std::string file_path;
    const envoy::config::core::v3::SubstitutionFormatString* fmt = nullptr;
    envoy::extensions::access_loggers::file::v3::FileAccessLog file;
    envoy::extensions::access_loggers::stream::v3::StdoutAccessLog out_log;
    envoy::extensions::access_loggers::stream::v3::StderrAccessLog err_log;
    if (any.UnpackTo(&file)) {
      file_path = file.path();
      if (file.has_log_format()) fmt = &file.log_format();
    } else if (any.UnpackTo(&out_log)) {
      file_path = "/dev/stdout";
      if (out_log.has_log_format()) fmt = &out_log.log_format();
    } else if (any.UnpackTo(&err_log)) {
      file_path = "/dev/stderr";
      if (err_log.has_log_format()) fmt = &err_log.log_format();
    } else {
      errors.push_back(p + ": access logger '" + log.name() + "' is not supported");
      return false;
    }
    std::string error;
    auto formatter = makeFormatter(fmt, p, &error);
    if (!formatter) {
      errors.push_back(p + ".typed_config.log_format: " + error);
      return false;
    }
    auto sink = sinks.get(file_path, access_log::FileSink::kDefaultFlushInterval, &error);
    if (!sink) {
      errors.push_back(p + ".typed_config.path: " + error);
      return false;
    }
    out.push_back(std::make_shared<FileAccessLog>(std::move(formatter), std::move(sink)));
  }
  return true;
}

network::AddressConstSharedPtr socketAddress(const envoy::config::core::v3::Address& a,
                                             const std::string& path,
                                             std::vector<std::string>& errors) {
  std::string error;
  auto addr = network::fromIp(a.socket_address().address(), a.socket_address().port_value(), &error);
  if (!addr) errors.push_back(path + ".socket_address: " + error);
  return addr;
}

// Envoy's validate_clusters, on by default for a route table in the bootstrap: every cluster
// that a route names must exist. (cluster_header picks a cluster at request time: 503 NC.)
bool validateRouteClusters(const envoy::config::route::v3::RouteConfiguration& rc,
                           const std::string& path, const std::set<std::string>& clusters,
                           std::vector<std::string>& errors) {
  if (rc.has_validate_clusters() && !rc.validate_clusters().value()) return true;
  for (int i = 0; i < rc.virtual_hosts_size(); ++i) {
    const auto& vh = rc.virtual_hosts(i);
    for (int j = 0; j < vh.routes_size(); ++j) {
      if (!vh.routes(j).has_route()) continue;
      const auto& action = vh.routes(j).route();
      const std::string rp = path + ".virtual_hosts[" + std::to_string(i) + "].routes[" +
                             std::to_string(j) + "].route";
      if (!action.cluster().empty() && !clusters.count(action.cluster())) {
        errors.push_back(rp + ".cluster: unknown cluster '" + action.cluster() + "'");
        return false;
      }
      const auto& wc = action.weighted_clusters().clusters();
      for (int k = 0; k < wc.size(); ++k) {
        if (!wc[k].name().empty() && !clusters.count(wc[k].name())) {
          errors.push_back(rp + ".weighted_clusters.clusters[" + std::to_string(k) +
                           "].name: unknown cluster '" + wc[k].name() + "'");
          return false;
        }
      }
    }
  }
  return true;
}

// Http2ProtocolOptions (downstream on the connection manager, upstream on a cluster), with
// Envoy's defaults and ranges.
bool buildHttp2Settings(const envoy::config::core::v3::Http2ProtocolOptions& proto,
                        const std::string& path, http::http2::CodecSettings& out,
                        std::vector<std::string>& errors) {
  auto check = [&](const char* name, uint32_t value, uint32_t min) {
    if (value >= min && value <= 2147483647) return true;
    errors.push_back(path + "." + name + ": must be between " + std::to_string(min) +
                     " and 2147483647");
    return false;
  };
  if (proto.has_max_concurrent_streams()) {
    if (!check("max_concurrent_streams", proto.max_concurrent_streams().value(), 1)) return false;
    out.max_concurrent_streams = proto.max_concurrent_streams().value();
  }
  if (proto.has_initial_stream_window_size()) {
    if (!check("initial_stream_window_size", proto.initial_stream_window_size().value(), 65535)) {
      return false;
    }
    out.initial_stream_window_size = proto.initial_stream_window_size().value();
  }
  if (proto.has_initial_connection_window_size()) {
    if (!check("initial_connection_window_size", proto.initial_connection_window_size().value(),
               65535)) {
      return false;
    }
    out.initial_connection_window_size = proto.initial_connection_window_size().value();
  }
  if (proto.has_connection_keepalive()) {
    const auto& k = proto.connection_keepalive();
    if (k.has_interval()) out.keepalive_interval = toMilliseconds(k.interval());
    out.keepalive_timeout = toMilliseconds(k.timeout());  // required (validated)
    if (k.has_connection_idle_interval()) {
      out.keepalive_idle_interval = toMilliseconds(k.connection_idle_interval());
    }
    if (k.has_interval_jitter()) {
      const double v = k.interval_jitter().value();
      if (v < 0 || v > 100) {
        errors.push_back(path + ".connection_keepalive.interval_jitter: must be within [0, 100]");
        return false;
      }
      out.keepalive_jitter_percent = static_cast<uint32_t>(v);
    }
  }
  return true;
}

bool buildHcm(const hcm_v3::HttpConnectionManager& proto, const std::string& path,
              const std::set<std::string>& clusters, stats::Store& store, access_log::FileSinkManager& sinks,
              http::ConnectionManagerConfigConstSharedPtr& out, std::vector<std::string>& errors) {
  auto cfg = std::make_shared<http::ConnectionManagerConfig>();
  cfg->stat_prefix = proto.stat_prefix();
  cfg->stats = std::make_shared<http::ConnectionManagerStats>(
      http::ConnectionManagerStats::create(store, cfg->stat_prefix));
  std::string error;
  const filters::FilterFactoryContext filter_context{store, cfg->stat_prefix, {}};
  // The filters of this chain by the names a typed_per_filter_config key may use for them:
  // their http_filters name, and their canonical name.
  std::map<std::string, const filters::HttpFilterFactory*, std::less<>> chain;
  for (int i = 0; i + 1 < proto.http_filters_size(); ++i) {
    const auto* f = filters::findHttpFilterFactory(proto.http_filters(i).typed_config().type_url());
    if (f == nullptr) continue;  // refused below
    chain.emplace(proto.http_filters(i).name(), f);
  }
  for (int i = 0; i + 1 < proto.http_filters_size(); ++i) {
    const auto* f = filters::findHttpFilterFactory(proto.http_filters(i).typed_config().type_url());
    if (f != nullptr) chain.emplace(std::string(f->name()), f);  // a name given above wins
  }
  // typed_per_filter_config entries go to the filter that owns their type; an entry keyed by
  // the name of a filter of this chain must be of that filter's type (the filter reads it as
  // its own).
  auto compile_filter_config = [&filter_context, &chain](const std::string& name,
                                                         const google::protobuf::Any& any,
                                                         const std::string& path, std::string* err)
      -> http::RouteSpecificFilterConfigConstSharedPtr {
    const filters::HttpFilterFactory* factory = filters::findHttpFilterFactory(any.type_url());
    if (factory == nullptr) {
      *err = path + ": " + name + " has no per-route config (" + any.type_url() + ")";
      return nullptr;
    }
    if (const auto it = chain.find(name); it != chain.end() && it->second != factory) {
      *err = path + ": " + std::string(factory->configType()) + " is not the config of filter '" +
             name + "' (" + std::string(it->second->name()) + ")";
      return nullptr;
    }
    return factory->createRouteConfig(any, filter_context, path, err);
  };
  if (proto.has_rds()) {
    // RDS: the routes come from a subscription, and change under the connection manager.
    SourceSpec source;
    if (!parseConfigSource(proto.rds().config_source(), path + ".rds.config_source", source,
                           errors)) {
      return false;
    }
    if (RouteConfigProviders* providers = routeConfigProviders()) {
      // Route-level filter configs of RDS versions are compiled by their type alone: the
      // versions outlive this chain's name table.
      auto compile = [filter_context](const std::string& name, const google::protobuf::Any& any,
                                      const std::string& p, std::string* err)
          -> http::RouteSpecificFilterConfigConstSharedPtr {
        const filters::HttpFilterFactory* factory = filters::findHttpFilterFactory(any.type_url());
        if (factory == nullptr) {
          *err = p + ": " + name + " has no per-route config (" + any.type_url() + ")";
          return nullptr;
        }
        return factory->createRouteConfig(any, filter_context, p, err);
      };
      cfg->route_table = providers->get(source, proto.rds().route_config_name(),
                                        cfg->stat_prefix, compile, error);
      if (!cfg->route_table) {
        errors.push_back(path + ".rds.config_source: " + error);
        return false;
      }
    }
  } else {
    auto table =
        router::RouteTableImpl::create(proto.route_config(), &error, compile_filter_config);
    if (!table) {
      errors.push_back(path + ".route_config." + error);
      return false;
    }
    if (!validateRouteClusters(proto.route_config(), path + ".route_config", clusters, errors)) {
      return false;
    }
    cfg->route_table = table;
  }
  if (!proto.server_name().empty()) cfg->server_name = proto.server_name();
  switch (proto.server_header_transformation()) {
    case hcm_v3::HttpConnectionManager::APPEND_IF_ABSENT:
      cfg->server_header_transformation = http::ServerHeaderTransformation::AppendIfAbsent;
      break;
    case hcm_v3::HttpConnectionManager::PASS_THROUGH:
      cfg->server_header_transformation = http::ServerHeaderTransformation::PassThrough;
      break;
    default: break;
  }
  cfg->use_remote_address = proto.has_use_remote_address() && proto.use_remote_address().value();
  cfg->xff_num_trusted_hops = proto.xff_num_trusted_hops();
  switch (proto.forward_client_cert_details()) {
    case hcm_v3::HttpConnectionManager::FORWARD_ONLY:
      cfg->forward_client_cert = http::ForwardClientCert::ForwardOnly;
      break;
    case hcm_v3::HttpConnectionManager::APPEND_FORWARD:
      cfg->forward_client_cert = http::ForwardClientCert::AppendForward;
      break;
    case hcm_v3::HttpConnectionManager::SANITIZE_SET:
      cfg->forward_client_cert = http::ForwardClientCert::SanitizeSet;
      break;
    case hcm_v3::HttpConnectionManager::ALWAYS_FORWARD_ONLY:
      cfg->forward_client_cert = http::ForwardClientCert::AlwaysForwardOnly;
      break;
    default: cfg->forward_client_cert = http::ForwardClientCert::Sanitize;
  }
  if (proto.has_set_current_client_cert_details()) {
    const auto& d = proto.set_current_client_cert_details();
    cfg->client_cert_details.subject = d.has_subject() && d.subject().value();
    cfg->client_cert_details.uri = d.uri();
    cfg->client_cert_details.dns = d.dns();
  }
  if (proto.has_generate_request_id()) cfg->generate_request_id = proto.generate_request_id().value();
  cfg->preserve_external_request_id = proto.preserve_external_request_id();
  if (proto.has_stream_idle_timeout()) {
    cfg->stream_idle_timeout = toMilliseconds(proto.stream_idle_timeout());
  }
  if (proto.has_request_timeout()) cfg->request_timeout = toMilliseconds(proto.request_timeout());
  if (proto.has_request_headers_timeout()) {
    cfg->request_headers_timeout = toMilliseconds(proto.request_headers_timeout());
  }
  if (proto.has_delayed_close_timeout()) {
    cfg->delayed_close_timeout = toMilliseconds(proto.delayed_close_timeout());
  }
  if (proto.has_drain_timeout()) cfg->drain_timeout = toMilliseconds(proto.drain_timeout());
  const auto& common = proto.common_http_protocol_options();
  if (common.has_idle_timeout()) cfg->idle_timeout = toMilliseconds(common.idle_timeout());
  if (common.has_max_stream_duration()) {
    cfg->max_stream_duration = toMilliseconds(common.max_stream_duration());
  }
  if (common.has_max_requests_per_connection()) {
    cfg->max_requests_per_connection = common.max_requests_per_connection().value();
  }
  if (common.has_max_headers_count()) {
    cfg->http1_settings.max_headers_count = common.max_headers_count().value();
  }
  switch (common.headers_with_underscores_action()) {
    case envoy::config::core::v3::HttpProtocolOptions::REJECT_REQUEST:
      cfg->http1_settings.headers_with_underscores =
          http::http1::CodecSettings::UnderscoreAction::RejectRequest;
      break;
    case envoy::config::core::v3::HttpProtocolOptions::DROP_HEADER:
      cfg->http1_settings.headers_with_underscores =
          http::http1::CodecSettings::UnderscoreAction::DropHeader;
      break;
    default: break;
  }
  if (proto.has_max_request_headers_kb()) {
    cfg->http1_settings.max_request_headers_kb = proto.max_request_headers_kb().value();
  }
  if (proto.has_http_protocol_options()) {
    cfg->http1_settings.accept_http_10 = proto.http_protocol_options().accept_http_10();
    cfg->http1_settings.default_host_for_http_10 =
        proto.http_protocol_options().default_host_for_http_10();
  }
  cfg->normalize_path = proto.has_normalize_path() && proto.normalize_path().value();
  cfg->merge_slashes = proto.merge_slashes();
  for (const auto& u : proto.upgrade_configs()) {
    const bool enabled = !u.has_enabled() || u.enabled().value();
    std::string type = u.upgrade_type();
    for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (type == "websocket") cfg->allow_websocket = enabled;
  }
  cfg->via = proto.via();
  switch (proto.codec_type()) {
    case hcm_v3::HttpConnectionManager::HTTP1: cfg->codec_type = http::CodecType::Http1; break;
    case hcm_v3::HttpConnectionManager::HTTP2: cfg->codec_type = http::CodecType::Http2; break;
    default: cfg->codec_type = http::CodecType::Auto;
  }
  if (proto.has_http2_protocol_options() &&
      !buildHttp2Settings(proto.http2_protocol_options(), path + ".http2_protocol_options",
                          cfg->http2_settings, errors)) {
    return false;
  }
  if (cfg->http2_settings.keepalive_timeout.count() > 0) {
    // As Envoy's: downstream HTTP/2 codec stats are rooted at http2.
    cfg->http2_settings.keepalive_timeout_counter = &store.counter("http2.keepalive_timeout");
  }
  if (!buildAccessLogs(proto.access_log(), path + ".access_log", sinks, cfg->access_logs, errors)) {
    return false;
  }
  // The filters in config order; the router is last, as checkSupported guarantees.
  for (int i = 0; i + 1 < proto.http_filters_size(); ++i) {
    const auto& f = proto.http_filters(i);
    const std::string fp = path + ".http_filters[" + std::to_string(i) + "]";
    const filters::HttpFilterFactory* factory =
        filters::findHttpFilterFactory(f.typed_config().type_url());
    if (factory == nullptr) {
      errors.push_back(fp + ": " + f.name() + " is not supported");
      return false;
    }
    auto cb = factory->createFilterFactory(f.typed_config(), f.name(), filter_context,
                                           fp + ".typed_config", &error);
    if (!cb) {
      errors.push_back(error);
      return false;
    }
    cfg->filter_factories.push_back(std::move(cb));
  }
  cfg->filter_factories.push_back(
      router::routerFilterFactory(std::make_shared<router::RouterConfig>()));
  out = cfg;
  return true;
}

// envoy.filters.network.tcp_proxy. As in Envoy, the cluster is looked up per connection (CDS
// may bring it later): a connection to a missing one is closed and counted as no route.
bool buildTcpProxy(const envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy& proto,
                   const std::string& path, stats::Store& store, access_log::FileSinkManager& sinks,
                   filters::tcp::TcpProxyConfigConstSharedPtr& out,
                   std::vector<std::string>& errors) {
  auto config = std::make_shared<filters::tcp::TcpProxyConfig>(store, proto.stat_prefix());
  if (proto.has_weighted_clusters()) {
    const auto& wc = proto.weighted_clusters();
    for (int i = 0; i < wc.clusters_size(); ++i) {
      config->clusters.push_back({wc.clusters(i).name(), wc.clusters(i).weight()});
      config->total_weight += wc.clusters(i).weight();
    }
  } else {
    config->clusters.push_back({proto.cluster(), 1});
    config->total_weight = 1;
  }
  if (proto.has_idle_timeout()) config->idle_timeout = toMilliseconds(proto.idle_timeout());
  if (proto.has_max_connect_attempts()) {
    config->max_connect_attempts = proto.max_connect_attempts().value();
  }
  if (!buildAccessLogs(proto.access_log(), path + ".access_log", sinks, config->access_logs,
                       errors)) {
    return false;
  }
  out = std::move(config);
  return true;
}

// Envoy's Payload: hex text or raw bytes.
bool payloadBytes(const envoy::config::core::v3::HealthCheck::Payload& p, const std::string& path,
                  std::string& out, std::vector<std::string>& errors) {
  if (p.has_binary()) {
    out = p.binary();
    return true;
  }
  const std::string& t = p.text();
  auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  for (size_t i = 0; i + 1 < t.size(); i += 2) {
    const int hi = nibble(t[i]), lo = nibble(t[i + 1]);
    if (hi < 0 || lo < 0) break;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  if (out.size() * 2 != t.size()) {
    errors.push_back(path + ".text: '" + t + "' is not hex");
    return false;
  }
  return true;
}

bool buildHealthCheck(const envoy::config::core::v3::HealthCheck& hc, const std::string& path,
                      upstream::HealthCheckConfig& out, std::vector<std::string>& errors) {
  using upstream::HealthCheckConfig;
  out.timeout = toMilliseconds(hc.timeout());
  out.interval = toMilliseconds(hc.interval());
  if (hc.has_interval_jitter()) out.interval_jitter = toMilliseconds(hc.interval_jitter());
  out.interval_jitter_percent = hc.interval_jitter_percent();
  out.unhealthy_threshold = hc.unhealthy_threshold().value();
  out.healthy_threshold = hc.healthy_threshold().value();
  if (hc.has_no_traffic_interval()) {
    out.no_traffic_interval = toMilliseconds(hc.no_traffic_interval());
  }
  if (hc.has_unhealthy_interval()) out.unhealthy_interval = toMilliseconds(hc.unhealthy_interval());
  if (hc.has_unhealthy_edge_interval()) {
    out.unhealthy_edge_interval = toMilliseconds(hc.unhealthy_edge_interval());
  }
  if (hc.has_healthy_edge_interval()) {
    out.healthy_edge_interval = toMilliseconds(hc.healthy_edge_interval());
  }
  if (hc.has_reuse_connection()) out.reuse_connection = hc.reuse_connection().value();
  out.always_log_health_check_failures = hc.always_log_health_check_failures();
  if (out.timeout.count() == 0) {
    errors.push_back(path + ".timeout: must be at least 1ms");
    return false;
  }
  if (out.interval.count() == 0) {
    errors.push_back(path + ".interval: must be at least 1ms");
    return false;
  }
  if (hc.has_http_health_check()) {
    const auto& h = hc.http_health_check();
    out.type = HealthCheckConfig::Type::Http;
    out.path = h.path();
    out.host = h.host();
    for (int i = 0; i < h.expected_statuses_size(); ++i) {
      const auto& r = h.expected_statuses(i);
      if (r.start() < 100 || r.end() > 600 || r.start() >= r.end()) {
        errors.push_back(path + ".http_health_check.expected_statuses[" + std::to_string(i) +
                         "]: must be a range [start, end) within [100, 600)");
        return false;
      }
      out.expected_statuses.push_back(
          {static_cast<uint32_t>(r.start()), static_cast<uint32_t>(r.end())});
    }
    for (const auto& hv : h.request_headers_to_add()) {
      out.request_headers_to_add.push_back({hv.header().key(), hv.header().value()});
    }
  } else if (hc.has_tcp_health_check()) {
    const auto& t = hc.tcp_health_check();
    out.type = HealthCheckConfig::Type::Tcp;
    if (t.has_send() &&
        !payloadBytes(t.send(), path + ".tcp_health_check.send", out.send, errors)) {
      return false;
    }
    for (int i = 0; i < t.receive_size(); ++i) {
      std::string block;
      if (!payloadBytes(t.receive(i), path + ".tcp_health_check.receive[" + std::to_string(i) + "]",
                        block, errors)) {
        return false;
      }
      out.receive.push_back(std::move(block));
    }
  } else if (hc.has_grpc_health_check()) {
    const auto& g = hc.grpc_health_check();
    out.type = HealthCheckConfig::Type::Grpc;
    out.service_name = g.service_name();
    out.authority = g.authority();
    if (g.initial_metadata_size() > 0) {
      // Compiled as a route's request_headers_to_add is (Envoy uses the same header parser):
      // append actions, formatters, and no pseudo-headers or host.
      auto metadata = std::make_shared<router::HeaderMutations>();
      std::string error;
      if (!metadata->init(g.initial_metadata(), {}, path + ".grpc_health_check.initial_metadata",
                          "", &error)) {
        errors.push_back(error);
        return false;
      }
      out.grpc_initial_metadata = [metadata](http::HeaderMap& headers,
                                             const http::StreamInfo& info) {
        metadata->apply(headers, info, &headers);
      };
    }
  } else {
    errors.push_back(path +
                     ": one of http_health_check, tcp_health_check or grpc_health_check is required");
    return false;
  }
  return true;
}

bool buildOutlierDetection(const envoy::config::cluster::v3::OutlierDetection& od,
                           const std::string& path, upstream::OutlierDetectionConfig& c,
                           std::vector<std::string>& errors) {
#define SLUICE_OD_U32(f) \
  if (od.has_##f()) c.f = od.f().value();
#define SLUICE_OD_MS(f) \
  if (od.has_##f()) c.f = toMilliseconds(od.f());
  SLUICE_OD_MS(interval)
  SLUICE_OD_MS(base_ejection_time)
  SLUICE_OD_MS(max_ejection_time)
  SLUICE_OD_U32(max_ejection_percent)
  SLUICE_OD_U32(always_eject_one_host)
  SLUICE_OD_U32(consecutive_5xx)
  SLUICE_OD_U32(enforcing_consecutive_5xx)
  SLUICE_OD_U32(consecutive_gateway_failure)
  SLUICE_OD_U32(enforcing_consecutive_gateway_failure)
  SLUICE_OD_U32(consecutive_local_origin_failure)
  SLUICE_OD_U32(enforcing_consecutive_local_origin_failure)
  SLUICE_OD_U32(enforcing_success_rate)
  SLUICE_OD_U32(enforcing_local_origin_success_rate)
  SLUICE_OD_U32(success_rate_minimum_hosts)
  SLUICE_OD_U32(success_rate_request_volume)
  SLUICE_OD_U32(success_rate_stdev_factor)
  SLUICE_OD_U32(failure_percentage_threshold)
  SLUICE_OD_U32(enforcing_failure_percentage)
  SLUICE_OD_U32(enforcing_failure_percentage_local_origin)
  SLUICE_OD_U32(failure_percentage_minimum_hosts)
  SLUICE_OD_U32(failure_percentage_request_volume)
  SLUICE_OD_U32(successful_active_health_check_uneject_host)
#undef SLUICE_OD_U32
#undef SLUICE_OD_MS
  c.split_external_local_origin_errors = od.split_external_local_origin_errors();
  // Envoy: max_ejection_time defaults to 300s or base_ejection_time, whichever is greater.
  if (!od.has_max_ejection_time()) {
    c.max_ejection_time = std::max(c.max_ejection_time, c.base_ejection_time);
  }
  // The API only asks for more than zero; under a millisecond would be a zero-length timer.
  if (c.interval.count() < 1) {
    errors.push_back(path + ".interval: must be at least 1ms");
    return false;
  }
  if (c.base_ejection_time.count() < 1) {
    errors.push_back(path + ".base_ejection_time: must be at least 1ms");
    return false;
  }
  if (c.max_ejection_time < c.base_ejection_time) {  // as Envoy refuses it
    errors.push_back(path + ".max_ejection_time: must not be less than base_ejection_time");
    return false;
  }
  return true;
}

// lb_policy and what tunes it. (The ranges the API declares are checked before this.)
bool buildLbConfig(const envoy::config::cluster::v3::Cluster& proto, const std::string& path,
                   upstream::LbConfig& lb, std::vector<std::string>& errors) {
  using Cluster = envoy::config::cluster::v3::Cluster;
  using Policy = upstream::LbConfig::Policy;
  switch (proto.lb_policy()) {
    case Cluster::LEAST_REQUEST: lb.policy = Policy::LeastRequest; break;
    case Cluster::RANDOM: lb.policy = Policy::Random; break;
    case Cluster::RING_HASH: lb.policy = Policy::RingHash; break;
    case Cluster::MAGLEV: lb.policy = Policy::Maglev; break;
    default: lb.policy = Policy::RoundRobin;
  }
  if (proto.has_least_request_lb_config()) {
    const auto& c = proto.least_request_lb_config();
    if (c.has_choice_count()) lb.choice_count = c.choice_count().value();
    if (c.has_active_request_bias()) {
      lb.active_request_bias = c.active_request_bias().default_value();
      if (lb.active_request_bias < 0) {
        errors.push_back(path + ".least_request_lb_config.active_request_bias.default_value: "
                         "must not be negative");
        return false;
      }
    }
  }
  if (proto.has_ring_hash_lb_config()) {
    const auto& c = proto.ring_hash_lb_config();
    if (c.has_minimum_ring_size()) lb.minimum_ring_size = c.minimum_ring_size().value();
    if (c.has_maximum_ring_size()) lb.maximum_ring_size = c.maximum_ring_size().value();
    if (lb.minimum_ring_size > lb.maximum_ring_size) {
      errors.push_back(path + ".ring_hash_lb_config.minimum_ring_size: " +
                       std::to_string(lb.minimum_ring_size) + " is greater than maximum_ring_size " +
                       std::to_string(lb.maximum_ring_size));
      return false;
    }
  }
  if (proto.has_maglev_lb_config() && proto.maglev_lb_config().has_table_size()) {
    lb.maglev_table_size = proto.maglev_lb_config().table_size().value();
    if (!upstream::isPrime(lb.maglev_table_size)) {
      errors.push_back(path + ".maglev_lb_config.table_size: " +
                       std::to_string(lb.maglev_table_size) + " is not a prime number");
      return false;
    }
  }
  const auto& common = proto.common_lb_config();
  if (common.has_healthy_panic_threshold()) {
    lb.healthy_panic_threshold = common.healthy_panic_threshold().value();
  }
  lb.locality_weighted = common.has_locality_weighted_lb_config();
  if (lb.locality_weighted && (lb.policy == Policy::RingHash || lb.policy == Policy::Maglev)) {
    errors.push_back(path + ".common_lb_config.locality_weighted_lb_config: not supported with " +
                     Cluster::LbPolicy_Name(proto.lb_policy()));
    return false;
  }
  const auto& policy = proto.load_assignment().policy();
  if (policy.has_overprovisioning_factor()) {
    lb.overprovisioning_factor = policy.overprovisioning_factor().value();
  }
  return true;
}

}  // namespace

namespace {
bool buildCluster(const envoy::config::cluster::v3::Cluster& proto, const std::string& path,
                  const SecretMap& secrets, stats::Store& store, upstream::ClusterConfig& out,
                  std::vector<std::string>& errors);
bool buildListener(const envoy::config::listener::v3::Listener& l, const std::string& lp,
                   const SecretMap& secrets, const std::set<std::string>& cluster_names,
                   stats::Store& store, access_log::FileSinkManager& sinks, ListenerConfig& lc,
                   std::vector<std::string>& errors);
}  // namespace

// The subscriptions the config names that have not delivered yet are what it warms for.
bool buildClusterConfig(const envoy::config::cluster::v3::Cluster& proto, const std::string& path,
                        const SecretMap& secrets, stats::Store& store,
                        upstream::ClusterConfig& out, std::vector<std::string>& errors) {
  init::Scope scope;
  if (!buildCluster(proto, path, secrets, store, out, errors)) return false;
  out.init_targets = scope.take();
  return true;
}

bool buildListenerConfig(const envoy::config::listener::v3::Listener& l, const std::string& lp,
                         const SecretMap& secrets, const std::set<std::string>& cluster_names,
                         stats::Store& store, access_log::FileSinkManager& sinks,
                         ListenerConfig& lc, std::vector<std::string>& errors) {
  init::Scope scope;
  if (!buildListener(l, lp, secrets, cluster_names, store, sinks, lc, errors)) return false;
  lc.init_targets = scope.take();
  return true;
}

namespace {
bool buildCluster(const envoy::config::cluster::v3::Cluster& proto, const std::string& path,
                  const SecretMap& secrets, stats::Store& store, upstream::ClusterConfig& out,
                  std::vector<std::string>& errors) {
  auto info = std::make_shared<upstream::ClusterInfo>(proto.name(), store);
  if (proto.has_transport_socket()) {
    info->transport_socket_factory =
        buildTransportSocketFactory(proto.transport_socket(), false, secrets, store,
                                    "cluster." + proto.name() + ".", path + ".transport_socket", errors);
    if (!info->transport_socket_factory) return false;
  }
  if (proto.has_connect_timeout()) info->connect_timeout = toMilliseconds(proto.connect_timeout());
  if (proto.has_per_connection_buffer_limit_bytes()) {
    info->per_connection_buffer_limit_bytes = proto.per_connection_buffer_limit_bytes().value();
  }
  if (proto.has_circuit_breakers()) {
    // One set of thresholds per routing priority; a route's `priority` picks which applies.
    const auto& cb = proto.circuit_breakers();
    bool seen[2] = {false, false};
    for (int i = 0; i < cb.thresholds_size(); ++i) {
      const auto& t = cb.thresholds(i);
      const std::string t_path = path + ".circuit_breakers.thresholds[" + std::to_string(i) + "]";
      const int prio = t.priority();
      if (prio != 0 && prio != 1) {
        errors.push_back(t_path + ".priority: unknown priority " + std::to_string(prio));
        return false;
      }
      if (seen[prio]) {
        errors.push_back(t_path + ".priority: a second threshold for the same priority");
        return false;
      }
      seen[prio] = true;
      if (t.has_retry_budget()) {
        const auto& rb = t.retry_budget();
        if (rb.has_budget_percent() &&
            (rb.budget_percent().value() < 0 || rb.budget_percent().value() > 100)) {
          errors.push_back(t_path + ".retry_budget.budget_percent: must be within [0, 100]");
          return false;
        }
      }
      upstream::CircuitBreakerThresholds th;
      if (t.has_max_connections()) th.max_connections = t.max_connections().value();
      if (t.has_max_pending_requests()) th.max_pending_requests = t.max_pending_requests().value();
      if (t.has_max_requests()) th.max_requests = t.max_requests().value();
      if (t.has_max_retries()) th.max_retries = t.max_retries().value();
      if (t.has_retry_budget()) {
        upstream::CircuitBreakerThresholds::RetryBudget b;
        const auto& rb = t.retry_budget();
        if (rb.has_budget_percent()) b.budget_percent = rb.budget_percent().value();
        if (rb.has_min_retry_concurrency()) {
          b.min_retry_concurrency = rb.min_retry_concurrency().value();
        }
        th.retry_budget = b;
      }
      th.track_remaining = t.track_remaining();
      info->setCircuitBreakers(th, prio == 1 ? upstream::ResourcePriority::High
                                             : upstream::ResourcePriority::Default);
    }
  }
  const auto& opts = proto.typed_extension_protocol_options();
  auto it = opts.find("envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
  if (it != opts.end()) {
    envoy::extensions::upstreams::http::v3::HttpProtocolOptions http;
    if (!it->second.UnpackTo(&http)) {
      errors.push_back(path + ".typed_extension_protocol_options: cannot read HttpProtocolOptions");
      return false;
    }
    const auto& common = http.common_http_protocol_options();
    if (common.has_idle_timeout()) info->idle_timeout = toMilliseconds(common.idle_timeout());
    if (common.has_max_requests_per_connection()) {
      info->max_requests_per_connection = common.max_requests_per_connection().value();
    }
    if (http.has_explicit_http_config() &&
        http.explicit_http_config().has_http2_protocol_options()) {
      http::http2::CodecSettings h2;
      if (!buildHttp2Settings(http.explicit_http_config().http2_protocol_options(),
                              path + ".typed_extension_protocol_options.explicit_http_config."
                                     "http2_protocol_options",
                              h2, errors)) {
        return false;
      }
      info->http2_settings = h2;
    }
    if (http.has_use_downstream_protocol_config()) {
      // HTTP/2 upstream for an HTTP/2 request, HTTP/1.1 for the others.
      http::http2::CodecSettings h2;
      const auto& d = http.use_downstream_protocol_config();
      if (d.has_http2_protocol_options() &&
          !buildHttp2Settings(d.http2_protocol_options(),
                              path + ".typed_extension_protocol_options.use_downstream_protocol_"
                                     "config.http2_protocol_options",
                              h2, errors)) {
        return false;
      }
      info->http2_settings = h2;
      info->use_downstream_protocol = true;
    }
    if (http.has_auto_config()) {
      // As Envoy: ALPN decides, so the cluster needs a transport that negotiates it (TLS).
      const std::string ap = path + ".typed_extension_protocol_options.auto_config";
      if (!info->transport_socket_factory) {
        errors.push_back(ap + ": ALPN configured for cluster '" + proto.name() +
                         "' which has a non-ALPN transport socket (auto_config needs an "
                         "UpstreamTlsContext transport_socket)");
        return false;
      }
      http::http2::CodecSettings h2;
      const auto& a = http.auto_config();
      if (a.has_http2_protocol_options() &&
          !buildHttp2Settings(a.http2_protocol_options(), ap + ".http2_protocol_options", h2,
                              errors)) {
        return false;
      }
      info->http2_settings = h2;
      info->auto_http = true;
    }
  }
  if (info->http2_settings && info->http2_settings->keepalive_timeout.count() > 0) {
    info->http2_settings->keepalive_timeout_counter =
        &store.counter("cluster." + proto.name() + ".http2.keepalive_timeout");
  }
  out.info = info;
  switch (proto.type()) {
    case envoy::config::cluster::v3::Cluster::STRICT_DNS:
      out.type = upstream::DiscoveryType::StrictDns;
      break;
    case envoy::config::cluster::v3::Cluster::LOGICAL_DNS:
      out.type = upstream::DiscoveryType::LogicalDns;
      break;
    case envoy::config::cluster::v3::Cluster::EDS: out.type = upstream::DiscoveryType::Eds; break;
    default: out.type = upstream::DiscoveryType::Static;
  }
  if (proto.has_dns_refresh_rate()) out.dns_refresh_rate = toMilliseconds(proto.dns_refresh_rate());
  for (int i = 0; i < proto.health_checks_size(); ++i) {
    if (!buildHealthCheck(proto.health_checks(i),
                          path + ".health_checks[" + std::to_string(i) + "]",
                          out.health_checks.emplace_back(), errors)) {
      return false;
    }
    if (out.health_checks.back().type == upstream::HealthCheckConfig::Type::Grpc &&
        !info->http2_settings) {
      // As Envoy: gRPC runs over HTTP/2 only.
      errors.push_back(path + ".health_checks[" + std::to_string(i) +
                       "].grpc_health_check: the cluster must use HTTP/2 "
                       "(typed_extension_protocol_options ... explicit_http_config."
                       "http2_protocol_options) for gRPC health checks");
      return false;
    }
  }
  if (proto.has_outlier_detection()) {
    out.outlier_detection.emplace();
    if (!buildOutlierDetection(proto.outlier_detection(), path + ".outlier_detection",
                               *out.outlier_detection, errors)) {
      return false;
    }
  }
  switch (proto.dns_lookup_family()) {
    case envoy::config::cluster::v3::Cluster::V4_ONLY:
      out.dns_lookup_family = upstream::DnsLookupFamily::V4Only;
      break;
    case envoy::config::cluster::v3::Cluster::V6_ONLY:
      out.dns_lookup_family = upstream::DnsLookupFamily::V6Only;
      break;
    case envoy::config::cluster::v3::Cluster::V4_PREFERRED:
      out.dns_lookup_family = upstream::DnsLookupFamily::V4Preferred;
      break;
    case envoy::config::cluster::v3::Cluster::ALL:
      out.dns_lookup_family = upstream::DnsLookupFamily::All;
      break;
    default: out.dns_lookup_family = upstream::DnsLookupFamily::Auto;
  }
  if (!buildLbConfig(proto, path, info->lb, errors)) return false;
  if (out.type == upstream::DiscoveryType::Eds) {
    // The endpoints come from the subscription (config/eds_api.h).
    if (proto.has_load_assignment()) {
      errors.push_back(path + ".load_assignment: an EDS cluster's endpoints come from "
                              "eds_cluster_config, not load_assignment");
      return false;
    }
    return buildEdsClusterConfig(proto, path, store, out, errors);
  }
  return buildEndpoints(proto.load_assignment(), path + ".load_assignment",
                        out.type == upstream::DiscoveryType::Static, out.endpoints, errors);
}
}  // namespace

bool buildEndpoints(const envoy::config::endpoint::v3::ClusterLoadAssignment& la,
                    const std::string& path, bool ip_addresses,
                    std::vector<upstream::EndpointConfig>& out, std::vector<std::string>& errors) {
  using envoy::config::core::v3::HealthStatus;
  for (int i = 0; i < la.endpoints_size(); ++i) {
    const auto& lle = la.endpoints(i);
    upstream::Locality locality{lle.locality().region(), lle.locality().zone(),
                                lle.locality().sub_zone()};
    for (int j = 0; j < lle.lb_endpoints_size(); ++j) {
      const auto& lbe = lle.lb_endpoints(j);
      const std::string p = path + ".endpoints[" + std::to_string(i) + "].lb_endpoints[" +
                            std::to_string(j) + "].endpoint.address";
      const auto& sa = lbe.endpoint().address().socket_address();
      upstream::EndpointConfig e;
      e.port = sa.port_value();
      e.weight = lbe.has_load_balancing_weight() ? lbe.load_balancing_weight().value() : 1;
      e.priority = lle.priority();
      e.locality = locality;
      e.locality_weight = lle.has_load_balancing_weight() ? lle.load_balancing_weight().value() : 0;
      // As Envoy: UNHEALTHY, DRAINING and TIMEOUT take the host out of balancing; DEGRADED
      // marks it degraded.
      switch (lbe.health_status()) {
        case HealthStatus::UNHEALTHY:
        case HealthStatus::DRAINING:
        case HealthStatus::TIMEOUT: e.health_flags = upstream::Host::FailedEdsHealth; break;
        case HealthStatus::DEGRADED: e.health_flags = upstream::Host::DegradedEdsHealth; break;
        default: break;
      }
      if (ip_addresses) {
        e.address = socketAddress(lbe.endpoint().address(), p, errors);
        if (!e.address) return false;
      } else {
        e.hostname = sa.address();
      }
      out.push_back(std::move(e));
    }
  }
  return true;
}

namespace {
// Keeps the candidates for which `rank` is highest, when it is above 0 for any of them;
// rank 0 means "does not match", 1 "matches by not naming the criterion".
template <class Rank>
void narrow(std::vector<const FilterChainConfig*>& candidates, Rank rank) {
  int best = 0;
  for (const auto* c : candidates) best = std::max(best, rank(*c));
  std::vector<const FilterChainConfig*> kept;
  if (best > 0) {
    for (const auto* c : candidates) {
      if (rank(*c) == best) kept.push_back(c);
    }
  }
  candidates.swap(kept);
}
}  // namespace

const FilterChainConfig* ListenerConfig::chainFor(uint32_t port, std::string_view server_name,
                                                  std::string_view transport_protocol,
                                                  const std::vector<std::string>& alpn) const {
  if (chains.size() == 1 && !chains[0].destination_port && chains[0].server_names.empty() &&
      chains[0].transport_protocol.empty() && chains[0].application_protocols.empty()) {
    return &chains[0];  // the common case: nothing to match
  }
  std::vector<const FilterChainConfig*> c;
  for (const auto& chain : chains) c.push_back(&chain);
  narrow(c, [&](const FilterChainConfig& f) {
    if (!f.destination_port) return 1;
    return *f.destination_port == port ? 2 : 0;
  });
  narrow(c, [&](const FilterChainConfig& f) {
    if (f.server_names.empty()) return 1;
    int best = 0;
    for (const auto& n : f.server_names) {
      if (n == server_name) return 1 << 20;  // exact beats any wildcard
      // "*.example.com" matches "a.example.com" (and "a.b.example.com"); longer is better.
      if (n.size() > 1 && n[0] == '*' && server_name.size() > n.size() - 1 &&
          server_name.substr(server_name.size() - (n.size() - 1)) == std::string_view(n).substr(1)) {
        best = std::max(best, static_cast<int>(n.size()) + 1);
      }
    }
    return best;
  });
  narrow(c, [&](const FilterChainConfig& f) {
    if (f.transport_protocol.empty()) return 1;
    return f.transport_protocol == transport_protocol ? 2 : 0;
  });
  narrow(c, [&](const FilterChainConfig& f) {
    if (f.application_protocols.empty()) return 1;
    for (const auto& p : f.application_protocols) {
      for (const auto& a : alpn) {
        if (p == a) return 2;
      }
    }
    return 0;
  });
  return c.empty() ? nullptr : c.front();
}

std::string statAddress(const network::Address& address) {
  std::string s = address.isIp()
                      ? std::string(address.ip()) + "_" + std::to_string(address.port())
                      : address.asString();
  for (auto& c : s) {
    if (c == ':') c = '_';
  }
  return s;
}

namespace {
bool buildListener(const envoy::config::listener::v3::Listener& l, const std::string& lp,
                   const SecretMap& secrets, const std::set<std::string>& cluster_names,
                   stats::Store& store, access_log::FileSinkManager& sinks, ListenerConfig& lc,
                   std::vector<std::string>& errors) {
  lc.name = l.name().empty() ? lp : l.name();
  lc.address = socketAddress(l.address(), lp + ".address", errors);
  if (!lc.address) return false;
  if (l.has_enable_reuse_port()) lc.reuse_port = l.enable_reuse_port().value();
  for (int k = 0; k < l.listener_filters_size(); ++k) {
    // The supported ones (the unsupported-field check refuses the others), by type or,
    // without a typed_config, by name.
    const auto& lf = l.listener_filters(k);
    const std::string_view type = lf.typed_config().type_url();
    auto is = [&](std::string_view name, std::string_view full_type) {
      return lf.has_typed_config() ? type.substr(type.rfind('/') + 1) == full_type
                                   : lf.name() == name;
    };
    if (is("envoy.filters.listener.tls_inspector",
           "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")) {
      lc.tls_inspector = true;
    } else if (is("envoy.filters.listener.http_inspector",
                  "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector")) {
      lc.http_inspector = true;
    } else if (is("envoy.filters.listener.proxy_protocol",
                  "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol")) {
      ListenerConfig::ProxyProtocol pp;
      // No C++ is generated for this message: read its one supported field by reflection.
      const auto* desc = findApiMessageType(
          "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol");
      google::protobuf::DynamicMessageFactory factory(&envoyApiPool());
      std::unique_ptr<google::protobuf::Message> msg(factory.GetPrototype(desc)->New());
      if (lf.has_typed_config() && !msg->ParseFromString(lf.typed_config().value())) {
        errors.push_back(lp + ".listener_filters[" + std::to_string(k) +
                         "].typed_config: cannot be parsed");
        return false;
      }
      pp.allow_requests_without_proxy_protocol = msg->GetReflection()->GetBool(
          *msg, desc->FindFieldByName("allow_requests_without_proxy_protocol"));
      lc.proxy_protocol = pp;
    }
  }
  if (l.has_listener_filters_timeout()) {
    lc.listener_filters_timeout = toMilliseconds(l.listener_filters_timeout());
  }
  if (l.has_per_connection_buffer_limit_bytes()) {
    lc.buffer_limit = l.per_connection_buffer_limit_bytes().value();
  }
  for (int j = 0; j < l.filter_chains_size(); ++j) {
    const auto& fc = l.filter_chains(j);
    const std::string fp = lp + ".filter_chains[" + std::to_string(j) + "]";
    FilterChainConfig chain;
    if (fc.filter_chain_match().has_destination_port()) {
      chain.destination_port = fc.filter_chain_match().destination_port().value();
    }
    const auto& m = fc.filter_chain_match();
    chain.server_names.assign(m.server_names().begin(), m.server_names().end());
    chain.transport_protocol = m.transport_protocol();
    chain.application_protocols.assign(m.application_protocols().begin(),
                                       m.application_protocols().end());
    if (!lc.tls_inspector && (!chain.server_names.empty() || chain.transport_protocol == "tls" ||
                              (!chain.application_protocols.empty() && !lc.http_inspector))) {
      errors.push_back(fp + ".filter_chain_match: server_names, transport_protocol 'tls' and "
                            "application_protocols need the envoy.filters.listener.tls_inspector "
                            "listener filter (application_protocols: or http_inspector)");
      return false;
    }
    if (fc.has_transport_socket()) {
      chain.transport_socket = buildTransportSocketFactory(
          fc.transport_socket(), true, secrets, store, "", fp + ".transport_socket", errors);
      if (!chain.transport_socket) return false;
    }
    for (int k = 0; k < fc.filters_size(); ++k) {
      const std::string kp = fp + ".filters[" + std::to_string(k) + "]";
      if (chain.hcm || chain.tcp_proxy) {
        errors.push_back(kp + ": the HTTP connection manager or the TCP proxy is a chain's "
                              "last (and only) network filter");
        return false;
      }
      envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp;
      if (fc.filters(k).typed_config().UnpackTo(&tcp)) {
        if (!buildTcpProxy(tcp, kp + ".typed_config", store, sinks,
                           chain.tcp_proxy, errors)) {
          return false;
        }
        continue;
      }
      hcm_v3::HttpConnectionManager hcm;
      if (!fc.filters(k).typed_config().UnpackTo(&hcm)) {
        errors.push_back(kp + ": not an HttpConnectionManager or a TcpProxy");
        return false;
      }
      if (!buildHcm(hcm, kp + ".typed_config", cluster_names, store, sinks, chain.hcm, errors)) {
        return false;
      }
    }
    if (!chain.hcm && !chain.tcp_proxy) {
      errors.push_back(fp + ".filters: a filter chain needs envoy.filters.network.http_connection_manager "
                            "or envoy.filters.network.tcp_proxy");
      return false;
    }
    lc.chains.push_back(std::move(chain));
  }
  if (lc.chains.empty()) {
    errors.push_back(lp + ".filter_chains: at least one filter chain is required");
    return false;
  }
  return true;
}
}  // namespace

namespace {

// dynamic_resources: CDS and LDS, each from a file or over ADS; the ADS stream's cluster and node.
bool buildDynamicResources(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                           ProxyConfig& out, std::vector<std::string>& errors) {
  const auto& dr = bootstrap.dynamic_resources();
  if (dr.has_ads_config()) {
    const auto& ads = dr.ads_config();
    const std::string p = "dynamic_resources.ads_config";
    if (ads.api_type() != envoy::config::core::v3::ApiConfigSource::GRPC &&
        ads.api_type() != envoy::config::core::v3::ApiConfigSource::DELTA_GRPC) {
      errors.push_back(p + ".api_type: only GRPC (state of the world) and DELTA_GRPC "
                           "(incremental) are supported");
      return false;
    }
    if (ads.transport_api_version() != envoy::config::core::v3::V3) {
      errors.push_back(p + ".transport_api_version: must be V3");
      return false;
    }
    if (ads.grpc_services_size() != 1 || !ads.grpc_services(0).has_envoy_grpc()) {
      errors.push_back(p + ".grpc_services: exactly one envoy_grpc service is supported");
      return false;
    }
    AdsConfig cfg;
    cfg.cluster_name = ads.grpc_services(0).envoy_grpc().cluster_name();
    const std::string cp = p + ".grpc_services[0].envoy_grpc.cluster_name";
    const upstream::ClusterConfig* cluster = nullptr;
    for (const auto& c : out.clusters) {
      if (c.info->name() == cfg.cluster_name) cluster = &c;
    }
    if (!cluster) {
      errors.push_back(cp + ": no static cluster '" + cfg.cluster_name + "'");
      return false;
    }
    if (!cluster->info->http2_settings) {
      errors.push_back(cp + ": cluster '" + cfg.cluster_name +
                       "' must use HTTP/2 (gRPC): give it typed_extension_protocol_options "
                       "with explicit_http_config.http2_protocol_options");
      return false;
    }
    envoy::config::core::v3::Node node = bootstrap.node();
    // As Envoy does, the proxy names itself in the node it sends.
    node.set_user_agent_name("sluice");
    cfg.node = node.SerializeAsString();
    cfg.set_node_on_first_message_only = ads.set_node_on_first_message_only();
    cfg.delta = ads.api_type() == envoy::config::core::v3::ApiConfigSource::DELTA_GRPC;
    out.ads = std::move(cfg);
  }
  if (dr.has_cds_config()) {
    SourceSpec cds;
    if (!parseConfigSource(dr.cds_config(), "dynamic_resources.cds_config", cds, errors)) {
      return false;
    }
    out.cds = std::move(cds);
  }
  if (dr.has_lds_config()) {
    SourceSpec lds;
    if (!parseConfigSource(dr.lds_config(), "dynamic_resources.lds_config", lds, errors)) {
      return false;
    }
    out.lds = std::move(lds);
  }
  return true;
}

}  // namespace

bool buildProxyConfig(const envoy::config::bootstrap::v3::Bootstrap& bootstrap,
                      stats::Store& store, access_log::FileSinkManager& sinks, ProxyConfig& out,
                      std::vector<std::string>& errors) {
  const auto& sr = bootstrap.static_resources();
  // What a ConfigSource's `ads` needs (listeners' RDS are read before dynamic_resources).
  setAdsConfigured(bootstrap.dynamic_resources().has_ads_config());
  SecretMap secrets;
  if (!indexSecrets(sr.secrets(), secrets, errors)) return false;
  std::set<std::string> cluster_names;
  for (int i = 0; i < sr.clusters_size(); ++i) {
    upstream::ClusterConfig c;
    if (!buildClusterConfig(sr.clusters(i), "static_resources.clusters[" + std::to_string(i) + "]",
                      secrets, store, c, errors)) {
      return false;
    }
    for (const auto& existing : out.clusters) {
      if (existing.info->name() == c.info->name()) {
        errors.push_back("static_resources.clusters[" + std::to_string(i) + "].name: duplicate cluster '" +
                         c.info->name() + "'");
        return false;
      }
    }
    cluster_names.insert(c.info->name());
    out.clusters.push_back(std::move(c));
  }
  for (int i = 0; i < sr.listeners_size(); ++i) {
    ListenerConfig lc;
    if (!buildListenerConfig(sr.listeners(i), "static_resources.listeners[" + std::to_string(i) + "]",
                             secrets, cluster_names, store, sinks, lc, errors)) {
      return false;
    }
    out.listeners.push_back(std::move(lc));
  }
  if (bootstrap.has_dynamic_resources() &&
      !buildDynamicResources(bootstrap, out, errors)) {
    return false;
  }
  if (bootstrap.has_admin() && bootstrap.admin().has_address()) {
    AdminConfig admin;
    admin.address = socketAddress(bootstrap.admin().address(), "admin.address", errors);
    if (!admin.address) return false;
    if (!buildAccessLogs(bootstrap.admin().access_log(), "admin.access_log", sinks,
                         admin.access_logs, errors)) {
      return false;
    }
    out.admin = std::move(admin);
  }
  return true;
}

}  // namespace sluice::config
