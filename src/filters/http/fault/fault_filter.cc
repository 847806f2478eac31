#include "filters/http/fault/fault_filter.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "config/proto_duration.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "event/dispatcher.h"
#include "http/utility.h"
#include "router/config_impl.h"
#include "stats/stats.h"

namespace sluice::filters {
namespace {

using FaultProto = envoy::extensions::filters::http::fault::v3::HTTPFault;

constexpr std::string_view kName = "envoy.filters.http.fault";
constexpr std::string_view kDelayHeader = "x-envoy-fault-delay-request";
constexpr std::string_view kDelayPercentHeader = "x-envoy-fault-delay-request-percentage";
constexpr std::string_view kAbortHeader = "x-envoy-fault-abort-request";
constexpr std::string_view kAbortGrpcHeader = "x-envoy-fault-abort-grpc-request";
constexpr std::string_view kAbortPercentHeader = "x-envoy-fault-abort-request-percentage";
constexpr std::string_view kNodeHeader = "x-envoy-downstream-service-node";
constexpr std::string_view kClusterHeader = "x-envoy-downstream-service-cluster";
// The response rate limit lets data out in slices this often (Envoy refills 16 times/s).
constexpr std::chrono::milliseconds kRateLimitTick{50};
// The longest delay x-envoy-fault-delay-request may ask for (~24.8 days): longer values are
// clamped to it rather than overflow the timer's arithmetic.
constexpr uint64_t kMaxHeaderDelayMs = INT32_MAX;

std::optional<uint64_t> parseUint(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// One HTTPFault, compiled: the filter's own config, or a route's replacement of it.
struct FaultSettings : public http::RouteSpecificFilterConfig {
  enum class Delay { None, Fixed, Header };
  enum class Abort { None, Http, Grpc, Header };
  Delay delay{Delay::None};
  std::chrono::milliseconds fixed_delay{0};
  Fraction delay_percent;
  Abort abort{Abort::None};
  uint32_t http_status{0};
  uint32_t grpc_status{0};
  Fraction abort_percent;
  std::vector<router::HeaderMatcher> headers;
  std::vector<std::string> downstream_nodes;
  std::optional<uint64_t> max_active_faults;
  uint64_t response_kbps{0};  // 0: no response rate limit
  Fraction response_rl_percent;
  bool downstream_cluster_stats{true};
};

std::shared_ptr<const FaultSettings> compile(const google::protobuf::Any& any,
                                             const std::string& path, std::string* error) {
  FaultProto proto;
  if (!any.UnpackTo(&proto)) {
    *error = path + ": cannot read " + std::string(FaultProto::descriptor()->full_name());
    return nullptr;
  }
  auto s = std::make_shared<FaultSettings>();
  if (!proto.upstream_cluster().empty()) {
    *error = path + ".upstream_cluster: upstream_cluster is not supported";
    return nullptr;
  }
  if (proto.has_delay()) {
    const auto& d = proto.delay();
    if (d.has_fixed_delay()) {
      s->delay = FaultSettings::Delay::Fixed;
      s->fixed_delay = config::toMilliseconds(d.fixed_delay());
    } else if (d.has_header_delay()) {
      s->delay = FaultSettings::Delay::Header;
    } else {
      *error = path + ".delay: fixed_delay or header_delay is required";
      return nullptr;
    }
    s->delay_percent = toFraction(d.percentage());
  }
  if (proto.has_abort()) {
    const auto& a = proto.abort();
    using E = envoy::extensions::filters::http::fault::v3::FaultAbort;
    switch (a.error_type_case()) {
      case E::kHttpStatus:
        if (a.http_status() < 200 || a.http_status() >= 600) {
          *error = path + ".abort.http_status: " + std::to_string(a.http_status()) +
                   " is not a status code in [200, 600)";
          return nullptr;
        }
        s->abort = FaultSettings::Abort::Http;
        s->http_status = a.http_status();
        break;
      case E::kGrpcStatus:
        s->abort = FaultSettings::Abort::Grpc;
        s->grpc_status = a.grpc_status();
        break;
      case E::kHeaderAbort: s->abort = FaultSettings::Abort::Header; break;
      default:
        *error = path + ".abort: http_status, grpc_status or header_abort is required";
        return nullptr;
    }
    s->abort_percent = toFraction(a.percentage());
  }
  for (int i = 0; i < proto.headers_size(); ++i) {
    router::HeaderMatcher m;
    if (!m.init(proto.headers(i), path + ".headers[" + std::to_string(i) + "]", error)) {
      return nullptr;
    }
    s->headers.push_back(std::move(m));
  }
  s->downstream_nodes.assign(proto.downstream_nodes().begin(), proto.downstream_nodes().end());
  if (proto.has_max_active_faults()) s->max_active_faults = proto.max_active_faults().value();
  if (proto.has_response_rate_limit()) {
    const auto& rl = proto.response_rate_limit();
    if (!rl.has_fixed_limit()) {
      *error = path + ".response_rate_limit: only fixed_limit is supported";
      return nullptr;
    }
    if (rl.fixed_limit().limit_kbps() == 0) {
      *error = path + ".response_rate_limit.fixed_limit.limit_kbps: must be at least 1";
      return nullptr;
    }
    s->response_kbps = rl.fixed_limit().limit_kbps();
    s->response_rl_percent = toFraction(rl.percentage());
  }
  // The *_runtime keys name runtime overrides of the values above. Sluice has no runtime
  // layer, so every key reads as unset and Envoy's default (the configured value) applies:
  // they are accepted and change nothing.
  s->downstream_cluster_stats = !proto.disable_downstream_cluster_stats();
  if (proto.has_filter_metadata()) {
    *error = path + ".filter_metadata: filter_metadata is not supported";
    return nullptr;
  }
  return s;
}

struct FaultStats {
  stats::Store& store;
  std::string prefix;  // "http.<stat_prefix>.fault."
  stats::Counter& delays_injected;
  stats::Counter& aborts_injected;
  stats::Counter& response_rl_injected;
  stats::Counter& faults_overflow;
  stats::Gauge& active_faults;

  FaultStats(stats::Store& s, const std::string& stat_prefix)
      : store(s),
        prefix("http." + stat_prefix + ".fault."),
        delays_injected(s.counter(prefix + "delays_injected")),
        aborts_injected(s.counter(prefix + "aborts_injected")),
        response_rl_injected(s.counter(prefix + "response_rl_injected")),
        faults_overflow(s.counter(prefix + "faults_overflow")),
        active_faults(s.gauge(prefix + "active_faults")) {}

  // http.<stat_prefix>.fault.<downstream cluster>.<name>: looked up by name (a lock), only
  // when a fault is injected for a request that names its cluster.
  void incDownstream(const FaultSettings& s, const http::RequestHeaderMap& headers,
                     std::string_view name) const {
    if (!s.downstream_cluster_stats) return;
    const std::string_view cluster = headers.getValue(kClusterHeader);
    if (cluster.empty()) return;
    store.counter(prefix + std::string(cluster) + "." + std::string(name)).inc();
  }
};

struct FaultConfig {
  std::shared_ptr<const FaultSettings> settings;
  FaultStats stats;
  std::string filter_name;
  std::function<uint64_t()> random;
};

class FaultFilter : public http::StreamFilter {
 public:
  explicit FaultFilter(std::shared_ptr<const FaultConfig> config) : config_(std::move(config)) {}

  void setDecoderFilterCallbacks(http::StreamDecoderFilterCallbacks& cb) override {
    decoder_ = &cb;
  }
  void setEncoderFilterCallbacks(http::StreamEncoderFilterCallbacks& cb) override {
    encoder_ = &cb;
  }

  http::FilterHeadersStatus decodeHeaders(http::RequestHeaderMap& headers, bool) override {
    settings_ = config_->settings.get();
    const http::RouteConstSharedPtr route = decoder_->route();
    if (const auto* per_route =
            perFilterConfig<FaultSettings>(route.get(), config_->filter_name, kName)) {
      settings_ = per_route;
      route_ = route;  // keeps the per-route settings alive
    }
    const FaultSettings& s = *settings_;
    if (!matches(s, headers)) return http::FilterHeadersStatus::Continue;
    request_headers_ = &headers;
    // max_active_faults is checked only for a fault about to be injected (as Envoy).
    if (s.response_kbps > 0 && s.response_rl_percent.evaluate(random()) && tryActive()) {
      bytes_per_tick_ = std::max<uint64_t>(1, s.response_kbps * 1024 * kRateLimitTick.count() / 1000);
      config_->stats.response_rl_injected.inc();
    }
    if (const auto delay = delayFor(s, headers); delay && tryActive()) {
      config_->stats.delays_injected.inc();
      config_->stats.incDownstream(s, headers, "delays_injected");
      decoder_->streamInfo().setResponseFlag(http::ResponseFlag::DelayInjected);
      delaying_ = true;
      delay_timer_ = decoder_->dispatcher().createTimer([this] { onDelayDone(); });
      delay_timer_->enableTimer(*delay);
      return http::FilterHeadersStatus::StopIteration;
    }
    if (maybeAbort()) return http::FilterHeadersStatus::StopIteration;
    return http::FilterHeadersStatus::Continue;
  }

  http::FilterDataStatus decodeData(buffer::Buffer&, bool) override {
    return delaying_ ? http::FilterDataStatus::StopIterationAndWatermark
                        : http::FilterDataStatus::Continue;
  }
  http::FilterTrailersStatus decodeTrailers(http::RequestTrailerMap&) override {
    return delaying_ ? http::FilterTrailersStatus::StopIteration
                        : http::FilterTrailersStatus::Continue;
  }

  http::FilterHeadersStatus encodeHeaders(http::ResponseHeaderMap&, bool) override {
    return http::FilterHeadersStatus::Continue;
  }
  http::FilterDataStatus encodeData(buffer::Buffer& data, bool end_stream) override {
    if (bytes_per_tick_ == 0) return http::FilterDataStatus::Continue;
    // Keep the body and let it out bytes_per_tick_ at a time, one slice per tick. What is
    // kept is bounded: over the encoder buffer limit, the upstream is asked to stop sending
    // until half of it is out.
    pending_.move(data);
    pending_end_ = end_stream;
    if (!above_limit_ && pending_.length() > encoder_->encoderBufferLimit()) {
      above_limit_ = true;
      encoder_->onEncoderFilterAboveWriteBufferHighWatermark();
    }
    if (!tick_timer_) {
      // The first slice goes now; the rest one per tick.
      tick_timer_ = encoder_->dispatcher().createTimer([this] { onTick(); });
      onTick();
    } else if (!tick_timer_->enabled()) {
      tick_timer_->enableTimer(kRateLimitTick);  // all was out: the next slice a tick later
    }
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  http::FilterTrailersStatus encodeTrailers(http::ResponseTrailerMap&) override {
    if (bytes_per_tick_ == 0 || pending_.empty()) return http::FilterTrailersStatus::Continue;
    trailers_waiting_ = true;  // they follow the last slice
    return http::FilterTrailersStatus::StopIteration;
  }

  void onDestroy() override {
    // Disarmed, not destroyed: this may run inside one of their callbacks (a reply after the
    // delay ends the stream); they go with the filter, after that callback.
    destroyed_ = true;
    delaying_ = false;
    if (delay_timer_) delay_timer_->disableTimer();
    if (tick_timer_) tick_timer_->disableTimer();
    releaseActive();
  }

 private:
  uint64_t random() { return config_->random ? config_->random() : http::randomU64(); }

  bool matches(const FaultSettings& s, const http::RequestHeaderMap& headers) const {
    if (!s.downstream_nodes.empty()) {
      const std::string_view node = headers.getValue(kNodeHeader);
      if (node.empty() || std::find(s.downstream_nodes.begin(), s.downstream_nodes.end(),
                                    node) == s.downstream_nodes.end()) {
        return false;
      }
    }
    for (const auto& m : s.headers) {
      if (!m.matches(headers)) return false;
    }
    return true;
  }

  // The percentage for a header-controlled fault: the header's numerator (same denominator),
  // capped at the configured one.
  Fraction headerPercent(Fraction configured, const http::RequestHeaderMap& headers,
                         std::string_view header) const {
    if (const auto v = parseUint(headers.getValue(header))) {
      configured.numerator = static_cast<uint32_t>(std::min<uint64_t>(*v, configured.numerator));
    }
    return configured;
  }

  std::optional<std::chrono::milliseconds> delayFor(const FaultSettings& s,
                                                    const http::RequestHeaderMap& headers) {
    switch (s.delay) {
      case FaultSettings::Delay::None: return std::nullopt;
      case FaultSettings::Delay::Fixed:
        // A delay of 0 is no delay (as Envoy): nothing injected, nothing counted.
        if (s.fixed_delay.count() <= 0 || !s.delay_percent.evaluate(random())) return std::nullopt;
        return s.fixed_delay;
      case FaultSettings::Delay::Header: {
        const auto ms = parseUint(headers.getValue(kDelayHeader));
        if (!ms || *ms == 0) return std::nullopt;
        if (!headerPercent(s.delay_percent, headers, kDelayPercentHeader).evaluate(random())) {
          return std::nullopt;
        }
        return std::chrono::milliseconds(std::min(*ms, kMaxHeaderDelayMs));
      }
    }
    return std::nullopt;
  }

  // Answers with the abort when one applies; true if it did.
  bool maybeAbort() {
    const FaultSettings& s = *settings_;
    const http::RequestHeaderMap& headers = *request_headers_;
    std::optional<uint32_t> http_status;
    std::optional<uint32_t> grpc_status;
    Fraction percent = s.abort_percent;
    switch (s.abort) {
      case FaultSettings::Abort::None: return false;
      case FaultSettings::Abort::Http: http_status = s.http_status; break;
      case FaultSettings::Abort::Grpc: grpc_status = s.grpc_status; break;
      case FaultSettings::Abort::Header: {
        if (const auto v = parseUint(headers.getValue(kAbortHeader)); v && *v >= 200 && *v < 600) {
          http_status = static_cast<uint32_t>(*v);
        } else if (const auto g = parseUint(headers.getValue(kAbortGrpcHeader));
                   g && *g <= UINT32_MAX) {
          grpc_status = static_cast<uint32_t>(*g);
        } else {
          return false;
        }
        percent = headerPercent(percent, headers, kAbortPercentHeader);
        break;
      }
    }
    if (!percent.evaluate(random()) || !tryActive()) return false;
    config_->stats.aborts_injected.inc();
    config_->stats.incDownstream(s, headers, "aborts_injected");
    decoder_->streamInfo().setResponseFlag(http::ResponseFlag::FaultInjected);
    if (http_status) {
      decoder_->sendLocalReply(*http_status, "fault filter abort", nullptr, "fault_filter_abort");
    } else {
      // A gRPC error is an HTTP 200 with the status in a trailers-only response.
      const std::string status = std::to_string(*grpc_status);
      decoder_->sendLocalReply(
          200, "",
          [&status](http::ResponseHeaderMap& h) {
            h.set("content-type", "application/grpc");
            h.set("grpc-status", status);
            h.set("grpc-message", "fault filter abort");
          },
          "fault_filter_abort");
    }
    return true;
  }

  void onDelayDone() {
    // The timer stays until onDestroy: this runs inside its own callback.
    delaying_ = false;
    if (maybeAbort()) return;
    // The delay is over: unless a response rate limit is still to come, this request no
    // longer counts toward max_active_faults (as Envoy).
    if (bytes_per_tick_ == 0) releaseActive();
    decoder_->continueDecoding();
  }

  void onTick() {
    buffer::Buffer slice;
    const uint64_t n = std::min<uint64_t>(bytes_per_tick_, pending_.length());
    if (n == pending_.length()) {
      slice.move(pending_);
    } else {
      slice.move(pending_, n);
    }
    const bool last = pending_.empty();
    if (n > 0 || (last && pending_end_)) {
      encoder_->injectEncodedDataToFilterChain(slice, last && pending_end_);
      if (destroyed_) return;  // that ended (or reset) the stream
    }
    if (above_limit_ && pending_.length() <= encoder_->encoderBufferLimit() / 2) {
      above_limit_ = false;
      encoder_->onEncoderFilterBelowWriteBufferLowWatermark();
    }
    if (!last) {
      tick_timer_->enableTimer(kRateLimitTick);
      return;
    }
    // All out: the trailers may follow.
    if (trailers_waiting_) {
      trailers_waiting_ = false;
      encoder_->continueEncoding();
    }
  }

  // Takes this request's slot among max_active_faults (one per request, whatever it gets);
  // false, counting faults_overflow, if none is left.
  bool tryActive() {
    if (active_) return true;
    const auto& max = settings_->max_active_faults;
    if (max && config_->stats.active_faults.value() >= *max) {
      config_->stats.faults_overflow.inc();
      return false;
    }
    active_ = true;
    config_->stats.active_faults.inc();
    return true;
  }
  void releaseActive() {
    if (!active_) return;
    active_ = false;
    config_->stats.active_faults.dec();
  }

  std::shared_ptr<const FaultConfig> config_;
  http::StreamDecoderFilterCallbacks* decoder_{nullptr};
  http::StreamEncoderFilterCallbacks* encoder_{nullptr};
  const FaultSettings* settings_{nullptr};
  http::RouteConstSharedPtr route_;
  http::RequestHeaderMap* request_headers_{nullptr};
  event::TimerPtr delay_timer_;
  bool delaying_{false};
  bool destroyed_{false};
  bool active_{false};
  // Response rate limit.
  uint64_t bytes_per_tick_{0};
  buffer::Buffer pending_;
  bool pending_end_{false};
  bool above_limit_{false};  // asked the upstream to stop sending
  bool trailers_waiting_{false};
  event::TimerPtr tick_timer_;
};

class FaultFilterFactory : public HttpFilterFactory {
 public:
  std::string_view name() const override { return kName; }
  std::string_view configType() const override { return FaultProto::descriptor()->full_name(); }

  http::FilterFactoryCb createFilterFactory(const google::protobuf::Any& any,
                                            const std::string& filter_name,
                                            const FilterFactoryContext& context,
                                            const std::string& path,
                                            std::string* error) const override {
    auto settings = compile(any, path, error);
    if (!settings) return nullptr;
    auto config = std::make_shared<const FaultConfig>(
        FaultConfig{std::move(settings), FaultStats(context.store, context.stat_prefix),
                    filter_name, context.random});
    return [config](http::FilterChainFactoryCallbacks& cb) {
      cb.addStreamFilter(std::make_shared<FaultFilter>(config));
    };
  }

  http::RouteSpecificFilterConfigConstSharedPtr createRouteConfig(
      const google::protobuf::Any& any, const FilterFactoryContext&, const std::string& path,
      std::string* error) const override {
    return compile(any, path, error);
  }
};

}  // namespace

const HttpFilterFactory& faultFilterFactory() {
  static const FaultFilterFactory factory;
  return factory;
}

}  // namespace sluice::filters
