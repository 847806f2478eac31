#pragma once

// The transport under a connection: raw TCP now, TLS later. It moves bytes between the
// socket and the connection's buffers and tells the connection what to do next.

#include <cstdint>
#include <memory>
#include <string_view>

#include "network/connection.h"

namespace sluice::network {

enum class PostIoAction { KeepOpen, Close };

struct TransportIoResult {
  PostIoAction action{PostIoAction::KeepOpen};
  uint64_t bytes{0};
  bool end_stream_read{false};
  int err{0};  // the errno behind a Close, if any
};

class TransportSocketCallbacks {
 public:
  virtual ~TransportSocketCallbacks() = default;
  virtual int fd() const = 0;
  virtual Connection& connection() = 0;
  // True once the read buffer holds its limit: stop reading for this event.
  virtual bool shouldDrainReadBuffer() = 0;
  // The transport stopped reading with data possibly left in the socket (or in its own
  // buffers): schedule another read.
  virtual void setTransportSocketIsReadable() = 0;
  // True once the socket reported the peer's FIN (EPOLLRDHUP): read until the end of stream,
  // not only until a short read.
  virtual bool peerClosedSeen() const = 0;
  virtual void raiseEvent(ConnectionEvent event) = 0;
};

class TransportSocket {
 public:
  virtual ~TransportSocket() = default;
  virtual void setTransportSocketCallbacks(TransportSocketCallbacks& callbacks) = 0;
  virtual std::string_view protocol() const = 0;
  // Reads into `buffer` until the socket would block, the limit is reached, or end of stream.
  virtual TransportIoResult doRead(buffer::Buffer& buffer) = 0;
  // Writes from `buffer` (draining what was written); end_stream shuts the write side once
  // `buffer` is empty.
  virtual TransportIoResult doWrite(buffer::Buffer& buffer, bool end_stream) = 0;
  virtual void onConnected() = 0;
  virtual void closeSocket(ConnectionEvent event) = 0;
};
using TransportSocketPtr = std::unique_ptr<TransportSocket>;

}  // namespace sluice::network
