#pragma once

// The HTTP connection manager: the network filter that turns a connection into HTTP streams.
// It owns the codec, runs each request through the HTTP filter chain (decoder filters in
// order, encoder filters in reverse), applies the connection-level HTTP behaviour Envoy
// users rely on (x-forwarded-for, x-request-id, server and via headers, keep-alive and
// "connection: close", 100-continue, WebSocket upgrades, path normalisation, timeouts,
// drain), sends local replies, and writes the access log when a stream ends.

#include <memory>

#include "http/codec.h"
#include "event/timer_list.h"
#include "http/conn_manager_config.h"
#include "network/connection.h"

namespace sluice::http {

class ConnectionManagerImpl : public network::ReadFilter,
                              public network::ConnectionCallbacks,
                              public ServerConnectionCallbacks,
                              private event::ListTimer {
 public:
  explicit ConnectionManagerImpl(ConnectionManagerConfigConstSharedPtr config);
  ~ConnectionManagerImpl() override;

  // network::ReadFilter
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& callbacks) override;
  network::FilterStatus onNewConnection() override;
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override;

  // network::ConnectionCallbacks
  void onEvent(network::ConnectionEvent event) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;

  // ServerConnectionCallbacks
  RequestDecoder& newStream(ResponseEncoder& encoder) override;

  // Graceful drain: the next response carries "connection: close" (HTTP/2: GOAWAY now); an
  // idle connection closes now, or with `close_idle` false waits for its next response (a
  // listener update: closing an idle keep-alive connection races a request being sent).
  void startDrain(bool close_idle = true);
  size_t activeStreams() const { return stream_count_; }
  // Whether a codec exists now (tests: an idle HTTP/1 connection holds none).
  bool holdsCodec() const { return codec_ != nullptr; }

 private:
  struct ActiveStream;
  friend struct ActiveStream;

  // The server codec for a protocol: "h2" is HTTP/2, anything else (ALPN "http/1.1", or no
  // ALPN) HTTP/1.1. The seam where TLS's negotiated protocol picks the codec.
  void createCodec(std::string_view protocol);
  void doEndStream(ActiveStream& stream);
  void checkForDeferredClose();
  void releaseIdleCodec();
  void resetAllStreams(StreamResetReason reason);
  void onIdleTimeout();
  // The idle timeout (event::ListTimer): one list per worker for all connections alike.
  void onListTimeout() override { onIdleTimeout(); }
  void armIdleTimer();
  void closeConnection(network::ConnectionCloseType type);
  // The streams, newest first: an intrusive list (no node to allocate per request).
  void linkStream(ActiveStream& stream);
  void unlinkStream(ActiveStream& stream);

  ConnectionManagerConfigConstSharedPtr config_;
  ConnectionManagerStats& stats_;
  network::Connection* connection_{nullptr};
  ServerCodecPtr codec_;
  ActiveStream* streams_head_{nullptr};  // owned, newest first
  ActiveStream* streams_tail_{nullptr};
  event::MonotonicTime connected_at_;
  uint64_t requests_{0};  // streams begun, for max_requests_per_connection
  event::TimerPtr drain_timer_;
  // The count and the flags share 8 bytes (every connection holds one of these for its life:
  // 8 bytes more cost it a malloc size class).
  uint32_t stream_count_{0};
  bool draining_ : 1 {false};
  bool drain_close_idle_ : 1 {false};  // a hard drain (shutdown): close as soon as idle
  bool close_after_stream_ : 1 {false};  // a response carried "connection: close"
  bool closed_ : 1 {false};
  bool http2_ : 1 {false};
  // The connection speaks HTTP/1: its codec goes while the connection is idle (an idle
  // keep-alive connection holds none) and the next request's bytes make a new one.
  bool http1_ : 1 {false};
  // Inside codec_->dispatch(): the codec is not let go there (the parse loop goes on after a
  // stream it finished; onData() lets it go after dispatch() returns).
  bool dispatching_ : 1 {false};
  // HTTP/2 soft drain: between the shutdown notice and the final GOAWAY (drain_timeout), while
  // streams the client sent before it saw the notice may still arrive; no close before.
  bool final_goaway_pending_ : 1 {false};
};

}  // namespace sluice::http
