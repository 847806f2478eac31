#include "event/real_time_system.h"

#include <event2/event_struct.h>

#include "event/libevent.h"

namespace sluice::event {
namespace {

class RealTimer : public Timer {
 public:
  RealTimer(event_base* base, TimerCb cb) : cb_(std::move(cb)) {
    event_assign(&ev_, base, -1, 0, &RealTimer::fire, this);
  }
  ~RealTimer() override { event_del(&ev_); }
  void enableTimer(std::chrono::milliseconds d) override {
    enableHRTimer(std::chrono::duration_cast<std::chrono::microseconds>(d));
  }
  void enableHRTimer(std::chrono::microseconds d) override {
    event_del(&ev_);
    if (d.count() <= 0) {
      event_active(&ev_, EV_TIMEOUT, 0);
      return;
    }
    timeval tv;
    tv.tv_sec = d.count() / 1000000;
    tv.tv_usec = d.count() % 1000000;
    event_add(&ev_, &tv);
  }
  void disableTimer() override { event_del(&ev_); }
  bool enabled() override { return event_pending(&ev_, EV_TIMEOUT, nullptr) != 0; }

 private:
  static void fire(evutil_socket_t, short, void* arg) { static_cast<RealTimer*>(arg)->cb_(); }

  TimerCb cb_;
  // Inside the timer rather than from event_new(): one allocation less for each of the
  // timers a request arms (libevent supports embedding through event_struct.h).
  ::event ev_;
};

}  // namespace

TimerPtr RealTimeSystem::createTimer(event_base* base, TimerCb cb) {
  return std::make_unique<RealTimer>(base, std::move(cb));
}

}  // namespace sluice::event
