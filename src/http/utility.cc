#include "http/utility.h"

#include <algorithm>
#include <random>
#include <vector>

namespace sluice::http {

namespace {

bool isUnreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::mt19937_64& generator() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

void mergeSlashes(std::string& path) {
  const size_t q = path.find('?');
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (i < q && path[i] == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(path[i]);
  }
  path.swap(out);
}

bool normalizePath(std::string& path, bool merge_slashes) {
  if (path.empty() || path[0] != '/') return false;
  const size_t q = path.find('?');
  std::string_view raw = std::string_view(path).substr(0, q);
  // Decode percent-encoded unreserved characters (others stay encoded).
  std::string decoded;
  decoded.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size()) {
      const int hi = hexValue(raw[i + 1]);
      const int lo = hexValue(raw[i + 2]);
      if (hi >= 0 && lo >= 0) {
        const char c = static_cast<char>(hi * 16 + lo);
        if (isUnreserved(c)) {
          decoded.push_back(c);
          i += 2;
          continue;
        }
        // Keep the escape, upper-cased as RFC 3986 recommends.
        decoded.push_back('%');
        decoded.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(raw[i + 1]))));
        decoded.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(raw[i + 2]))));
        i += 2;
        continue;
      }
    }
    decoded.push_back(raw[i]);
  }
  // Remove dot segments.
  std::vector<std::string_view> segments;
  std::string_view rest = decoded;
  rest.remove_prefix(1);
  bool trailing_slash = false;
  while (true) {
    const size_t slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    const bool last = slash == std::string_view::npos;
    if (seg == ".") {
      trailing_slash = last;
    } else if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      trailing_slash = last;
    } else if (seg.empty() && merge_slashes && !last) {
      // "//" collapses
    } else {
      segments.push_back(seg);
      trailing_slash = false;
    }
    if (last) break;
    rest.remove_prefix(slash + 1);
  }
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i) out.push_back('/');
    out.append(segments[i]);
  }
  if (trailing_slash && out.back() != '/') out.push_back('/');
  if (q != std::string::npos) out.append(path, q, std::string::npos);
  path.swap(out);
  return true;
}

uint64_t randomU64() { return generator()(); }

std::string randomUuid() {
  uint64_t a = randomU64();
  uint64_t b = randomU64();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 10
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  int pos = 0;
  auto put = [&](uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      out[pos++] = kHex[(v >> (i * 4)) & 0xf];
    }
  };
  put(a, 16);
  put(b, 16);
  return out;
}

std::string_view statusReason(uint32_t code) {
  switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

std::string_view trustedXffAddress(std::string_view xff, uint32_t num_trusted_hops) {
  // Walk from the right, skipping num_trusted_hops entries.
  uint32_t skipped = 0;
  size_t end = xff.size();
  while (true) {
    const size_t comma = xff.rfind(',', end == 0 ? 0 : end - 1);
    const size_t start = (comma == std::string_view::npos || comma >= end) ? 0 : comma + 1;
    std::string_view item = trim(xff.substr(start, end - start));
    if (skipped == num_trusted_hops) return item;
    ++skipped;
    if (start == 0) return {};
    end = start - 1;
  }
}

bool isHopByHopHeader(std::string_view name) {
  return name == headers::kConnection || name == headers::kKeepAlive ||
         name == headers::kProxyConnection || name == headers::kTransferEncoding ||
         name == headers::kUpgrade || name == headers::kTe;
}

bool headerHasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool isGrpcContentType(std::string_view ct) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (ct.size() < kGrpc.size() || !equalsIgnoreCase(ct.substr(0, kGrpc.size()), kGrpc)) {
    return false;
  }
  return ct.size() == kGrpc.size() || ct[kGrpc.size()] == '+' || ct[kGrpc.size()] == ';';
}

uint32_t httpToGrpcStatus(uint32_t http_status) {
  switch (http_status) {
    case 400: return 13;  // INTERNAL
    case 401: return 16;  // UNAUTHENTICATED
    case 403: return 7;   // PERMISSION_DENIED
    case 404: return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504: return 14;  // UNAVAILABLE
    default: return 2;    // UNKNOWN
  }
}

std::string grpcMessageEncode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < ' ' || c > '~' || c == '%') {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

std::optional<std::chrono::milliseconds> parseGrpcTimeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (const char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  switch (v.back()) {
    case 'H': return std::chrono::milliseconds(n * 3600 * 1000);
    case 'M': return std::chrono::milliseconds(n * 60 * 1000);
    case 'S': return std::chrono::milliseconds(n * 1000);
    case 'm': return std::chrono::milliseconds(n);
    case 'u': return std::chrono::milliseconds((n + 999) / 1000);
    case 'n': return std::chrono::milliseconds((n + 999999) / 1000000);
    default: return std::nullopt;
  }
}

std::string formatGrpcTimeout(std::chrono::milliseconds timeout) {
  // At most 8 digits: switch to a larger unit (rounded up) when milliseconds need more.
  constexpr uint64_t kMax = 99999999;
  uint64_t n = static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 0));
  static constexpr std::pair<uint64_t, char> kUnits[] = {{1000, 'S'}, {60, 'M'}, {60, 'H'}};
  char unit = 'm';
  for (const auto& [factor, next] : kUnits) {
    if (n <= kMax) break;
    n = (n + factor - 1) / factor;
    unit = next;
  }
  return std::to_string(std::min(n, kMax)) + unit;
}

}  // namespace sluice::http
