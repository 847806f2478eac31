#pragma once

#include <atomic>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "event/dispatcher.h"
#include "event/libevent.h"
#include "event/timer_list.h"

namespace sluice::event {

class TimerQueue;

// The libevent Dispatcher. Construct it on any thread; from the first run() on, it belongs
// to the thread that runs it. Destroy it on that thread (or after run() returned for good),
// after every event, timer and connection made from it.
class DispatcherImpl : public Dispatcher {
 public:
  DispatcherImpl(std::string name, TimeSystem& time_system);
  ~DispatcherImpl() override;

  const std::string& name() const override { return name_; }
  TimeSource& timeSource() override { return time_system_; }
  FileEventPtr createFileEvent(int fd, FileReadyCb cb, FileTriggerType trigger,
                               uint32_t events) override;
  TimerPtr createTimer(TimerCb cb) override;
  TimerList& timerList(std::chrono::milliseconds duration) override;
  SignalEventPtr listenForSignal(int signal_num, SignalCb cb) override;
  void post(PostCb cb) override;
  void deferredDelete(DeferredDeletablePtr&& to_delete) override;
  void clearDeferredDeleteList() override;
  void run(RunType type) override;
  void exit() override;
  bool isThreadSafe() const override;
  MonotonicTime approximateMonotonicTime() const override { return approximate_now_; }
  void updateApproximateMonotonicTime() override;

  event_base* base() { return base_.get(); }
  TimerQueue& timerQueue() { return *timer_queue_; }

 private:
  static void onPost(evutil_socket_t, short, void* arg);
  static void onDeferredDelete(evutil_socket_t, short, void* arg);
  void runPostCallbacks();
  void runUntilNothingPending();

  const std::string name_;
  TimeSystem& time_system_;
  libevent::BasePtr base_;
  // After base_ (its event goes first), before timer_lists_ (their timers are in it).
  std::unique_ptr<TimerQueue> timer_queue_;
  std::atomic<std::thread::id> run_tid_{};

  std::mutex post_lock_;
  std::vector<PostCb> post_callbacks_;  // guarded by post_lock_
  // Another thread's post() wakes the loop through this eventfd (the base has no lock of its
  // own: see the constructor); the loop's own thread activates post_event_ directly.
  int wake_fd_{-1};
  libevent::EventPtr post_event_;

  // Two lists: objects deferred while one is being drained go to the other.
  std::vector<DeferredDeletablePtr> to_delete_1_;
  std::vector<DeferredDeletablePtr> to_delete_2_;
  std::vector<DeferredDeletablePtr>* current_to_delete_;
  bool deferred_deleting_{false};
  libevent::EventPtr deferred_delete_event_;

  MonotonicTime approximate_now_;

  // After base_: their timers go before the base does. By duration in milliseconds: a request
  // looks its route's timeout up here, so the lookup is a hash, not a scan of every list.
  std::unordered_map<int64_t, std::unique_ptr<TimerList>> timer_lists_;
};

}  // namespace sluice::event
