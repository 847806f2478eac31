#include "event/simulated_time_system.h"

#include "common/assert.h"
#include "event/libevent.h"

namespace sluice::event {

class SimulatedTimer : public Timer {
 public:
  SimulatedTimer(SimulatedTimeSystem& ts, event_base* base, TimerCb cb)
      : ts_(ts), cb_(std::move(cb)) {
    ev_.reset(event_new(base, -1, 0, &SimulatedTimer::onActivated, this));
  }
  ~SimulatedTimer() override {
    std::lock_guard lock(ts_.mutex_);
    disarmLocked();
    // After this no thread can activate the event; freeing it drops a pending activation.
  }

  void enableTimer(std::chrono::milliseconds d) override { arm(d); }
  void enableHRTimer(std::chrono::microseconds d) override { arm(d); }
  void disableTimer() override {
    std::lock_guard lock(ts_.mutex_);
    disarmLocked();
  }
  bool enabled() override {
    std::lock_guard lock(ts_.mutex_);
    return armed_ || activated_;
  }

  // In the delay's own unit, as the real timer: deadlineAfter() saturates it.
  template <class D>
  void arm(D d) {
    std::lock_guard lock(ts_.mutex_);
    disarmLocked();
    if (d <= D::zero()) {
      activateLocked();
      return;
    }
    key_ = {deadlineAfter(ts_.monotonic_now_, d), ts_.sequence_++};
    ts_.armed_.emplace(key_, this);
    armed_ = true;
  }

  // With ts_.mutex_ held.
  void activateLocked() {
    armed_ = false;
    activated_ = true;
    event_active(ev_.get(), EV_TIMEOUT, 0);
  }

 private:
  void disarmLocked() {
    if (armed_) {
      ts_.armed_.erase(key_);
      armed_ = false;
    }
    if (activated_) {
      activated_ = false;
      event_del(ev_.get());
    }
  }

  static void onActivated(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<SimulatedTimer*>(arg);
    {
      std::lock_guard lock(self->ts_.mutex_);
      if (!self->activated_) return;  // disabled after it fell due
      self->activated_ = false;
    }
    self->cb_();
  }

  SimulatedTimeSystem& ts_;
  TimerCb cb_;
  libevent::EventPtr ev_;
  SimulatedTimeSystem::Key key_;
  bool armed_{false};      // in ts_.armed_; guarded by ts_.mutex_
  bool activated_{false};  // fell due, callback not yet run; guarded by ts_.mutex_
};

SimulatedTimeSystem::SimulatedTimeSystem()
    // Start well away from the epoch so that "now - something" never underflows.
    : monotonic_now_(MonotonicTime(std::chrono::hours(1000))),
      system_start_(std::chrono::system_clock::now()),
      monotonic_start_(monotonic_now_) {
  libevent::global();
}

SimulatedTimeSystem::~SimulatedTimeSystem() {
  SLUICE_ASSERT(armed_.empty(), "timers outlived their simulated time system");
}

SystemTime SimulatedTimeSystem::systemTime() {
  std::lock_guard lock(mutex_);
  return system_start_ +
         std::chrono::duration_cast<SystemTime::duration>(monotonic_now_ - monotonic_start_);
}

MonotonicTime SimulatedTimeSystem::monotonicTime() {
  std::lock_guard lock(mutex_);
  return monotonic_now_;
}

TimerPtr SimulatedTimeSystem::createTimer(event_base* base, TimerQueue&, TimerCb cb) {
  return std::make_unique<SimulatedTimer>(*this, base, std::move(cb));
}

bool SimulatedTimeSystem::fireNext(MonotonicTime limit) {
  std::lock_guard lock(mutex_);
  // max() is "never" (deadlineAfter()), even for an advance that saturates to it.
  if (armed_.empty() || armed_.begin()->first.first > limit ||
      armed_.begin()->first.first == MonotonicTime::max()) {
    return false;
  }
  auto it = armed_.begin();
  SimulatedTimer* timer = it->second;
  if (it->first.first > monotonic_now_) monotonic_now_ = it->first.first;
  armed_.erase(it);
  timer->activateLocked();
  return true;
}

void SimulatedTimeSystem::advanceTimeAndRun(std::chrono::nanoseconds d, Dispatcher& dispatcher,
                                            Dispatcher::RunType type) {
  MonotonicTime limit;
  {
    std::lock_guard lock(mutex_);
    limit = deadlineAfter(monotonic_now_, d);
  }
  dispatcher.run(type);
  while (fireNext(limit)) {
    dispatcher.run(type);
  }
  {
    std::lock_guard lock(mutex_);
    if (monotonic_now_ < limit) monotonic_now_ = limit;
  }
  dispatcher.run(type);
}

void SimulatedTimeSystem::advanceTimeAsync(std::chrono::nanoseconds d) {
  MonotonicTime limit;
  {
    std::lock_guard lock(mutex_);
    limit = deadlineAfter(monotonic_now_, d);
  }
  while (fireNext(limit)) {
  }
  std::lock_guard lock(mutex_);
  if (monotonic_now_ < limit) monotonic_now_ = limit;
}

size_t SimulatedTimeSystem::pendingTimers() {
  std::lock_guard lock(mutex_);
  return armed_.size();
}

}  // namespace sluice::event
