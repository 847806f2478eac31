#pragma once

// Many one-shot timers of the same duration on one dispatcher, behind a single Timer.
//
// Every connection of a listener has an idle timeout of the same length. A Timer each costs
// a heap block with a libevent event (about 230 bytes per idle connection) and a heap update
// every time a request starts or ends. Timers of one duration armed one after
// another fall due in the order they were armed, so a list kept in arming order is also in
// deadline order: arming appends, disarming unlinks, and only the list's head needs a real
// timer. A ListTimer is embedded in its owner (no allocation) and costs 40 bytes.
//
// The deadline is taken from the time source's monotonic clock when armed, as a Timer's is;
// a ListTimer never fires early. Everything here runs on the dispatcher's thread.

#include <chrono>

#include "event/time.h"

namespace sluice::event {

class Dispatcher;
class TimerList;

// Derive from it and implement onListTimeout(); arm it with TimerList::enable().
class ListTimer {
 public:
  ListTimer() = default;
  ListTimer(const ListTimer&) = delete;
  ListTimer& operator=(const ListTimer&) = delete;

  bool listTimerEnabled() const { return list_ != nullptr; }
  void disableListTimer();

 protected:
  ~ListTimer() { disableListTimer(); }
  // The timer fell due. It is disarmed already; it may be armed again from here.
  virtual void onListTimeout() = 0;

 private:
  friend class TimerList;
  TimerList* list_{nullptr};
  ListTimer* prev_{nullptr};
  ListTimer* next_{nullptr};
  MonotonicTime deadline_{};
};

// Owned by a Dispatcher (Dispatcher::timerList()): one per distinct duration.
class TimerList {
 public:
  TimerList(Dispatcher& dispatcher, std::chrono::milliseconds duration);
  ~TimerList();  // disarms what is still armed
  TimerList(const TimerList&) = delete;
  TimerList& operator=(const TimerList&) = delete;

  std::chrono::milliseconds duration() const { return duration_; }
  // Arms `timer` (re-arms it if armed, here or on another list) to fire after duration().
  void enable(ListTimer& timer);

 private:
  friend class ListTimer;
  void unlink(ListTimer& timer);
  void onTimer();

  Dispatcher& dispatcher_;
  const std::chrono::milliseconds duration_;
  // duration_ in the clock's unit, negative as zero; past the clock's range, max() (see
  // deadlineAfter() in event/time.h): a timer armed at latest_start_ or before falls due at
  // now + span_, one armed later never.
  const MonotonicTime::duration span_;
  const MonotonicTime latest_start_;
  TimerPtr timer_;
  // The real timer is armed for a time at or before the head's deadline whenever the list
  // is not empty. It is left armed when the list empties (it then fires for nothing once),
  // which spares an event_del and event_add per request.
  bool armed_{false};
  ListTimer* head_{nullptr};
  ListTimer* tail_{nullptr};
};

}  // namespace sluice::event
