#include "event/real_time_system.h"

#include "event/libevent.h"

namespace sluice::event {
namespace {

class RealTimer : public Timer {
 public:
  RealTimer(event_base* base, TimerCb cb) : cb_(std::move(cb)) {
    ev_.reset(event_new(base, -1, 0, &RealTimer::fire, this));
  }
  void enableTimer(std::chrono::milliseconds d) override {
    enableHRTimer(std::chrono::duration_cast<std::chrono::microseconds>(d));
  }
  void enableHRTimer(std::chrono::microseconds d) override {
    event_del(ev_.get());
    if (d.count() <= 0) {
      event_active(ev_.get(), EV_TIMEOUT, 0);
      return;
    }
    timeval tv;
    tv.tv_sec = d.count() / 1000000;
    tv.tv_usec = d.count() % 1000000;
    event_add(ev_.get(), &tv);
  }
  void disableTimer() override { event_del(ev_.get()); }
  bool enabled() override { return event_pending(ev_.get(), EV_TIMEOUT, nullptr) != 0; }

 private:
  static void fire(evutil_socket_t, short, void* arg) { static_cast<RealTimer*>(arg)->cb_(); }

  TimerCb cb_;
  libevent::EventPtr ev_;
};

}  // namespace

TimerPtr RealTimeSystem::createTimer(event_base* base, TimerCb cb) {
  return std::make_unique<RealTimer>(base, std::move(cb));
}

}  // namespace sluice::event
