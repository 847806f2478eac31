#pragma once

// Simulated time for tests: the clock stands still until the test moves it, and timers fire
// in order of their deadlines, each on its own dispatcher's thread. No test sleeps.

#include <map>
#include <mutex>
#include <utility>

#include "event/dispatcher.h"

namespace sluice::event {

class SimulatedTimeSystem : public TimeSystem {
 public:
  SimulatedTimeSystem();
  ~SimulatedTimeSystem() override;

  SystemTime systemTime() override;
  MonotonicTime monotonicTime() override;
  TimerPtr createTimer(event_base* base, TimerQueue& queue, TimerCb cb) override;
  bool activatesTimersFromOtherThreads() const override { return true; }

  // Moves the clock forward by `d` in steps, one per due deadline. After each step the
  // given dispatcher runs (on the calling thread, which must be its thread) so that callbacks
  // at an intermediate time can arm timers that fall due before the end.
  void advanceTimeAndRun(std::chrono::nanoseconds d, Dispatcher& dispatcher,
                         Dispatcher::RunType type = Dispatcher::RunType::NonBlock);
  // Moves the clock forward by `d` and activates every timer that falls due, in deadline
  // order; they run on their dispatchers' threads. Returns without waiting for them.
  void advanceTimeAsync(std::chrono::nanoseconds d);

  // Timers armed and not yet fired (for tests).
  size_t pendingTimers();

 private:
  friend class SimulatedTimer;
  using Key = std::pair<MonotonicTime, uint64_t>;  // deadline, then arming order

  // Pops the earliest timer due at or before `limit`, sets the clock to its deadline and
  // activates it. False when none is due.
  bool fireNext(MonotonicTime limit);

  std::mutex mutex_;
  MonotonicTime monotonic_now_;    // guarded by mutex_
  SystemTime system_start_;        // system time when monotonic_now_ was the start
  MonotonicTime monotonic_start_;
  uint64_t sequence_{0};
  std::map<Key, class SimulatedTimer*> armed_;  // guarded by mutex_
};

}  // namespace sluice::event
