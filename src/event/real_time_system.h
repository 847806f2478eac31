#pragma once

#include "event/time.h"

namespace sluice::event {

// Wall-clock and steady time from the OS; timers are deadlines in the dispatcher's
// TimerQueue (timer_queue.h), on the steady clock.
class RealTimeSystem : public TimeSystem {
 public:
  SystemTime systemTime() override { return std::chrono::system_clock::now(); }
  MonotonicTime monotonicTime() override { return std::chrono::steady_clock::now(); }
  TimerPtr createTimer(event_base* base, TimerQueue& queue, TimerCb cb) override;
};

}  // namespace sluice::event
