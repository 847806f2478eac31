#include "http/http2/codec_impl.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "buffer/buffer.h"
#include "common/logger.h"
#include "event/dispatcher.h"
#include "http/http2/block_cache.h"
#include "stats/stats.h"

namespace sluice::http::http2 {

bool startsWithPreface(const buffer::Buffer& data, bool& need_more) {
  const size_t n = std::min(data.length(), kConnectionPreface.size());
  char head[kConnectionPreface.size()];  // on the stack: a string would allocate (24 bytes)
  data.copyOut(0, n, head);
  need_more = false;
  if (std::string_view(head, n) != kConnectionPreface.substr(0, n)) return false;
  if (n < kConnectionPreface.size()) {
    need_more = true;
    return false;
  }
  return true;
}

namespace {

using buffer::Buffer;

constexpr std::string_view kCodecError = "http2.codec_error";

// Headers that describe one HTTP/1 connection and have no meaning (are forbidden) in HTTP/2.
bool isConnectionSpecific(std::string_view key) {
  return key == headers::kConnection || key == headers::kKeepAlive ||
         key == headers::kProxyConnection || key == headers::kTransferEncoding ||
         key == headers::kUpgrade || key == "http2-settings";
}

nghttp2_nv makeNv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// The nghttp2_nv array of one header block, on the stack up to kInline entries (a request or
// response rarely has more), on the heap beyond.
class NvArray {
 public:
  explicit NvArray(size_t expected) {
    if (expected > kInline) heap_.reserve(expected);
  }
  void push_back(const nghttp2_nv& nv) {
    if (!heap_.empty() || size_ == kInline) {
      if (heap_.empty()) heap_.assign(inline_, inline_ + size_);
      heap_.push_back(nv);
    } else {
      inline_[size_] = nv;
    }
    ++size_;
  }
  nghttp2_nv* data() { return heap_.empty() ? inline_ : heap_.data(); }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kInline = 24;
  nghttp2_nv inline_[kInline];
  std::vector<nghttp2_nv> heap_;
  size_t size_{0};
};

// A stream's callbacks: nearly always one or two, kept inline. A removed one becomes null
// (it may be removed while the list is being walked).
class StreamCallbackList {
 public:
  void add(StreamCallbacks* cb) {
    if (size_ < kInline) {
      inline_[size_] = cb;
    } else {
      more_.push_back(cb);
    }
    ++size_;
  }
  void remove(StreamCallbacks* cb) {
    for (size_t i = 0; i < size_; ++i) {
      if ((*this)[i] == cb) (*this)[i] = nullptr;
    }
  }
  size_t size() const { return size_; }
  StreamCallbacks*& operator[](size_t i) { return i < kInline ? inline_[i] : more_[i - kInline]; }
  void swap(StreamCallbackList& other) {
    std::swap(inline_, other.inline_);
    more_.swap(other.more_);
    std::swap(size_, other.size_);
  }

 private:
  static constexpr size_t kInline = 2;
  StreamCallbacks* inline_[kInline]{};
  std::vector<StreamCallbacks*> more_;
  size_t size_{0};
};

class ConnectionImpl;

// One HTTP/2 stream: its encoder (response on a server, request on a client), the bytes
// waiting to go out, and the received bytes its decoder has not taken yet.
class StreamImpl : public Stream,
                   public ResponseEncoder,
                   public RequestEncoder,
                   public event::DeferredDeletable {
 public:
  StreamImpl(ConnectionImpl& parent, int32_t id) : parent_(parent), id_(id) {}

  // Stream
  void addCallbacks(StreamCallbacks& callbacks) override { callbacks_.add(&callbacks); }
  void removeCallbacks(StreamCallbacks& callbacks) override { callbacks_.remove(&callbacks); }
  void resetStream(StreamResetReason reason) override;
  void readDisable(bool disable) override;
  uint32_t bufferLimit() const override;

  // ResponseEncoder and RequestEncoder
  void encode1xxHeaders(const ResponseHeaderMap& headers) override;
  void encodeHeaders(const HeaderMap& headers, bool end_stream) override;
  void encodeData(Buffer& data, bool end_stream) override;
  void encodeTrailers(const HeaderMap& trailers) override;
  Stream& getStream() override { return *this; }

  void runResetCallbacks(StreamResetReason reason) {
    StreamCallbackList callbacks;
    callbacks.swap(callbacks_);
    for (size_t i = 0; i < callbacks.size(); ++i) {
      if (callbacks[i] != nullptr) callbacks[i]->onResetStream(reason, "");
    }
  }

  // Received parts, from the session's callbacks.
  void onHeadersComplete(bool end_stream);
  void onDataFrame(bool end_stream);
  // Delivers what waited while reads were disabled (data, end, trailers).
  void deliverPending();
  // nghttp2 wants DATA for this stream: up to `length` bytes into `out`.
  ssize_t readOutbound(uint8_t* out, size_t length, uint32_t* flags);
  void onClose(uint32_t error_code);

  ConnectionImpl& parent_;
  int32_t id_;
  RequestDecoder* request_decoder_{nullptr};
  ResponseDecoder* response_decoder_{nullptr};
  StreamCallbackList callbacks_;
  HeaderMapPtr headers_;  // the header block being received
  uint64_t header_bytes_{0};
  uint32_t header_count_{0};
  bool headers_delivered_{false};  // the request, or the final response, headers went up
  // Inbound.
  Buffer pending_recv_;
  uint64_t unconsumed_{0};  // received, window not yet returned
  HeaderMapPtr pending_trailers_;
  bool remote_end_{false};     // END_STREAM received
  bool end_delivered_{false};  // the decoder has had the end
  uint32_t read_disabled_{0};
  event::TimerPtr deliver_timer_;
  // Outbound.
  Buffer pending_send_;
  HeaderMapPtr trailers_send_;
  bool local_end_{false};  // our side ended (maybe not yet written)
  bool above_high_{false};
  // The stream is over for its user: reset, closed, or (server) answered in full. No more
  // decoder calls and no reset callbacks after that.
  bool done_{false};
  bool closed_{false};  // nghttp2 closed it
  // The connection's list of live streams (intrusive: no node to allocate).
  StreamImpl* prev_{nullptr};
  StreamImpl* next_{nullptr};
  bool linked_{false};
};

// What the server and client codecs share: the nghttp2 session, its callbacks, the streams,
// and the send loop.
class ConnectionImpl {
 public:
  ConnectionImpl(network::Connection& connection, ConnectionCallbacks& callbacks,
                 const CodecSettings& settings, bool server)
      : connection_(connection), callbacks_(callbacks), settings_(settings), server_(server) {
    // The streams of one connection are answered (or fed) from many callbacks in a pass: one
    // writev for all of them at the pass's end.
    connection_.writeAtPassEnd(true);
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &onBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &onHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &onFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &onDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &onStreamClose);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &onFrameSend);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    // The window comes back only when a stream's consumer has taken the bytes.
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, settings.max_outbound_acks);
    nghttp2_option_set_stream_reset_rate_limit(opt, settings.reset_burst,
                                               settings.resets_per_second);
    // A closed stream is freed at once instead of being kept (up to the concurrency limit)
    // for RFC 7540's priority tree, which nothing here uses.
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (server) {
      nghttp2_session_server_new3(&session_, cbs, this, opt, BlockCache::mem());
    } else {
      nghttp2_session_client_new3(&session_, cbs, this, opt, BlockCache::mem());
    }
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);

    std::vector<nghttp2_settings_entry> iv;
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams});
    iv.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initial_stream_window_size});
    iv.push_back({NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings.max_headers_kb * 1024});
    if (!server) iv.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
    if (settings.initial_connection_window_size > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) {
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                            static_cast<int32_t>(
                                                settings.initial_connection_window_size));
    }
  }

  // connection_keepalive: nothing of it exists unless configured.
  void setupKeepalive() {
    if (settings_.keepalive_timeout.count() <= 0) return;
    event::Dispatcher& d = connection_.dispatcher();
    ping_timeout_timer_ = d.createTimer([this] { onKeepaliveTimeout(); });
    last_recv_ = d.timeSource().monotonicTime();
    if (settings_.keepalive_interval.count() > 0) {
      ping_timer_ = d.createTimer([this] { sendKeepalivePing(); });
      armPingTimer();
    }
  }
  void armPingTimer() {
    const int64_t interval = settings_.keepalive_interval.count();
    const int64_t jitter = interval * settings_.keepalive_jitter_percent / 100;
    int64_t extra = 0;
    if (jitter > 0) {
      extra = std::uniform_int_distribution<int64_t>(0, jitter)(rng_);
    }
    ping_timer_->enableTimer(std::chrono::milliseconds(interval + extra));
  }
  void sendKeepalivePing() {
    // One PING at a time: an outstanding one already decides whether the peer is alive.
    if (ping_outstanding_) return;
    ping_outstanding_ = true;
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    ping_timeout_timer_->enableTimer(settings_.keepalive_timeout);
    flush();
  }
  void onPingAck() {
    if (!ping_outstanding_) return;
    ping_outstanding_ = false;
    ping_timeout_timer_->disableTimer();
    if (ping_timer_) armPingTimer();
  }
  void onKeepaliveTimeout() {
    SLUICE_LOG(debug, http, "[C{}] HTTP/2 keepalive PING not answered in {} ms: closing",
               connection_.id(), settings_.keepalive_timeout.count());
    if (settings_.keepalive_timeout_counter != nullptr) settings_.keepalive_timeout_counter->inc();
    connection_.close(network::ConnectionCloseType::NoFlush);
  }
  // Client: a new stream on a connection that heard nothing for connection_idle_interval
  // sends a PING first, to find a dead connection quickly.
  void maybeIdlePing() {
    if (!ping_timeout_timer_ || settings_.keepalive_idle_interval.count() <= 0) return;
    const auto now = connection_.dispatcher().timeSource().monotonicTime();
    if (now - last_recv_ >= settings_.keepalive_idle_interval) sendKeepalivePing();
  }

  virtual ~ConnectionImpl() {
    for (StreamImpl* s = streams_; s != nullptr; s = s->next_) s->closed_ = true;
    nghttp2_session_del(session_);
    while (streams_ != nullptr) {
      StreamImpl* s = streams_;
      unlink(*s);
      delete s;
    }
  }

  network::Connection& connection() { return connection_; }
  nghttp2_session* session() { return session_; }
  bool server() const { return server_; }

  CodecStatus dispatchImpl(Buffer& data) {
    CodecStatus status;
    if (ping_timeout_timer_) {
      // Anything received shows the connection is alive: the PING's wait starts over (so a
      // long transfer ahead of the ACK does not time it out), and it is not idle.
      last_recv_ = connection_.dispatcher().timeSource().monotonicTime();
      if (ping_outstanding_) ping_timeout_timer_->enableTimer(settings_.keepalive_timeout);
    }
    ++depth_;
    while (!data.empty()) {
      const buffer::RawSlice slice = data.frontSlice();
      const ssize_t rv =
          nghttp2_session_mem_recv(session_, static_cast<const uint8_t*>(slice.mem), slice.len);
      if (rv < 0) {
        SLUICE_LOG(debug, http, "[C{}] HTTP/2 receive error: {}", connection_.id(),
                   nghttp2_strerror(static_cast<int>(rv)));
        nghttp2_session_terminate_session(
            session_, rv == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
        status = CodecStatus::protocolError(0, std::string(kCodecError));
        break;
      }
      data.drain(static_cast<size_t>(rv));
    }
    --depth_;
    if (!status.ok()) data.drain(data.length());
    flush();
    if (status.ok() && sent_error_goaway_) {
      status = CodecStatus::protocolError(0, std::string(kCodecError));
    }
    if (status.ok()) closeIfSessionOver();
    return status;
  }

  // A GOAWAY went (or came) and no stream is left: the session is over. Checked after what
  // can finish the last stream: a dispatch (a WINDOW_UPDATE lets its end go out) and a flush
  // on the connection's low watermark.
  void closeIfSessionOver() {
    if (connection_.state() == network::Connection::State::Open &&
        !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
      connection_.close(network::ConnectionCloseType::FlushWrite);
    }
  }

  // Writes what nghttp2 has to send, unless called from inside nghttp2 (the outer call
  // writes) or the connection's write buffer is full (its low watermark calls again).
  void flush() {
    if (depth_ > 0 || connection_.state() != network::Connection::State::Open) return;
    ++depth_;
    Buffer out;
    while (!write_blocked_) {
      const uint8_t* bytes;
      const ssize_t n = nghttp2_session_mem_send(session_, &bytes);
      if (n < 0) {
        SLUICE_LOG(debug, http, "[C{}] HTTP/2 send error: {}", connection_.id(),
                   nghttp2_strerror(static_cast<int>(n)));
        break;
      }
      if (n == 0) break;
      out.add(bytes, static_cast<size_t>(n));
      if (out.length() >= 64 * 1024) {
        connection_.write(out, false);
        if (connection_.aboveHighWatermark()) break;
      }
    }
    if (!out.empty()) connection_.write(out, false);
    --depth_;
  }

  void goAwayImpl() {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    flush();
  }

  void onConnectionClosedImpl() {
    std::vector<StreamImpl*> open;
    for (StreamImpl* s = streams_; s != nullptr; s = s->next_) open.push_back(s);
    for (StreamImpl* s : open) {
      s->closed_ = true;
      if (!s->done_) {
        s->done_ = true;
        s->runResetCallbacks(StreamResetReason::ConnectionTermination);
      }
      removeStream(*s);
    }
  }

  void onAboveHighWatermark() { write_blocked_ = true; }
  void onBelowLowWatermark() {
    write_blocked_ = false;
    flush();
    if (depth_ == 0) closeIfSessionOver();
  }
  bool hasStreams() const { return streams_ != nullptr; }

  StreamImpl& addStream(int32_t id) {
    auto* s = new StreamImpl(*this, id);
    s->prev_ = streams_tail_;
    if (streams_tail_ != nullptr) {
      streams_tail_->next_ = s;
    } else {
      streams_ = s;
    }
    streams_tail_ = s;
    s->linked_ = true;
    ++stream_count_;
    return *s;
  }
  void unlink(StreamImpl& s) {
    if (s.prev_ != nullptr) {
      s.prev_->next_ = s.next_;
    } else {
      streams_ = s.next_;
    }
    if (s.next_ != nullptr) {
      s.next_->prev_ = s.prev_;
    } else {
      streams_tail_ = s.prev_;
    }
    s.prev_ = s.next_ = nullptr;
    s.linked_ = false;
    --stream_count_;
  }
  void removeStream(StreamImpl& s) {
    if (!s.linked_) return;
    unlink(s);
    std::unique_ptr<StreamImpl> owned(&s);
    s.deliver_timer_.reset();
    if (s.id_ > 0 && !s.closed_) nghttp2_session_set_stream_user_data(session_, s.id_, nullptr);
    connection_.dispatcher().deferredDelete(std::move(owned));
  }
  size_t streamCount() const { return stream_count_; }

  // A new stream's request headers began (server).
  virtual StreamImpl* onRequestBegin(int32_t) { return nullptr; }
  // A request's headers arrived complete (server).
  virtual void onNewRequest(StreamImpl&) {}

  const CodecSettings& settings() const { return settings_; }
  ConnectionCallbacks& callbacks() { return callbacks_; }

 protected:
  static ConnectionImpl& self(void* user_data) { return *static_cast<ConnectionImpl*>(user_data); }
  static StreamImpl* streamOf(nghttp2_session* session, int32_t id) {
    return static_cast<StreamImpl*>(nghttp2_session_get_stream_user_data(session, id));
  }

  static int onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    ConnectionImpl& c = self(ud);
    StreamImpl* s = streamOf(session, frame->hd.stream_id);
    if (s == nullptr && c.server_ && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      s = c.onRequestBegin(frame->hd.stream_id);
    }
    if (s == nullptr) return 0;
    s->headers_ = std::make_unique<HeaderMap>();
    s->header_bytes_ = 0;
    s->header_count_ = 0;
    return 0;
  }

  static int onHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    ConnectionImpl& c = self(ud);
    StreamImpl* s = streamOf(session, frame->hd.stream_id);
    if (s == nullptr || !s->headers_) return 0;
    s->header_bytes_ += namelen + valuelen;
    ++s->header_count_;
    if (s->header_bytes_ > static_cast<uint64_t>(c.settings_.max_headers_kb) * 1024 ||
        s->header_count_ > c.settings_.max_headers_count) {
      // The header list is too large (an HPACK bomb expands here): reset the stream before
      // keeping any more of it.
      SLUICE_LOG(debug, http, "[C{}] HTTP/2 stream {}: header list over the limit",
                 c.connection_.id(), frame->hd.stream_id);
      s->headers_.reset();
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    const std::string_view k(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (k == "cookie" && s->headers_->has("cookie")) {
      // HTTP/2 may split cookies; HTTP/1 and the filters expect one header.
      std::string joined(*s->headers_->get("cookie"));
      joined.append("; ").append(v);
      s->headers_->set("cookie", joined);
    } else {
      s->headers_->add(k, v);
    }
    return 0;
  }

  static int onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    ConnectionImpl& c = self(ud);
    const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        StreamImpl* s = streamOf(session, frame->hd.stream_id);
        if (s != nullptr && s->headers_) s->onHeadersComplete(end);
        break;
      }
      case NGHTTP2_DATA: {
        StreamImpl* s = streamOf(session, frame->hd.stream_id);
        if (s != nullptr) s->onDataFrame(end);
        break;
      }
      case NGHTTP2_GOAWAY:
        SLUICE_LOG(debug, http, "[C{}] HTTP/2 GOAWAY received (error {})", c.connection_.id(),
                   frame->goaway.error_code);
        c.callbacks_.onGoAway();
        break;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 && c.ping_timeout_timer_) c.onPingAck();
        break;
      default:
        break;
    }
    return 0;
  }

  static int onDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void*) {
    StreamImpl* s = streamOf(session, stream_id);
    if (s == nullptr || s->done_) {
      // Nobody wants these bytes: give the window back at once.
      nghttp2_session_consume(session, stream_id, len);
      return 0;
    }
    s->pending_recv_.add(data, len);
    s->unconsumed_ += len;
    return 0;
  }

  static int onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void*) {
    StreamImpl* s = streamOf(session, stream_id);
    if (s != nullptr) s->onClose(error_code);
    return 0;
  }

  static int onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    ConnectionImpl& c = self(ud);
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
      c.sent_error_goaway_ = true;
      return 0;
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && c.server_) {
      StreamImpl* s = streamOf(session, frame->hd.stream_id);
      if (s != nullptr && !s->remote_end_) {
        // The response is complete before the request: the rest of the request is not
        // wanted (RFC 9113 8.1).
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
      }
    }
    return 0;
  }

  network::Connection& connection_;
  ConnectionCallbacks& callbacks_;
  const CodecSettings settings_;
  const bool server_;
  nghttp2_session* session_{nullptr};
  // Owned: the live streams, oldest first.
  StreamImpl* streams_{nullptr};
  StreamImpl* streams_tail_{nullptr};
  size_t stream_count_{0};
  uint32_t depth_{0};  // inside mem_recv or mem_send: nghttp2 must not be re-entered
  // connection_keepalive (null timers: not configured).
  event::TimerPtr ping_timer_;
  event::TimerPtr ping_timeout_timer_;
  bool ping_outstanding_{false};
  event::MonotonicTime last_recv_{};
  std::minstd_rand rng_{std::random_device{}()};
  bool write_blocked_{false};
  bool sent_error_goaway_{false};
};

ssize_t readCallback(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                     nghttp2_data_source* source, void*) {
  return static_cast<StreamImpl*>(source->ptr)->readOutbound(buf, length, flags);
}

void StreamImpl::resetStream(StreamResetReason reason) {
  if (done_) return;
  done_ = true;
  if (id_ > 0 && !closed_) {
    const uint32_t code = reason == StreamResetReason::LocalRefusedStreamReset
                              ? NGHTTP2_REFUSED_STREAM
                              : NGHTTP2_NO_ERROR;
    nghttp2_submit_rst_stream(parent_.session(), NGHTTP2_FLAG_NONE, id_, code);
  }
  runResetCallbacks(reason);
  if (id_ <= 0 || closed_) {
    parent_.removeStream(*this);
  } else if (unconsumed_ > 0) {
    nghttp2_session_consume(parent_.session(), id_, unconsumed_);
    unconsumed_ = 0;
    pending_recv_.drain(pending_recv_.length());
  }
  parent_.flush();
}

void StreamImpl::readDisable(bool disable) {
  if (disable) {
    ++read_disabled_;
    return;
  }
  if (read_disabled_ == 0 || --read_disabled_ > 0) return;
  // Deliver what waited on the next loop pass, not inside the caller's callback.
  if (pending_recv_.empty() && !pending_trailers_ && (!remote_end_ || end_delivered_)) return;
  if (!deliver_timer_) {
    deliver_timer_ = parent_.connection().dispatcher().createTimer([this] {
      deliverPending();
      parent_.flush();
    });
  }
  deliver_timer_->enableTimer(std::chrono::milliseconds(0));
}

uint32_t StreamImpl::bufferLimit() const { return parent_.connection().bufferLimit(); }

void StreamImpl::encode1xxHeaders(const ResponseHeaderMap& headers) {
  if (done_ || id_ <= 0) return;
  NvArray nva(headers.size());
  for (const HeaderEntry& e : headers) {
    if (e.key[0] == ':' && e.key != headers::kStatus) continue;
    if (isConnectionSpecific(e.key)) continue;
    nva.push_back(makeNv(e.key, e.value));
  }
  nghttp2_submit_headers(parent_.session(), NGHTTP2_FLAG_NONE, id_, nullptr, nva.data(),
                         nva.size(), nullptr);
  parent_.flush();
}

void StreamImpl::encodeHeaders(const HeaderMap& headers, bool end_stream) {
  if (done_) return;
  NvArray nva(headers.size() + 2);
  const bool server = parent_.server();
  if (!server) {
    // A request: the pseudo-headers HTTP/2 requires, from what HTTP/1 carried.
    const std::string_view authority =
        headers.authority().empty() ? headers.getValue(headers::kHost) : headers.authority();
    nva.push_back(makeNv(headers::kMethod, headers.method()));
    nva.push_back(makeNv(headers::kScheme,
                         headers.scheme().empty() ? std::string_view("http") : headers.scheme()));
    if (!authority.empty()) nva.push_back(makeNv(headers::kAuthority, authority));
    nva.push_back(makeNv(headers::kPath, headers.path().empty() ? "/" : headers.path()));
  }
  for (const HeaderEntry& e : headers) {
    if (e.key.empty()) continue;
    if (e.key[0] == ':') {
      if (server && e.key == headers::kStatus) nva.push_back(makeNv(e.key, e.value));
      continue;
    }
    if (isConnectionSpecific(e.key) || e.key == headers::kHost) continue;
    if (e.key == headers::kTe && e.value != "trailers") continue;
    nva.push_back(makeNv(e.key, e.value));
  }
  nghttp2_data_provider provider;
  provider.source.ptr = this;
  provider.read_callback = &readCallback;
  if (end_stream) local_end_ = true;
  if (server) {
    const int rv = nghttp2_submit_response(parent_.session(), id_, nva.data(), nva.size(),
                                           end_stream ? nullptr : &provider);
    if (rv != 0) {
      SLUICE_LOG(debug, http, "[C{}] HTTP/2 response on stream {} failed: {}",
                 parent_.connection().id(), id_, nghttp2_strerror(rv));
    }
    // Answered in full: the connection manager is done with this stream, whatever of the
    // request is still coming.
    if (end_stream && !remote_end_) done_ = true;
  } else {
    const int32_t id = nghttp2_submit_request(parent_.session(), nullptr, nva.data(), nva.size(),
                                              end_stream ? nullptr : &provider, this);
    if (id < 0) {
      SLUICE_LOG(debug, http, "[C{}] HTTP/2 request failed: {}", parent_.connection().id(),
                 nghttp2_strerror(id));
      resetStream(StreamResetReason::LocalRefusedStreamReset);
      return;
    }
    id_ = id;
  }
  parent_.flush();
}

void StreamImpl::encodeData(Buffer& data, bool end_stream) {
  if (done_ || local_end_) {
    data.drain(data.length());
    return;
  }
  pending_send_.move(data);
  if (end_stream) local_end_ = true;
  const uint32_t limit = bufferLimit();
  if (limit > 0 && !above_high_ && pending_send_.length() > limit) {
    above_high_ = true;
    for (size_t i = 0; i < callbacks_.size(); ++i) {
      if (callbacks_[i] != nullptr) callbacks_[i]->onAboveWriteBufferHighWatermark();
    }
  }
  if (id_ > 0 && !closed_) nghttp2_session_resume_data(parent_.session(), id_);
  if (parent_.server() && end_stream && !remote_end_) done_ = true;
  parent_.flush();
}

void StreamImpl::encodeTrailers(const HeaderMap& trailers) {
  if (done_ || local_end_) return;
  trailers_send_ = std::make_unique<HeaderMap>();
  for (const HeaderEntry& e : trailers) {
    if (e.key.empty() || e.key[0] == ':' || isConnectionSpecific(e.key)) continue;
    trailers_send_->add(e.key, e.value);
  }
  local_end_ = true;
  if (id_ > 0 && !closed_) nghttp2_session_resume_data(parent_.session(), id_);
  if (parent_.server() && !remote_end_) done_ = true;
  parent_.flush();
}

ssize_t StreamImpl::readOutbound(uint8_t* out, size_t length, uint32_t* flags) {
  const size_t n = std::min(length, pending_send_.length());
  if (n > 0) {
    pending_send_.copyOut(0, n, out);
    pending_send_.drain(n);
  }
  if (pending_send_.empty() && local_end_) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (trailers_send_) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      NvArray nva(trailers_send_->size());
      for (const HeaderEntry& e : *trailers_send_) nva.push_back(makeNv(e.key, e.value));
      nghttp2_submit_trailer(parent_.session(), id_, nva.data(), nva.size());
      trailers_send_.reset();
    }
  } else if (n == 0) {
    return NGHTTP2_ERR_DEFERRED;
  }
  if (above_high_ && pending_send_.length() <= bufferLimit() / 2) {
    above_high_ = false;
    for (size_t i = 0; i < callbacks_.size(); ++i) {
      if (callbacks_[i] != nullptr) callbacks_[i]->onBelowWriteBufferLowWatermark();
    }
  }
  return static_cast<ssize_t>(n);
}

void StreamImpl::onHeadersComplete(bool end_stream) {
  HeaderMapPtr headers = std::move(headers_);
  if (done_) return;
  if (end_stream) remote_end_ = true;
  if (!headers_delivered_) {
    if (parent_.server()) {
      // HTTP/1 carries the authority in Host; here :authority is the one the rest uses.
      if (headers->authority().empty() && headers->has(headers::kHost)) {
        const std::string host(headers->getValue(headers::kHost));
        headers->add(headers::kAuthority, host);
      }
      headers->remove(headers::kHost);
      headers_delivered_ = true;
      parent_.onNewRequest(*this);
      if (request_decoder_ == nullptr) return;
      if (end_stream) end_delivered_ = true;
      request_decoder_->decodeHeaders(std::move(headers), end_stream);
    } else {
      const uint32_t status = headers->status();
      if (status >= 100 && status < 200 && status != 101) {
        if (response_decoder_ != nullptr) response_decoder_->decode1xxHeaders(std::move(headers));
        return;
      }
      headers_delivered_ = true;
      if (end_stream) end_delivered_ = true;
      if (end_stream && !local_end_) {
        // The response ended before the request: stop sending it.
        done_ = true;
        nghttp2_submit_rst_stream(parent_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
      }
      if (end_stream) done_ = true;
      if (response_decoder_ != nullptr) response_decoder_->decodeHeaders(std::move(headers), end_stream);
    }
    return;
  }
  // Trailers: after any data still waiting.
  remote_end_ = true;
  pending_trailers_ = std::move(headers);
  deliverPending();
}

void StreamImpl::onDataFrame(bool end_stream) {
  if (end_stream) remote_end_ = true;
  deliverPending();
}

void StreamImpl::deliverPending() {
  if (done_ || read_disabled_ > 0 || end_delivered_) return;
  const bool trailers = pending_trailers_ != nullptr;
  if (!pending_recv_.empty() || (remote_end_ && !trailers)) {
    Buffer data;
    data.move(pending_recv_);
    const bool end = remote_end_ && !trailers;
    if (unconsumed_ > 0 && id_ > 0 && !closed_) {
      nghttp2_session_consume(parent_.session(), id_, unconsumed_);
    }
    unconsumed_ = 0;
    if (end) end_delivered_ = true;
    const bool client_end = end && !parent_.server();
    if (client_end) {
      if (!local_end_) {
        nghttp2_submit_rst_stream(parent_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
      }
      done_ = true;
    }
    if (parent_.server()) {
      if (request_decoder_ != nullptr) request_decoder_->decodeData(data, end);
    } else if (response_decoder_ != nullptr) {
      response_decoder_->decodeData(data, end);
    }
    if ((done_ && !client_end) || read_disabled_ > 0) return;
  }
  if (pending_trailers_ && !end_delivered_) {
    end_delivered_ = true;
    HeaderMapPtr t = std::move(pending_trailers_);
    if (parent_.server()) {
      if (request_decoder_ != nullptr) request_decoder_->decodeTrailers(std::move(t));
    } else {
      if (!local_end_) {
        nghttp2_submit_rst_stream(parent_.session(), NGHTTP2_FLAG_NONE, id_, NGHTTP2_NO_ERROR);
      }
      done_ = true;
      if (response_decoder_ != nullptr) response_decoder_->decodeTrailers(std::move(t));
    }
  }
}

void StreamImpl::onClose(uint32_t error_code) {
  closed_ = true;
  if (unconsumed_ > 0) {
    nghttp2_session_consume_connection(parent_.session(), unconsumed_);
    unconsumed_ = 0;
  }
  nghttp2_session_set_stream_user_data(parent_.session(), id_, nullptr);
  // A server stream whose request and response both completed, or a client stream whose
  // response did, closes normally; anything else is a reset.
  const bool complete = parent_.server() ? (end_delivered_ && local_end_) : end_delivered_;
  if (!done_ && !complete) {
    done_ = true;
    const StreamResetReason reason = error_code == NGHTTP2_REFUSED_STREAM
                                         ? StreamResetReason::RemoteRefusedStreamReset
                                         : StreamResetReason::RemoteReset;
    SLUICE_LOG(debug, http, "[C{}] HTTP/2 stream {} reset by the peer (error {})",
               parent_.connection().id(), id_, error_code);
    runResetCallbacks(reason);
  }
  done_ = true;
  parent_.removeStream(*this);
}

class ServerCodecImpl : public ServerCodec, public ConnectionImpl {
 public:
  ServerCodecImpl(network::Connection& connection, ServerConnectionCallbacks& callbacks,
                  const CodecSettings& settings)
      : ConnectionImpl(connection, callbacks, settings, true), server_callbacks_(callbacks) {
    setupKeepalive();
    flush();
  }

  CodecStatus dispatch(Buffer& data) override { return dispatchImpl(data); }
  Protocol protocol() const override { return Protocol::Http2; }
  void goAway() override { goAwayImpl(); }
  void shutdownNotice() override {
    nghttp2_submit_shutdown_notice(session_);
    flush();
  }
  void onConnectionClosed() override { onConnectionClosedImpl(); }
  void onReadEndStream() override {}
  void onUnderlyingConnectionAboveWriteBufferHighWatermark() override { onAboveHighWatermark(); }
  void onUnderlyingConnectionBelowWriteBufferLowWatermark() override { onBelowLowWatermark(); }
  bool hasStreamsToFinish() const override { return hasStreams(); }

  StreamImpl* onRequestBegin(int32_t id) override {
    StreamImpl& s = addStream(id);
    nghttp2_session_set_stream_user_data(session(), id, &s);
    return &s;
  }
  void onNewRequest(StreamImpl& s) override {
    s.request_decoder_ = &server_callbacks_.newStream(s);
  }

 private:
  ServerConnectionCallbacks& server_callbacks_;
};

class ClientCodecImpl : public ClientCodec, public ConnectionImpl {
 public:
  ClientCodecImpl(network::Connection& connection, ConnectionCallbacks& callbacks,
                  const CodecSettings& settings)
      : ConnectionImpl(connection, callbacks, settings, false) {
    setupKeepalive();
    flush();  // the preface and SETTINGS go out as soon as the connection is up
  }

  CodecStatus dispatch(Buffer& data) override { return dispatchImpl(data); }
  Protocol protocol() const override { return Protocol::Http2; }
  void goAway() override { goAwayImpl(); }
  void onConnectionClosed() override { onConnectionClosedImpl(); }
  void onReadEndStream() override {}
  void onUnderlyingConnectionAboveWriteBufferHighWatermark() override { onAboveHighWatermark(); }
  void onUnderlyingConnectionBelowWriteBufferLowWatermark() override { onBelowLowWatermark(); }

  RequestEncoder& newStream(ResponseDecoder& decoder) override {
    maybeIdlePing();
    StreamImpl& s = addStream(-1);
    s.response_decoder_ = &decoder;
    return s;
  }
  size_t activeStreams() const override { return streamCount(); }
};

}  // namespace

ServerCodecPtr createServerCodec(network::Connection& connection,
                                 ServerConnectionCallbacks& callbacks,
                                 const CodecSettings& settings) {
  return std::make_unique<ServerCodecImpl>(connection, callbacks, settings);
}

ClientCodecPtr createClientCodec(network::Connection& connection, ConnectionCallbacks& callbacks,
                                 const CodecSettings& settings) {
  return std::make_unique<ClientCodecImpl>(connection, callbacks, settings);
}

}  // namespace sluice::http::http2
