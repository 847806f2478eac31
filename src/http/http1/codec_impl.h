#pragma once

// The HTTP/1.1 codec on llhttp, server and client side. It turns a connection's bytes into
// the stream events of http/codec.h and back; llhttp parses strictly (no lenient flags), and
// the codec adds the checks llhttp leaves to its user (header name tokens, sizes, counts,
// Host). One stream at a time: the server parses a pipelined request only after the previous
// response went out; the client has one request in flight.
//
// The owner (the connection manager, or a connection pool) calls dispatch() from its
// ReadFilter::onData() and onConnectionClosed() when the connection closes. Each encode call
// makes one connection write.

#include <cstddef>
#include <cstdint>
#include <string>

#include "http/codec.h"
#include "network/connection.h"

namespace sluice::stats {
class Counter;
}

namespace sluice::http::http1 {

struct CodecSettings {
  // Envoy's default: bytes of the request line, header names and values over this -> 431.
  uint32_t max_request_headers_kb = 60;
  // More headers than this -> 431.
  uint32_t max_headers_count = 100;
  enum class UnderscoreAction { Allow, RejectRequest, DropHeader };
  UnderscoreAction headers_with_underscores = UnderscoreAction::Allow;
  // Envoy's Http1ProtocolOptions default: an HTTP/1.0 request gets 426 unless enabled.
  bool accept_http_10 = false;
  // :authority for an HTTP/1.0 request without Host (none when empty).
  std::string default_host_for_http_10;
  // Envoy's default: chunked trailers are parsed and dropped, and not encoded.
  bool enable_trailers = false;
};

// Envoy's http1.* counters; each may be null.
struct CodecStats {
  stats::Counter* dropped_headers_with_underscores = nullptr;
  stats::Counter* requests_rejected_with_underscores_in_headers = nullptr;
};

// A server codec for `connection`. Errors come back from dispatch() as
// CodecStatus::protocolError(http_status, details); the stream of the failed request exists
// (newStream() is called when a request begins), so the caller can send the local reply on it.
ServerCodecPtr createServerCodec(network::Connection& connection,
                                 ServerConnectionCallbacks& callbacks,
                                 const CodecSettings& settings, CodecStats stats = {});

// A client codec for `connection`: one request at a time.
ClientCodecPtr createClientCodec(network::Connection& connection, ConnectionCallbacks& callbacks,
                                 const CodecSettings& settings);

// A server codec holds llhttp's parser and its per-message state (URL, header strings, body
// spans, the stream's callbacks) only while a request is parsed and its exchange is in
// progress: an idle keep-alive connection holds none. The blocks come from a per-thread free
// list. A client codec takes one with its first request and keeps it. For tests: whether
// `codec` (made here) holds its parse state now, and the free list's length on this thread.
bool holdsParseState(const CodecConnection& codec);
size_t freeParseStates();

}  // namespace sluice::http::http1
