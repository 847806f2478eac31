#include "event/real_time_system.h"

#include <event2/event_struct.h>

#include "event/libevent.h"
#include "event/timer_queue.h"

namespace sluice::event {
namespace {

// A deadline on the precise monotonic clock in the dispatcher's TimerQueue (see there why not
// a libevent timer). A zero delay is an activation of its own libevent event: it runs in the
// next loop pass, with no system call.
class RealTimer : public Timer, private TimerQueue::Entry {
 public:
  RealTimer(event_base* base, TimerQueue& queue, TimerCb cb)
      : queue_(queue), cb_(std::move(cb)) {
    event_assign(&ev_, base, -1, 0, &RealTimer::fireNow, this);
  }
  ~RealTimer() override { disableTimer(); }
  void enableTimer(std::chrono::milliseconds d) override { arm(d); }
  void enableHRTimer(std::chrono::microseconds d) override { arm(d); }
  void disableTimer() override {
    event_del(&ev_);
    queue_.disarm(*this);
  }
  bool enabled() override {
    return armed() || event_pending(&ev_, EV_TIMEOUT, nullptr) != 0;
  }

 private:
  // In the delay's own unit: deadlineAfter() saturates it without a conversion first.
  template <class D>
  void arm(D d) {
    if (d <= D::zero()) {
      queue_.disarm(*this);
      event_active(&ev_, EV_TIMEOUT, 0);
      return;
    }
    event_del(&ev_);
    // A deadline past the clock's range is max(), which the queue never sets the timerfd for.
    queue_.arm(*this, deadlineAfter(std::chrono::steady_clock::now(), d));
  }
  void onDeadline() override { cb_(); }
  static void fireNow(evutil_socket_t, short, void* arg) { static_cast<RealTimer*>(arg)->cb_(); }

  TimerQueue& queue_;
  TimerCb cb_;
  // Inside the timer rather than from event_new(): one allocation less per timer (libevent
  // supports embedding through event_struct.h).
  ::event ev_;
};

}  // namespace

TimerPtr RealTimeSystem::createTimer(event_base* base, TimerQueue& queue, TimerCb cb) {
  return std::make_unique<RealTimer>(base, queue, std::move(cb));
}

}  // namespace sluice::event
