#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "buffer/watermark_buffer.h"
#include "common/object_pool.h"
#include "common/small_vector.h"
#include "event/file_event.h"
#include "event/timer_list.h"
#include "network/connection.h"
#include "network/io_socket.h"
#include "network/transport_socket.h"

namespace sluice::network {

// Server connections (from accept) and client connections (connect()) share this class.
// Made and freed once per connection: from its thread's free list (common/object_pool.h).
class ConnectionImpl : public ClientConnection,
                       public TransportSocketCallbacks,
                       public Pooled<ConnectionImpl> {
 public:
  ConnectionImpl(event::Dispatcher& dispatcher, SocketFd&& socket, TransportSocketPtr transport,
                 AddressConstSharedPtr local, AddressConstSharedPtr remote, bool connected);
  ~ConnectionImpl() override;

  // Connection
  uint64_t id() const override { return id_; }
  event::Dispatcher& dispatcher() override { return dispatcher_; }
  State state() const override { return state_; }
  void addConnectionCallbacks(ConnectionCallbacks& cb) override { callbacks_.push_back(&cb); }
  void removeConnectionCallbacks(ConnectionCallbacks& cb) override;
  void addReadFilter(ReadFilterSharedPtr filter) override;
  bool initializeReadFilters() override;
  void write(buffer::Buffer& data, bool end_stream) override;
  void close(ConnectionCloseType type) override;
  void readDisable(bool disable) override;
  bool readEnabled() const override { return read_disable_count_ == 0; }
  void enableHalfClose(bool enabled) override { half_close_enabled_ = enabled; }
  bool isHalfCloseEnabled() const override { return half_close_enabled_; }
  void detectEarlyCloseWhenReadDisabled(bool detect) override { detect_early_close_ = detect; }
  void writeAtPassEnd(bool enabled) override { write_at_pass_end_ = enabled; }
  void setBufferLimits(uint32_t limit) override;
  uint32_t bufferLimit() const override { return buffer_limit_; }
  bool aboveHighWatermark() const override { return write_buffer_.highWatermarkTriggered(); }
  void setDelayedCloseTimeout(std::chrono::milliseconds timeout) override {
    delayed_close_timeout_ms_ = static_cast<uint32_t>(
        std::clamp<int64_t>(timeout.count(), 0, std::numeric_limits<uint32_t>::max()));
  }
  void noDelay(bool enable) override;
  void setConnectionStats(const ConnectionStats* stats) override {
    stats_ = stats != nullptr ? stats : &kNoStats;
  }
  const AddressConstSharedPtr& localAddress() const override { return local_; }
  const AddressConstSharedPtr& remoteAddress() const override { return remote_; }
  std::string_view transportFailureReason() const override {
    return rare_ ? std::string_view(rare_->failure_reason) : std::string_view();
  }
  uint64_t bytesReceived() const override { return bytes_received_; }
  uint64_t bytesSent() const override { return bytes_sent_; }
  size_t bufferedWriteBytes() const override { return write_buffer_.length(); }
  std::string_view transportProtocol() const override { return transport_->protocol(); }
  SslConnectionInfoConstSharedPtr ssl() const override { return transport_->ssl(); }

  // ClientConnection
  void connect(std::chrono::milliseconds timeout) override;

  // TransportSocketCallbacks
  int fd() const override { return socket_.fd(); }
  Connection& connection() override { return *this; }
  bool shouldDrainReadBuffer() override {
    return buffer_limit_ > 0 && read_buffer_.length() >= buffer_limit_;
  }
  void setTransportSocketIsReadable() override;
  bool peerClosedSeen() const override { return peer_closed_seen_; }
  void raiseEvent(ConnectionEvent event) override;
  void flushWriteBuffer() override;

 private:
  struct ActiveReadFilter : public ReadFilterCallbacks {
    ActiveReadFilter(ConnectionImpl& parent, ReadFilterSharedPtr filter, uint32_t index)
        : parent_(parent), filter_(std::move(filter)), index_(index) {}
    Connection& connection() override { return parent_; }
    void continueReading() override { parent_.iterateReadFilters(index_ + 1); }

    ConnectionImpl& parent_;
    ReadFilterSharedPtr filter_;
    const uint32_t index_;
    bool initialized_{false};
  };
  size_t filterCount() const {
    if (!first_filter_.filter_) return 0;
    return 1 + (rare_ ? rare_->more_filters.size() : 0);
  }
  ActiveReadFilter& filterAt(size_t i) {
    return i == 0 ? first_filter_ : *rare_->more_filters[i - 1];
  }
  // What only some connections need, made on first use: a client's connect timer and
  // immediate connect() error, a closing connection's delayed-close timer, the reason the
  // transport failed, and read filters after the first. An idle HTTP server connection has
  // none of it.
  // The delayed-close timer: an entry on the worker's list for its duration (every
  // connection of a listener has the same), so a close costs no timer of its own.
  struct DelayedCloseTimer final : event::ListTimer {
    void onListTimeout() override { connection->onDelayedCloseTimeout(); }
    ConnectionImpl* connection{nullptr};
  };
  struct Rare : Pooled<Rare> {
    event::TimerPtr connect_timer;
    DelayedCloseTimer delayed_close_timer;
    std::string failure_reason;
    int connect_error{0};  // an immediate connect() failure, raised from the loop
    std::vector<std::unique_ptr<ActiveReadFilter>> more_filters;  // the second and later
  };
  Rare& rare() {
    if (!rare_) {
      rare_ = std::make_unique<Rare>();
      rare_->delayed_close_timer.connection = this;
    }
    return *rare_;
  }
  // Everything is flushed: half-closes, then waits for the peer's close or the timer.
  void startDelayedCloseWait();
  // (Re)arms the delayed-close timer for delayedCloseTimeout().
  void armDelayedCloseTimer();
  std::chrono::milliseconds delayedCloseTimeout() const {
    return std::chrono::milliseconds(delayed_close_timeout_ms_);
  }

  void onFileEvent(uint32_t events);
  void onReadReady();
  void onWriteReady();
  void onConnectResult();
  void onRead();
  void iterateReadFilters(size_t start);
  void closeSocket(ConnectionEvent event);
  void onDelayedCloseTimeout();
  bool bothSidesHalfClosed() const {
    return read_end_stream_ && write_end_stream_ && write_buffer_.empty();
  }

  const uint64_t id_;
  event::Dispatcher& dispatcher_;
  SocketFd socket_;
  uint32_t delayed_close_timeout_ms_{0};
  TransportSocketPtr transport_;
  AddressConstSharedPtr local_;
  AddressConstSharedPtr remote_;
  buffer::WatermarkBuffer read_buffer_;
  buffer::WatermarkBuffer write_buffer_;
  event::EmbeddedFileEvent file_event_;  // in place: no heap block per connection
  // A server connection has two callbacks (the worker's and the connection manager's) and
  // one read filter: both live in place, not in heap blocks of their own.
  SmallVector<ConnectionCallbacks*, 2> callbacks_;
  ActiveReadFilter first_filter_{*this, nullptr, 0};  // no filter_: none added yet
  static const ConnectionStats kNoStats;
  const ConnectionStats* stats_{&kNoStats};
  std::unique_ptr<Rare> rare_;
  uint64_t bytes_received_{0};
  uint64_t bytes_sent_{0};
  uint32_t buffer_limit_{0};
  uint32_t read_disable_count_{0};
  State state_{State::Open};
  ConnectionCloseType pending_close_{ConnectionCloseType::FlushWrite};
  bool connecting_{false};
  bool half_close_enabled_{false};
  bool peer_closed_seen_{false};
  bool detect_early_close_{true};  // an event reported the peer's FIN (EPOLLRDHUP)
  bool read_end_stream_{false};
  bool write_end_stream_{false};
  bool in_delayed_close_wait_{false};   // flushed; waiting for the peer or the timer
  bool write_at_pass_end_{false};       // writeAtPassEnd()
  bool dispatch_buffered_data_{false};  // reading resumed with bytes already buffered
  bool read_ready_while_disabled_{false};  // a read event came while reading was disabled
};

// A connection for an accepted socket. `local`: its local address when the caller knows it
// (a listener bound to one address); null asks the socket. `remote`: the peer's address when
// it is not the socket's (a PROXY protocol header); null asks the socket.
ConnectionPtr createServerConnection(event::Dispatcher& dispatcher, SocketFd&& socket,
                                     TransportSocketPtr transport,
                                     AddressConstSharedPtr local = nullptr,
                                     AddressConstSharedPtr remote = nullptr);
// A connection that will connect to `remote` (call connect()). Null with `error` set when no
// socket could be made.
ClientConnectionPtr createClientConnection(event::Dispatcher& dispatcher,
                                           AddressConstSharedPtr remote,
                                           TransportSocketPtr transport, std::string* error);

}  // namespace sluice::network
