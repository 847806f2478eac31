#pragma once

// The watchdog: makes a stuck dispatcher visible. Each watched dispatcher touches its mark
// from a timer on its own loop; the watchdog checks the marks from another dispatcher (its
// own thread in the server). A dispatcher that has not come back to its loop for
// `miss_timeout` counts `server.watchdog_miss` and `<name>.watchdog_miss` and logs a warning;
// past `megamiss_timeout`, `server.watchdog_mega_miss` and an error. Each is counted once per
// stall.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "event/dispatcher.h"

namespace sluice::stats {
class Store;
class Counter;
}  // namespace sluice::stats

namespace sluice::event {

class Watchdog {
 public:
  struct Config {
    std::chrono::milliseconds miss_timeout{200};      // Envoy's default
    std::chrono::milliseconds megamiss_timeout{1000}; // Envoy's default
  };

  // Checks run on `checker`, which must outlive this.
  Watchdog(Dispatcher& checker, stats::Store& stats, Config config);
  ~Watchdog();

  // Starts watching `d`. Thread-safe; the touch timer is made on d's thread (by post()), so
  // call unwatch() before d is destroyed.
  void watch(Dispatcher& d);
  // Stops watching `d`; call on d's thread, or after d's thread has stopped running it (it
  // destroys d's touch timer).
  void unwatch(Dispatcher& d);

 private:
  struct Watched;
  void check();

  Dispatcher& checker_;
  stats::Store& stats_;
  const Config config_;
  stats::Counter& miss_;
  stats::Counter& mega_miss_;
  TimerPtr check_timer_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<Watched>> watched_;  // guarded by mutex_
};

}  // namespace sluice::event
