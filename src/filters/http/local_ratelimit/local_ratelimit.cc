#include "filters/http/local_ratelimit/local_ratelimit.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "config/proto_duration.h"
#include "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.pb.h"
#include "event/dispatcher.h"
#include "http/utility.h"
#include "router/header_mutation.h"
#include "stats/stats.h"

namespace sluice::filters {
namespace {

using LocalRateLimitProto = envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;

constexpr std::string_view kName = "envoy.filters.http.local_ratelimit";
// Envoy refuses faster refills for this filter.
constexpr std::chrono::milliseconds kMinFillInterval{50};

// Tokens shared by every worker. It starts full; every fill_interval since the first request
// adds tokens_per_fill, up to max_tokens. Refills are counted lazily, from the time the
// request brings: whichever thread first sees that intervals have passed claims them (a CAS
// on the fill time) and adds their tokens; taking a token is a CAS that never goes below 0.
class TokenBucket {
 public:
  TokenBucket(uint64_t max_tokens, uint64_t tokens_per_fill, std::chrono::nanoseconds interval)
      : max_(max_tokens), per_fill_(tokens_per_fill), interval_(interval.count()),
        tokens_(max_tokens) {}

  bool consume(event::MonotonicTime now) {
    const int64_t now_ns = now.time_since_epoch().count();
    int64_t last = last_fill_.load(std::memory_order_acquire);
    if (last == kUnset) {
      if (last_fill_.compare_exchange_strong(last, now_ns)) last = now_ns;
    }
    if (now_ns - last >= interval_) {
      const int64_t fills = (now_ns - last) / interval_;
      if (last_fill_.compare_exchange_strong(last, last + fills * interval_)) {
        // Capped before multiplying: more fills than max_tokens fill it anyway.
        const uint64_t add = std::min<uint64_t>(static_cast<uint64_t>(fills), max_) * per_fill_;
        uint64_t t = tokens_.load(std::memory_order_relaxed);
        while (!tokens_.compare_exchange_weak(t, std::min(max_, t + add))) {
        }
      }
    }
    uint64_t t = tokens_.load(std::memory_order_relaxed);
    while (t > 0) {
      if (tokens_.compare_exchange_weak(t, t - 1)) return true;
    }
    return false;
  }

 private:
  static constexpr int64_t kUnset = std::numeric_limits<int64_t>::min();
  const uint64_t max_;
  const uint64_t per_fill_;
  const int64_t interval_;
  std::atomic<uint64_t> tokens_;
  std::atomic<int64_t> last_fill_{kUnset};
};

// One LocalRateLimit, compiled (the filter's, or a route's with its own bucket and stats).
struct RateLimitConfig : public http::RouteSpecificFilterConfig {
  RateLimitConfig(stats::Store& store, const std::string& stat_prefix)
      : enabled(store.counter(stat_prefix + ".http_local_rate_limit.enabled")),
        enforced(store.counter(stat_prefix + ".http_local_rate_limit.enforced")),
        rate_limited(store.counter(stat_prefix + ".http_local_rate_limit.rate_limited")),
        ok(store.counter(stat_prefix + ".http_local_rate_limit.ok")) {}

  stats::Counter& enabled;
  stats::Counter& enforced;
  stats::Counter& rate_limited;
  stats::Counter& ok;
  // Null without token_bucket: every request has a token.
  std::unique_ptr<TokenBucket> bucket;
  Fraction filter_enabled{0, 100};
  Fraction filter_enforced{0, 100};
  uint32_t status{429};
  router::HeaderMutations response_headers;
  router::HeaderMutations request_headers_when_not_enforced;
  std::function<uint64_t()> random;
};

std::shared_ptr<const RateLimitConfig> compile(const google::protobuf::Any& any,
                                               const FilterFactoryContext& context,
                                               const std::string& path, bool per_route,
                                               std::string* error) {
  LocalRateLimitProto proto;
  if (!any.UnpackTo(&proto)) {
    *error = path + ": cannot read " + std::string(LocalRateLimitProto::descriptor()->full_name());
    return nullptr;
  }
  if (proto.stat_prefix().empty()) {
    *error = path + ".stat_prefix: a stat_prefix is required";
    return nullptr;
  }
  // As Envoy: the filter's own config may go without a bucket (enabled here, limited per
  // route), but a route's config without one would limit nothing.
  if (per_route && !proto.has_token_bucket()) {
    *error = path + ".token_bucket: a token_bucket is required in a per-route config";
    return nullptr;
  }
  auto c = std::make_shared<RateLimitConfig>(context.store, proto.stat_prefix());
  c->random = context.random;
  if (proto.has_token_bucket()) {
    const auto& tb = proto.token_bucket();
    const std::string tb_path = path + ".token_bucket";
    if (tb.max_tokens() == 0) {
      *error = tb_path + ".max_tokens: must be greater than 0";
      return nullptr;
    }
    const uint32_t per_fill = tb.has_tokens_per_fill() ? tb.tokens_per_fill().value() : 1;
    if (per_fill == 0) {
      *error = tb_path + ".tokens_per_fill: must be greater than 0";
      return nullptr;
    }
    // Past about 292 years: nanoseconds::max(), a bucket that never refills.
    const std::chrono::nanoseconds interval = config::toNanoseconds(tb.fill_interval());
    if (!tb.has_fill_interval() || interval < kMinFillInterval) {
      *error = tb_path + ".fill_interval: must be at least 50ms";
      return nullptr;
    }
    c->bucket = std::make_unique<TokenBucket>(tb.max_tokens(), per_fill, interval);
  }
  // Runtime keys read as unset (Sluice has no runtime layer): default_value applies.
  if (proto.has_filter_enabled()) c->filter_enabled = toFraction(proto.filter_enabled().default_value());
  if (proto.has_filter_enforced()) {
    c->filter_enforced = toFraction(proto.filter_enforced().default_value());
  }
  if (proto.has_status()) {
    const uint32_t code = static_cast<uint32_t>(proto.status().code());
    if (code >= 600) {
      *error = path + ".status.code: " + std::to_string(code) + " is not a status code under 600";
      return nullptr;
    }
    // As Envoy: a status that is not an error (under 400) answers 429.
    c->status = code >= 400 ? code : 429;
  }
  const google::protobuf::RepeatedPtrField<std::string> none;
  if (!c->response_headers.init(proto.response_headers_to_add(), none,
                                path + ".response_headers_to_add", path, error) ||
      !c->request_headers_when_not_enforced.init(
          proto.request_headers_to_add_when_not_enforced(), none,
          path + ".request_headers_to_add_when_not_enforced", path, error)) {
    return nullptr;
  }
  return c;
}

class LocalRateLimitFilter : public http::StreamDecoderFilter {
 public:
  LocalRateLimitFilter(std::shared_ptr<const RateLimitConfig> config,
                       std::shared_ptr<const std::string> name)
      : config_(std::move(config)), name_(name) {}

  void setDecoderFilterCallbacks(http::StreamDecoderFilterCallbacks& cb) override {
    callbacks_ = &cb;
  }

  http::FilterHeadersStatus decodeHeaders(http::RequestHeaderMap& headers, bool) override {
    const RateLimitConfig* config = config_.get();
    const http::RouteConstSharedPtr route = callbacks_->route();
    if (const auto* per_route = perFilterConfig<RateLimitConfig>(route.get(), *name_, kName)) {
      config = per_route;
      route_ = route;  // keeps it alive for the reply below
    }
    if (!config->filter_enabled.evaluate(random(*config))) {
      return http::FilterHeadersStatus::Continue;
    }
    config->enabled.inc();
    if (!config->bucket ||
        config->bucket->consume(callbacks_->dispatcher().timeSource().monotonicTime())) {
      config->ok.inc();
      return http::FilterHeadersStatus::Continue;
    }
    config->rate_limited.inc();
    if (!config->filter_enforced.evaluate(random(*config))) {
      config->request_headers_when_not_enforced.apply(headers, callbacks_->streamInfo(), &headers);
      return http::FilterHeadersStatus::Continue;
    }
    config->enforced.inc();
    callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::RateLimited);
    callbacks_->sendLocalReply(
        config->status, "local_rate_limited",
        [this, config, &headers](http::ResponseHeaderMap& h) {
          h.set("x-envoy-ratelimited", "true");
          config->response_headers.apply(h, callbacks_->streamInfo(), &headers);
        },
        "local_rate_limited");
    return http::FilterHeadersStatus::StopIteration;
  }
  http::FilterDataStatus decodeData(buffer::Buffer&, bool) override {
    return http::FilterDataStatus::Continue;
  }
  http::FilterTrailersStatus decodeTrailers(http::RequestTrailerMap&) override {
    return http::FilterTrailersStatus::Continue;
  }

 private:
  static uint64_t random(const RateLimitConfig& c) { return c.random ? c.random() : http::randomU64(); }

  std::shared_ptr<const RateLimitConfig> config_;
  std::shared_ptr<const std::string> name_;  // its http_filters name
  http::StreamDecoderFilterCallbacks* callbacks_{nullptr};
  http::RouteConstSharedPtr route_;
};

class LocalRateLimitFilterFactory : public HttpFilterFactory {
 public:
  std::string_view name() const override { return kName; }
  std::string_view configType() const override {
    return LocalRateLimitProto::descriptor()->full_name();
  }

  http::FilterFactoryCb createFilterFactory(const google::protobuf::Any& any,
                                            const std::string& filter_name,
                                            const FilterFactoryContext& context,
                                            const std::string& path,
                                            std::string* error) const override {
    auto config = compile(any, context, path, false, error);
    if (!config) return nullptr;
    auto name = std::make_shared<const std::string>(filter_name);
    return [config, name](http::FilterChainFactoryCallbacks& cb) {
      cb.addStreamDecoderFilter(std::make_shared<LocalRateLimitFilter>(config, name));
    };
  }

  http::RouteSpecificFilterConfigConstSharedPtr createRouteConfig(
      const google::protobuf::Any& any, const FilterFactoryContext& context,
      const std::string& path, std::string* error) const override {
    return compile(any, context, path, true, error);
  }
};

}  // namespace

const HttpFilterFactory& localRateLimitFilterFactory() {
  static const LocalRateLimitFilterFactory factory;
  return factory;
}

}  // namespace sluice::filters
