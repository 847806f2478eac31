#pragma once

// The transport under a connection: raw TCP now, TLS later. It moves bytes between the
// socket and the connection's buffers and tells the connection what to do next.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "network/connection.h"

namespace sluice::stats {
class Store;
}

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
  // The transport became able to write what waits in the write buffer (a TLS handshake
  // finished): schedule a write.
  virtual void flushWriteBuffer() = 0;
};

class TransportSocket {
 public:
  virtual ~TransportSocket() = default;
  virtual void setTransportSocketCallbacks(TransportSocketCallbacks& callbacks) = 0;
  // The application protocol negotiated by the transport (ALPN: "h2", "http/1.1"), or empty.
  virtual std::string_view protocol() const = 0;
  // Reads into `buffer` until the socket would block, the limit is reached, or end of stream.
  virtual TransportIoResult doRead(buffer::Buffer& buffer) = 0;
  // Writes from `buffer` (draining what was written); end_stream shuts the write side once
  // `buffer` is empty.
  virtual TransportIoResult doWrite(buffer::Buffer& buffer, bool end_stream) = 0;
  virtual void onConnected() = 0;
  virtual void closeSocket(ConnectionEvent event) = 0;
  // TLS: what the handshake established; null before it completes and for plain TCP.
  virtual SslConnectionInfoConstSharedPtr ssl() const { return nullptr; }
};
using TransportSocketPtr = std::unique_ptr<TransportSocket>;

// Per-connection choices for a client transport: empty fields keep the factory's defaults.
struct TransportSocketOptions {
  std::string server_name;        // TLS: the SNI to send
  std::vector<std::string> alpn;  // TLS: the ALPN protocols to offer, in order
};

// Makes the transport of each new connection (one per listener filter chain or cluster);
// shared by the workers, so it must be immutable once built.
class TransportSocketFactory {
 public:
  virtual ~TransportSocketFactory() = default;
  virtual TransportSocketPtr createTransportSocket(
      const TransportSocketOptions* options = nullptr) const = 0;
  virtual bool implementsSecureTransport() const = 0;
  // A listener's factory gets its stats once the listener is bound (they are named by the
  // bound address: `listener.127.0.0.1_443.`), before any worker uses it.
  virtual void initializeStats(stats::Store&, const std::string& /*prefix*/) const {}
};
using TransportSocketFactoryConstSharedPtr = std::shared_ptr<const TransportSocketFactory>;

}  // namespace sluice::network
