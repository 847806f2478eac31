#pragma once

// RAII owners for libevent structures (internal to src/event). Nothing outside this folder
// sees libevent types except the forward-declared event_base in time.h.

#include <memory>

#include <event2/event.h>

namespace sluice::event::libevent {

// Makes libevent thread-aware. Idempotent; called before any event_base is made. A
// dispatcher's base has no lock all the same (EVENT_BASE_FLAG_NOLOCK: only its thread touches
// it) unless its time system activates timers from other threads; libevent's signal handling
// keeps its own global lock.
void global();

struct BaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct EventDeleter {
  void operator()(::event* e) const { event_free(e); }
};
using BasePtr = std::unique_ptr<event_base, BaseDeleter>;
using EventPtr = std::unique_ptr<::event, EventDeleter>;

}  // namespace sluice::event::libevent
