#include "network/listener_filters.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace sluice::network {

namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view kV1Signature = "PROXY ";
constexpr size_t kMaxV1Line = 107;

// Whether `data` could still become `sig` (its first bytes agree).
bool prefixOf(const uint8_t* data, size_t len, const uint8_t* sig, size_t sig_len) {
  return std::memcmp(data, sig, std::min(len, sig_len)) == 0;
}

bool parsePort(std::string_view s, uint32_t& port) {
  if (s.empty() || s.size() > 5) return false;
  port = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  return port <= 65535;
}

ParseResult parseV1(const uint8_t* data, size_t len, ProxyProtocolHeader& out) {
  out.version = 1;
  const std::string_view text(reinterpret_cast<const char*>(data), std::min(len, kMaxV1Line));
  const size_t eol = text.find("\r\n");
  if (eol == std::string_view::npos) {
    return len >= kMaxV1Line ? ParseResult::Error : ParseResult::NeedMoreData;
  }
  out.length = eol + 2;
  // "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222" or "PROXY UNKNOWN[ anything]".
  std::string_view rest = text.substr(kV1Signature.size(), eol - kV1Signature.size());
  std::string_view parts[5];
  size_t n = 0;
  while (!rest.empty() && n < 5) {
    const size_t sp = rest.find(' ');
    parts[n++] = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
  }
  if (n >= 1 && parts[0] == "UNKNOWN") {
    out.local = true;
    return ParseResult::Done;
  }
  if (n != 5 || !rest.empty() || (parts[0] != "TCP4" && parts[0] != "TCP6")) {
    return ParseResult::Error;
  }
  uint32_t sport = 0, dport = 0;
  if (!parsePort(parts[3], sport) || !parsePort(parts[4], dport)) return ParseResult::Error;
  out.source = fromIp(parts[1], sport, nullptr);
  out.destination = fromIp(parts[2], dport, nullptr);
  if (!out.source || !out.destination) return ParseResult::Error;
  const Address::Type family = parts[0] == "TCP6" ? Address::Type::Ipv6 : Address::Type::Ipv4;
  if (out.source->type() != family || out.destination->type() != family) return ParseResult::Error;
  return ParseResult::Done;
}

ParseResult parseV2(const uint8_t* data, size_t len, ProxyProtocolHeader& out) {
  out.version = 2;
  if (len < 16) return ParseResult::NeedMoreData;
  const uint8_t ver_cmd = data[12];
  const uint8_t fam = data[13];
  const size_t body = (static_cast<size_t>(data[14]) << 8) | data[15];
  if ((ver_cmd >> 4) != 2) return ParseResult::Error;
  const uint8_t cmd = ver_cmd & 0x0F;
  if (cmd > 1) return ParseResult::Error;
  if (len < 16 + body) return ParseResult::NeedMoreData;
  out.length = 16 + body;
  if (cmd == 0) {  // LOCAL: a health check from the proxy itself
    out.local = true;
    return ParseResult::Done;
  }
  const uint8_t family = fam >> 4;
  const uint8_t transport = fam & 0x0F;
  if (family == 0) {  // AF_UNSPEC
    out.local = true;
    return ParseResult::Done;
  }
  if ((family != 1 && family != 2) || transport != 1) return ParseResult::Error;  // TCP over IP
  const uint8_t* a = data + 16;
  char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
  size_t addr_len = family == 1 ? 4 : 16;
  if (body < 2 * addr_len + 4) return ParseResult::Error;
  const int af = family == 1 ? AF_INET : AF_INET6;
  if (!inet_ntop(af, a, src, sizeof(src)) || !inet_ntop(af, a + addr_len, dst, sizeof(dst))) {
    return ParseResult::Error;
  }
  const uint32_t sport = (static_cast<uint32_t>(a[2 * addr_len]) << 8) | a[2 * addr_len + 1];
  const uint32_t dport = (static_cast<uint32_t>(a[2 * addr_len + 2]) << 8) | a[2 * addr_len + 3];
  out.source = fromIp(src, sport, nullptr);
  out.destination = fromIp(dst, dport, nullptr);
  if (!out.source || !out.destination) return ParseResult::Error;
  return ParseResult::Done;  // TLVs after the addresses are skipped
}

}  // namespace

ParseResult parseProxyProtocol(const uint8_t* data, size_t len, ProxyProtocolHeader& out) {
  out = ProxyProtocolHeader{};
  if (len == 0) return ParseResult::NeedMoreData;
  const auto* v1 = reinterpret_cast<const uint8_t*>(kV1Signature.data());
  if (prefixOf(data, len, kV2Signature, sizeof(kV2Signature))) {
    return len < sizeof(kV2Signature) ? ParseResult::NeedMoreData : parseV2(data, len, out);
  }
  if (prefixOf(data, len, v1, kV1Signature.size())) {
    return len < kV1Signature.size() ? ParseResult::NeedMoreData : parseV1(data, len, out);
  }
  return ParseResult::NotFound;
}

ParseResult detectHttpProtocol(const uint8_t* data, size_t len, std::string_view& protocol) {
  static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  protocol = {};
  const std::string_view text(reinterpret_cast<const char*>(data), len);
  if (kPreface.substr(0, std::min(len, kPreface.size())) == text.substr(0, kPreface.size())) {
    if (len < kPreface.size()) return ParseResult::NeedMoreData;
    protocol = "h2c";
    return ParseResult::Done;
  }
  // An HTTP/1 request line: METHOD SP target SP HTTP/1.x CRLF. A method is a token.
  size_t i = 0;
  while (i < len && i < 32 && ((text[i] >= 'A' && text[i] <= 'Z') || text[i] == '-' || text[i] == '_')) ++i;
  if (i == len) return i < 32 ? ParseResult::NeedMoreData : ParseResult::NotFound;
  if (i == 0 || text[i] != ' ') return ParseResult::NotFound;
  const size_t eol = text.find('\n', i);
  if (eol == std::string_view::npos) {
    // Request lines are short; a long one without an end is not worth waiting for.
    return len < 8192 ? ParseResult::NeedMoreData : ParseResult::NotFound;
  }
  std::string_view line = text.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() < 10 || line[line.size() - 9] != ' ') return ParseResult::NotFound;
  const std::string_view version = line.substr(line.size() - 8);
  if (version == "HTTP/1.1") protocol = "http/1.1";
  else if (version == "HTTP/1.0") protocol = "http/1.0";
  else return ParseResult::NotFound;
  return ParseResult::Done;
}

}  // namespace sluice::network
