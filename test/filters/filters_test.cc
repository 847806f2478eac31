// The HTTP filters of src/filters/http, one stream at a time: each filter is built the way
// the proxy builds it (its registry factory, from YAML config), driven through the filter API
// by fake stream callbacks at the connection manager's seam, on a real Dispatcher with the
// simulated clock. Config errors go through the real loader and buildProxyConfig.

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "access_log/file_sink.h"
#include "buffer/buffer.h"
#include "config/bootstrap_loader.h"
#include "config/proxy_config.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.pb.h"
#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "filters/http/factory.h"
#include "router/config_impl.h"
#include "stats/stats.h"

namespace sluice::filters {
namespace {

using namespace std::chrono_literals;
using FaultProto = envoy::extensions::filters::http::fault::v3::HTTPFault;
using RateLimitProto = envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;

// A route with typed_per_filter_config entries.
class FakeRoute : public http::Route {
 public:
  std::string_view name() const override { return "r"; }
  const http::RouteSpecificFilterConfig* perFilterConfig(std::string_view n) const override {
    for (const auto& [key, c] : configs) {
      if (key == n) return c.get();
    }
    return nullptr;
  }
  std::vector<std::pair<std::string, http::RouteSpecificFilterConfigConstSharedPtr>> configs;
};

// What the connection manager gives a filter, recording what the filter asks of it.
struct Recorder {
  int continued_decoding{0};
  int continued_encoding{0};
  std::optional<uint32_t> reply_code;
  std::string reply_body;
  std::string reply_details;
  http::HeaderMap reply_headers;
  std::string injected;
  bool injected_end{false};
  std::vector<event::MonotonicTime> inject_times;
  uint32_t encoder_limit{1 << 20};
  int above{0};  // onEncoderFilterAboveWriteBufferHighWatermark calls
  int below{0};
};

template <class Base>
class CommonCallbacks : public Base {
 public:
  CommonCallbacks(event::Dispatcher& d, http::StreamInfo& info, Recorder& rec,
                  http::RouteConstSharedPtr& route)
      : dispatcher_(d), info_(info), rec_(rec), route_(route) {}
  const network::Connection* connection() override { return nullptr; }
  event::Dispatcher& dispatcher() override { return dispatcher_; }
  void resetStream() override {}
  http::RouteConstSharedPtr route() override { return route_; }
  void clearRouteCache() override {}
  http::StreamInfo& streamInfo() override { return info_; }
  uint64_t streamId() const override { return 1; }
  void sendLocalReply(uint32_t code, std::string_view body, const http::ModifyHeadersCb& modify,
                      std::string_view details) override {
    rec_.reply_code = code;
    rec_.reply_body = std::string(body);
    rec_.reply_details = std::string(details);
    if (modify) modify(rec_.reply_headers);
  }

 protected:
  event::Dispatcher& dispatcher_;
  http::StreamInfo& info_;
  Recorder& rec_;
  http::RouteConstSharedPtr& route_;
};

class FakeDecoderCallbacks : public CommonCallbacks<http::StreamDecoderFilterCallbacks> {
 public:
  using CommonCallbacks::CommonCallbacks;
  void continueDecoding() override { ++rec_.continued_decoding; }
  const buffer::Buffer* decodingBuffer() override { return nullptr; }
  void encode1xxHeaders(http::HeaderMapPtr&&) override {}
  void encodeHeaders(http::HeaderMapPtr&&, bool, std::string_view) override {}
  void encodeData(buffer::Buffer&, bool) override {}
  void encodeTrailers(http::HeaderMapPtr&&) override {}
  void onDecoderFilterAboveWriteBufferHighWatermark() override {}
  void onDecoderFilterBelowWriteBufferLowWatermark() override {}
  void addDownstreamWatermarkCallbacks(http::DownstreamWatermarkCallbacks&) override {}
  void removeDownstreamWatermarkCallbacks(http::DownstreamWatermarkCallbacks&) override {}
  uint32_t decoderBufferLimit() override { return 1 << 20; }
  void setStreamIdleTimeout(std::chrono::milliseconds) override {}
  const http::RequestHeaderMap* requestHeaders() override { return nullptr; }
};

class FakeEncoderCallbacks : public CommonCallbacks<http::StreamEncoderFilterCallbacks> {
 public:
  using CommonCallbacks::CommonCallbacks;
  void continueEncoding() override { ++rec_.continued_encoding; }
  const buffer::Buffer* encodingBuffer() override { return nullptr; }
  void injectEncodedDataToFilterChain(buffer::Buffer& data, bool end_stream) override {
    rec_.injected += data.toString();
    data.drain(data.length());
    rec_.injected_end = end_stream;
    rec_.inject_times.push_back(dispatcher_.timeSource().monotonicTime());
  }
  void onEncoderFilterAboveWriteBufferHighWatermark() override { ++rec_.above; }
  void onEncoderFilterBelowWriteBufferLowWatermark() override { ++rec_.below; }
  uint32_t encoderBufferLimit() override { return rec_.encoder_limit; }
};

// One stream: the filter the factory adds, and its callbacks.
struct Stream : public http::FilterChainFactoryCallbacks {
  Stream(event::Dispatcher& d, event::TimeSource& t, http::RouteConstSharedPtr r)
      : info(t), route(std::move(r)), dec(d, info, rec, route), enc(d, info, rec, route) {}
  void addStreamDecoderFilter(http::StreamDecoderFilterSharedPtr f) override {
    decoder = f;
    f->setDecoderFilterCallbacks(dec);
  }
  void addStreamEncoderFilter(http::StreamEncoderFilterSharedPtr f) override {
    encoder = f;
    f->setEncoderFilterCallbacks(enc);
  }
  void addStreamFilter(http::StreamFilterSharedPtr f) override {
    addStreamDecoderFilter(f);
    addStreamEncoderFilter(f);
  }
  http::FilterHeadersStatus headers(http::HeaderMap h = {{":method", "GET"}, {":path", "/"}}) {
    request = std::make_unique<http::HeaderMap>(std::move(h));
    return decoder->decodeHeaders(*request, true);
  }
  ~Stream() override {
    if (decoder) decoder->onDestroy();
  }

  http::StreamInfo info;
  Recorder rec;
  http::RouteConstSharedPtr route;
  FakeDecoderCallbacks dec;
  FakeEncoderCallbacks enc;
  http::StreamDecoderFilterSharedPtr decoder;
  http::StreamEncoderFilterSharedPtr encoder;
  std::unique_ptr<http::HeaderMap> request;
};

template <class Proto>
google::protobuf::Any anyFromYaml(const std::string& yaml) {
  Proto proto;
  std::vector<std::string> errors;
  EXPECT_TRUE(config::messageFromYaml(yaml, Proto::descriptor()->full_name(), proto, errors))
      << (errors.empty() ? "" : errors[0]);
  google::protobuf::Any any;
  any.PackFrom(proto);
  return any;
}

class FiltersTest : public ::testing::Test {
 protected:
  FiltersTest() : dispatcher_("test", time_) {}

  template <class Proto>
  http::FilterFactoryCb factory(const std::string& yaml, const std::string& name) {
    const auto any = anyFromYaml<Proto>(yaml);
    const HttpFilterFactory* f = findHttpFilterFactory(any.type_url());
    EXPECT_NE(f, nullptr);
    std::string error;
    auto cb = f->createFilterFactory(any, name, context_, "typed_config", &error);
    EXPECT_TRUE(cb) << error;
    return cb;
  }
  template <class Proto>
  http::RouteSpecificFilterConfigConstSharedPtr routeConfig(const std::string& yaml) {
    const auto any = anyFromYaml<Proto>(yaml);
    std::string error;
    auto c = findHttpFilterFactory(any.type_url())->createRouteConfig(any, context_, "p", &error);
    EXPECT_TRUE(c) << error;
    return c;
  }
  std::unique_ptr<Stream> stream(const http::FilterFactoryCb& cb,
                                 http::RouteConstSharedPtr route = nullptr) {
    auto s = std::make_unique<Stream>(dispatcher_, time_, std::move(route));
    cb(*s);
    return s;
  }
  void advance(std::chrono::milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }
  uint64_t counter(const std::string& name) {
    const stats::Counter* c = store_.findCounter(name);
    return c ? c->value() : 0;
  }
  uint64_t gauge(const std::string& name) {
    const stats::Gauge* g = store_.findGauge(name);
    return g ? g->value() : 0;
  }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl dispatcher_;
  stats::Store store_;
  std::mt19937_64 rng_{12345};
  FilterFactoryContext context_{store_, "ingress", [this] { return rng_(); }};
};

TEST_F(FiltersTest, FixedDelayHoldsTheRequestForExactlyThatLongOnTheClock) {
  auto cb = factory<FaultProto>(R"(
delay: {fixed_delay: 0.250s, percentage: {numerator: 100}}
)", "envoy.filters.http.fault");
  auto s = stream(cb);
  const auto start = time_.monotonicTime();
  EXPECT_EQ(s->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_TRUE(s->info.hasResponseFlag(http::ResponseFlag::DelayInjected));
  EXPECT_EQ(counter("http.ingress.fault.delays_injected"), 1u);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 1u);
  buffer::Buffer body;
  body.add("x");
  EXPECT_EQ(s->decoder->decodeData(body, true), http::FilterDataStatus::StopIterationAndWatermark);
  advance(249ms);
  EXPECT_EQ(s->rec.continued_decoding, 0);
  advance(1ms);
  EXPECT_EQ(s->rec.continued_decoding, 1);
  EXPECT_EQ(time_.monotonicTime() - start, 250ms);
  EXPECT_FALSE(s->rec.reply_code);
  s.reset();
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 0u);
}

TEST_F(FiltersTest, ClientGoneDuringTheDelayCancelsTheTimer) {
  auto cb = factory<FaultProto>(R"(
delay: {fixed_delay: 1s, percentage: {numerator: 100}}
abort: {http_status: 503, percentage: {numerator: 100}}
)", "f");
  auto s = stream(cb);
  EXPECT_EQ(s->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(time_.pendingTimers(), 1u);
  s->decoder->onDestroy();
  EXPECT_EQ(time_.pendingTimers(), 0u);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 0u);
  advance(2s);
  EXPECT_FALSE(s->rec.reply_code);
  EXPECT_EQ(s->rec.continued_decoding, 0);
  s->decoder.reset();  // destroyed already
}

TEST_F(FiltersTest, DelayThenAbortAnswersAfterTheDelay) {
  auto cb = factory<FaultProto>(R"(
delay: {fixed_delay: 0.1s, percentage: {numerator: 100}}
abort: {http_status: 503, percentage: {numerator: 100}}
)", "f");
  auto s = stream(cb);
  s->headers();
  EXPECT_FALSE(s->rec.reply_code);
  advance(100ms);
  ASSERT_TRUE(s->rec.reply_code);
  EXPECT_EQ(*s->rec.reply_code, 503u);
  EXPECT_EQ(s->rec.reply_body, "fault filter abort");
  EXPECT_EQ(s->rec.continued_decoding, 0);
  EXPECT_TRUE(s->info.hasResponseFlag(http::ResponseFlag::FaultInjected));
  EXPECT_TRUE(s->info.hasResponseFlag(http::ResponseFlag::DelayInjected));
}

// Over n requests, the aborted count of a p-fraction must be within 4 standard deviations.
TEST_F(FiltersTest, AbortPercentagesHoldOverManyRequestsForEachDenominator) {
  struct Case {
    std::string percentage;
    double p;
  };
  for (const Case& c : {Case{"{numerator: 30}", 0.30},
                        Case{"{numerator: 250, denominator: TEN_THOUSAND}", 0.025},
                        Case{"{numerator: 500000, denominator: MILLION}", 0.5}}) {
    auto cb = factory<FaultProto>("abort: {http_status: 503, percentage: " + c.percentage + "}",
                                  "f");
    const int n = 20000;
    int aborted = 0;
    for (int i = 0; i < n; ++i) {
      auto s = stream(cb);
      const auto status = s->headers();
      if (s->rec.reply_code) {
        EXPECT_EQ(*s->rec.reply_code, 503u);
        EXPECT_EQ(status, http::FilterHeadersStatus::StopIteration);
        EXPECT_TRUE(s->info.hasResponseFlag(http::ResponseFlag::FaultInjected));
        ++aborted;
      }
    }
    const double sd = std::sqrt(n * c.p * (1 - c.p));
    EXPECT_NEAR(aborted, n * c.p, 4 * sd) << c.percentage;
  }
  EXPECT_GT(counter("http.ingress.fault.aborts_injected"), 0u);
}

TEST_F(FiltersTest, HeaderControlledFaultsFollowTheRequestHeaders) {
  auto cb = factory<FaultProto>(R"(
abort: {header_abort: {}, percentage: {numerator: 100}}
delay: {header_delay: {}, percentage: {numerator: 100}}
)", "f");
  {  // No fault headers: nothing happens.
    auto s = stream(cb);
    EXPECT_EQ(s->headers(), http::FilterHeadersStatus::Continue);
    EXPECT_FALSE(s->rec.reply_code);
  }
  {  // An HTTP abort asked for.
    auto s = stream(cb);
    EXPECT_EQ(s->headers({{":path", "/"}, {"x-envoy-fault-abort-request", "429"}}),
              http::FilterHeadersStatus::StopIteration);
    ASSERT_TRUE(s->rec.reply_code);
    EXPECT_EQ(*s->rec.reply_code, 429u);
  }
  {  // At 0 percent (the header's percentage): no abort.
    auto s = stream(cb);
    EXPECT_EQ(s->headers({{":path", "/"},
                          {"x-envoy-fault-abort-request", "429"},
                          {"x-envoy-fault-abort-request-percentage", "0"}}),
              http::FilterHeadersStatus::Continue);
    EXPECT_FALSE(s->rec.reply_code);
  }
  {  // A gRPC abort: HTTP 200 with grpc-status.
    auto s = stream(cb);
    s->headers({{":path", "/"}, {"x-envoy-fault-abort-grpc-request", "14"}});
    ASSERT_TRUE(s->rec.reply_code);
    EXPECT_EQ(*s->rec.reply_code, 200u);
    EXPECT_EQ(s->rec.reply_headers.getValue("grpc-status"), "14");
  }
  {  // A delay of the header's milliseconds.
    auto s = stream(cb);
    EXPECT_EQ(s->headers({{":path", "/"}, {"x-envoy-fault-delay-request", "70"}}),
              http::FilterHeadersStatus::StopIteration);
    advance(69ms);
    EXPECT_EQ(s->rec.continued_decoding, 0);
    advance(1ms);
    EXPECT_EQ(s->rec.continued_decoding, 1);
  }
  {  // An invalid status is no abort.
    auto s = stream(cb);
    EXPECT_EQ(s->headers({{":path", "/"}, {"x-envoy-fault-abort-request", "99"}}),
              http::FilterHeadersStatus::Continue);
  }
}

TEST_F(FiltersTest, HeadersAndDownstreamNodesLimitWhichRequestsGetFaults) {
  auto cb = factory<FaultProto>(R"(
abort: {http_status: 503, percentage: {numerator: 100}}
headers: [{name: x-chaos, string_match: {exact: "yes"}}]
downstream_nodes: [node-a]
)", "f");
  auto run = [&](http::HeaderMap h) {
    auto s = stream(cb);
    s->headers(std::move(h));
    return s->rec.reply_code.has_value();
  };
  EXPECT_FALSE(run({{":path", "/"}}));
  EXPECT_FALSE(run({{":path", "/"}, {"x-chaos", "yes"}}));
  EXPECT_FALSE(run({{":path", "/"}, {"x-chaos", "yes"}, {"x-envoy-downstream-service-node", "b"}}));
  EXPECT_TRUE(
      run({{":path", "/"}, {"x-chaos", "yes"}, {"x-envoy-downstream-service-node", "node-a"}}));
}

TEST_F(FiltersTest, MaxActiveFaultsOverflowLetsRequestsThrough) {
  auto cb = factory<FaultProto>(R"(
delay: {fixed_delay: 1s, percentage: {numerator: 100}}
max_active_faults: 2
)", "f");
  auto a = stream(cb);
  auto b = stream(cb);
  auto c = stream(cb);
  EXPECT_EQ(a->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(b->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(c->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("http.ingress.fault.faults_overflow"), 1u);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 2u);
  a.reset();  // one fault ends: room for another
  auto d = stream(cb);
  EXPECT_EQ(d->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(counter("http.ingress.fault.delays_injected"), 3u);
}

constexpr char kBucket[] = R"(
stat_prefix: lrl
token_bucket: {max_tokens: 2, tokens_per_fill: 1, fill_interval: 1s}
filter_enabled: {runtime_key: a, default_value: {numerator: 100}}
filter_enforced: {runtime_key: b, default_value: {numerator: 100}}
response_headers_to_add: [{header: {key: x-local-rate-limit, value: "true"}}]
)";

TEST_F(FiltersTest, ADelayFreesItsActiveFaultSlotWhenItEnds) {
  auto cb = factory<FaultProto>(R"(
delay: {fixed_delay: 1s, percentage: {numerator: 100}}
max_active_faults: 1
)", "f");
  auto a = stream(cb);
  EXPECT_EQ(a->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 1u);
  advance(1s);
  EXPECT_EQ(a->rec.continued_decoding, 1);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 0u) << "the delay is over";
  // `a` is still streaming (its response may take long): the next request gets its delay.
  auto b = stream(cb);
  EXPECT_EQ(b->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(counter("http.ingress.fault.faults_overflow"), 0u);

  // With a response rate limit to come, the slot stays taken after the delay.
  auto rl = factory<FaultProto>(R"(
delay: {fixed_delay: 1s, percentage: {numerator: 100}}
response_rate_limit: {fixed_limit: {limit_kbps: 1}, percentage: {numerator: 100}}
max_active_faults: 5
)", "g");
  auto c = stream(rl);
  EXPECT_EQ(c->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 2u);  // b and c delaying
  advance(1s);
  // Both delays are over: b lets its slot go, c keeps its own for the response to come.
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 1u);
  c.reset();
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 0u);
}

TEST_F(FiltersTest, MaxActiveFaultsOverflowCountsOnlyFaultsAboutToBeInjected) {
  auto cb = factory<FaultProto>(R"(
delay: {header_delay: {}, percentage: {numerator: 100}}
max_active_faults: 1
)", "f");
  auto a = stream(cb);
  EXPECT_EQ(a->headers({{":path", "/"}, {"x-envoy-fault-delay-request", "500"}}),
            http::FilterHeadersStatus::StopIteration);
  // No fault asked for: nothing overflows.
  auto b = stream(cb);
  EXPECT_EQ(b->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("http.ingress.fault.faults_overflow"), 0u);
  auto c = stream(cb);
  EXPECT_EQ(c->headers({{":path", "/"}, {"x-envoy-fault-delay-request", "500"}}),
            http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("http.ingress.fault.faults_overflow"), 1u);
  EXPECT_EQ(counter("http.ingress.fault.delays_injected"), 1u);
}

TEST_F(FiltersTest, HeaderDelayOfZeroInjectsNothingAndAHugeOneIsClamped) {
  auto cb = factory<FaultProto>("delay: {header_delay: {}, percentage: {numerator: 100}}", "f");
  auto zero = stream(cb);
  EXPECT_EQ(zero->headers({{":path", "/"}, {"x-envoy-fault-delay-request", "0"}}),
            http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("http.ingress.fault.delays_injected"), 0u);
  EXPECT_EQ(gauge("http.ingress.fault.active_faults"), 0u);
  EXPECT_FALSE(zero->info.hasResponseFlag(http::ResponseFlag::DelayInjected));
  // 9e18 ms: held for the longest delay the filter allows (2^31 - 1 ms), not overflowed.
  auto huge = stream(cb);
  EXPECT_EQ(huge->headers({{":path", "/"}, {"x-envoy-fault-delay-request", "9000000000000000000"}}),
            http::FilterHeadersStatus::StopIteration);
  advance(std::chrono::hours(24));
  EXPECT_EQ(huge->rec.continued_decoding, 0);
  advance(std::chrono::milliseconds(INT32_MAX) - std::chrono::hours(24));
  EXPECT_EQ(huge->rec.continued_decoding, 1);
}

TEST_F(FiltersTest, ResponseRateLimitPushesBackOverTheEncoderBufferLimit) {
  // 1 KiB/s: 51 bytes per 50 ms tick; the stream's limit 1000 bytes.
  auto cb = factory<FaultProto>(
      "response_rate_limit: {fixed_limit: {limit_kbps: 1}, percentage: {numerator: 100}}", "f");
  auto s = stream(cb);
  s->rec.encoder_limit = 1000;
  s->headers();
  http::HeaderMap response{{":status", "200"}};
  s->encoder->encodeHeaders(response, false);
  buffer::Buffer body;
  body.add(std::string(600, 'a'));
  s->encoder->encodeData(body, false);  // 51 out, 549 kept
  EXPECT_EQ(s->rec.above, 0);
  body.add(std::string(600, 'b'));
  s->encoder->encodeData(body, false);  // 1149 kept: over the limit
  EXPECT_EQ(s->rec.above, 1);
  body.add(std::string(10, 'c'));
  s->encoder->encodeData(body, false);  // still over: told once
  EXPECT_EQ(s->rec.above, 1);
  // Down to half the limit (500) after 13 more slices: 1159 - 13 x 51 = 496.
  advance(12 * 50ms);
  EXPECT_EQ(s->rec.below, 0);
  advance(50ms);
  EXPECT_EQ(s->rec.below, 1);
  body.add(std::string(10, 'd'));
  s->encoder->encodeData(body, true);
  advance(10s);
  EXPECT_EQ(s->rec.injected.size(), 1220u);
  EXPECT_TRUE(s->rec.injected_end);
  EXPECT_EQ(s->rec.above, 1);
  EXPECT_EQ(s->rec.below, 1);
}

TEST_F(FiltersTest, APerRouteEntryOfAnotherFiltersTypeIsIgnored) {
  // The loader refuses such an entry under an http_filters name; keyed by a canonical name
  // it may still reach a filter, which must not read it as its own.
  auto cb = factory<FaultProto>("abort: {http_status: 503, percentage: {numerator: 100}}",
                                "my-fault");
  auto route = std::make_shared<FakeRoute>();
  route->configs.emplace_back("envoy.filters.http.fault", routeConfig<RateLimitProto>(kBucket));
  auto s = stream(cb, route);
  EXPECT_EQ(s->headers(), http::FilterHeadersStatus::StopIteration);
  ASSERT_TRUE(s->rec.reply_code);
  EXPECT_EQ(*s->rec.reply_code, 503u) << "the filter's own config";

  auto rl = factory<RateLimitProto>(kBucket, "envoy.filters.http.local_ratelimit");
  auto route2 = std::make_shared<FakeRoute>();
  route2->configs.emplace_back("envoy.filters.http.local_ratelimit",
                               routeConfig<FaultProto>("{}"));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(stream(rl, route2)->headers(), http::FilterHeadersStatus::Continue);
  }
  EXPECT_EQ(counter("lrl.http_local_rate_limit.ok"), 2u);
}

TEST_F(FiltersTest, RateLimitStatusUnder400AnswersTooManyRequests) {
  auto cb = factory<RateLimitProto>(std::string(kBucket) + "status: {code: 200}\n", "f");
  auto code = [&] {
    auto s = stream(cb);
    s->headers();
    return s->rec.reply_code.value_or(0);
  };
  code();
  code();
  EXPECT_EQ(code(), 429u);
  auto teapot = factory<RateLimitProto>(
      "stat_prefix: t\ntoken_bucket: {max_tokens: 1, fill_interval: 1s}\n"
      "filter_enabled: {runtime_key: a, default_value: {numerator: 100}}\n"
      "filter_enforced: {runtime_key: b, default_value: {numerator: 100}}\n"
      "status: {code: 418}\n",
      "f");
  stream(teapot)->headers();
  auto s = stream(teapot);
  s->headers();
  EXPECT_EQ(s->rec.reply_code.value_or(0), 418u);
}

TEST_F(FiltersTest, PerRouteRateLimitWithoutATokenBucketIsRefused) {
  const auto any = anyFromYaml<RateLimitProto>(
      "stat_prefix: r\nfilter_enabled: {runtime_key: a, default_value: {numerator: 100}}");
  std::string error;
  EXPECT_FALSE(findHttpFilterFactory(any.type_url())->createRouteConfig(any, context_, "p", &error));
  EXPECT_EQ(error, "p.token_bucket: a token_bucket is required in a per-route config");
  // The filter's own config may go without one.
  EXPECT_TRUE(findHttpFilterFactory(any.type_url())
                  ->createFilterFactory(any, "f", context_, "typed_config", &error));
}

TEST_F(FiltersTest, DownstreamClusterStatsUnlessDisabled) {
  auto cb = factory<FaultProto>("abort: {http_status: 503, percentage: {numerator: 100}}", "f");
  stream(cb)->headers({{":path", "/"}, {"x-envoy-downstream-service-cluster", "web"}});
  EXPECT_EQ(counter("http.ingress.fault.web.aborts_injected"), 1u);
}

TEST_F(FiltersTest, ResponseRateLimitPacesTheBodyOnTheClock) {
  // 1 KiB/s: 51 bytes per 50 ms tick.
  auto cb = factory<FaultProto>(
      "response_rate_limit: {fixed_limit: {limit_kbps: 1}, percentage: {numerator: 100}}", "f");
  auto s = stream(cb);
  EXPECT_EQ(s->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("http.ingress.fault.response_rl_injected"), 1u);
  http::HeaderMap response{{":status", "200"}};
  EXPECT_EQ(s->encoder->encodeHeaders(response, false), http::FilterHeadersStatus::Continue);
  const auto start = time_.monotonicTime();
  buffer::Buffer body;
  body.add(std::string(200, 'a'));
  EXPECT_EQ(s->encoder->encodeData(body, true), http::FilterDataStatus::StopIterationNoBuffer);
  EXPECT_EQ(s->rec.injected.size(), 51u);  // the first slice at once
  advance(50ms);
  EXPECT_EQ(s->rec.injected.size(), 102u);
  EXPECT_FALSE(s->rec.injected_end);
  advance(100ms);
  EXPECT_EQ(s->rec.injected.size(), 200u);
  EXPECT_TRUE(s->rec.injected_end);
  EXPECT_EQ(s->rec.inject_times.back() - start, 150ms);
}

TEST_F(FiltersTest, PerRouteFaultConfigReplacesTheFiltersOwn) {
  auto cb = factory<FaultProto>("abort: {http_status: 503, percentage: {numerator: 100}}",
                                "my-fault");
  auto route = std::make_shared<FakeRoute>();
  // An empty HTTPFault: no faults on this route.
  route->configs.emplace_back("my-fault", routeConfig<FaultProto>("{}"));
  auto s = stream(cb, route);
  EXPECT_EQ(s->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_FALSE(s->rec.reply_code);
  // Keyed by the canonical name works too; and a different abort status wins there.
  auto route2 = std::make_shared<FakeRoute>();
  route2->configs.emplace_back(
      "envoy.filters.http.fault",
      routeConfig<FaultProto>("abort: {http_status: 418, percentage: {numerator: 100}}"));
  auto s2 = stream(cb, route2);
  s2->headers();
  ASSERT_TRUE(s2->rec.reply_code);
  EXPECT_EQ(*s2->rec.reply_code, 418u);
}


TEST_F(FiltersTest, TokenBucketRefillsByTimeAndAnswers429WhenEmpty) {
  auto cb = factory<RateLimitProto>(kBucket, "envoy.filters.http.local_ratelimit");
  auto pass = [&] {
    auto s = stream(cb);
    const bool ok = s->headers() == http::FilterHeadersStatus::Continue;
    if (!ok) {
      EXPECT_EQ(*s->rec.reply_code, 429u);
      EXPECT_TRUE(s->info.hasResponseFlag(http::ResponseFlag::RateLimited));
      EXPECT_EQ(s->rec.reply_headers.getValue("x-envoy-ratelimited"), "true");
      EXPECT_EQ(s->rec.reply_headers.getValue("x-local-rate-limit"), "true");
      EXPECT_EQ(s->rec.reply_details, "local_rate_limited");
    }
    return ok;
  };
  EXPECT_TRUE(pass());
  EXPECT_TRUE(pass());
  EXPECT_FALSE(pass());
  advance(999ms);
  EXPECT_FALSE(pass());
  advance(1ms);  // one fill
  EXPECT_TRUE(pass());
  EXPECT_FALSE(pass());
  advance(10s);  // many fills: capped at max_tokens
  EXPECT_TRUE(pass());
  EXPECT_TRUE(pass());
  EXPECT_FALSE(pass());
  EXPECT_EQ(counter("lrl.http_local_rate_limit.enabled"), 9u);
  EXPECT_EQ(counter("lrl.http_local_rate_limit.ok"), 5u);
  EXPECT_EQ(counter("lrl.http_local_rate_limit.rate_limited"), 4u);
  EXPECT_EQ(counter("lrl.http_local_rate_limit.enforced"), 4u);
}

// A fill interval past nanoseconds' range (about 292 years) is a bucket that never refills:
// neither refused as shorter than 50ms (it wrapped negative) nor wrapped to a shorter one.
TEST_F(FiltersTest, AnIntervalOfCenturiesNeverRefills) {
  for (const char* interval : {"9500000000s", "315576000000s"}) {
    SCOPED_TRACE(interval);
    auto cb = factory<RateLimitProto>(
        std::string("stat_prefix: years\ntoken_bucket: {max_tokens: 1, fill_interval: ") +
            interval +
            "}\nfilter_enabled: {runtime_key: a, default_value: {numerator: 100}}\n"
            "filter_enforced: {runtime_key: b, default_value: {numerator: 100}}\n",
        "envoy.filters.http.local_ratelimit");
    EXPECT_EQ(stream(cb)->headers(), http::FilterHeadersStatus::Continue);
    EXPECT_EQ(stream(cb)->headers(), http::FilterHeadersStatus::StopIteration);
    advance(std::chrono::hours(24 * 365 * 100));
    EXPECT_EQ(stream(cb)->headers(), http::FilterHeadersStatus::StopIteration);
  }
}

TEST_F(FiltersTest, RateLimitNotEnforcedAddsRequestHeadersAndNotEnabledSkips) {
  auto cb = factory<RateLimitProto>(R"(
stat_prefix: shadow
token_bucket: {max_tokens: 1, fill_interval: 1s}
filter_enabled: {runtime_key: a, default_value: {numerator: 100}}
request_headers_to_add_when_not_enforced: [{header: {key: x-would-limit, value: "1"}}]
)", "f");
  auto a = stream(cb);
  EXPECT_EQ(a->headers(), http::FilterHeadersStatus::Continue);
  auto b = stream(cb);
  EXPECT_EQ(b->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(b->request->getValue("x-would-limit"), "1");
  EXPECT_FALSE(b->rec.reply_code);
  EXPECT_EQ(counter("shadow.http_local_rate_limit.rate_limited"), 1u);
  EXPECT_EQ(counter("shadow.http_local_rate_limit.enforced"), 0u);
  // filter_enabled unset: 0%, the filter does nothing.
  auto off = factory<RateLimitProto>("stat_prefix: unused\ntoken_bucket: {max_tokens: 1, fill_interval: 1s}", "f");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(stream(off)->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(counter("unused.http_local_rate_limit.enabled"), 0u);
}

TEST_F(FiltersTest, PerRouteRateLimitHasItsOwnBucket) {
  auto cb = factory<RateLimitProto>(R"(
stat_prefix: global
token_bucket: {max_tokens: 100, fill_interval: 1s}
filter_enabled: {runtime_key: a, default_value: {numerator: 100}}
filter_enforced: {runtime_key: b, default_value: {numerator: 100}}
)", "envoy.filters.http.local_ratelimit");
  auto route = std::make_shared<FakeRoute>();
  route->configs.emplace_back("envoy.filters.http.local_ratelimit",
                              routeConfig<RateLimitProto>(kBucket));
  EXPECT_EQ(stream(cb, route)->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(stream(cb, route)->headers(), http::FilterHeadersStatus::Continue);
  EXPECT_EQ(stream(cb, route)->headers(), http::FilterHeadersStatus::StopIteration);
  EXPECT_EQ(stream(cb)->headers(), http::FilterHeadersStatus::Continue);  // the global bucket
  EXPECT_EQ(counter("lrl.http_local_rate_limit.rate_limited"), 1u);
  EXPECT_EQ(counter("global.http_local_rate_limit.ok"), 1u);
}

// The route table compiles typed_per_filter_config through the compiler it is given; a
// route's entry beats its virtual host's, which covers routes without one.
TEST(PerFilterConfigTest, RouteTableCompilesEntriesAndTheMostSpecificWins) {
  envoy::config::route::v3::RouteConfiguration proto;
  std::vector<std::string> errors;
  ASSERT_TRUE(config::messageFromYaml(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  typed_per_filter_config:
    f: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, downstream_nodes: [vhost]}
  routes:
  - match: {prefix: /own}
    direct_response: {status: 200}
    typed_per_filter_config:
      f: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, downstream_nodes: [route]}
  - match: {prefix: /}
    direct_response: {status: 200}
)", "envoy.config.route.v3.RouteConfiguration", proto, errors));
  struct Tagged : http::RouteSpecificFilterConfig {
    std::string tag;
  };
  std::vector<std::string> compiled;
  auto compiler = [&](const std::string& name, const google::protobuf::Any& any,
                      const std::string& path, std::string*) {
    FaultProto fault;
    any.UnpackTo(&fault);
    compiled.push_back(name + "@" + path);
    auto t = std::make_shared<Tagged>();
    t->tag = fault.downstream_nodes(0);
    return t;
  };
  std::string error;
  auto table = router::RouteTableImpl::create(proto, &error, compiler);
  ASSERT_TRUE(table) << error;
  EXPECT_EQ(compiled, (std::vector<std::string>{
                          "f@virtual_hosts[0].typed_per_filter_config[f]",
                          "f@virtual_hosts[0].routes[0].typed_per_filter_config[f]"}));
  auto tag = [&](const char* path) {
    http::HeaderMap h{{":authority", "x"}, {":path", path}, {":method", "GET"}};
    auto r = table->route(h, 0);
    const auto* c = r->perFilterConfig("f");
    EXPECT_EQ(r->perFilterConfig("other"), nullptr);
    return c ? static_cast<const Tagged*>(c)->tag : std::string("none");
  };
  EXPECT_EQ(tag("/own"), "route");
  EXPECT_EQ(tag("/else"), "vhost");
  // Without a compiler the field is refused, with its path.
  EXPECT_FALSE(router::RouteTableImpl::create(proto, &error));
  EXPECT_EQ(error, "virtual_hosts[0].typed_per_filter_config[f]: typed_per_filter_config is not "
                   "supported here");
}

// Bad filter config is refused at load with the path of the bad field.
std::vector<std::string> loadErrors(const std::string& filters, const std::string& route_extra) {
  const std::string yaml = R"(
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
)" + route_extra + R"(
          http_filters:
)" + filters + R"(
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
)";
  std::vector<std::string> errors;
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  if (!config::loadBootstrap({"", yaml}, bootstrap, errors)) return errors;
  stats::Store store;
  access_log::FileSinkManager sinks;
  config::ProxyConfig out;
  config::buildProxyConfig(bootstrap, store, sinks, out, errors);
  return errors;
}

TEST(FilterConfigErrorsTest, BadFieldsAreNamedByTheirPath) {
  const std::string hcm =
      "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.";
  auto errors = loadErrors(R"(
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: x
              token_bucket: {max_tokens: 1, fill_interval: 0.01s})",
                           "");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0],
            hcm + "http_filters[0].typed_config.token_bucket.fill_interval: must be at least 50ms");

  errors = loadErrors(R"(
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              response_rate_limit: {header_limit: {}})",
                      "");
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find(hcm + "http_filters[0].typed_config.response_rate_limit.header_limit"),
            std::string::npos)
      << errors[0];

  errors = loadErrors(R"(
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: {http_status: 503, percentage: {numerator: 100}})",
                      R"(
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                    headers: [{name: x, string_match: {safe_regex: {regex: "("}}}])");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(hcm +
                           "route_config.virtual_hosts[0].routes[0].typed_per_filter_config["
                           "envoy.filters.http.fault].headers[0].string_match.safe_regex"),
            std::string::npos)
      << errors[0];

  // A per-route entry under the name of a filter of the chain must be that filter's type.
  errors = loadErrors(R"(
          - name: chaos
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: {http_status: 503, percentage: {numerator: 100}})",
                      R"(
                typed_per_filter_config:
                  chaos:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: r
                    token_bucket: {max_tokens: 1, fill_interval: 1s})");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], hcm +
                           "route_config.virtual_hosts[0].routes[0].typed_per_filter_config[chaos]: "
                           "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit is "
                           "not the config of filter 'chaos' (envoy.filters.http.fault)");
  // ...and under a canonical name of a filter of the chain too.
  errors = loadErrors(R"(
          - name: chaos
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault)",
                      R"(
                typed_per_filter_config:
                  envoy.filters.http.fault:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: r
                    token_bucket: {max_tokens: 1, fill_interval: 1s})");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("is not the config of filter 'envoy.filters.http.fault'"),
            std::string::npos)
      << errors[0];
  // A per-route rate limit needs its own bucket.
  errors = loadErrors(R"(
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: x)",
                      R"(
                typed_per_filter_config:
                  envoy.filters.http.local_ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
                    stat_prefix: r)");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], hcm +
                           "route_config.virtual_hosts[0].routes[0].typed_per_filter_config["
                           "envoy.filters.http.local_ratelimit].token_bucket: a token_bucket is "
                           "required in a per-route config");

  // A well-formed config loads.
  errors = loadErrors(R"(
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              delay: {fixed_delay: 1s, percentage: {numerator: 5}}
              delay_percent_runtime: fault.delay)",
                      "");
  EXPECT_TRUE(errors.empty()) << errors[0];
}

// Outlier detection settings Envoy refuses are refused at load, with their path.
std::vector<std::string> outlierErrors(const std::string& outlier_fields) {
  const std::string yaml = R"(
static_resources:
  clusters:
  - name: c
    connect_timeout: 1s
    load_assignment:
      cluster_name: c
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
    outlier_detection: )" + outlier_fields + "\n";
  std::vector<std::string> errors;
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  if (!config::loadBootstrap({"", yaml}, bootstrap, errors)) return errors;
  stats::Store store;
  access_log::FileSinkManager sinks;
  config::ProxyConfig out;
  config::buildProxyConfig(bootstrap, store, sinks, out, errors);
  return errors;
}

TEST(OutlierConfigErrorsTest, EjectionTimesAndIntervalAreChecked) {
  const std::string od = "static_resources.clusters[0].outlier_detection.";
  EXPECT_EQ(outlierErrors("{base_ejection_time: 60s, max_ejection_time: 30s}"),
            std::vector<std::string>{od + "max_ejection_time: must not be less than "
                                          "base_ejection_time"});
  // max_ejection_time alone under the default base (30 s): refused too, as Envoy does.
  EXPECT_EQ(outlierErrors("{max_ejection_time: 10s}").size(), 1u);
  // base alone over the default max (300 s): the max follows it.
  EXPECT_TRUE(outlierErrors("{base_ejection_time: 400s}").empty());
  EXPECT_EQ(outlierErrors("{interval: 0.0005s}"),
            std::vector<std::string>{od + "interval: must be at least 1ms"});
  EXPECT_EQ(outlierErrors("{base_ejection_time: 0.0001s}"),
            std::vector<std::string>{od + "base_ejection_time: must be at least 1ms"});
  EXPECT_TRUE(outlierErrors("{interval: 1s, base_ejection_time: 1s, max_ejection_time: 1s}").empty());
}

}  // namespace
}  // namespace sluice::filters
