#pragma once

// What the listener filters read from the first bytes of an accepted connection, before a
// filter chain is chosen: the PROXY protocol header (v1 text or v2 binary, HAProxy's spec),
// which carries the original client's addresses, and the HTTP inspector's guess of the
// protocol (HTTP/1.x request line or the HTTP/2 prior-knowledge preface). Pure functions of
// the bytes; the listener peeks and, for PROXY, consumes the header.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "network/address.h"

namespace sluice::network {

enum class ParseResult { NeedMoreData, Done, NotFound, Error };

// The longest header: v1 is at most 107 bytes; v2 has a 16-byte prefix and a 16-bit length.
inline constexpr size_t kMaxProxyProtocolHeader = 16 + 65535;

struct ProxyProtocolHeader {
  int version{0};         // 1 or 2
  size_t length{0};       // bytes to consume
  bool local{false};      // v1 UNKNOWN or v2 LOCAL / AF_UNSPEC: keep the socket's addresses
  AddressConstSharedPtr source;       // the original client
  AddressConstSharedPtr destination;  // the address it connected to
};

// NotFound: the bytes are not a PROXY header (neither signature). Error: a signature, then
// something malformed or unsupported (AF_UNIX, a bad address). `out.version` is set as
// soon as the signature is seen.
ParseResult parseProxyProtocol(const uint8_t* data, size_t len, ProxyProtocolHeader& out);

// "http/1.1", "http/1.0" or "h2c" when the bytes start so; NotFound when they cannot be
// HTTP (leaving `protocol` empty).
ParseResult detectHttpProtocol(const uint8_t* data, size_t len, std::string_view& protocol);

}  // namespace sluice::network
