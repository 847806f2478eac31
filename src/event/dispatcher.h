#pragma once

// The Dispatcher: one event loop per thread (libevent underneath). Every object that does
// I/O or waits belongs to one dispatcher and is touched only on its thread; the only
// thread-safe entry points are post() and exit().

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "event/time.h"

namespace sluice::event {

class TimerList;

enum class FileTriggerType { Level, Edge };

// Bits of a file event's interest and readiness.
struct FileReadyType {
  static constexpr uint32_t Read = 0x1;
  static constexpr uint32_t Write = 0x2;
  // The peer closed its side (EPOLLRDHUP); reported with Read.
  static constexpr uint32_t Closed = 0x4;
};

using FileReadyCb = std::function<void(uint32_t events)>;

// Interest in one fd. Destroying it removes the interest (the fd itself is not closed).
class FileEvent {
 public:
  virtual ~FileEvent() = default;
  // Runs the callback with these events on the next loop iteration, as if the fd were ready.
  virtual void activate(uint32_t events) = 0;
  // Replaces the interest set.
  virtual void setEnabled(uint32_t events) = 0;
};
using FileEventPtr = std::unique_ptr<FileEvent>;

using SignalCb = std::function<void()>;
class SignalEvent {
 public:
  virtual ~SignalEvent() = default;
};
using SignalEventPtr = std::unique_ptr<SignalEvent>;

// An object whose destruction must wait until the callback that released it has returned.
class DeferredDeletable {
 public:
  virtual ~DeferredDeletable() = default;
  // Called when it is handed to deferredDelete(), before the dispatcher owns it.
  virtual void deleteIsPending() {}
};
using DeferredDeletablePtr = std::unique_ptr<DeferredDeletable>;

using PostCb = std::function<void()>;

class Dispatcher {
 public:
  enum class RunType {
    Block,         // run until no events are pending (or exit())
    NonBlock,      // run what is ready now (and what that activates), then return
    RunUntilExit,  // run until exit(), even with nothing to do
  };

  virtual ~Dispatcher() = default;

  virtual const std::string& name() const = 0;
  virtual TimeSource& timeSource() = 0;

  // `events` is a mask of FileReadyType; Edge trigger reports a readiness once until the
  // fd is drained (EAGAIN), Level reports it on every iteration while it lasts.
  virtual FileEventPtr createFileEvent(int fd, FileReadyCb cb, FileTriggerType trigger,
                                       uint32_t events) = 0;
  virtual TimerPtr createTimer(TimerCb cb) = 0;
  // The dispatcher's list of timers of this duration (event/timer_list.h), made on first use
  // and kept for the dispatcher's life: many timers of one length on a single Timer.
  virtual TimerList& timerList(std::chrono::milliseconds duration) = 0;
  // Signals are process-wide: listen for each on one dispatcher only (the main thread's).
  virtual SignalEventPtr listenForSignal(int signal_num, SignalCb cb) = 0;

  // Thread-safe. Runs cb on this dispatcher's thread, waking the loop if it sleeps.
  // Callbacks posted from one thread run in the order they were posted.
  virtual void post(PostCb cb) = 0;

  // Destroys the object after the current callback returns, in FIFO order.
  virtual void deferredDelete(DeferredDeletablePtr&& to_delete) = 0;
  virtual void clearDeferredDeleteList() = 0;

  virtual void run(RunType type) = 0;
  // Thread-safe. Makes run() return after the current callback.
  virtual void exit() = 0;

  // True on the thread that runs this dispatcher (or on any thread before run() started).
  virtual bool isThreadSafe() const = 0;

  // The time at the start of the current callback (refreshed at each file event, timer and
  // posted callback, and when run() starts): cheap, for per-event bookkeeping and a stream's
  // timestamps (a clock read each would cost more than the precision they gain). Deadlines
  // read the real clock.
  virtual MonotonicTime approximateMonotonicTime() const = 0;
  virtual void updateApproximateMonotonicTime() = 0;
};
using DispatcherPtr = std::unique_ptr<Dispatcher>;

}  // namespace sluice::event
