#include "event/timer_list.h"

#include "common/assert.h"
#include "event/dispatcher.h"

namespace sluice::event {

void ListTimer::disableListTimer() {
  if (list_ != nullptr) list_->unlink(*this);
}

TimerList::TimerList(Dispatcher& dispatcher, std::chrono::milliseconds duration)
    : dispatcher_(dispatcher), duration_(duration),
      span_(deadlineAfter(MonotonicTime(), duration) - MonotonicTime()),
      latest_start_(MonotonicTime::max() - span_),
      timer_(dispatcher.createTimer([this] { onTimer(); })) {}

TimerList::~TimerList() {
  while (head_ != nullptr) unlink(*head_);
}

void TimerList::enable(ListTimer& timer) {
  SLUICE_ASSERT(dispatcher_.isThreadSafe(), "TimerList::enable() off the dispatcher's thread");
  timer.disableListTimer();
  // deadlineAfter(now, duration_) with its bounds worked out once: a compare and an add.
  const MonotonicTime now = dispatcher_.timeSource().monotonicTime();
  timer.deadline_ = now <= latest_start_ ? now + span_ : MonotonicTime::max();
  timer.list_ = this;
  timer.prev_ = tail_;
  timer.next_ = nullptr;
  if (tail_ != nullptr) {
    tail_->next_ = &timer;
  } else {
    head_ = &timer;
  }
  tail_ = &timer;
  if (!armed_) {
    // Every entry's deadline is at or after this one's: it was armed no earlier.
    armed_ = true;
    timer_->enableTimer(duration_);  // saturating, as the deadline
  }
}

void TimerList::unlink(ListTimer& timer) {
  if (timer.prev_ != nullptr) {
    timer.prev_->next_ = timer.next_;
  } else {
    head_ = timer.next_;
  }
  if (timer.next_ != nullptr) {
    timer.next_->prev_ = timer.prev_;
  } else {
    tail_ = timer.prev_;
  }
  timer.list_ = nullptr;
  timer.prev_ = timer.next_ = nullptr;
}

void TimerList::onTimer() {
  armed_ = false;
  const MonotonicTime now = dispatcher_.timeSource().monotonicTime();
  // A callback may arm, disarm or destroy any entry: take the head afresh each time.
  while (head_ != nullptr && head_->deadline_ <= now) {
    ListTimer& due = *head_;
    unlink(due);
    due.onListTimeout();
  }
  if (head_ != nullptr) {
    // The real timer fired before the head's deadline (it was armed for an earlier entry
    // since disarmed): wait for the rest.
    armed_ = true;
    timer_->enableHRTimer(std::chrono::ceil<std::chrono::microseconds>(
        head_->deadline_ - dispatcher_.timeSource().monotonicTime()));
  }
}

}  // namespace sluice::event
