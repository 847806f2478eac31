#pragma once

// The immutable configuration of one HTTP connection manager (one per listener filter chain),
// built once from the HttpConnectionManager proto by src/config. Workers share it.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "http/access_log.h"
#include "http/filter.h"
#include "http/http1/codec_impl.h"
#include "http/http2/codec_impl.h"
#include "http/route.h"

namespace sluice::stats {
class Store;
class Counter;
class Gauge;
class Histogram;
}  // namespace sluice::stats

namespace sluice::http {

// Envoy's http.<stat_prefix>.* stats of the connection manager.
#define ALL_HTTP_CONN_MAN_STATS(COUNTER, GAUGE)      \
  COUNTER(downstream_cx_total)                       \
  COUNTER(downstream_cx_http1_total)                 \
  COUNTER(downstream_cx_http2_total)                 \
  GAUGE(downstream_cx_active)                        \
  GAUGE(downstream_cx_http1_active)                  \
  GAUGE(downstream_cx_http2_active)                  \
  COUNTER(downstream_cx_destroy)                     \
  COUNTER(downstream_cx_destroy_remote)              \
  COUNTER(downstream_cx_destroy_local)               \
  COUNTER(downstream_cx_destroy_active_rq)           \
  COUNTER(downstream_cx_destroy_remote_active_rq)    \
  COUNTER(downstream_cx_destroy_local_active_rq)     \
  COUNTER(downstream_cx_protocol_error)              \
  COUNTER(downstream_cx_idle_timeout)                \
  COUNTER(downstream_cx_max_duration_reached)        \
  COUNTER(downstream_cx_drain_close)                 \
  COUNTER(downstream_cx_max_requests_reached)        \
  COUNTER(downstream_cx_rx_bytes_total)              \
  GAUGE(downstream_cx_rx_bytes_buffered)             \
  COUNTER(downstream_cx_tx_bytes_total)              \
  GAUGE(downstream_cx_tx_bytes_buffered)             \
  COUNTER(downstream_cx_upgrades_total)              \
  GAUGE(downstream_cx_upgrades_active)               \
  COUNTER(downstream_rq_total)                       \
  COUNTER(downstream_rq_http1_total)                 \
  COUNTER(downstream_rq_http2_total)                 \
  GAUGE(downstream_rq_active)                        \
  COUNTER(downstream_rq_completed)                   \
  COUNTER(downstream_rq_1xx)                         \
  COUNTER(downstream_rq_2xx)                         \
  COUNTER(downstream_rq_3xx)                         \
  COUNTER(downstream_rq_4xx)                         \
  COUNTER(downstream_rq_5xx)                         \
  COUNTER(downstream_rq_rx_reset)                    \
  COUNTER(downstream_rq_tx_reset)                    \
  COUNTER(downstream_rq_non_relative_path)           \
  COUNTER(downstream_rq_too_large)                   \
  COUNTER(downstream_rq_idle_timeout)                \
  COUNTER(downstream_rq_timeout)                     \
  COUNTER(downstream_rq_header_timeout)              \
  COUNTER(downstream_rq_max_duration_reached)        \
  COUNTER(downstream_rq_ws_on_non_ws_route)          \
  COUNTER(downstream_rq_response_before_rq_complete) \
  COUNTER(rs_too_large)

struct ConnectionManagerStats {
#define SLUICE_DECLARE_COUNTER(name) stats::Counter& name;
#define SLUICE_DECLARE_GAUGE(name) stats::Gauge& name;
  ALL_HTTP_CONN_MAN_STATS(SLUICE_DECLARE_COUNTER, SLUICE_DECLARE_GAUGE)
#undef SLUICE_DECLARE_COUNTER
#undef SLUICE_DECLARE_GAUGE
  stats::Histogram& downstream_rq_time;       // ms, request start to stream end
  stats::Histogram& downstream_cx_length_ms;  // ms, connection lifetime
  // The byte counts above as each downstream connection updates them.
  network::ConnectionStats downstream_cx_bytes;
  // http.<prefix>.
  static ConnectionManagerStats create(stats::Store& store, const std::string& stat_prefix);
};

// HttpConnectionManager.codec_type: AUTO tells HTTP/2 (prior knowledge) from HTTP/1.1 by the
// connection preface.
enum class CodecType { Auto, Http1, Http2 };

enum class ServerHeaderTransformation { Overwrite, AppendIfAbsent, PassThrough };

// forward_client_cert_details: what happens to x-forwarded-client-cert.
enum class ForwardClientCert { Sanitize, ForwardOnly, AppendForward, SanitizeSet, AlwaysForwardOnly };
// set_current_client_cert_details: what goes in the header besides By and Hash.
struct ClientCertDetails {
  bool subject{false};
  bool uri{false};
  bool dns{false};
};

struct ConnectionManagerConfig {
  std::string stat_prefix;
  std::vector<FilterFactoryCb> filter_factories;  // the router is last
  RouteTableConstSharedPtr route_table;
  std::string server_name{"envoy"};
  ServerHeaderTransformation server_header_transformation{ServerHeaderTransformation::Overwrite};
  bool use_remote_address{false};
  uint32_t xff_num_trusted_hops{0};
  bool generate_request_id{true};
  bool preserve_external_request_id{false};
  ForwardClientCert forward_client_cert{ForwardClientCert::Sanitize};
  ClientCertDetails client_cert_details;
  std::chrono::milliseconds stream_idle_timeout{std::chrono::minutes(5)};  // 0 disables
  std::chrono::milliseconds request_timeout{0};
  std::chrono::milliseconds request_headers_timeout{0};
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};  // connection without streams
  std::chrono::milliseconds max_stream_duration{0};
  // common_http_protocol_options.max_requests_per_connection: the connection drains after
  // that many requests (HTTP/1: connection: close; HTTP/2: GOAWAY). 0: unlimited.
  uint32_t max_requests_per_connection{0};
  std::chrono::milliseconds delayed_close_timeout{1000};
  std::chrono::milliseconds drain_timeout{5000};
  bool normalize_path{false};
  bool merge_slashes{false};
  bool allow_websocket{false};
  std::string via;
  CodecType codec_type{CodecType::Auto};
  http1::CodecSettings http1_settings;
  http2::CodecSettings http2_settings;
  std::vector<AccessLogSharedPtr> access_logs;
  std::shared_ptr<ConnectionManagerStats> stats;
};
using ConnectionManagerConfigConstSharedPtr = std::shared_ptr<const ConnectionManagerConfig>;

}  // namespace sluice::http
