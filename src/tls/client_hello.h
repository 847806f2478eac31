#pragma once

// The TLS inspector's parser (envoy.filters.listener.tls_inspector): reads the first bytes a
// client sent (peeked, not consumed) and tells whether they are a TLS ClientHello, and if so
// its SNI and ALPN protocols, so that a filter chain can be chosen before the handshake.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::tls {

struct ClientHelloInfo {
  bool is_tls{false};
  std::string server_name;
  std::vector<std::string> alpn;
};

enum class ClientHelloResult {
  NeedMoreData,  // a ClientHello has started but is not complete in `data`
  Done,          // `out` is filled in (is_tls false: not TLS, or a malformed hello)
};

// The most bytes worth peeking: a record header and a ClientHello that fits in one record.
inline constexpr size_t kMaxClientHelloPeek = 5 + 16 * 1024;

ClientHelloResult parseClientHello(const uint8_t* data, size_t len, ClientHelloInfo& out);

}  // namespace sluice::tls
