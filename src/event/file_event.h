#pragma once

#include <cstddef>
#include <cstdint>

#include "event/dispatcher.h"

namespace sluice::event {

// A file event kept inside its owner, with libevent's event in place: no heap block of its
// own. A connection has one for its life; a FileEvent (Dispatcher::createFileEvent) would
// cost it two heap blocks (the FileEvent with a std::function, and libevent's event). The
// callback is a member function of its owner. Unset until initialize(); reset() (or
// destruction) removes the interest. Used on its dispatcher's thread only.
class EmbeddedFileEvent {
 public:
  EmbeddedFileEvent() { clear(); }
  ~EmbeddedFileEvent() { reset(); }
  EmbeddedFileEvent(const EmbeddedFileEvent&) = delete;
  EmbeddedFileEvent& operator=(const EmbeddedFileEvent&) = delete;

  // As Dispatcher::createFileEvent(), calling (owner.*OnEvent)(events); on an initialized
  // event, reset() comes first. The owner is libevent's callback argument and OnEvent a
  // template argument, so the event is libevent's struct and nothing more (a connection holds
  // one for its life). The callback runs with the dispatcher's approximate time refreshed.
  template <class Owner, void (Owner::*OnEvent)(uint32_t)>
  void initialize(Dispatcher& dispatcher, int fd, Owner& owner, FileTriggerType trigger,
                  uint32_t events) {
    initializeRaw(dispatcher, fd, &trampoline<Owner, OnEvent>, &owner, trigger, events);
  }
  bool initialized() const;
  // As FileEvent's; nothing when not initialized. On the dispatcher's thread.
  void activate(uint32_t events);
  // As activate(), but from inside a file event's callback the owner's callback runs as soon
  // as that callback returns, not after every other event the loop has ready: a connection's
  // writes reach its socket before the loop reads the next ready connection, so the process
  // at the other end has them meanwhile. Several calls in one callback are one run, with
  // their flags together. From anywhere else (a timer, a posted callback), activate().
  void activateSoon(uint32_t events);
  void setEnabled(uint32_t events);
  void reset();

  // libevent's struct event (its size is checked in dispatcher_impl.cc).
  static constexpr size_t kEventBytes = 128;

 private:
  using RawCallback = void (*)(int fd, short what, void* arg);

  template <class Owner, void (Owner::*OnEvent)(uint32_t)>
  static void trampoline(int, short what, void* arg) {
    (static_cast<Owner*>(arg)->*OnEvent)(beginCallback(what));
    endCallback();
  }
  // Refreshes the running dispatcher's approximate time; returns the FileReadyType mask.
  static uint32_t beginCallback(short what);
  // Runs what activateSoon() queued, once the outermost callback returns.
  static void endCallback();
  void initializeRaw(Dispatcher& dispatcher, int fd, RawCallback cb, void* arg,
                     FileTriggerType trigger, uint32_t events);
  void clear();

  // The callback, its argument, the fd, the trigger type and the base are the event's own
  // (event_get_callback, event_get_callback_arg, event_get_fd, EV_ET, event_get_base).
  alignas(8) unsigned char event_[kEventBytes];
};

}  // namespace sluice::event
