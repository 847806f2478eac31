#include "event/watchdog.h"

#include <algorithm>

#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::event {

struct Watchdog::Watched {
  Dispatcher* dispatcher;
  stats::Counter* miss;
  stats::Counter* mega_miss;
  std::atomic<int64_t> last_touch_ns{0};
  TimerPtr touch_timer;  // lives on dispatcher's thread
  // Checker-thread state.
  int64_t seen_touch_ns{0};
  bool missed{false};
  bool mega_missed{false};
};

namespace {
int64_t nanos(MonotonicTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

Watchdog::Watchdog(Dispatcher& checker, stats::Store& stats, Config config)
    : checker_(checker),
      stats_(stats),
      config_(config),
      miss_(stats.counter("server.watchdog_miss")),
      mega_miss_(stats.counter("server.watchdog_mega_miss")) {
  check_timer_ = checker_.createTimer([this] {
    check();
    check_timer_->enableTimer(config_.miss_timeout / 2);
  });
  check_timer_->enableTimer(config_.miss_timeout / 2);
}

Watchdog::~Watchdog() = default;

void Watchdog::watch(Dispatcher& d) {
  auto w = std::make_shared<Watched>();
  w->dispatcher = &d;
  w->miss = &stats_.counter(d.name() + ".watchdog_miss");
  w->mega_miss = &stats_.counter(d.name() + ".watchdog_mega_miss");
  w->last_touch_ns = nanos(d.timeSource().monotonicTime());
  w->seen_touch_ns = w->last_touch_ns;
  {
    std::lock_guard lock(mutex_);
    watched_.push_back(w);
  }
  const auto interval = config_.miss_timeout / 4;
  d.post([w, interval] {
    Watched* raw = w.get();
    raw->touch_timer = raw->dispatcher->createTimer([raw, interval] {
      raw->last_touch_ns.store(nanos(raw->dispatcher->timeSource().monotonicTime()),
                               std::memory_order_relaxed);
      raw->touch_timer->enableTimer(interval);
    });
    raw->touch_timer->enableTimer(interval);
  });
}

void Watchdog::unwatch(Dispatcher& d) {
  std::shared_ptr<Watched> w;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(watched_.begin(), watched_.end(),
                           [&](const auto& x) { return x->dispatcher == &d; });
    if (it == watched_.end()) return;
    w = *it;
    watched_.erase(it);
  }
  w->touch_timer.reset();
}

void Watchdog::check() {
  const int64_t now = nanos(checker_.timeSource().monotonicTime());
  std::lock_guard lock(mutex_);
  for (auto& w : watched_) {
    const int64_t touched = w->last_touch_ns.load(std::memory_order_relaxed);
    if (touched != w->seen_touch_ns) {
      // It came back to its loop: a new stall counts again.
      w->seen_touch_ns = touched;
      w->missed = w->mega_missed = false;
    }
    const auto stalled = std::chrono::nanoseconds(now - touched);
    if (!w->missed && stalled > config_.miss_timeout) {
      w->missed = true;
      miss_.inc();
      w->miss->inc();
      SLUICE_LOG(warn, watchdog, "dispatcher '{}' has not returned to its loop for {} ms",
                 w->dispatcher->name(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count());
    }
    if (!w->mega_missed && stalled > config_.megamiss_timeout) {
      w->mega_missed = true;
      mega_miss_.inc();
      w->mega_miss->inc();
      SLUICE_LOG(err, watchdog, "dispatcher '{}' is stuck: no return to its loop for {} ms",
                 w->dispatcher->name(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count());
    }
  }
}

}  // namespace sluice::event
