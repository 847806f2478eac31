// RetryState, BackOff and the circuit breakers (ResourceManager): the retry decisions and
// their arithmetic, without a network.

#include <thread>

#include <gtest/gtest.h>

#include "router/retry_state.h"
#include "router/shadow.h"
#include "stats/stats.h"
#include "upstream/cluster_info.h"
#include "upstream/resource_manager.h"

namespace sluice::router {
namespace {

using std::chrono::milliseconds;

TEST(BackOffTest, FullJitterWithinDoublingWindowCappedAtMax) {
  // base 25ms, max 250ms: windows 25, 50, 100, 200, 250, 250...
  const uint64_t windows[] = {25, 50, 100, 200, 250, 250, 250};
  for (uint64_t random : {uint64_t{0}, uint64_t{1}, uint64_t{24}, uint64_t{199},
                          uint64_t{12345678901}, UINT64_MAX}) {
    BackOff b(milliseconds(25), milliseconds(250));
    for (uint64_t w : windows) {
      const auto d = b.next(random);
      EXPECT_EQ(static_cast<uint64_t>(d.count()), random % w) << "window " << w;
      EXPECT_LT(static_cast<uint64_t>(d.count()), w);
    }
  }
}

TEST(BackOffTest, SpreadsOverTheWholeWindow) {
  // With varied randomness the first back-off covers [0, base) and never reaches base.
  uint64_t seen_max = 0, seen_min = UINT64_MAX;
  for (uint64_t r = 0; r < 1000; ++r) {
    BackOff b(milliseconds(25), milliseconds(250));
    const uint64_t d = b.next(r * 7919).count();
    seen_max = std::max(seen_max, d);
    seen_min = std::min(seen_min, d);
  }
  EXPECT_EQ(seen_min, 0u);
  EXPECT_EQ(seen_max, 24u);
}

class RetryStateTest : public testing::Test {
 protected:
  stats::Store store_;
  upstream::ClusterInfo cluster_{"c", store_};
  RetryPolicy policy_;
  uint64_t counter(const std::string& name) { return store_.counter("cluster.c." + name).value(); }
};

TEST_F(RetryStateTest, NoPolicyNoHeadersNoRetries) {
  http::RequestHeaderMap request;
  EXPECT_EQ(RetryState::create(nullptr, request, cluster_), nullptr);
  policy_.retry_on = 0;
  EXPECT_EQ(RetryState::create(&policy_, request, cluster_), nullptr);
}

TEST_F(RetryStateTest, RetryOnConditions) {
  http::RequestHeaderMap request;
  policy_.retry_on = RetryPolicy::parseRetryOn("gateway-error,retriable-4xx");
  auto rs = RetryState::create(&policy_, request, cluster_);
  ASSERT_NE(rs, nullptr);
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "409"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "500"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}}));
  EXPECT_TRUE(rs->wouldRetry(RetryState::Failure::Reset));
  EXPECT_FALSE(rs->wouldRetry(RetryState::Failure::Overflow));

  policy_.retry_on = RetryPolicy::parseRetryOn("connect-failure");
  rs = RetryState::create(&policy_, request, cluster_);
  EXPECT_TRUE(rs->wouldRetry(RetryState::Failure::ConnectFailure));
  EXPECT_FALSE(rs->wouldRetry(RetryState::Failure::Reset));
  EXPECT_FALSE(rs->wouldRetry(RetryState::Failure::PerTryTimeout));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));

  policy_.retry_on = RetryPolicy::parseRetryOn("retriable-status-codes,retriable-headers");
  policy_.retriable_status_codes = {418};
  rs = RetryState::create(&policy_, request, cluster_);
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "418"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));
}

TEST_F(RetryStateTest, GrpcStatusConditionsLookAtTheTrailersOnlyHeaders) {
  http::RequestHeaderMap request;
  policy_.retry_on = RetryPolicy::parseRetryOn("cancelled,deadline-exceeded,internal");
  auto rs = RetryState::create(&policy_, request, cluster_);
  ASSERT_NE(rs, nullptr);
  auto grpc = [](const char* status) {
    return http::ResponseHeaderMap{{":status", "200"}, {"content-type", "application/grpc"},
                                   {"grpc-status", status}};
  };
  EXPECT_TRUE(rs->wouldRetry(grpc("1")));
  EXPECT_TRUE(rs->wouldRetry(grpc("4")));
  EXPECT_TRUE(rs->wouldRetry(grpc("13")));
  EXPECT_FALSE(rs->wouldRetry(grpc("14")));  // unavailable not asked for
  EXPECT_FALSE(rs->wouldRetry(grpc("8")));
  EXPECT_FALSE(rs->wouldRetry(grpc("0")));
  EXPECT_FALSE(rs->wouldRetry(grpc("")));
  // A response that starts a stream (no grpc-status yet) is not retried.
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}}));
  // gRPC conditions alone do not retry resets or 5xx.
  EXPECT_FALSE(rs->wouldRetry(RetryState::Failure::Reset));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));

  policy_.retry_on = RetryPolicy::parseRetryOn("resource-exhausted,unavailable");
  rs = RetryState::create(&policy_, request, cluster_);
  EXPECT_TRUE(rs->wouldRetry(grpc("8")));
  EXPECT_TRUE(rs->wouldRetry(grpc("14")));
  EXPECT_FALSE(rs->wouldRetry(grpc("13")));
}

TEST_F(RetryStateTest, RetryGrpcOnHeaderTakesOnlyGrpcNames) {
  http::RequestHeaderMap request{{"x-envoy-retry-grpc-on", "unavailable, 5xx"}};
  auto rs = RetryState::create(nullptr, request, cluster_);
  ASSERT_NE(rs, nullptr);
  EXPECT_EQ(rs->retriesLeft(), 1u);
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}, {"grpc-status", "14"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));
  std::string unknown;
  EXPECT_EQ(RetryPolicy::parseRetryOn("internal,bogus", &unknown), RetryPolicy::kGrpcInternal);
  EXPECT_EQ(unknown, "bogus");
}

TEST_F(RetryStateTest, AnOverloadedUpstreamIsNotRetried) {
  http::RequestHeaderMap request;
  policy_.retry_on = RetryPolicy::parseRetryOn("5xx,gateway-error,retriable-status-codes");
  policy_.retriable_status_codes = {503};
  auto rs = RetryState::create(&policy_, request, cluster_);
  ASSERT_NE(rs, nullptr);
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));
  EXPECT_FALSE(rs->wouldRetry(
      http::ResponseHeaderMap{{":status", "503"}, {"x-envoy-overloaded", "true"}}));
  // Its presence is what counts, not its value.
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}, {"x-envoy-overloaded", ""}}));
}

TEST_F(RetryStateTest, RequestHeadersAddRetriableCodesAndHeaderNames) {
  http::RequestHeaderMap request{{"x-envoy-retry-on", "retriable-status-codes,retriable-headers"},
                                 {"x-envoy-retriable-status-codes", "409, 418,bogus"},
                                 {"x-envoy-retriable-header-names", "X-Upstream-Retry,x-try-again"}};
  policy_.retry_on = 0;
  policy_.retriable_status_codes = {503};
  auto rs = RetryState::create(&policy_, request, cluster_);
  ASSERT_NE(rs, nullptr);
  // The request's codes add to the policy's.
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "503"}}));
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "409"}}));
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "418"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "500"}}));
  // A response carrying one of the named headers (names are case-insensitive).
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}, {"x-upstream-retry", "1"}}));
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}, {"x-try-again", ""}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}, {"x-other", "1"}}));

  // Without the conditions in retry_on the lists do nothing.
  http::RequestHeaderMap plain{{"x-envoy-retry-on", "5xx"},
                               {"x-envoy-retriable-status-codes", "409"},
                               {"x-envoy-retriable-header-names", "x-try-again"}};
  rs = RetryState::create(nullptr, plain, cluster_);
  ASSERT_NE(rs, nullptr);
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "409"}}));
  EXPECT_FALSE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "200"}, {"x-try-again", "1"}}));
}

TEST_F(RetryStateTest, ParseRetryOnReportsUnknown) {
  std::string unknown;
  EXPECT_EQ(RetryPolicy::parseRetryOn("5xx, reset,bogus", &unknown),
            RetryPolicy::k5xx | RetryPolicy::kReset);
  EXPECT_EQ(unknown, "bogus");
}

TEST_F(RetryStateTest, HeadersAddConditionsAndSetTheCount) {
  http::RequestHeaderMap request{{"x-envoy-retry-on", "5xx"}, {"x-envoy-max-retries", "3"}};
  auto rs = RetryState::create(nullptr, request, cluster_);
  ASSERT_NE(rs, nullptr);
  EXPECT_EQ(rs->retriesLeft(), 3u);
  EXPECT_TRUE(rs->wouldRetry(http::ResponseHeaderMap{{":status", "500"}}));
}

TEST_F(RetryStateTest, LimitThenExceededAndSuccessCounted) {
  http::RequestHeaderMap request;
  policy_.retry_on = RetryPolicy::k5xx;
  policy_.num_retries = 2;
  auto rs = RetryState::create(&policy_, request, cluster_);
  EXPECT_EQ(rs->decide(true), RetryState::Decision::Retry);
  // Held through the back-off and the retry's try, until the next decision (as Envoy).
  EXPECT_EQ(cluster_.resourceManager().retries().count(), 1u);
  EXPECT_EQ(rs->decide(true), RetryState::Decision::Retry);
  EXPECT_EQ(cluster_.resourceManager().retries().count(), 1u);  // one per request
  EXPECT_EQ(rs->decide(true), RetryState::Decision::LimitExceeded);
  EXPECT_EQ(cluster_.resourceManager().retries().count(), 0u);
  EXPECT_EQ(counter("upstream_rq_retry"), 2u);
  EXPECT_EQ(counter("upstream_rq_retry_backoff_exponential"), 2u);
  EXPECT_EQ(counter("upstream_rq_retry_limit_exceeded"), 1u);
  EXPECT_EQ(rs->decide(false), RetryState::Decision::No);
  EXPECT_EQ(counter("upstream_rq_retry_success"), 1u);
}

TEST_F(RetryStateTest, MaxRetriesBreakerOverflows) {
  upstream::CircuitBreakerThresholds t;
  t.max_retries = 1;
  cluster_.setCircuitBreakers(t);
  http::RequestHeaderMap request;
  policy_.retry_on = RetryPolicy::k5xx;
  policy_.num_retries = 5;
  auto a = RetryState::create(&policy_, request, cluster_);
  auto b = RetryState::create(&policy_, request, cluster_);
  EXPECT_EQ(a->decide(true), RetryState::Decision::Retry);
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_retry_open").value(), 1u);
  EXPECT_EQ(b->decide(true), RetryState::Decision::Overflow);
  EXPECT_EQ(counter("upstream_rq_retry_overflow"), 1u);
  a.reset();  // a request that ends during its back-off gives its retry back
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_retry_open").value(), 0u);
  EXPECT_EQ(b->decide(true), RetryState::Decision::Retry);
}

TEST(ResourceManagerTest, RetryBudgetMath) {
  stats::Store store;
  upstream::CircuitBreakerThresholds t;
  t.retry_budget = upstream::CircuitBreakerThresholds::RetryBudget{20.0, 3};
  t.max_retries = 0;  // replaced by the budget
  upstream::ResourceManager rm(t, store, "cluster.c.circuit_breakers.default.");
  // No load: the floor, min_retry_concurrency.
  EXPECT_EQ(rm.retryLimit(), 3u);
  // 20% of 40 active + 10 pending = 10.
  for (int i = 0; i < 40; ++i) rm.requests().inc();
  for (int i = 0; i < 10; ++i) rm.pendingRequests().inc();
  EXPECT_EQ(rm.retryLimit(), 10u);
  for (int i = 0; i < 9; ++i) rm.retries().inc();
  EXPECT_TRUE(rm.canRetry());
  rm.retries().inc();
  EXPECT_FALSE(rm.canRetry());
  // 20% of 14 = 2.8: the floor of 3 wins again.
  for (int i = 0; i < 36; ++i) rm.requests().dec();
  EXPECT_EQ(rm.retryLimit(), 3u);
}

TEST(ResourceManagerTest, CountsOpenAndRemaining) {
  stats::Store store;
  upstream::CircuitBreakerThresholds t;
  t.max_requests = 2;
  t.track_remaining = true;
  const std::string p = "cluster.c.circuit_breakers.default.";
  upstream::ResourceManager rm(t, store, p);
  EXPECT_EQ(store.gauge(p + "remaining_rq").value(), 2u);
  EXPECT_EQ(store.gauge(p + "remaining_pending").value(), 1024u);
  EXPECT_EQ(store.gauge(p + "remaining_retries").value(), 3u);
  rm.requests().inc();
  EXPECT_TRUE(rm.requests().canCreate());
  EXPECT_EQ(store.gauge(p + "rq_open").value(), 0u);
  rm.requests().inc();
  EXPECT_FALSE(rm.requests().canCreate());
  EXPECT_EQ(store.gauge(p + "rq_open").value(), 1u);
  EXPECT_EQ(store.gauge(p + "remaining_rq").value(), 0u);
  rm.requests().dec();
  EXPECT_TRUE(rm.requests().canCreate());
  EXPECT_EQ(store.gauge(p + "rq_open").value(), 0u);
  EXPECT_EQ(store.gauge(p + "remaining_rq").value(), 1u);
}

TEST(ResourceManagerTest, OpenGaugeIsWrittenOnlyWhenTheLimitIsCrossed) {
  stats::Store store;
  upstream::CircuitBreakerThresholds t;
  t.max_requests = 3;
  const std::string p = "cluster.c.circuit_breakers.default.";
  upstream::ResourceManager rm(t, store, p);
  stats::Gauge& open = store.gauge(p + "rq_open");
  // A marker: a request below the limit must not store the (shared) gauge.
  open.set(7);
  rm.requests().inc();
  rm.requests().inc();
  rm.requests().dec();
  EXPECT_EQ(open.value(), 7u);
  rm.requests().inc();
  rm.requests().inc();  // 3: at the limit
  EXPECT_EQ(open.value(), 1u);
  rm.requests().inc();  // past it (a race between workers): still open
  rm.requests().dec();
  EXPECT_EQ(open.value(), 1u);
  rm.requests().dec();  // 2: below
  EXPECT_EQ(open.value(), 0u);
}

TEST(ResourceManagerTest, SharedAcrossThreads) {
  stats::Store store;
  upstream::CircuitBreakerThresholds t;
  upstream::ResourceManager rm(t, store, "cluster.c.circuit_breakers.default.");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&rm] {
      for (int j = 0; j < 10000; ++j) {
        rm.connections().inc();
        rm.connections().dec();
        rm.connections().inc();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(rm.connections().count(), 40000u);
}

TEST(ShadowHostTest, AppendsBeforeThePort) {
  EXPECT_EQ(shadowHost("foo.com"), "foo.com-shadow");
  EXPECT_EQ(shadowHost("foo.com:8080"), "foo.com-shadow:8080");
  EXPECT_EQ(shadowHost("[::1]:80"), "[::1]-shadow:80");
  EXPECT_EQ(shadowHost("[::1]"), "[::1]-shadow");
}

}  // namespace
}  // namespace sluice::router
