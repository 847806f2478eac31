#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "event/watchdog.h"
#include "stats/stats.h"

namespace sluice::event {
namespace {

using std::chrono::milliseconds;

// A worker dispatcher on its own thread, on simulated time; the watchdog checks from the
// test thread's dispatcher.
class WatchdogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    worker_thread_ = std::thread([this] { worker_.run(Dispatcher::RunType::RunUntilExit); });
    watchdog_ = std::make_unique<Watchdog>(main_, stats_, Watchdog::Config{});
    watchdog_->watch(worker_);
    sync();  // the touch timer now exists on the worker
  }
  void TearDown() override {
    runOnWorker([this] { watchdog_->unwatch(worker_); });
    worker_.exit();
    worker_thread_.join();
  }

  // Runs fn on the worker and waits until it has run.
  void runOnWorker(std::function<void()> fn) {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    worker_.post([&] {
      fn();
      std::lock_guard lock(m);
      done = true;
      cv.notify_one();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
  }
  void sync() {
    runOnWorker([] {});
  }

  // Advances time in small steps, letting the worker run its due touch timers each step.
  void advanceHealthy(milliseconds total) {
    for (milliseconds done{0}; done < total; done += milliseconds(10)) {
      time_.advanceTimeAsync(milliseconds(10));
      sync();
      time_.advanceTimeAndRun(milliseconds(0), main_);
    }
  }

  uint64_t misses() { return stats_.counter("server.watchdog_miss").value(); }
  uint64_t megaMisses() { return stats_.counter("server.watchdog_mega_miss").value(); }

  SimulatedTimeSystem time_;
  stats::Store stats_;
  DispatcherImpl main_{"main_thread", time_};
  DispatcherImpl worker_{"worker_0", time_};
  std::thread worker_thread_;
  std::unique_ptr<Watchdog> watchdog_;
};

TEST_F(WatchdogTest, AHealthyWorkerIsNeverReported) {
  advanceHealthy(milliseconds(3000));
  EXPECT_EQ(misses(), 0u);
  EXPECT_EQ(megaMisses(), 0u);
}

TEST_F(WatchdogTest, AStuckWorkerIsReportedOncePerStallAndRecovers) {
  // The worker blocks inside a callback until released.
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  std::atomic<bool> blocked{false};
  worker_.post([&] {
    blocked = true;
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return release; });
  });
  while (!blocked) std::this_thread::yield();

  // 10 ms steps: checks run on main; the worker cannot touch.
  for (int i = 0; i < 30; ++i) time_.advanceTimeAndRun(milliseconds(10), main_);
  EXPECT_EQ(misses(), 1u);  // 300 ms > 200 ms, counted once
  EXPECT_EQ(stats_.counter("worker_0.watchdog_miss").value(), 1u);
  EXPECT_EQ(megaMisses(), 0u);
  for (int i = 0; i < 100; ++i) time_.advanceTimeAndRun(milliseconds(10), main_);
  EXPECT_EQ(misses(), 1u);
  EXPECT_EQ(megaMisses(), 1u);  // 1.3 s > 1 s

  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_one();
  advanceHealthy(milliseconds(500));
  EXPECT_EQ(misses(), 1u);  // back to health: nothing new
  EXPECT_EQ(megaMisses(), 1u);
}

}  // namespace
}  // namespace sluice::event
