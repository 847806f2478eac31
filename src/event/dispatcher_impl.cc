#include "event/dispatcher_impl.h"

#include <event2/event_struct.h>
#include <event2/thread.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "common/assert.h"
#include "common/logger.h"
#include "event/file_event.h"
#include "event/timer_queue.h"

namespace sluice::event {

namespace libevent {
void global() {
  static const bool done = [] {
    evthread_use_pthreads();
    return true;
  }();
  (void)done;
}
}  // namespace libevent

namespace {

uint32_t toReadyMask(short what) {
  uint32_t events = 0;
  if (what & EV_READ) events |= FileReadyType::Read;
  if (what & EV_WRITE) events |= FileReadyType::Write;
  if (what & EV_CLOSED) events |= FileReadyType::Closed;
  return events;
}

// The libevent flags of a FileReadyType mask (what an event waits for, or what it reports).
short toLibeventResult(uint32_t events) {
  short what = 0;
  if (events & FileReadyType::Read) what |= EV_READ;
  if (events & FileReadyType::Write) what |= EV_WRITE;
  if (events & FileReadyType::Closed) what |= EV_CLOSED;
  return what;
}

short toLibeventFlags(uint32_t events, FileTriggerType trigger) {
  short flags = static_cast<short>(EV_PERSIST | toLibeventResult(events));
  if (trigger == FileTriggerType::Edge) flags |= EV_ET;
  return flags;
}

// The heap form, for owners that come and go rarely (listeners, file watchers, sockets in
// listener filters): the std::function callback around an EmbeddedFileEvent.
class FileEventImpl : public FileEvent {
 public:
  FileEventImpl(Dispatcher& dispatcher, int fd, FileReadyCb cb, FileTriggerType trigger,
                uint32_t events)
      : dispatcher_(dispatcher), cb_(std::move(cb)) {
    event_.initialize<FileEventImpl, &FileEventImpl::onEvent>(dispatcher, fd, *this, trigger,
                                                              events);
  }

  void activate(uint32_t events) override {
    SLUICE_ASSERT(dispatcher_.isThreadSafe(), "activate() off the dispatcher's thread");
    event_.activate(events);
  }
  void setEnabled(uint32_t events) override {
    SLUICE_ASSERT(dispatcher_.isThreadSafe(), "setEnabled() off the dispatcher's thread");
    event_.setEnabled(events);
  }

 private:
  void onEvent(uint32_t events) { cb_(events); }

  Dispatcher& dispatcher_;
  FileReadyCb cb_;
  EmbeddedFileEvent event_;
};

class SignalEventImpl : public SignalEvent {
 public:
  SignalEventImpl(event_base* base, int signum, SignalCb cb) : cb_(std::move(cb)) {
    ev_.reset(evsignal_new(base, signum, &SignalEventImpl::onSignal, this));
    evsignal_add(ev_.get(), nullptr);
  }

 private:
  static void onSignal(evutil_socket_t, short, void* arg) {
    static_cast<SignalEventImpl*>(arg)->cb_();
  }
  SignalCb cb_;
  libevent::EventPtr ev_;
};

}  // namespace

// ------------------------------------------------------------------------------------------
// EmbeddedFileEvent

static_assert(sizeof(::event) <= EmbeddedFileEvent::kEventBytes && alignof(::event) <= 8,
              "EmbeddedFileEvent::kEventBytes must hold libevent's struct event");

namespace {
// The dispatcher whose loop runs on this thread (an event's callback comes from its loop).
thread_local DispatcherImpl* t_running = nullptr;

// activateSoon(): the events to run when the file event callback now running returns, with
// their flags (a few at most: the connections a callback wrote to). A reset event's entry is
// nulled.
struct SoonEntry {
  ::event* ev;
  short what;
};
thread_local std::vector<SoonEntry> t_soon;
thread_local int t_file_callbacks = 0;  // file event callbacks running on this thread
thread_local bool t_running_soon = false;
}  // namespace

void EmbeddedFileEvent::clear() { std::memset(event_, 0, sizeof(event_)); }

bool EmbeddedFileEvent::initialized() const {
  // event_initialized(), without the call (activate() runs a few times per request).
  const auto* ev = reinterpret_cast<const ::event*>(event_);
  return (ev->ev_evcallback.evcb_flags & EVLIST_INIT) != 0;
}

void EmbeddedFileEvent::initializeRaw(Dispatcher& dispatcher, int fd, RawCallback cb, void* arg,
                                      FileTriggerType trigger, uint32_t events) {
  SLUICE_ASSERT(dispatcher.isThreadSafe(), "a file event made off the dispatcher's thread");
  reset();
  // DispatcherImpl is the one Dispatcher.
  event_base* base = static_cast<DispatcherImpl&>(dispatcher).base();
  auto* ev = reinterpret_cast<::event*>(event_);
  event_assign(ev, base, fd, toLibeventFlags(events, trigger), cb, arg);
  if (events != 0) event_add(ev, nullptr);
}

void EmbeddedFileEvent::activate(uint32_t events) {
  if (!initialized()) return;
  const short what = toLibeventResult(events);
  auto* ev = reinterpret_cast<::event*>(event_);
  if ((ev->ev_evcallback.evcb_flags & EVLIST_ACTIVE) != 0) {
    // Already queued to run (e.g. a response's head and then its body, written in one
    // callback): add the flags as event_active() would, without its call and the base's lock.
    // Only this thread touches the event (activate() is the owner's, as every method here).
    ev->ev_res = static_cast<short>(ev->ev_res | what);
    return;
  }
  event_active(ev, what, 0);
}

void EmbeddedFileEvent::activateSoon(uint32_t events) {
  if (!initialized()) return;
  if (t_file_callbacks == 0) {
    activate(events);
    return;
  }
  auto* ev = reinterpret_cast<::event*>(event_);
  const short what = toLibeventResult(events);
  for (SoonEntry& e : t_soon) {
    if (e.ev == ev) {
      e.what = static_cast<short>(e.what | what);
      return;
    }
  }
  t_soon.push_back(SoonEntry{ev, what});
}

void EmbeddedFileEvent::endCallback() {
  --t_file_callbacks;
  if (t_file_callbacks != 0 || t_soon.empty() || t_running_soon) return;
  // The queued callbacks may queue more (a write that fails closes the connection, whose
  // callbacks write elsewhere): the index follows the list as it grows.
  t_running_soon = true;
  for (size_t i = 0; i < t_soon.size(); ++i) {
    const SoonEntry e = t_soon[i];
    if (e.ev == nullptr) continue;  // reset meanwhile
    t_soon[i].ev = nullptr;
    event_get_callback(e.ev)(event_get_fd(e.ev), e.what, event_get_callback_arg(e.ev));
  }
  t_soon.clear();
  t_running_soon = false;
}

void EmbeddedFileEvent::setEnabled(uint32_t events) {
  if (!initialized()) return;
  auto* ev = reinterpret_cast<::event*>(event_);
  const int fd = event_get_fd(ev);
  const FileTriggerType trigger =
      (event_get_events(ev) & EV_ET) != 0 ? FileTriggerType::Edge : FileTriggerType::Level;
  event_base* base = event_get_base(ev);
  const event_callback_fn cb = event_get_callback(ev);
  void* arg = event_get_callback_arg(ev);
  event_del(ev);
  event_assign(ev, base, fd, toLibeventFlags(events, trigger), cb, arg);
  if (events != 0) event_add(ev, nullptr);
}

void EmbeddedFileEvent::reset() {
  if (!initialized()) return;
  auto* ev = reinterpret_cast<::event*>(event_);
  for (SoonEntry& e : t_soon) {
    if (e.ev == ev) e.ev = nullptr;
  }
  event_del(ev);
  clear();
}

uint32_t EmbeddedFileEvent::beginCallback(short what) {
  ++t_file_callbacks;
  if (t_running != nullptr) t_running->updateApproximateMonotonicTime();
  return toReadyMask(what);
}

DispatcherImpl::DispatcherImpl(std::string name, TimeSystem& time_system)
    : name_(std::move(name)), time_system_(time_system), current_to_delete_(&to_delete_1_) {
  libevent::global();
  event_config* cfg = event_config_new();
  // EV_CLOSED (peer half-close) needs the early-close feature: epoll has it.
  event_config_require_features(cfg, EV_FEATURE_EARLY_CLOSE);
  // No EVENT_BASE_FLAG_PRECISE_TIMER: with it, libevent's epoll backend calls
  // timerfd_settime() before every epoll_wait(). Real timers are not libevent timers but
  // deadlines in timer_queue_ (timer_queue.h), so libevent's own clock is never asked.
  // Only this dispatcher's thread touches the base (another thread's post() writes to an
  // eventfd, exit() posts), so the base needs no lock: libevent would otherwise take and
  // release it around every event_add, event_del, event_active and callback (about 10 times a
  // proxied request). A simulated clock activates timers from the test's thread: it keeps it.
  if (!time_system.activatesTimersFromOtherThreads()) {
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  }
  base_.reset(event_base_new_with_config(cfg));
  event_config_free(cfg);
  if (!base_) base_.reset(event_base_new());
  SLUICE_RELEASE_ASSERT(base_ != nullptr, "libevent could not create an event base");
  timer_queue_ = std::make_unique<TimerQueue>(base_.get());
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SLUICE_RELEASE_ASSERT(wake_fd_ >= 0, "eventfd() failed");
  post_event_.reset(
      event_new(base_.get(), wake_fd_, EV_READ | EV_PERSIST, &DispatcherImpl::onPost, this));
  event_add(post_event_.get(), nullptr);
  deferred_delete_event_.reset(
      event_new(base_.get(), -1, 0, &DispatcherImpl::onDeferredDelete, this));
  updateApproximateMonotonicTime();
}

DispatcherImpl::~DispatcherImpl() {
  // Destruction comes after the last run() returned, possibly on another thread: from here
  // on this thread owns the loop.
  run_tid_.store(std::thread::id(), std::memory_order_relaxed);
  // Objects still waiting for deferred deletion are destroyed now; posted callbacks that
  // never ran are dropped (destroyed without running).
  clearDeferredDeleteList();
  clearDeferredDeleteList();
  post_event_.reset();
  deferred_delete_event_.reset();
  ::close(wake_fd_);
}

FileEventPtr DispatcherImpl::createFileEvent(int fd, FileReadyCb cb, FileTriggerType trigger,
                                             uint32_t events) {
  SLUICE_ASSERT(isThreadSafe(), "createFileEvent() off the dispatcher's thread");
  return std::make_unique<FileEventImpl>(*this, fd, std::move(cb), trigger, events);
}

TimerPtr DispatcherImpl::createTimer(TimerCb cb) {
  SLUICE_ASSERT(isThreadSafe(), "createTimer() off the dispatcher's thread");
  return time_system_.createTimer(base_.get(), *timer_queue_, [this, cb = std::move(cb)] {
    updateApproximateMonotonicTime();
    cb();
  });
}

TimerList& DispatcherImpl::timerList(std::chrono::milliseconds duration) {
  SLUICE_ASSERT(isThreadSafe(), "timerList() off the dispatcher's thread");
  // One list per distinct duration the config names (connection and stream idle timeouts,
  // route timeouts), kept for the dispatcher's life: each costs a list head and one timer
  // per worker.
  auto& list = timer_lists_[duration.count()];
  if (!list) list = std::make_unique<TimerList>(*this, duration);
  return *list;
}

SignalEventPtr DispatcherImpl::listenForSignal(int signal_num, SignalCb cb) {
  SLUICE_ASSERT(isThreadSafe(), "listenForSignal() off the dispatcher's thread");
  return std::make_unique<SignalEventImpl>(base_.get(), signal_num, std::move(cb));
}

void DispatcherImpl::post(PostCb cb) {
  bool was_empty;
  {
    std::lock_guard lock(post_lock_);
    was_empty = post_callbacks_.empty();
    post_callbacks_.push_back(std::move(cb));
  }
  if (!was_empty) return;  // a wake-up is on its way already
  // Only from inside this dispatcher's own run() (not merely the thread that ran it last: a
  // dispatcher may be run by another thread since) is touching the base safe.
  if (t_running == this) {
    event_active(post_event_.get(), EV_READ, 0);
    return;
  }
  const uint64_t one = 1;
  const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;  // fails only when the counter is full: the loop is woken already
}

void DispatcherImpl::onPost(evutil_socket_t fd, short, void* arg) {
  // The counter first, then the queue: a post() after this read writes again.
  uint64_t count;
  const ssize_t n = ::read(fd, &count, sizeof(count));
  (void)n;  // EAGAIN when the loop's own thread activated the event
  static_cast<DispatcherImpl*>(arg)->runPostCallbacks();
}

void DispatcherImpl::runPostCallbacks() {
  std::vector<PostCb> callbacks;
  {
    std::lock_guard lock(post_lock_);
    callbacks.swap(post_callbacks_);
  }
  updateApproximateMonotonicTime();
  for (auto& cb : callbacks) {
    cb();
    // A callback may hold the last reference to something it captured: release it here,
    // on this thread, in order.
    cb = nullptr;
  }
}

void DispatcherImpl::deferredDelete(DeferredDeletablePtr&& to_delete) {
  SLUICE_ASSERT(isThreadSafe(), "deferredDelete() off the dispatcher's thread");
  if (!to_delete) return;
  to_delete->deleteIsPending();
  current_to_delete_->push_back(std::move(to_delete));
  if (current_to_delete_->size() == 1) {
    event_active(deferred_delete_event_.get(), EV_TIMEOUT, 0);
  }
}

void DispatcherImpl::onDeferredDelete(evutil_socket_t, short, void* arg) {
  static_cast<DispatcherImpl*>(arg)->clearDeferredDeleteList();
}

void DispatcherImpl::clearDeferredDeleteList() {
  SLUICE_ASSERT(isThreadSafe(), "clearDeferredDeleteList() off the dispatcher's thread");
  if (deferred_deleting_ || current_to_delete_->empty()) return;
  std::vector<DeferredDeletablePtr>* draining = current_to_delete_;
  current_to_delete_ = draining == &to_delete_1_ ? &to_delete_2_ : &to_delete_1_;
  deferred_deleting_ = true;
  // FIFO: destroy in the order they were deferred. Destructors may defer more objects;
  // those land in the other list, which schedules its own pass.
  for (auto& obj : *draining) obj.reset();
  draining->clear();
  deferred_deleting_ = false;
}

void DispatcherImpl::run(RunType type) {
  run_tid_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  DispatcherImpl* const outer = t_running;  // a loop run from inside another's callback
  t_running = this;
  // Its callbacks are outermost for activateSoon(): what they queue runs as they return, not
  // when the callback that started this run returns.
  const int outer_callbacks = t_file_callbacks;
  t_file_callbacks = 0;
  updateApproximateMonotonicTime();
  if (type == RunType::Block) {
    runUntilNothingPending();
    t_running = outer;
    t_file_callbacks = outer_callbacks;
    return;
  }
  int flags = 0;
  switch (type) {
    case RunType::Block: break;
    case RunType::NonBlock:
      // What is ready now, and what those callbacks activate; then return (a level-triggered
      // fd that stays ready does not keep the loop going).
      flags = EVLOOP_NONBLOCK | EVLOOP_ONCE;
      break;
    case RunType::RunUntilExit: flags = EVLOOP_NO_EXIT_ON_EMPTY; break;
  }
  event_base_loop(base_.get(), flags);
  t_running = outer;
  t_file_callbacks = outer_callbacks;
}

void DispatcherImpl::runUntilNothingPending() {
  // libevent's own "until no events" would never end: the wake-up event is always added. So
  // one pass at a time, while anything but it is added or active, or a post waits.
  event_base* base = base_.get();
  const auto posts_waiting = [this] {
    std::lock_guard lock(post_lock_);
    return !post_callbacks_.empty();
  };
  while (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) > 0 ||
         event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_VIRTUAL) > 1 ||
         posts_waiting()) {
    event_base_loop(base, EVLOOP_ONCE);
    if (event_base_got_exit(base) || event_base_got_break(base)) break;
  }
}

void DispatcherImpl::exit() {
  if (t_running == this) {
    event_base_loopexit(base_.get(), nullptr);
    return;
  }
  // From another thread (or before the first run): the loop's thread ends its loop.
  post([this] { event_base_loopexit(base_.get(), nullptr); });
}

bool DispatcherImpl::isThreadSafe() const {
  const std::thread::id tid = run_tid_.load(std::memory_order_relaxed);
  return tid == std::thread::id() || tid == std::this_thread::get_id();
}

void DispatcherImpl::updateApproximateMonotonicTime() {
  approximate_now_ = time_system_.monotonicTime();
}

}  // namespace sluice::event
