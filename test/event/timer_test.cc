#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"
#include "event/timer_queue.h"

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

// The simulated clock saturates as the real one does: a delay past the 64-bit nanosecond
// clock's end (a proto Duration of 10,000 years, a grpc-timeout of 99999999 hours) is never.
TEST_F(SimulatedTimerTest, AnEndlessDelayNeverFires) {
  int endless = 0, soon = 0;
  std::vector<TimerPtr> timers;
  for (int i = 0; i < 4; ++i) timers.push_back(dispatcher_.createTimer([&] { ++endless; }));
  timers[0]->enableTimer(std::chrono::duration_cast<milliseconds>(std::chrono::hours(99999999)));
  timers[1]->enableTimer(std::chrono::seconds(315576000000));  // Duration's maximum
  timers[2]->enableTimer(milliseconds::max());
  timers[3]->enableHRTimer(microseconds::max());
  auto t = dispatcher_.createTimer([&] { ++soon; });
  t->enableTimer(milliseconds(1));
  advance(std::chrono::hours(24 * 365 * 100));
  EXPECT_EQ(soon, 1);
  EXPECT_EQ(endless, 0);
  for (auto& timer : timers) EXPECT_TRUE(timer->enabled());
  // An advance past the clock's end saturates at "never", which still fires nothing.
  time_.advanceTimeAndRun(std::chrono::nanoseconds::max(), dispatcher_);
  EXPECT_EQ(endless, 0);
  for (auto& timer : timers) EXPECT_TRUE(timer->enabled());
  // A negative delay is due at once.
  t->enableTimer(milliseconds(-5));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(soon, 2);
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

// libevent's clock here is the coarse one (a tick of a few ms), which can run a libevent
// timer before its delay has passed. Timers of every delay from 1 to 40 ms, armed at once
// and again from their own callbacks (so at every phase of the tick), each fire no earlier
// than asked.
TEST(RealTimerTest, NeverFiresEarly) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  constexpr int kTimers = 40;
  constexpr int kShots = 3;
  struct Shot {
    TimerPtr timer;
    std::chrono::steady_clock::time_point armed;
    microseconds delay{};
    int fired = 0;
  };
  std::vector<Shot> shots(kTimers);
  int done = 0;
  int early = 0;
  for (int i = 0; i < kTimers; ++i) {
    Shot& s = shots[i];
    s.delay = microseconds(1000 * (i + 1) - 300 * (i % 3));  // also between whole ms
    s.timer = dispatcher.createTimer([&, i] {
      Shot& me = shots[i];
      if (std::chrono::steady_clock::now() - me.armed < me.delay) ++early;
      if (++me.fired < kShots) {
        me.armed = std::chrono::steady_clock::now();
        me.timer->enableHRTimer(me.delay);
      } else if (++done == kTimers) {
        dispatcher.exit();
      }
    });
    s.armed = std::chrono::steady_clock::now();
    s.timer->enableHRTimer(s.delay);
  }
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_EQ(done, kTimers);
  EXPECT_EQ(early, 0);
}

int timerFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    char target[64];
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t len = readlink(path.c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string(target, len) == "anon_inode:[timerfd]") ++n;
  }
  closedir(d);
  return n;
}

// With libevent's precise clock its epoll backend has a timerfd of its own and sets it before
// every epoll_wait(). The dispatcher's one timerfd is its TimerQueue's.
TEST(RealTimerTest, TheEventBaseHasNoTimerfdOfItsOwn) {
  const int before = timerFds();
  ASSERT_GE(before, 0);
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  EXPECT_EQ(timerFds(), before + 1);
}

// The timerfd is set when the earliest deadline comes sooner than the one it is set for, and
// after it fires for the next one; not when a later timer is armed, nor when one is disarmed,
// nor at loop passes.
TEST(RealTimerTest, TheTimerfdIsSetOnlyForAnEarlierDeadline) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  TimerQueue& queue = dispatcher.timerQueue();
  auto a = dispatcher.createTimer([] {});
  auto b = dispatcher.createTimer([] {});
  auto c = dispatcher.createTimer([] {});
  a->enableTimer(milliseconds(10000));
  EXPECT_EQ(queue.fdSets(), 1u);
  b->enableTimer(milliseconds(20000));
  EXPECT_EQ(queue.fdSets(), 1u);
  c->enableTimer(milliseconds(5000));
  EXPECT_EQ(queue.fdSets(), 2u);
  c->disableTimer();
  EXPECT_FALSE(c->enabled());
  EXPECT_EQ(queue.fdSets(), 2u);
  int passes = 0;
  for (int i = 0; i < 100; ++i) {
    dispatcher.post([&] { ++passes; });
    dispatcher.run(Dispatcher::RunType::NonBlock);
  }
  EXPECT_EQ(passes, 100);
  EXPECT_EQ(queue.fdSets(), 2u);
  bool fired = false;
  auto d = dispatcher.createTimer([&] {
    fired = true;
    dispatcher.exit();
  });
  d->enableTimer(milliseconds(1));
  EXPECT_EQ(queue.fdSets(), 3u);
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_TRUE(fired);
  // Set for d (replacing the 5 s setting), then, after d fired, for a: the earliest left.
  EXPECT_EQ(queue.fdSets(), 4u);
  EXPECT_TRUE(a->enabled());
  EXPECT_TRUE(b->enabled());
  EXPECT_EQ(queue.size(), 2u);
}

// A queue entry that notes its id when its deadline comes.
struct Probe : TimerQueue::Entry {
  Probe(std::vector<int>& out, int id) : out(out), id(id) {}
  void onDeadline() override { out.push_back(id); }
  std::vector<int>& out;
  int id;
};

// Deadlines fire in order whatever order they were armed in, equal ones in arming order; an
// entry disarmed or re-armed from the middle of the heap leaves the rest in order.
TEST(TimerQueueTest, EntriesFireInDeadlineOrder) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  TimerQueue& queue = dispatcher.timerQueue();
  constexpr int kEntries = 60;
  std::vector<int> fired;
  std::vector<std::unique_ptr<Probe>> probes;
  for (int i = 0; i < kEntries; ++i) probes.push_back(std::make_unique<Probe>(fired, i));
  // Entry i is due at t0 + (i / 2) us: pairs share a deadline, all of them past already.
  // Armed in a scrambled order, of each pair the even one first.
  const auto t0 = std::chrono::steady_clock::now() - milliseconds(10);
  for (int k = 0; k < kEntries / 2; ++k) {
    const int pair = (k * 17) % (kEntries / 2);
    for (int i : {2 * pair, 2 * pair + 1}) queue.arm(*probes[i], t0 + microseconds(i / 2));
  }
  // Every fifth disarmed; every seventh (not disarmed) re-armed after all the others.
  std::vector<int> expected;
  for (int i = 0; i < kEntries; i += 5) queue.disarm(*probes[i]);
  for (int i = 0; i < kEntries; ++i) {
    if (i % 5 != 0 && (i < 3 || (i - 3) % 7 != 0)) expected.push_back(i);
  }
  for (int i = 3; i < kEntries; i += 7) {
    if (i % 5 == 0) continue;
    queue.arm(*probes[i], t0 + microseconds(kEntries));
    expected.push_back(i);
  }
  EXPECT_EQ(queue.size(), expected.size());
  dispatcher.run(Dispatcher::RunType::Block);
  EXPECT_EQ(fired, expected);
  EXPECT_EQ(queue.size(), 0u);
  for (const auto& p : probes) EXPECT_FALSE(p->armed());
}

// Removing an entry can move the heap's last entry up, not only down: armed in the order
// 1 10 2 11 12 20 3 (each stays where it lands: 10's children are 11 and 12, 2's are 20 and 3),
// disarming 11 moves 3 into its place under 10, where it must rise above 10 (left below it,
// 10 would reach the top before 3 once 1 and 2 are gone).
TEST(TimerQueueTest, ARemovalThatMovesTheLastEntryUp) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  TimerQueue& queue = dispatcher.timerQueue();
  std::vector<int> fired;
  const auto t0 = std::chrono::steady_clock::now() - milliseconds(10);
  std::vector<std::unique_ptr<Probe>> probes;
  for (int id : {1, 10, 2, 11, 12, 20, 3}) {
    probes.push_back(std::make_unique<Probe>(fired, id));
    queue.arm(*probes.back(), t0 + microseconds(id));
  }
  queue.disarm(*probes[3]);  // 11
  dispatcher.run(Dispatcher::RunType::Block);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3, 10, 12, 20}));
}

// The timerfd left set for a deadline disarmed since wakes the loop for nothing once, and is
// then set for the earliest deadline: both while other timers are armed and when the queue
// had emptied (its event taken out) and the stale setting expired meanwhile.
TEST(RealTimerTest, AStaleTimerfdSettingWakesForNothingAndIsSetAgain) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  TimerQueue& queue = dispatcher.timerQueue();
  int fired = 0;
  std::chrono::steady_clock::time_point armed;
  std::chrono::steady_clock::duration waited{};
  auto a = dispatcher.createTimer([] { ADD_FAILURE() << "a was disarmed"; });
  auto b = dispatcher.createTimer([&] {
    ++fired;
    waited = std::chrono::steady_clock::now() - armed;
    dispatcher.exit();
  });
  // Other timers armed: a's setting (1 ms) stays after a is disarmed; b is due at 50 ms (far
  // enough that the wake for nothing comes first also on a loaded machine under ASan).
  armed = std::chrono::steady_clock::now();
  a->enableTimer(milliseconds(1));
  b->enableTimer(milliseconds(50));
  EXPECT_EQ(queue.fdSets(), 1u);
  a->disableTimer();
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_EQ(fired, 1);
  EXPECT_GE(waited, milliseconds(50));
  EXPECT_EQ(queue.fdSets(), 2u);  // a's, then b's after the wake for nothing
  // The queue empties with a's setting left; it expires while the event is out.
  armed = std::chrono::steady_clock::now();
  a->enableTimer(milliseconds(1));
  EXPECT_EQ(queue.fdSets(), 3u);
  a->disableTimer();
  EXPECT_EQ(queue.size(), 0u);
  while (std::chrono::steady_clock::now() < armed + milliseconds(2)) {
  }
  armed = std::chrono::steady_clock::now();
  b->enableTimer(milliseconds(50));  // later than the stale setting: not set at arming
  EXPECT_EQ(queue.fdSets(), 3u);
  dispatcher.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_EQ(fired, 2);
  EXPECT_GE(waited, milliseconds(50));
  EXPECT_EQ(queue.fdSets(), 4u);
}

// A zero delay (the next loop pass) and a positive one replace each other.
TEST(RealTimerTest, ZeroAndPositiveDelaysReplaceEachOther) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  int fired = 0;
  auto t = dispatcher.createTimer([&] { ++fired; });
  t->enableTimer(milliseconds(0));
  t->enableTimer(milliseconds(60000));
  dispatcher.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(t->enabled());
  EXPECT_EQ(dispatcher.timerQueue().size(), 1u);
  t->enableTimer(milliseconds(0));
  EXPECT_EQ(dispatcher.timerQueue().size(), 0u);
  EXPECT_TRUE(t->enabled());
  dispatcher.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t->enabled());
}

// Delays past the 64-bit nanosecond clock's end (a client's grpc-timeout of 99999999 hours
// with no cap) wait forever: they neither overflow into the past nor set the timerfd.
TEST(RealTimerTest, AnEndlessDelayNeverFires) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  int fired = 0;
  auto hours = dispatcher.createTimer([&] { ++fired; });
  auto millis = dispatcher.createTimer([&] { ++fired; });
  auto micros = dispatcher.createTimer([&] { ++fired; });
  hours->enableTimer(std::chrono::duration_cast<milliseconds>(std::chrono::hours(99999999)));
  millis->enableTimer(milliseconds::max());
  micros->enableHRTimer(microseconds::max());
  for (int i = 0; i < 3; ++i) dispatcher.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(hours->enabled());
  EXPECT_TRUE(millis->enabled());
  EXPECT_TRUE(micros->enabled());
  EXPECT_EQ(dispatcher.timerQueue().fdSets(), 0u);
}

// A timer destroyed while due in the same pass as the one whose callback destroys it does
// not fire; one armed from a callback with no delay fires after it.
TEST(RealTimerTest, ACallbackMayDestroyOrArmOtherTimers) {
  RealTimeSystem time;
  DispatcherImpl dispatcher("test", time);
  std::vector<std::string> fired;
  TimerPtr second = dispatcher.createTimer([&] { fired.push_back("second"); });
  TimerPtr third = dispatcher.createTimer([&] { fired.push_back("third"); });
  TimerPtr first = dispatcher.createTimer([&] {
    fired.push_back("first");
    second.reset();
    third->enableTimer(milliseconds(0));
  });
  first->enableHRTimer(microseconds(500));
  second->enableHRTimer(microseconds(501));
  const auto second_armed = std::chrono::steady_clock::now();
  // Both due before the loop first looks (a wait for the clock itself, not a guess).
  while (std::chrono::steady_clock::now() < second_armed + microseconds(600)) {
  }
  dispatcher.run(Dispatcher::RunType::Block);
  EXPECT_EQ(fired, (std::vector<std::string>{"first", "third"}));
}

}  // namespace
}  // namespace sluice::event
