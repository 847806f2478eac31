#pragma once

// A dispatcher's real-time timers, in deadline order, waited for with one timerfd.
//
// libevent's own timers offer a choice of two costs: with its precise clock
// (EVENT_BASE_FLAG_PRECISE_TIMER) its epoll backend calls timerfd_settime() before every
// epoll_wait(), two system calls more per request on a quiet connection; without it the clock
// is CLOCK_MONOTONIC_COARSE, which moves in ticks (4 ms with HZ=250), so a timer runs up to a
// tick early or late. Here the deadlines are on the precise clock (steady_clock, which is
// CLOCK_MONOTONIC) in a binary heap, and the timerfd is set only when the earliest deadline
// comes before the one it is set for: arming a later timer, or disarming one, costs no system
// call. The timerfd is a libevent read event, added while any timer is armed (so the first
// arming into an empty queue, and the disarm that empties it, are an epoll_ctl() each; in the
// server the watchdog's and the uptime timers keep the queues from emptying).
//
// A deadline that has passed fires when the kernel has made the timerfd readable, a few
// microseconds after it: a NonBlock run right at the deadline may not see it yet.

#include <cstdint>
#include <limits>
#include <vector>

#include <event2/event_struct.h>

#include "common/assert.h"
#include "event/time.h"

namespace sluice::event {

class TimerQueue {
 public:
  // What the queue orders: a deadline and what to do at it.
  class Entry {
   public:
    Entry() = default;
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    bool armed() const { return index_ != kNotArmed; }

   protected:
    // Disarm it first: the queue holds a pointer to an armed entry.
    ~Entry() { SLUICE_ASSERT(!armed(), "a TimerQueue entry destroyed while armed"); }
    // The deadline came; the entry is disarmed already and may be armed again from here.
    virtual void onDeadline() = 0;

   private:
    friend class TimerQueue;
    static constexpr size_t kNotArmed = std::numeric_limits<size_t>::max();
    MonotonicTime deadline_{};
    uint64_t sequence_ = 0;  // arming order: equal deadlines fire in it
    size_t index_ = kNotArmed;
  };

  explicit TimerQueue(event_base* base);
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Arms (or re-arms) `entry` for `deadline` on the precise monotonic clock.
  void arm(Entry& entry, MonotonicTime deadline);
  void disarm(Entry& entry);
  size_t size() const { return heap_.size(); }
  // How many times the timerfd was set (for tests: arming a later deadline sets nothing).
  uint64_t fdSets() const { return fd_sets_; }

 private:
  static void onReadable(evutil_socket_t fd, short, void* arg);
  void runDue();
  bool before(const Entry* a, const Entry* b) const {
    return a->deadline_ < b->deadline_ ||
           (a->deadline_ == b->deadline_ && a->sequence_ < b->sequence_);
  }
  void place(Entry* e, size_t i) {
    heap_[i] = e;
    e->index_ = i;
  }
  void siftUp(size_t i);
  void siftDown(size_t i);
  void remove(Entry& entry);
  void setFd(MonotonicTime deadline);

  std::vector<Entry*> heap_;
  uint64_t sequence_ = 0;
  int fd_ = -1;
  ::event ev_;
  bool added_ = false;  // ev_ is added (the queue was not empty)
  // What the timerfd is set for; max() when it is not set (it fired, or was never set).
  MonotonicTime fd_deadline_ = MonotonicTime::max();
  uint64_t fd_sets_ = 0;
};

}  // namespace sluice::event
