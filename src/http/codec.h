#pragma once

// The codec interface: a codec turns a connection's bytes into stream events (decoders) and
// stream events into bytes (encoders). Codecs know nothing of routes, clusters or filters.
// Server side: the codec calls ServerConnectionCallbacks::newStream() for each request and
// delivers it to the returned RequestDecoder; the response goes out through the
// ResponseEncoder it passed. Client side: newStream(ResponseDecoder&) returns the
// RequestEncoder of a new request; its response arrives at the decoder.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "event/dispatcher.h"
#include "http/header_map.h"

namespace sluice::buffer {
class Buffer;
}

namespace sluice::http {

enum class Protocol { Http10, Http11, Http2 };
std::string_view protocolString(Protocol p);  // "HTTP/1.0", "HTTP/1.1", "HTTP/2"

enum class StreamResetReason {
  ConnectionFailure,      // the connection could not be made
  ConnectionTermination,  // the connection closed under the stream
  LocalReset,
  LocalRefusedStreamReset,
  Overflow,  // a limit (circuit breaker, buffer) was hit
  RemoteReset,
  RemoteRefusedStreamReset,
  ConnectError,
  ProtocolError,
  ConnectionTimeout,
};
std::string_view resetReasonString(StreamResetReason reason);

class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  virtual void onResetStream(StreamResetReason reason, std::string_view details) = 0;
  // The stream's outbound bytes backed up above the buffer limit / drained again.
  virtual void onAboveWriteBufferHighWatermark() {}
  virtual void onBelowWriteBufferLowWatermark() {}
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual void addCallbacks(StreamCallbacks& callbacks) = 0;
  virtual void removeCallbacks(StreamCallbacks& callbacks) = 0;
  // Ends the stream abruptly (HTTP/1: closes the connection).
  virtual void resetStream(StreamResetReason reason) = 0;
  // Counted: stops delivering this stream's inbound body until re-enabled (HTTP/1: stops
  // reading the connection).
  virtual void readDisable(bool disable) = 0;
  virtual uint32_t bufferLimit() const = 0;
};

// Server side: writes the response.
class ResponseEncoder {
 public:
  virtual ~ResponseEncoder() = default;
  virtual void encode1xxHeaders(const ResponseHeaderMap& headers) = 0;
  virtual void encodeHeaders(const ResponseHeaderMap& headers, bool end_stream) = 0;
  // Moves `data` out (leaves it empty).
  virtual void encodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual void encodeTrailers(const ResponseTrailerMap& trailers) = 0;
  virtual Stream& getStream() = 0;
};

// Client side: writes the request.
class RequestEncoder {
 public:
  virtual ~RequestEncoder() = default;
  virtual void encodeHeaders(const RequestHeaderMap& headers, bool end_stream) = 0;
  virtual void encodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual void encodeTrailers(const RequestTrailerMap& trailers) = 0;
  virtual Stream& getStream() = 0;
};

// Server side: receives the request.
class RequestDecoder {
 public:
  virtual ~RequestDecoder() = default;
  virtual void decodeHeaders(HeaderMapPtr&& headers, bool end_stream) = 0;
  // Moves out what it consumes; whatever it leaves is dropped by the codec.
  virtual void decodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual void decodeTrailers(HeaderMapPtr&& trailers) = 0;
};

// Client side: receives the response.
class ResponseDecoder {
 public:
  virtual ~ResponseDecoder() = default;
  virtual void decode1xxHeaders(HeaderMapPtr&& headers) = 0;
  virtual void decodeHeaders(HeaderMapPtr&& headers, bool end_stream) = 0;
  virtual void decodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual void decodeTrailers(HeaderMapPtr&& trailers) = 0;
};

// What dispatch() found wrong. For a server codec, `http_status` is the local reply the
// connection manager should send (400, 413, 431, ...) if the response has not started,
// and `details` the response code details (Envoy's, e.g. "http1.codec_error").
struct CodecStatus {
  enum class Code { Ok, ProtocolError, PrematureResponse, BufferFlood };
  Code code{Code::Ok};
  uint32_t http_status{0};
  std::string details;

  bool ok() const { return code == Code::Ok; }
  static CodecStatus protocolError(uint32_t status, std::string details) {
    return {Code::ProtocolError, status, std::move(details)};
  }
};

class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  // The peer will open no new streams (HTTP/2 GOAWAY; HTTP/1 "Connection: close").
  virtual void onGoAway() {}
};

class ServerConnectionCallbacks : public ConnectionCallbacks {
 public:
  // A new request begins; its response goes out through `encoder`.
  virtual RequestDecoder& newStream(ResponseEncoder& encoder) = 0;
};

// Deferred-deletable (one vtable with the codec's own): the connection manager lets an idle
// HTTP/1 server codec go from inside a callback that may have come through it.
class CodecConnection : public event::DeferredDeletable {
 public:
  ~CodecConnection() override = default;
  // Parses `data`, draining what it consumed. Bytes it cannot use yet (a pipelined request
  // while a response is still going out) stay in `data`, and the codec stops reading the
  // connection until it can.
  virtual CodecStatus dispatch(buffer::Buffer& data) = 0;
  virtual Protocol protocol() const = 0;
  // No new streams on this connection (HTTP/1: the current response carries
  // "Connection: close"; HTTP/2: GOAWAY).
  virtual void goAway() = 0;
  // HTTP/2's graceful shutdown notice (RFC 9113 6.8): a GOAWAY naming the largest stream id,
  // so streams the peer already sent are still taken; goAway() later is the final one.
  // HTTP/1: nothing.
  virtual void shutdownNotice() {}
  // The underlying connection closed: streams still open are reset
  // (ConnectionTermination); a client codec ends a close-delimited response body first.
  virtual void onConnectionClosed() = 0;
  // The peer half-closed its side (ReadFilter::onData's end_stream; a codec enables half-close
  // on its connection once a tunnel is established). On an upgraded stream (WebSocket,
  // CONNECT) that direction of the tunnel ends: the decoder gets decodeData(empty, true).
  // Otherwise it does nothing (the connection's close resets an unfinished stream).
  virtual void onReadEndStream() = 0;
  virtual void onUnderlyingConnectionAboveWriteBufferHighWatermark() = 0;
  virtual void onUnderlyingConnectionBelowWriteBufferLowWatermark() = 0;
  // Streams whose user is done with them that the codec has yet to finish on the wire
  // (HTTP/2: a response's end that waits in nghttp2 for the peer's flow-control window). A
  // caller that closes the connection after its last stream waits for them: after the final
  // GOAWAY an HTTP/2 codec closes the connection itself once they are sent. HTTP/1: none.
  virtual bool hasStreamsToFinish() const { return false; }
};

class ServerCodec : public CodecConnection {
 public:
  // No exchange in progress and nothing kept for the next one: the connection manager may
  // drop the codec while the connection is idle and make a new one (of the same protocol) for
  // the next request's bytes. HTTP/2 keeps the connection's state in its codec: never.
  virtual bool releasableWhenIdle() const { return false; }
};
using ServerCodecPtr = std::unique_ptr<ServerCodec>;

class ClientCodec : public CodecConnection {
 public:
  virtual RequestEncoder& newStream(ResponseDecoder& decoder) = 0;
  // Streams started and not finished.
  virtual size_t activeStreams() const = 0;
};
using ClientCodecPtr = std::unique_ptr<ClientCodec>;

}  // namespace sluice::http
