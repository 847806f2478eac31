#include "event/timer_queue.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/assert.h"

namespace sluice::event {

TimerQueue::TimerQueue(event_base* base) {
  fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  SLUICE_RELEASE_ASSERT(fd_ >= 0, "timerfd_create() failed");
  event_assign(&ev_, base, fd_, EV_READ | EV_PERSIST, &TimerQueue::onReadable, this);
}

TimerQueue::~TimerQueue() {
  if (added_) event_del(&ev_);
  for (Entry* e : heap_) e->index_ = Entry::kNotArmed;
  ::close(fd_);
}

void TimerQueue::arm(Entry& entry, MonotonicTime deadline) {
  if (entry.armed()) remove(entry);
  entry.deadline_ = deadline;
  entry.sequence_ = ++sequence_;
  heap_.push_back(&entry);
  entry.index_ = heap_.size() - 1;
  siftUp(entry.index_);
  if (!added_) {
    event_add(&ev_, nullptr);
    added_ = true;
  }
  if (deadline < fd_deadline_) setFd(deadline);
}

void TimerQueue::disarm(Entry& entry) {
  if (!entry.armed()) return;
  remove(entry);
  // The timerfd stays set: if it comes before the next deadline it wakes the loop once for
  // nothing, which is cheaper than a system call at every disarm. An empty queue takes its
  // event out, so that a loop run until nothing is pending can end.
  if (heap_.empty() && added_) {
    event_del(&ev_);
    added_ = false;
  }
}

void TimerQueue::remove(Entry& entry) {
  const size_t i = entry.index_;
  entry.index_ = Entry::kNotArmed;
  Entry* last = heap_.back();
  heap_.pop_back();
  if (last == &entry) return;
  place(last, i);
  if (i > 0 && before(last, heap_[(i - 1) / 2])) {
    siftUp(i);
  } else {
    siftDown(i);
  }
}

void TimerQueue::siftUp(size_t i) {
  Entry* e = heap_[i];
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!before(e, heap_[parent])) break;
    place(heap_[parent], i);
    i = parent;
  }
  place(e, i);
}

void TimerQueue::siftDown(size_t i) {
  Entry* e = heap_[i];
  const size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
    if (!before(heap_[child], e)) break;
    place(heap_[child], i);
    i = child;
  }
  place(e, i);
}

void TimerQueue::setFd(MonotonicTime deadline) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      deadline.time_since_epoch())
                      .count();
  itimerspec spec{};
  // An absolute time on CLOCK_MONOTONIC, the clock steady_clock reads; 0 would disarm it, so
  // a deadline at or before the epoch becomes its first nanosecond (long past: fires at once).
  spec.it_value.tv_sec = ns > 0 ? ns / 1000000000 : 0;
  spec.it_value.tv_nsec = ns > 0 ? ns % 1000000000 : 1;
  const int rc = ::timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  SLUICE_RELEASE_ASSERT(rc == 0, "timerfd_settime() failed");
  fd_deadline_ = deadline;
  ++fd_sets_;
}

void TimerQueue::onReadable(evutil_socket_t fd, short, void* arg) {
  uint64_t expirations;
  const ssize_t n = ::read(fd, &expirations, sizeof(expirations));
  (void)n;  // EAGAIN: set again for later since it became readable
  static_cast<TimerQueue*>(arg)->runDue();
}

void TimerQueue::runDue() {
  // A one-shot timerfd that expired is no longer set; if it was set again since, for a later
  // time, the read found nothing to clear and it still is: setting it once more is harmless.
  fd_deadline_ = MonotonicTime::max();
  const MonotonicTime now = std::chrono::steady_clock::now();
  // Timers armed from these callbacks have deadlines after `now`: they wait for a later pass.
  while (!heap_.empty() && heap_.front()->deadline_ <= now) {
    Entry* e = heap_.front();
    remove(*e);
    e->onDeadline();
  }
  if (heap_.empty()) {
    if (added_) {
      event_del(&ev_);
      added_ = false;
    }
    return;
  }
  // A callback may have set it for the new earliest already.
  if (heap_.front()->deadline_ < fd_deadline_) setFd(heap_.front()->deadline_);
}

}  // namespace sluice::event
