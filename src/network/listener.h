#pragma once

// A listener accepts connections on a listen socket it does not own and hands each new
// socket to its callbacks. It survives fd exhaustion: on EMFILE/ENFILE it stops accepting for
// a back-off period instead of spinning on a socket that stays readable.

#include <chrono>
#include <memory>

#include "network/address.h"
#include "network/io_socket.h"

namespace sluice::stats {
class Counter;
}

namespace sluice::network {

class ListenerCallbacks {
 public:
  virtual ~ListenerCallbacks() = default;
  // A new connection's socket, with the peer's address as accept() reported it (null if its
  // family is not one we know: the connection then asks the socket).
  virtual void onAccept(SocketFd&& socket, AddressConstSharedPtr peer) = 0;
};

class Listener {
 public:
  virtual ~Listener() = default;
  // Stops / resumes accepting (the socket stays bound; the kernel keeps queueing).
  virtual void disable() = 0;
  virtual void enable() = 0;
};
using ListenerPtr = std::unique_ptr<Listener>;

struct ListenerConfig {
  // Accepts per readiness event, so that one busy listener cannot starve the loop.
  uint32_t max_accepts_per_event{64};
  // How long to stop accepting after EMFILE/ENFILE.
  std::chrono::milliseconds fd_exhaustion_backoff{100};
  // Counts accept failures (EMFILE, ENFILE, ENOBUFS, ...); may be null.
  stats::Counter* accept_errors{nullptr};
};

}  // namespace sluice::network
