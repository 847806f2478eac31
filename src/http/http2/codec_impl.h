#pragma once

// The HTTP/2 codec on nghttp2, server and client side. Many streams share one connection;
// each is a Stream with its own encoder and decoder (http/codec.h). Headers arrive and leave
// in the shared pseudo-header form of header_map.h, so the connection manager and the router
// see the same request whichever protocol carried it.
//
// Flow control is per stream and manual: received DATA returns its window only once the
// stream's decoder has taken it, so a stream that is read-disabled (its consumer is slow)
// closes the peer's window and holds at most one window of bytes. Outbound bytes wait in a
// per-stream buffer with watermarks at the connection's buffer limit.
//
// Protections come from nghttp2 and from the codec: a header list over
// max_request_headers_kb (or over max_headers_count entries) resets the stream, streams
// opened and reset faster than the reset rate limit close the connection (GOAWAY
// ENHANCE_YOUR_CALM), CONTINUATION frames per header block are bounded, too many SETTINGS or
// PING frames waiting for their ACK close the connection.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "http/codec.h"
#include "network/connection.h"

namespace sluice::buffer {
class Buffer;
}
namespace sluice::stats {
class Counter;
}

namespace sluice::http::http2 {

// Envoy's Http2ProtocolOptions defaults.
struct CodecSettings {
  uint32_t max_concurrent_streams = 2147483647;
  uint32_t initial_stream_window_size = 268435456;      // 256 MiB
  uint32_t initial_connection_window_size = 268435456;  // 256 MiB
  // Header list limits (the connection manager's max_request_headers_kb and
  // max_headers_count); over them the stream is reset.
  uint32_t max_headers_kb = 60;
  uint32_t max_headers_count = 100;
  // Rapid reset: a token bucket of stream resets the peer may cause (burst, then per
  // second); past it the connection is closed with GOAWAY.
  uint64_t reset_burst = 1000;
  uint64_t resets_per_second = 33;
  // SETTINGS and PING frames whose ACKs may wait to be written before the connection is
  // closed as a flood.
  size_t max_outbound_acks = 1000;
  // connection_keepalive (off while keepalive_timeout is 0): a PING every keepalive_interval
  // (plus up to keepalive_jitter_percent of it, at random), and before a new stream on a
  // connection that received nothing for keepalive_idle_interval (client side); no ACK within
  // keepalive_timeout (extended by any frame received) closes the connection and counts
  // keepalive_timeout_counter.
  std::chrono::milliseconds keepalive_interval{0};
  std::chrono::milliseconds keepalive_timeout{0};
  std::chrono::milliseconds keepalive_idle_interval{0};
  uint32_t keepalive_jitter_percent = 15;
  stats::Counter* keepalive_timeout_counter = nullptr;
};

// The client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").
inline constexpr std::string_view kConnectionPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// For codec_type AUTO: true when `data` starts with the preface, false when it cannot, and
// nullopt-like "undecided" is reported through `need_more` while `data` is a shorter prefix.
bool startsWithPreface(const buffer::Buffer& data, bool& need_more);

ServerCodecPtr createServerCodec(network::Connection& connection,
                                 ServerConnectionCallbacks& callbacks,
                                 const CodecSettings& settings);

ClientCodecPtr createClientCodec(network::Connection& connection, ConnectionCallbacks& callbacks,
                                 const CodecSettings& settings);

}  // namespace sluice::http::http2
