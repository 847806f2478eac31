#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"
#include "event/timer_list.h"

namespace sluice::event {
namespace {

using std::chrono::milliseconds;

// A ListTimer that records when it fired and runs an optional action.
class Probe : public ListTimer {
 public:
  explicit Probe(TimeSource& time) : time_(time) {}
  ~Probe() = default;
  std::vector<MonotonicTime> fired;
  std::function<void()> on_fire;

 private:
  void onListTimeout() override {
    fired.push_back(time_.monotonicTime());
    if (on_fire) on_fire();
  }
  TimeSource& time_;
};

class TimerListTest : public ::testing::Test {
 protected:
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }
  MonotonicTime at(int ms) { return start_ + milliseconds(ms); }
  SimulatedTimeSystem time_;
  DispatcherImpl dispatcher_{"test", time_};
  MonotonicTime start_ = time_.monotonicTime();
};

TEST_F(TimerListTest, OneListPerDuration) {
  EXPECT_EQ(&dispatcher_.timerList(milliseconds(100)), &dispatcher_.timerList(milliseconds(100)));
  EXPECT_NE(&dispatcher_.timerList(milliseconds(100)), &dispatcher_.timerList(milliseconds(200)));
  EXPECT_EQ(dispatcher_.timerList(milliseconds(200)).duration(), milliseconds(200));
}

TEST_F(TimerListTest, EachFiresAtItsOwnDeadlineNeverEarly) {
  TimerList& list = dispatcher_.timerList(milliseconds(100));
  Probe a(time_), b(time_), c(time_);
  list.enable(a);
  advance(milliseconds(30));
  list.enable(b);
  advance(milliseconds(20));
  list.enable(c);
  EXPECT_TRUE(a.listTimerEnabled());
  advance(milliseconds(49));  // t=99
  EXPECT_TRUE(a.fired.empty());
  advance(milliseconds(1));  // t=100
  ASSERT_EQ(a.fired.size(), 1u);
  EXPECT_EQ(a.fired[0], at(100));
  EXPECT_FALSE(a.listTimerEnabled());
  EXPECT_TRUE(b.fired.empty());
  advance(milliseconds(100));
  ASSERT_EQ(b.fired.size(), 1u);
  ASSERT_EQ(c.fired.size(), 1u);
  EXPECT_EQ(b.fired[0], at(130));
  EXPECT_EQ(c.fired[0], at(150));
  advance(milliseconds(1000));
  EXPECT_EQ(a.fired.size() + b.fired.size() + c.fired.size(), 3u);  // one-shot
}

TEST_F(TimerListTest, ReArmingPushesTheDeadlineAndDisablingCancels) {
  TimerList& list = dispatcher_.timerList(milliseconds(100));
  Probe a(time_), b(time_);
  list.enable(a);
  list.enable(b);
  advance(milliseconds(60));
  list.enable(a);  // now due at 160, behind b
  b.disableListTimer();
  EXPECT_FALSE(b.listTimerEnabled());
  advance(milliseconds(99));  // t=159: the real timer fired at 100 for nothing due
  EXPECT_TRUE(a.fired.empty());
  advance(milliseconds(1));
  ASSERT_EQ(a.fired.size(), 1u);
  EXPECT_EQ(a.fired[0], at(160));
  advance(milliseconds(500));
  EXPECT_TRUE(b.fired.empty());
}

TEST_F(TimerListTest, ACallbackMayReArmItselfAndDisableOrDestroyOthers) {
  TimerList& list = dispatcher_.timerList(milliseconds(10));
  Probe a(time_), b(time_);
  auto c = std::make_unique<Probe>(time_);
  a.on_fire = [&] {
    if (a.fired.size() < 3) list.enable(a);  // periodic
    b.disableListTimer();
    c.reset();
  };
  list.enable(a);
  list.enable(b);  // due at the same time as a, after it
  list.enable(*c);
  advance(milliseconds(100));
  ASSERT_EQ(a.fired.size(), 3u);
  EXPECT_EQ(a.fired[0], at(10));
  EXPECT_EQ(a.fired[1], at(20));
  EXPECT_EQ(a.fired[2], at(30));
  EXPECT_TRUE(b.fired.empty());
}

TEST_F(TimerListTest, DestroyingAnArmedTimerUnlinksIt) {
  TimerList& list = dispatcher_.timerList(milliseconds(10));
  Probe b(time_);
  {
    Probe a(time_);
    list.enable(a);
    list.enable(b);
  }
  advance(milliseconds(10));
  EXPECT_EQ(b.fired.size(), 1u);
}

TEST_F(TimerListTest, ArmedTimersOutliveTheirDispatcherSafely) {
  Probe a(time_);
  {
    DispatcherImpl other("other", time_);
    other.timerList(milliseconds(10)).enable(a);
    EXPECT_TRUE(a.listTimerEnabled());
  }
  EXPECT_FALSE(a.listTimerEnabled());
  a.disableListTimer();  // no list to touch
}

// A duration past the 64-bit nanosecond clock's end (a proto Duration may be 10,000 years,
// e.g. an idle timeout meant as "forever") is never: its deadline does not wrap into the past.
TEST_F(TimerListTest, AnEndlessDurationNeverFires) {
  TimerList& years = dispatcher_.timerList(std::chrono::seconds(315576000000));
  TimerList& most = dispatcher_.timerList(milliseconds::max());
  TimerList& soon = dispatcher_.timerList(milliseconds(100));
  Probe a(time_), b(time_), c(time_);
  years.enable(a);
  most.enable(b);
  soon.enable(c);
  advance(std::chrono::hours(24 * 365 * 100));
  EXPECT_EQ(c.fired.size(), 1u);
  EXPECT_TRUE(a.fired.empty());
  EXPECT_TRUE(b.fired.empty());
  EXPECT_TRUE(a.listTimerEnabled());
  EXPECT_TRUE(b.listTimerEnabled());
  years.enable(a);  // re-armed: still never
  advance(std::chrono::hours(24 * 365 * 100));
  EXPECT_TRUE(a.fired.empty());
}

TEST(TimerListRealTimeTest, AnEndlessDurationNeverFires) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  Probe endless(time), soon(time);
  soon.on_fire = [&] { dispatcher.exit(); };
  dispatcher.timerList(std::chrono::seconds(315576000000)).enable(endless);
  dispatcher.timerList(milliseconds(5)).enable(soon);
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  dispatcher.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(soon.fired.size(), 1u);
  EXPECT_TRUE(endless.fired.empty());
  EXPECT_TRUE(endless.listTimerEnabled());
}

TEST(TimerListRealTimeTest, FiresAfterItsDuration) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  Probe a(time);
  a.on_fire = [&] { dispatcher.exit(); };
  const MonotonicTime start = time.monotonicTime();
  dispatcher.timerList(milliseconds(20)).enable(a);
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  ASSERT_EQ(a.fired.size(), 1u);
  EXPECT_GE(a.fired[0] - start, milliseconds(20));
}

}  // namespace
}  // namespace sluice::event
