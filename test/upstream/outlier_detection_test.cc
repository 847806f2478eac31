// Outlier detection on the simulated clock: results go into the hosts' monitors as a worker
// would report them; the posts and the interval timer run on the test's dispatcher.

#include <chrono>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "stats/stats.h"
#include "upstream/outlier_detection.h"

namespace sluice::upstream {
namespace {

using std::chrono::milliseconds;

class OutlierDetectionTest : public ::testing::Test {
 protected:
  void make(OutlierDetectionConfig cfg, size_t hosts) {
    PrioritySet set;
    set.priorities.resize(1);
    for (size_t i = 0; i < hosts; ++i) {
      std::string error;
      hosts_.push_back(std::make_shared<Host>("c", network::fromIp("127.0.0.1", 1000 + i, &error),
                                              "", 1, 0, Locality{}));
      set.priorities[0].hosts.push_back(hosts_.back());
    }
    detector_ = OutlierDetector::create(
        cfg, dispatcher_, store_, "c", [this] { ++changes_; }, [] { return uint64_t{0}; });
    detector_->setHosts(set);
  }
  void run() { dispatcher_.run(event::Dispatcher::RunType::NonBlock); }
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }
  DetectorHostMonitor& m(size_t i) { return *hosts_[i]->outlierDetector(); }
  bool ejected(size_t i) const { return hosts_[i]->healthFlags() & Host::FailedOutlierCheck; }
  uint64_t counter(const std::string& name) {
    return store_.counter("cluster.c.outlier_detection." + name).value();
  }
  uint64_t active() { return store_.gauge("cluster.c.outlier_detection.ejections_active").value(); }
  // `n` requests with `code` to host i.
  void put(size_t i, uint32_t code, int n) {
    for (int k = 0; k < n; ++k) m(i).putHttpResponseCode(code);
  }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  stats::Store store_;
  std::vector<HostSharedPtr> hosts_;
  OutlierDetectorSharedPtr detector_;
  int changes_{0};
};

OutlierDetectionConfig base() {
  OutlierDetectionConfig c;
  c.interval = milliseconds(1000);
  c.base_ejection_time = milliseconds(10000);
  c.max_ejection_percent = 100;
  c.consecutive_5xx = 3;
  return c;
}

TEST_F(OutlierDetectionTest, ConsecutiveFiveHundredsEject) {
  make(base(), 3);
  put(0, 500, 2);
  run();
  EXPECT_FALSE(ejected(0));
  put(0, 200, 1);  // a success ends the streak
  put(0, 500, 2);
  run();
  EXPECT_FALSE(ejected(0));
  put(0, 500, 1);
  EXPECT_FALSE(ejected(0)) << "the ejection happens on the main thread";
  run();
  EXPECT_TRUE(ejected(0));
  EXPECT_FALSE(ejected(1));
  EXPECT_EQ(changes_, 1);
  EXPECT_EQ(counter("ejections_enforced_total"), 1u);
  EXPECT_EQ(counter("ejections_enforced_consecutive_5xx"), 1u);
  EXPECT_EQ(counter("ejections_detected_consecutive_5xx"), 1u);
  EXPECT_EQ(active(), 1u);
}

TEST_F(OutlierDetectionTest, GatewayFailuresAreNotEnforcedByDefault) {
  auto cfg = base();
  cfg.consecutive_5xx = 100;
  cfg.consecutive_gateway_failure = 2;
  make(cfg, 3);
  put(0, 502, 2);
  run();
  EXPECT_FALSE(ejected(0));
  EXPECT_EQ(counter("ejections_detected_consecutive_gateway_failure"), 1u);
  EXPECT_EQ(counter("ejections_enforced_consecutive_gateway_failure"), 0u);
  // enforcing_consecutive_gateway_failure defaults to 0; at 100 it ejects.
  hosts_.clear();
  cfg.enforcing_consecutive_gateway_failure = 100;
  make(cfg, 3);
  put(1, 503, 1);
  put(1, 504, 1);
  run();
  EXPECT_TRUE(ejected(1));
  EXPECT_EQ(counter("ejections_enforced_consecutive_gateway_failure"), 1u);
}

TEST_F(OutlierDetectionTest, EjectionTimeIsBaseTimesEjectionsCappedAtMax) {
  auto cfg = base();
  cfg.max_ejection_time = milliseconds(25000);
  make(cfg, 3);
  auto ejectHost0 = [&] {
    put(0, 500, 3);
    run();
    ASSERT_TRUE(ejected(0));
  };
  ejectHost0();
  advance(milliseconds(9000));
  EXPECT_TRUE(ejected(0));
  advance(milliseconds(1000));
  EXPECT_FALSE(ejected(0)) << "10 s: base x 1";
  EXPECT_EQ(active(), 0u);
  EXPECT_EQ(changes_, 2);

  ejectHost0();
  advance(milliseconds(19000));
  EXPECT_TRUE(ejected(0));
  advance(milliseconds(1000));
  EXPECT_FALSE(ejected(0)) << "20 s: base x 2";

  ejectHost0();
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 3u);
  advance(milliseconds(24000));
  EXPECT_TRUE(ejected(0));
  advance(milliseconds(1000));
  EXPECT_FALSE(ejected(0)) << "25 s: base x 3 capped at max_ejection_time";
}

TEST_F(OutlierDetectionTest, MultiplierDecaysWhileTheHostStaysIn) {
  // Envoy's code takes one step of the multiplier back per interval the host spends in
  // service (not per base ejection time).
  make(base(), 3);
  put(0, 500, 3);
  run();
  advance(milliseconds(10000));
  ASSERT_FALSE(ejected(0));
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 1u);
  advance(milliseconds(1000));  // one interval in service
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 0u);
  // Two ejections in a row: 10 s, then 20 s; then two intervals bring it back to zero.
  put(0, 500, 3);
  run();
  advance(milliseconds(10000));
  ASSERT_FALSE(ejected(0));
  put(0, 500, 3);
  run();
  ASSERT_TRUE(ejected(0));
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 2u);
  advance(milliseconds(19000));
  EXPECT_TRUE(ejected(0)) << "base x 2";
  advance(milliseconds(1000));
  ASSERT_FALSE(ejected(0));
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 2u);
  advance(milliseconds(1000));
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 1u);
  advance(milliseconds(1000));
  EXPECT_EQ(detector_->ejectionMultiplier(*hosts_[0]), 0u);
}

TEST_F(OutlierDetectionTest, AGatewayVerdictLeavesTheFiveHundredStreakRunning) {
  // consecutive_gateway_failure (2) fires first, detected but not enforced (its default
  // enforcement is 0); the 5xx streak goes on and ejects at its own threshold (3).
  auto cfg = base();
  cfg.consecutive_gateway_failure = 2;
  cfg.consecutive_5xx = 3;
  make(cfg, 3);
  put(0, 502, 2);
  run();
  EXPECT_EQ(counter("ejections_detected_consecutive_gateway_failure"), 1u);
  EXPECT_FALSE(ejected(0));
  put(0, 502, 1);
  run();
  EXPECT_TRUE(ejected(0)) << "the third 5xx in a row";
  EXPECT_EQ(counter("ejections_enforced_consecutive_5xx"), 1u);
}

TEST_F(OutlierDetectionTest, SuccessRateLeavesEjectedHostsOut) {
  auto cfg = base();
  cfg.consecutive_5xx = 3;
  cfg.failure_percentage_threshold = 100;  // failure percentage would not act either way
  make(cfg, 6);
  put(0, 500, 3);
  run();
  ASSERT_TRUE(ejected(0));
  advance(milliseconds(1000));  // a fresh interval
  // Host 0, ejected, still reports failures (requests that were in flight). Left out, the
  // others are 100, 100, 100, 100, 90: 90 is below the threshold. Counted in, host 0's 0%
  // would widen the spread and spare host 5.
  put(0, 500, 100);
  for (size_t i = 1; i < 5; ++i) put(i, 200, 100);
  put(5, 200, 80);
  for (int k = 0; k < 10; ++k) {  // 90 of 100; no 5xx streak to bring consecutive_5xx in
    put(5, 500, 1);
    put(5, 200, 1);
  }
  advance(milliseconds(1000));
  EXPECT_TRUE(ejected(5));
  EXPECT_EQ(counter("ejections_detected_success_rate"), 1u);
}

TEST_F(OutlierDetectionTest, MaxEjectionPercentIsHonoured) {
  auto cfg = base();
  cfg.max_ejection_percent = 20;
  make(cfg, 10);
  for (size_t i = 0; i < 3; ++i) put(i, 500, 3);
  run();
  EXPECT_EQ(active(), 2u);
  EXPECT_TRUE(ejected(0));
  EXPECT_TRUE(ejected(1));
  EXPECT_FALSE(ejected(2));
  EXPECT_EQ(counter("ejections_overflow"), 1u);
  // Detected counts every verdict, the one that overflowed too (as Envoy).
  EXPECT_EQ(counter("ejections_detected_consecutive_5xx"), 3u);
  EXPECT_EQ(counter("ejections_enforced_consecutive_5xx"), 2u);
}

TEST_F(OutlierDetectionTest, DefaultTenPercentOfThreeHostsEjectsNoneUnlessAlwaysEjectOne) {
  auto cfg = base();
  cfg.max_ejection_percent = 10;
  make(cfg, 3);
  put(0, 500, 3);
  run();
  EXPECT_FALSE(ejected(0));
  EXPECT_EQ(counter("ejections_overflow"), 1u);
  hosts_.clear();
  cfg.always_eject_one_host = true;
  make(cfg, 3);
  put(0, 500, 3);
  put(1, 500, 3);
  run();
  EXPECT_TRUE(ejected(0));
  EXPECT_FALSE(ejected(1));
}

TEST_F(OutlierDetectionTest, SuccessRateEjectsBelowMeanMinusStdevFactor) {
  auto cfg = base();
  cfg.consecutive_5xx = 1000;
  make(cfg, 5);
  // Rates 100, 100, 100, 100, 50: mean 90, stdev 20, threshold 90 - 1.9 x 20 = 52.
  for (size_t i = 0; i < 4; ++i) put(i, 200, 100);
  put(4, 200, 50);
  put(4, 500, 50);
  advance(milliseconds(1000));
  EXPECT_TRUE(ejected(4));
  for (size_t i = 0; i < 4; ++i) EXPECT_FALSE(ejected(i));
  EXPECT_EQ(counter("ejections_enforced_success_rate"), 1u);
  EXPECT_EQ(counter("ejections_detected_success_rate"), 1u);
}

TEST_F(OutlierDetectionTest, SuccessRateSparesHostsWithinTheSpread) {
  auto cfg = base();
  cfg.consecutive_5xx = 1000;
  make(cfg, 5);
  // Rates 100, 100, 100, 90, 90: mean 96, stdev 4.9, threshold 86.7: nobody.
  for (size_t i = 0; i < 3; ++i) put(i, 200, 100);
  for (size_t i = 3; i < 5; ++i) {
    put(i, 200, 90);
    put(i, 500, 10);
  }
  advance(milliseconds(1000));
  for (size_t i = 0; i < 5; ++i) EXPECT_FALSE(ejected(i));
  EXPECT_EQ(counter("ejections_detected_success_rate"), 0u);
}

TEST_F(OutlierDetectionTest, SuccessRateNeedsMinimumHostsAndVolume) {
  auto cfg = base();
  cfg.consecutive_5xx = 1000;
  make(cfg, 5);
  for (size_t i = 0; i < 3; ++i) put(i, 200, 100);
  put(3, 200, 99);  // under success_rate_request_volume (100): not counted
  put(4, 500, 100);
  advance(milliseconds(1000));
  EXPECT_FALSE(ejected(4)) << "4 hosts with volume < success_rate_minimum_hosts (5)";
  // The counts start over each interval.
  for (size_t i = 0; i < 4; ++i) put(i, 200, 100);
  put(4, 500, 100);
  advance(milliseconds(1000));
  EXPECT_TRUE(ejected(4));
}

TEST_F(OutlierDetectionTest, FailurePercentage) {
  auto cfg = base();
  cfg.consecutive_5xx = 1000;
  cfg.failure_percentage_threshold = 50;
  cfg.enforcing_failure_percentage = 100;
  cfg.failure_percentage_minimum_hosts = 3;
  cfg.failure_percentage_request_volume = 10;
  cfg.success_rate_minimum_hosts = 100;  // keep success rate out of it
  make(cfg, 3);
  put(0, 200, 10);
  put(1, 200, 6);
  put(1, 500, 4);  // 40%: stays
  put(2, 200, 5);
  put(2, 500, 5);  // 50%: out
  advance(milliseconds(1000));
  EXPECT_FALSE(ejected(1));
  EXPECT_TRUE(ejected(2));
  EXPECT_EQ(counter("ejections_enforced_failure_percentage"), 1u);
}

TEST_F(OutlierDetectionTest, LocalOriginErrorsCountAsFiveHundredsUnlessSplit) {
  make(base(), 3);
  m(0).putResult(LocalOriginResult::ConnectFailed);
  m(0).putResult(LocalOriginResult::Timeout);
  m(0).putResult(LocalOriginResult::Reset);
  run();
  EXPECT_TRUE(ejected(0));
  EXPECT_EQ(counter("ejections_enforced_consecutive_5xx"), 1u);

  hosts_.clear();
  auto cfg = base();
  cfg.split_external_local_origin_errors = true;
  cfg.consecutive_local_origin_failure = 2;
  make(cfg, 3);
  m(0).putResult(LocalOriginResult::ConnectFailed);
  m(0).putResult(LocalOriginResult::ConnectSuccess);  // resets the local streak
  m(0).putResult(LocalOriginResult::ConnectFailed);
  put(0, 500, 2);  // external errors do not add to it
  run();
  EXPECT_FALSE(ejected(0));
  m(0).putResult(LocalOriginResult::Timeout);
  run();
  EXPECT_TRUE(ejected(0));
  EXPECT_EQ(counter("ejections_enforced_consecutive_local_origin_failure"), 1u);
}

TEST_F(OutlierDetectionTest, ActiveHealthCheckSuccessUnejects) {
  make(base(), 3);
  put(0, 500, 3);
  run();
  ASSERT_TRUE(ejected(0));
  detector_->onActiveHealthCheckSuccess(*hosts_[0]);
  EXPECT_FALSE(ejected(0));
  EXPECT_EQ(active(), 0u);
}

TEST_F(OutlierDetectionTest, EnforcementPercentageUsesTheRandomSource) {
  auto cfg = base();
  cfg.enforcing_consecutive_5xx = 30;
  PrioritySet set;
  set.priorities.resize(1);
  std::string error;
  auto h =
      std::make_shared<Host>("c", network::fromIp("127.0.0.1", 1, &error), "", 1, 0, Locality{});
  set.priorities[0].hosts.push_back(h);
  uint64_t next = 30;  // 30 % 100 = 30: not under 30, not enforced
  auto d = OutlierDetector::create(cfg, dispatcher_, store_, "c", nullptr, [&] { return next; });
  d->setHosts(set);
  for (int i = 0; i < 3; ++i) h->outlierDetector()->putHttpResponseCode(500);
  run();
  EXPECT_FALSE(h->healthFlags() & Host::FailedOutlierCheck);
  next = 29;
  for (int i = 0; i < 3; ++i) h->outlierDetector()->putHttpResponseCode(500);
  run();
  EXPECT_TRUE(h->healthFlags() & Host::FailedOutlierCheck);
}

}  // namespace
}  // namespace sluice::upstream
