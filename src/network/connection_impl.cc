#include "network/connection_impl.h"

#include <algorithm>
#include <atomic>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "common/assert.h"
#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::network {

namespace {
std::atomic<uint64_t> next_connection_id{0};
}

const ConnectionStats ConnectionImpl::kNoStats{};

ConnectionImpl::ConnectionImpl(event::Dispatcher& dispatcher, SocketFd&& socket,
                               TransportSocketPtr transport, AddressConstSharedPtr local,
                               AddressConstSharedPtr remote, bool connected)
    : id_(next_connection_id++),
      dispatcher_(dispatcher),
      socket_(std::move(socket)),
      transport_(std::move(transport)),
      local_(std::move(local)),
      remote_(std::move(remote)),
      read_buffer_([](void* self,
                      bool above) { static_cast<ConnectionImpl*>(self)->readDisable(above); },
                   this),
      write_buffer_(
          [](void* self, bool above) {
            for (auto* cb : static_cast<ConnectionImpl*>(self)->callbacks_) {
              if (above) {
                cb->onAboveWriteBufferHighWatermark();
              } else {
                cb->onBelowWriteBufferLowWatermark();
              }
            }
          },
          this),
      connecting_(!connected) {
  transport_->setTransportSocketCallbacks(*this);
  // Edge-triggered, registered once for the connection's life: each readiness is reported
  // once; we write until EAGAIN and read until a short read (or EAGAIN). Read-disabling does
  // not touch the registration (no epoll_ctl per request): a read event that comes while
  // disabled is dropped, and enabling reads again schedules a read. "Closed" (EPOLLRDHUP)
  // tells a FIN apart from data, also while reads are disabled.
  file_event_.initialize<ConnectionImpl, &ConnectionImpl::onFileEvent>(
      dispatcher_, socket_.fd(), *this, event::FileTriggerType::Edge,
      event::FileReadyType::Read | event::FileReadyType::Write | event::FileReadyType::Closed);
  SLUICE_LOG(debug, connection, "[C{}] new connection {} -> {}", id_,
             remote_ ? remote_->asString() : "?", local_ ? local_->asString() : "?");
}

ConnectionImpl::~ConnectionImpl() {
  SLUICE_ASSERT(state_ == State::Closed || !socket_.isOpen(),
                "a connection must be closed before it is destroyed");
  // Destroying an open connection (e.g. at shutdown) closes it without callbacks.
  file_event_.reset();
  socket_.close();
}

void ConnectionImpl::removeConnectionCallbacks(ConnectionCallbacks& cb) {
  callbacks_.erase(std::remove(callbacks_.begin(), callbacks_.end(), &cb), callbacks_.end());
}

void ConnectionImpl::addReadFilter(ReadFilterSharedPtr filter) {
  const auto index = static_cast<uint32_t>(filterCount());
  ActiveReadFilter* f;
  if (index == 0) {
    first_filter_.filter_ = std::move(filter);
    f = &first_filter_;
  } else {
    auto& more = rare().more_filters;
    more.push_back(std::make_unique<ActiveReadFilter>(*this, std::move(filter), index));
    f = more.back().get();
  }
  f->filter_->initializeReadFilterCallbacks(*f);
}

bool ConnectionImpl::initializeReadFilters() {
  for (size_t i = 0; i < filterCount(); ++i) {
    ActiveReadFilter* f = &filterAt(i);
    if (f->initialized_) continue;
    f->initialized_ = true;
    if (f->filter_->onNewConnection() == FilterStatus::StopIteration || state_ != State::Open) {
      break;
    }
  }
  return state_ == State::Open;
}

void ConnectionImpl::write(buffer::Buffer& data, bool end_stream) {
  SLUICE_ASSERT(dispatcher_.isThreadSafe(), "write() off the connection's thread");
  SLUICE_ASSERT(!write_end_stream_, "write() after end_stream");
  if (state_ != State::Open || write_end_stream_) {
    data.drain(data.length());
    return;
  }
  write_end_stream_ = end_stream;
  write_buffer_.move(data);
  if (stats_->tx_buffered) stats_->tx_buffered->set(write_buffer_.length());
  // Write when the callback that wrote returns, so that several writes in one callback become
  // one writev (and before the loop goes on to the other ready connections); or, for a
  // multiplexing codec, with the loop's pass (writeAtPassEnd()).
  if (connecting_) return;
  if (write_at_pass_end_) {
    file_event_.activate(event::FileReadyType::Write);
  } else {
    file_event_.activateSoon(event::FileReadyType::Write);
  }
}

void ConnectionImpl::setBufferLimits(uint32_t limit) {
  buffer_limit_ = limit;
  write_buffer_.setWatermarks(limit);
  read_buffer_.setWatermarks(limit);
}

void ConnectionImpl::noDelay(bool enable) {
  if (remote_ && remote_->isIp()) setSocketOption(socket_, IPPROTO_TCP, TCP_NODELAY, enable ? 1 : 0);
}

void ConnectionImpl::connect(std::chrono::milliseconds timeout) {
  SLUICE_ASSERT(connecting_, "connect() on a connected socket");
  SysResult r = connectSocket(socket_, *remote_);
  if (!r.ok() && r.err != EINPROGRESS) {
    // Raised from the loop, never from inside connect().
    rare().connect_error = r.err;
    file_event_.activate(event::FileReadyType::Write);
    return;
  }
  if (timeout.count() > 0) {
    Rare& rare = this->rare();
    rare.connect_timer = dispatcher_.createTimer([this] {
      SLUICE_LOG(debug, connection, "[C{}] connect timeout", id_);
      rare_->failure_reason = "connect timeout";
      closeSocket(ConnectionEvent::LocalClose);
    });
    rare.connect_timer->enableTimer(timeout);
  }
}

void ConnectionImpl::readDisable(bool disable) {
  if (state_ != State::Open) return;
  if (disable) {
    ++read_disable_count_;
    return;
  }
  SLUICE_ASSERT(read_disable_count_ > 0, "readDisable(false) without readDisable(true)");
  if (read_disable_count_ == 0) return;
  if (--read_disable_count_ == 0) {
    // Events are edge-triggered: bytes (or the peer's FIN) that came while reading was
    // disabled raised their event then, and onReadReady() noted it; they raise none now.
    // Look again in that case, and hand what is buffered to the filters even if the socket
    // has nothing new. Otherwise the last read left the socket drained (or asked to be
    // called again), so a read now would only return EAGAIN.
    dispatch_buffered_data_ = !read_buffer_.empty();
    if (dispatch_buffered_data_ || read_ready_while_disabled_) {
      read_ready_while_disabled_ = false;
      file_event_.activate(event::FileReadyType::Read);
    }
  }
}

void ConnectionImpl::setTransportSocketIsReadable() {
  file_event_.activate(event::FileReadyType::Read);
}

void ConnectionImpl::flushWriteBuffer() {
  if (state_ != State::Closed && !write_buffer_.empty()) {
    file_event_.activate(event::FileReadyType::Write);
  }
}

void ConnectionImpl::raiseEvent(ConnectionEvent event) {
  if (event == ConnectionEvent::Connected && rare_) rare_->connect_timer.reset();
  // A callback may remove itself (or others): walk a copy (inline: no allocation for the
  // few callbacks a connection has).
  SmallVector<ConnectionCallbacks*, 4> callbacks;
  for (auto* cb : callbacks_) callbacks.push_back(cb);
  for (auto* cb : callbacks) {
    if (std::find(callbacks_.begin(), callbacks_.end(), cb) != callbacks_.end()) cb->onEvent(event);
  }
}

void ConnectionImpl::onFileEvent(uint32_t events) {
  if (state_ == State::Closed) return;
  if (rare_ && rare_->connect_error != 0) {
    rare_->failure_reason = errorString(rare_->connect_error);
    closeSocket(ConnectionEvent::RemoteClose);
    return;
  }
  if (events & event::FileReadyType::Closed) {
    peer_closed_seen_ = true;
    if (read_disable_count_ > 0) read_ready_while_disabled_ = true;  // the FIN waits unread
    if (read_disable_count_ > 0 && !half_close_enabled_ && detect_early_close_) {
      // The peer went away while we were not reading (a client that gave up: no need to
      // read what it sent). Without early-close detection, the FIN is read, after the bytes
      // before it, once reading resumes.
      closeSocket(ConnectionEvent::RemoteClose);
      return;
    }
  }
  if (events & event::FileReadyType::Write) onWriteReady();
  if (state_ != State::Closed && (events & event::FileReadyType::Read)) onReadReady();
}

void ConnectionImpl::onConnectResult() {
  SysResult err = socketError(socket_);
  if (!err.ok()) {
    rare().failure_reason = errorString(err.err);
    SLUICE_LOG(debug, connection, "[C{}] connect to {} failed: {}", id_, remote_->asString(),
               rare_->failure_reason);
    closeSocket(ConnectionEvent::RemoteClose);
    return;
  }
  connecting_ = false;
  // The connect timeout runs on until Connected: over TLS, that is after the handshake.
  local_ = network::localAddress(socket_.fd());
  SLUICE_LOG(debug, connection, "[C{}] connected to {}", id_, remote_->asString());
  transport_->onConnected();
}

void ConnectionImpl::onWriteReady() {
  if (connecting_) {
    onConnectResult();
    if (state_ == State::Closed) return;
  }
  const TransportIoResult r = transport_->doWrite(write_buffer_, write_end_stream_);
  bytes_sent_ += r.bytes;
  if (stats_->tx_total && r.bytes) stats_->tx_total->inc(r.bytes);
  if (stats_->tx_buffered) stats_->tx_buffered->set(write_buffer_.length());
  if (r.action == PostIoAction::Close) {
    rare().failure_reason = errorString(r.err);
    closeSocket(ConnectionEvent::RemoteClose);
    return;
  }
  if (state_ == State::Closing) {
    if (!write_buffer_.empty()) {
      // Progress resets the stall guard.
      if (rare_ && rare_->delayed_close_timer.listTimerEnabled() && r.bytes > 0) {
        armDelayedCloseTimer();
      }
      return;
    }
    if (pending_close_ == ConnectionCloseType::FlushWriteAndDelay &&
        delayed_close_timeout_ms_ > 0) {
      if (!in_delayed_close_wait_) startDelayedCloseWait();
      return;
    }
    closeSocket(ConnectionEvent::LocalClose);
    return;
  }
  if (bothSidesHalfClosed()) closeSocket(ConnectionEvent::RemoteClose);
}

void ConnectionImpl::onReadReady() {
  if (state_ == State::Closing) {
    // Waiting to close: a peer that closes ends the wait; its bytes are not processed. With
    // half-close, its FIN ends only its own direction: it still reads what we flush. (Its FIN
    // stays readable, so every write-ready edge reports Read too: reading that end of stream
    // again must not cut the flush short.)
    if (read_end_stream_) return;
    buffer::Buffer discard;
    TransportIoResult r = transport_->doRead(discard);
    if (r.action == PostIoAction::Close || (r.end_stream_read && !half_close_enabled_)) {
      closeSocket(ConnectionEvent::RemoteClose);
    } else if (r.end_stream_read) {
      read_end_stream_ = true;
      if (in_delayed_close_wait_) closeSocket(ConnectionEvent::RemoteClose);
    }
    return;
  }
  if (read_disable_count_ > 0) {
    read_ready_while_disabled_ = true;
    return;
  }
  if (read_end_stream_) return;
  TransportIoResult r = transport_->doRead(read_buffer_);
  bytes_received_ += r.bytes;
  if (stats_->rx_total && r.bytes) stats_->rx_total->inc(r.bytes);
  if (stats_->rx_buffered) stats_->rx_buffered->set(read_buffer_.length());
  if (r.action == PostIoAction::Close) rare().failure_reason = errorString(r.err);
  if (r.end_stream_read && !half_close_enabled_) {
    // Without half-close semantics, the peer's end of stream ends the connection, after the
    // filters have seen what came with it.
    r.end_stream_read = false;
    r.action = PostIoAction::Close;
  }
  read_end_stream_ |= r.end_stream_read;
  const bool redispatch = dispatch_buffered_data_ && !read_buffer_.empty();
  dispatch_buffered_data_ = false;
  if (r.bytes > 0 || r.end_stream_read || redispatch) onRead();
  if (state_ == State::Closed) return;
  if (r.action == PostIoAction::Close || bothSidesHalfClosed()) {
    closeSocket(ConnectionEvent::RemoteClose);
  }
}

void ConnectionImpl::onRead() { iterateReadFilters(0); }

void ConnectionImpl::iterateReadFilters(size_t start) {
  for (size_t i = start; i < filterCount() && state_ != State::Closed; ++i) {
    ActiveReadFilter& f = filterAt(i);
    if (!f.initialized_) {
      f.initialized_ = true;
      if (f.filter_->onNewConnection() == FilterStatus::StopIteration) return;
      if (state_ == State::Closed) return;
    }
    if (read_buffer_.empty() && !read_end_stream_) return;
    if (f.filter_->onData(read_buffer_, read_end_stream_) == FilterStatus::StopIteration) return;
  }
}

void ConnectionImpl::close(ConnectionCloseType type) {
  if (state_ == State::Closed) return;
  if (state_ == State::Closing) {
    if (type == ConnectionCloseType::NoFlush) closeSocket(ConnectionEvent::LocalClose);
    return;
  }
  const bool nothing_to_write = write_buffer_.empty();
  if (type == ConnectionCloseType::NoFlush || connecting_ ||
      (nothing_to_write && (type == ConnectionCloseType::FlushWrite ||
                            delayed_close_timeout_ms_ == 0))) {
    closeSocket(ConnectionEvent::LocalClose);
    return;
  }
  state_ = State::Closing;
  pending_close_ = type;
  if (delayed_close_timeout_ms_ > 0) {
    armDelayedCloseTimer();
  }
  if (nothing_to_write) {
    // FlushWriteAndDelay with nothing left to write: wait for the peer or the timer.
    startDelayedCloseWait();
  } else {
    file_event_.activate(event::FileReadyType::Write);
  }
  // The registration stays (Read, Write, Closed): the peer's close still ends the wait, and
  // onReadReady() discards what it sends meanwhile.
}

void ConnectionImpl::startDelayedCloseWait() {
  in_delayed_close_wait_ = true;
  // A server closes as RFC 9112 (section 9.6) has it: its own side first, so that the FIN
  // follows the last response at once (a client that reads to the end of the stream has its
  // answer now, not after the wait), then it reads and discards whatever the peer still
  // sends until the peer closes or the timer fires. Closing the socket with bytes unread
  // would reset the connection, and a reset can destroy the response in flight.
  // The write buffer is empty: only the FIN (over TLS, close_notify first; what does not fit
  // now goes out on a later write-ready pass).
  const TransportIoResult r = transport_->doWrite(write_buffer_, true);
  if (r.action == PostIoAction::Close) {
    rare().failure_reason = errorString(r.err);
    closeSocket(ConnectionEvent::RemoteClose);
    return;
  }
  if (state_ == State::Closed) return;  // a callback (a handshake finishing) closed it
  if (read_end_stream_) {  // a half-closed peer has already closed its side
    closeSocket(ConnectionEvent::LocalClose);
    return;
  }
  armDelayedCloseTimer();
}

void ConnectionImpl::armDelayedCloseTimer() {
  dispatcher_.timerList(delayedCloseTimeout()).enable(rare().delayed_close_timer);
}

void ConnectionImpl::onDelayedCloseTimeout() {
  SLUICE_LOG(debug, connection, "[C{}] delayed close timeout ({} bytes unwritten)", id_,
             write_buffer_.length());
  if (!write_buffer_.empty()) rare().failure_reason = "delayed close timeout";
  closeSocket(ConnectionEvent::LocalClose);
}

void ConnectionImpl::closeSocket(ConnectionEvent event) {
  if (state_ == State::Closed) return;
  SLUICE_LOG(debug, connection, "[C{}] closing socket ({})", id_,
             event == ConnectionEvent::RemoteClose ? "remote" : "local");
  state_ = State::Closed;
  file_event_.reset();
  if (rare_) {
    rare_->delayed_close_timer.disableListTimer();
    rare_->connect_timer.reset();
  }
  transport_->closeSocket(event);
  socket_.close();
  write_buffer_.drain(write_buffer_.length());
  if (stats_->tx_buffered) stats_->tx_buffered->set(0);
  if (stats_->rx_buffered) stats_->rx_buffered->set(0);
  raiseEvent(event);
}

ConnectionPtr createServerConnection(event::Dispatcher& dispatcher, SocketFd&& socket,
                                     TransportSocketPtr transport, AddressConstSharedPtr local,
                                     AddressConstSharedPtr remote) {
  if (!local) local = localAddress(socket.fd());
  if (!remote) remote = peerAddress(socket.fd());
  return std::make_unique<ConnectionImpl>(dispatcher, std::move(socket), std::move(transport),
                                          std::move(local), std::move(remote), true);
}

ClientConnectionPtr createClientConnection(event::Dispatcher& dispatcher,
                                           AddressConstSharedPtr remote,
                                           TransportSocketPtr transport, std::string* error) {
  int err = 0;
  SocketFd socket = createSocket(remote->type(), SOCK_STREAM, &err);
  if (!socket.isOpen()) {
    if (error) *error = "cannot create a socket for " + remote->asString() + ": " + errorString(err);
    return nullptr;
  }
  return std::make_unique<ConnectionImpl>(dispatcher, std::move(socket), std::move(transport),
                                          nullptr, std::move(remote), false);
}

}  // namespace sluice::network
