#pragma once

// Time for everything that waits: timeouts, retries, health checks, the watchdog. Code asks a
// TimeSource, never the clock, so that tests can run on simulated time.

#include <chrono>
#include <functional>
#include <memory>

struct event_base;

namespace sluice::event {

class TimerQueue;

using MonotonicTime = std::chrono::steady_clock::time_point;
using SystemTime = std::chrono::system_clock::time_point;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual SystemTime systemTime() = 0;
  virtual MonotonicTime monotonicTime() = 0;
};

// now + d, clamped to the clock's range: not before now (a negative delay is due at once),
// and MonotonicTime::max() when the sum is past the end of steady_clock's 64-bit nanoseconds
// (about 292 years less the uptime). max() stands for "never", a deadline no timer reaches: a
// proto Duration may be 10,000 years, a client's grpc-timeout 99,999,999 hours. Computed in
// d's own unit first, so that its conversion to nanoseconds cannot overflow. No division: it
// runs whenever a request arms a list timer.
template <class Rep, class Period>
MonotonicTime deadlineAfter(MonotonicTime now, std::chrono::duration<Rep, Period> d) {
  using D = std::chrono::duration<Rep, Period>;
  using Ns = MonotonicTime::duration;
  if (d <= D::zero()) return now;
  constexpr D kMax = std::chrono::duration_cast<D>(Ns::max());
  if (d >= kMax) return MonotonicTime::max();
  const Ns ns = std::chrono::duration_cast<Ns>(d);
  if (ns >= MonotonicTime::max() - now) return MonotonicTime::max();
  return now + ns;
}

using TimerCb = std::function<void()>;

// A one-shot timer owned by its creator and bound to one dispatcher: it fires on that
// dispatcher's thread. Destroying it cancels it.
class Timer {
 public:
  virtual ~Timer() = default;
  // Arms (or re-arms) the timer. A zero or negative delay fires on the next loop iteration; a
  // delay past the clock's range (deadlineAfter() above) never fires.
  virtual void enableTimer(std::chrono::milliseconds d) = 0;
  virtual void enableHRTimer(std::chrono::microseconds d) = 0;
  virtual void disableTimer() = 0;
  virtual bool enabled() = 0;
};
using TimerPtr = std::unique_ptr<Timer>;

// A TimeSource that can also make timers for a dispatcher (its libevent base and its queue of
// real-time deadlines). The real one puts them in the queue, on the precise monotonic clock;
// the simulated one keeps its own clock that tests move forward.
class TimeSystem : public TimeSource {
 public:
  virtual TimerPtr createTimer(event_base* base, TimerQueue& queue, TimerCb cb) = 0;
  // Whether its timers are activated from threads other than their dispatcher's (the
  // simulated clock's advance does that): a dispatcher on such a time system keeps libevent's
  // lock on its event base; otherwise only the dispatcher's thread touches the base.
  virtual bool activatesTimersFromOtherThreads() const { return false; }
};

}  // namespace sluice::event
