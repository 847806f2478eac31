#pragma once

// A connection: one socket on one dispatcher, read and written through buffers, with a chain
// of read filters that see the bytes that arrive. Server connections come from a listener,
// client connections connect out. A connection is destroyed through the dispatcher's
// deferredDelete() once it is closed, never inside one of its own callbacks.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "event/dispatcher.h"
#include "network/address.h"

namespace sluice::buffer {
class Buffer;
}

namespace sluice::stats {
class Counter;
class Gauge;
}  // namespace sluice::stats

namespace sluice::network {

enum class ConnectionEvent { RemoteClose, LocalClose, Connected };

enum class ConnectionCloseType {
  FlushWrite,          // write what is buffered, then close
  NoFlush,             // close now, dropping what is buffered
  FlushWriteAndDelay,  // write what is buffered, then wait (delayed close timeout) for the peer
};

class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  virtual void onEvent(ConnectionEvent event) = 0;
  // The write buffer went above its high watermark / back below its low watermark.
  virtual void onAboveWriteBufferHighWatermark() {}
  virtual void onBelowWriteBufferLowWatermark() {}
};

enum class FilterStatus { Continue, StopIteration };

class Connection;

class ReadFilterCallbacks {
 public:
  virtual ~ReadFilterCallbacks() = default;
  virtual Connection& connection() = 0;
  // Resumes iteration at the next filter after one that returned StopIteration.
  virtual void continueReading() = 0;
};

// A network filter on the read path (the HTTP connection manager is one).
class ReadFilter {
 public:
  virtual ~ReadFilter() = default;
  virtual void initializeReadFilterCallbacks(ReadFilterCallbacks& callbacks) = 0;
  // Called once, when the connection is established (server side: at accept).
  virtual FilterStatus onNewConnection() { return FilterStatus::Continue; }
  // New bytes are in `data` (all unconsumed bytes, not only the new ones); a filter drains
  // what it consumes. end_stream: the peer half-closed.
  virtual FilterStatus onData(buffer::Buffer& data, bool end_stream) = 0;
};
using ReadFilterSharedPtr = std::shared_ptr<ReadFilter>;

// Counters a connection updates as it works; any may be null.
struct ConnectionStats {
  stats::Counter* rx_total{nullptr};
  stats::Counter* tx_total{nullptr};
  stats::Gauge* rx_buffered{nullptr};
  stats::Gauge* tx_buffered{nullptr};
};

// What a TLS connection's handshake established, for headers and access logs. Made once per
// connection, after the handshake; shared with the streams that log it.
struct SslConnectionInfo {
  std::string tls_version;  // "TLSv1.3"
  std::string peer_subject;  // RFC 2253, empty without a peer certificate
  std::vector<std::string> peer_uri_sans;
  std::vector<std::string> peer_dns_sans;
  std::string peer_cert_sha256;  // hex, of the DER

  std::vector<std::string> local_uri_sans;
  bool peer_certificate_presented{false};
};
using SslConnectionInfoConstSharedPtr = std::shared_ptr<const SslConnectionInfo>;

class Connection : public event::DeferredDeletable {
 public:
  enum class State { Open, Closing, Closed };

  ~Connection() override = default;

  virtual uint64_t id() const = 0;
  virtual event::Dispatcher& dispatcher() = 0;
  virtual State state() const = 0;

  virtual void addConnectionCallbacks(ConnectionCallbacks& cb) = 0;
  virtual void removeConnectionCallbacks(ConnectionCallbacks& cb) = 0;
  virtual void addReadFilter(ReadFilterSharedPtr filter) = 0;
  // Runs onNewConnection() of each read filter; false if one closed the connection.
  virtual bool initializeReadFilters() = 0;

  // Moves `data` into the write buffer (leaving it empty); end_stream half-closes the write
  // side after the data (with half-close enabled) or ends the connection.
  virtual void write(buffer::Buffer& data, bool end_stream) = 0;
  virtual void close(ConnectionCloseType type) = 0;

  // Counted: every readDisable(true) needs a readDisable(false) before reading resumes.
  virtual void readDisable(bool disable) = 0;
  virtual bool readEnabled() const = 0;
  // With half-close enabled, a peer's end of stream reaches the filters and the write side
  // stays open until this side writes end_stream.
  virtual void enableHalfClose(bool enabled) = 0;
  virtual bool isHalfCloseEnabled() const = 0;
  // By default a peer that closes while reads are disabled closes the connection at once
  // (what it sent is not read). Off, the close waits until reading resumes and the bytes
  // before it are delivered: an upstream's close-delimited response body must not lose its
  // tail because the client was slow.
  virtual void detectEarlyCloseWhenReadDisabled(bool detect) = 0;
  // When a write() made inside a file event's callback goes out. By default as that callback
  // returns: a connection that carries one exchange at a time hands its peer the bytes before
  // the loop reads the next ready connection. On, with the loop's pass, after every ready
  // event: a multiplexing codec (HTTP/2) gathers what several callbacks wrote (streams
  // answered from several upstream connections) into one writev.
  virtual void writeAtPassEnd(bool enabled) { (void)enabled; }

  // The per-connection buffer limit: the write buffer's high watermark (low: half of it),
  // and the most the read buffer holds before reading pauses. 0: no limit.
  virtual void setBufferLimits(uint32_t limit) = 0;
  virtual uint32_t bufferLimit() const = 0;
  virtual bool aboveHighWatermark() const = 0;
  // How long FlushWriteAndDelay waits, and how long FlushWrite waits for a stalled peer.
  virtual void setDelayedCloseTimeout(std::chrono::milliseconds timeout) = 0;

  virtual void noDelay(bool enable) = 0;
  // Held by pointer, not copied (one per listener's config or cluster, not per connection):
  // it must outlive the connection's I/O. Null: none.
  virtual void setConnectionStats(const ConnectionStats* stats) = 0;

  virtual const AddressConstSharedPtr& localAddress() const = 0;
  virtual const AddressConstSharedPtr& remoteAddress() const = 0;
  // Why the connection closed or failed, when it was not a plain close ("connect timeout",
  // "Connection refused", ...); empty otherwise.
  virtual std::string_view transportFailureReason() const = 0;

  virtual uint64_t bytesReceived() const = 0;
  virtual uint64_t bytesSent() const = 0;
  // Bytes waiting in the write buffer.
  virtual size_t bufferedWriteBytes() const = 0;
  virtual std::string_view transportProtocol() const = 0;
  // Null unless the transport is TLS and its handshake completed.
  virtual SslConnectionInfoConstSharedPtr ssl() const { return nullptr; }
};
using ConnectionPtr = std::unique_ptr<Connection>;

class ClientConnection : public Connection {
 public:
  // Starts a non-blocking connect. Connected or RemoteClose (failure) is raised later, never
  // from inside connect(). A positive timeout closes the attempt after that long.
  virtual void connect(std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) = 0;
};
using ClientConnectionPtr = std::unique_ptr<ClientConnection>;

}  // namespace sluice::network
