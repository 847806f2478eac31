#pragma once

#include <cstddef>
#include <cstdint>

#include "event/dispatcher.h"

namespace sluice::event {

// A file event kept inside its owner, with libevent's event in place: no heap block of its
// own. A connection has one for its life; a FileEvent (Dispatcher::createFileEvent) would
// cost it two heap blocks (the FileEvent with a std::function, and libevent's event). The
// callback is a plain function with a context. Unset until initialize(); reset() (or
// destruction) removes the interest. Used on its dispatcher's thread only.
class EmbeddedFileEvent {
 public:
  using Callback = void (*)(void* context, uint32_t events);

  EmbeddedFileEvent() = default;
  ~EmbeddedFileEvent() { reset(); }
  EmbeddedFileEvent(const EmbeddedFileEvent&) = delete;
  EmbeddedFileEvent& operator=(const EmbeddedFileEvent&) = delete;

  // As Dispatcher::createFileEvent(); on an initialized event, reset() comes first.
  void initialize(Dispatcher& dispatcher, int fd, Callback cb, void* context,
                  FileTriggerType trigger, uint32_t events);
  bool initialized() const { return dispatcher_ != nullptr; }
  // As FileEvent's; nothing when not initialized.
  void activate(uint32_t events);
  void setEnabled(uint32_t events);
  void reset();

  // libevent's struct event (its size is checked in dispatcher_impl.cc).
  static constexpr size_t kEventBytes = 128;

 private:
  static void onEvent(int fd, short what, void* arg);
  void assign(int fd, FileTriggerType trigger, uint32_t events);

  alignas(8) unsigned char event_[kEventBytes];
  Dispatcher* dispatcher_{nullptr};
  Callback cb_{nullptr};
  void* context_{nullptr};
  // The fd and the trigger type are the event's own (event_get_fd, EV_ET).
};

}  // namespace sluice::event
