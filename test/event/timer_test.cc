#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"

namespace sluice::event {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

class SimulatedTimerTest : public ::testing::Test {
 protected:
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }
  SimulatedTimeSystem time_;
  DispatcherImpl dispatcher_{"test", time_};
};

TEST_F(SimulatedTimerTest, FiresOnlyWhenTimeReachesTheDeadline) {
  int fired = 0;
  auto t = dispatcher_.createTimer([&] { ++fired; });
  t->enableTimer(milliseconds(100));
  EXPECT_TRUE(t->enabled());
  advance(milliseconds(99));
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(t->enabled());
  advance(milliseconds(1));
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t->enabled());
  advance(milliseconds(1000));
  EXPECT_EQ(fired, 1);  // one-shot
}

TEST_F(SimulatedTimerTest, TimersFireInDeadlineOrderAtTheirOwnTime) {
  std::vector<std::pair<int, MonotonicTime>> fired;
  const MonotonicTime start = time_.monotonicTime();
  std::vector<TimerPtr> timers;
  const int delays[] = {50, 10, 30, 20, 40};
  for (int d : delays) {
    timers.push_back(
        dispatcher_.createTimer([&, d] { fired.emplace_back(d, time_.monotonicTime()); }));
    timers.back()->enableTimer(milliseconds(d));
  }
  advance(milliseconds(60));
  ASSERT_EQ(fired.size(), 5u);
  for (size_t i = 0; i < fired.size(); ++i) {
    EXPECT_EQ(fired[i].first, static_cast<int>(10 * (i + 1)));
    // Each callback saw the clock at its own deadline, not at the end of the advance.
    EXPECT_EQ(fired[i].second - start, milliseconds(fired[i].first));
  }
  EXPECT_EQ(time_.monotonicTime() - start, milliseconds(60));
}

TEST_F(SimulatedTimerTest, EqualDeadlinesFireInArmingOrder) {
  std::vector<int> fired;
  auto a = dispatcher_.createTimer([&] { fired.push_back(1); });
  auto b = dispatcher_.createTimer([&] { fired.push_back(2); });
  auto c = dispatcher_.createTimer([&] { fired.push_back(3); });
  b->enableTimer(milliseconds(5));
  c->enableTimer(milliseconds(5));
  a->enableTimer(milliseconds(5));
  advance(milliseconds(5));
  EXPECT_EQ(fired, (std::vector<int>{2, 3, 1}));
}

TEST_F(SimulatedTimerTest, ReEnableFromInsideTheCallbackMakesAPeriodicTimer) {
  std::vector<MonotonicTime> fired;
  const MonotonicTime start = time_.monotonicTime();
  TimerPtr t;
  t = dispatcher_.createTimer([&] {
    fired.push_back(time_.monotonicTime());
    if (fired.size() < 4) t->enableTimer(milliseconds(25));
  });
  t->enableTimer(milliseconds(25));
  advance(milliseconds(1000));  // one advance covers all four periods
  ASSERT_EQ(fired.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(fired[i] - start, milliseconds(25 * (i + 1)));
}

TEST_F(SimulatedTimerTest, DisableFromAnotherCallbackDueAtTheSameTime) {
  int b_fired = 0;
  TimerPtr b = dispatcher_.createTimer([&] { ++b_fired; });
  TimerPtr a = dispatcher_.createTimer([&] { b->disableTimer(); });
  a->enableTimer(milliseconds(10));
  b->enableTimer(milliseconds(10));
  advance(milliseconds(10));
  EXPECT_EQ(b_fired, 0);  // a ran first and disabled b, although b was already due
  EXPECT_FALSE(b->enabled());
}

TEST_F(SimulatedTimerTest, ReEnablePushesTheDeadlineAndDisableCancels) {
  int fired = 0;
  auto t = dispatcher_.createTimer([&] { ++fired; });
  t->enableTimer(milliseconds(10));
  advance(milliseconds(5));
  t->enableTimer(milliseconds(10));  // now due at 15
  advance(milliseconds(9));
  EXPECT_EQ(fired, 0);
  advance(milliseconds(1));
  EXPECT_EQ(fired, 1);
  t->enableTimer(milliseconds(10));
  t->disableTimer();
  advance(milliseconds(100));
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(time_.pendingTimers(), 0u);
}

TEST_F(SimulatedTimerTest, ZeroDurationFiresWithoutTimeMoving) {
  int fired = 0;
  auto t = dispatcher_.createTimer([&] { ++fired; });
  t->enableTimer(milliseconds(0));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(fired, 1);
}

TEST_F(SimulatedTimerTest, MicrosecondTimers) {
  int fired = 0;
  auto t = dispatcher_.createTimer([&] { ++fired; });
  t->enableHRTimer(microseconds(1500));
  advance(milliseconds(1));
  EXPECT_EQ(fired, 0);
  time_.advanceTimeAndRun(microseconds(500), dispatcher_);
  EXPECT_EQ(fired, 1);
}

TEST_F(SimulatedTimerTest, DestroyingAnArmedTimerCancelsIt) {
  int fired = 0;
  auto t = dispatcher_.createTimer([&] { ++fired; });
  t->enableTimer(milliseconds(10));
  t.reset();
  advance(milliseconds(20));
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(time_.pendingTimers(), 0u);
}

TEST_F(SimulatedTimerTest, SystemTimeMovesWithSimulatedTime) {
  const SystemTime before = time_.systemTime();
  advance(milliseconds(1234));
  EXPECT_EQ(time_.systemTime() - before, milliseconds(1234));
}

TEST(SimulatedTimerThreadTest, TimersFireOnTheirDispatchersThread) {
  SimulatedTimeSystem time;
  DispatcherImpl worker("worker", time);
  std::atomic<bool> fired_on_worker{false};
  std::thread::id worker_tid;
  TimerPtr t;
  std::atomic<bool> armed{false};
  worker.post([&] {
    worker_tid = std::this_thread::get_id();
    t = worker.createTimer([&] {
      fired_on_worker = std::this_thread::get_id() == worker_tid;
      worker.exit();
    });
    t->enableTimer(milliseconds(100));
    armed = true;
  });
  std::thread th([&] { worker.run(Dispatcher::RunType::RunUntilExit); });
  while (!armed) std::this_thread::yield();  // wait on the event, not on a clock
  time.advanceTimeAsync(milliseconds(100));
  th.join();
  EXPECT_TRUE(fired_on_worker);
  t.reset();
}

TEST(RealTimerTest, FiresAfterItsDelay) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  const auto start = std::chrono::steady_clock::now();
  auto t = dispatcher.createTimer([&] { dispatcher.exit(); });
  t->enableTimer(milliseconds(20));
  EXPECT_TRUE(t->enabled());
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(20));
  EXPECT_FALSE(t->enabled());
}

}  // namespace
}  // namespace sluice::event
