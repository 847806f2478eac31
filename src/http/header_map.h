#pragma once

// HTTP headers (and trailers) as an ordered list of lower-case names and values, the one
// representation every codec produces and consumes. Requests carry the pseudo-headers
// :method, :path, :authority and :scheme, responses carry :status, whatever the protocol:
// the HTTP/1 codec makes them from the request and status lines (Envoy's convention).
// Pseudo-headers come first. Duplicate names are kept, in order.

#include <cstdint>
#include <memory>
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {

namespace headers {
inline constexpr std::string_view kMethod = ":method";
inline constexpr std::string_view kPath = ":path";
inline constexpr std::string_view kAuthority = ":authority";
inline constexpr std::string_view kScheme = ":scheme";
inline constexpr std::string_view kStatus = ":status";
inline constexpr std::string_view kProtocol = ":protocol";
inline constexpr std::string_view kHost = "host";
inline constexpr std::string_view kConnection = "connection";
inline constexpr std::string_view kContentLength = "content-length";
inline constexpr std::string_view kContentType = "content-type";
inline constexpr std::string_view kTransferEncoding = "transfer-encoding";
inline constexpr std::string_view kUpgrade = "upgrade";
inline constexpr std::string_view kExpect = "expect";
inline constexpr std::string_view kKeepAlive = "keep-alive";
inline constexpr std::string_view kProxyConnection = "proxy-connection";
inline constexpr std::string_view kTe = "te";
inline constexpr std::string_view kServer = "server";
inline constexpr std::string_view kDate = "date";
inline constexpr std::string_view kLocation = "location";
inline constexpr std::string_view kVia = "via";
inline constexpr std::string_view kUserAgent = "user-agent";
inline constexpr std::string_view kXForwardedFor = "x-forwarded-for";
inline constexpr std::string_view kXForwardedClientCert = "x-forwarded-client-cert";
inline constexpr std::string_view kXForwardedProto = "x-forwarded-proto";
inline constexpr std::string_view kXForwardedHost = "x-forwarded-host";
inline constexpr std::string_view kXRequestId = "x-request-id";
inline constexpr std::string_view kXEnvoyOriginalPath = "x-envoy-original-path";
inline constexpr std::string_view kXEnvoyUpstreamServiceTime = "x-envoy-upstream-service-time";
inline constexpr std::string_view kXEnvoyExpectedRqTimeoutMs = "x-envoy-expected-rq-timeout-ms";
inline constexpr std::string_view kXEnvoyInternal = "x-envoy-internal";
inline constexpr std::string_view kXEnvoyExternalAddress = "x-envoy-external-address";
inline constexpr std::string_view kXEnvoyDecoratorOperation = "x-envoy-decorator-operation";
}  // namespace headers

struct HeaderEntry {
  std::string key;  // lower case
  std::string value;
};

class HeaderMap {
 public:
  // Room for a typical request's or response's headers up front: one allocation instead of
  // the vector's five as it grows to a dozen entries.
  static constexpr size_t kInitialCapacity = 16;
  HeaderMap() { entries_.reserve(kInitialCapacity); }
  HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> init) {
    entries_.reserve(std::max(kInitialCapacity, init.size()));
    for (const auto& [k, v] : init) add(k, v);
  }

  // The first value of `key`, or null. `key` must be lower case.
  const std::string* get(std::string_view key) const;
  // The first value of `key`, or "" when absent.
  std::string_view getValue(std::string_view key) const {
    const std::string* v = get(key);
    return v ? std::string_view(*v) : std::string_view();
  }
  bool has(std::string_view key) const { return get(key) != nullptr; }
  size_t count(std::string_view key) const;

  // Appends an entry (duplicates are kept). Pseudo-headers go before regular ones.
  void add(std::string_view key, std::string_view value);
  // Replaces every entry of `key` with one (added if absent, in place of the first if present).
  void set(std::string_view key, std::string_view value);
  // Appends `value` to the first entry of `key` with a ',' (or adds the entry).
  void append(std::string_view key, std::string_view value);
  // Removes every entry of `key`; returns how many.
  size_t remove(std::string_view key);
  template <class Pred>
  size_t removeIf(Pred&& pred) {
    size_t removed = 0;
    for (size_t i = 0; i < entries_.size();) {
      if (pred(entries_[i])) {
        byte_size_ -= entries_[i].key.size() + entries_[i].value.size();
        entries_.erase(entries_.begin() + i);
        ++removed;
      } else {
        ++i;
      }
    }
    return removed;
  }
  void clear() {
    entries_.clear();
    byte_size_ = 0;
  }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Sum of the names' and values' lengths.
  uint64_t byteSize() const { return byte_size_; }

  std::vector<HeaderEntry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<HeaderEntry>::const_iterator end() const { return entries_.end(); }

  // Shorthands for the pseudo-headers.
  std::string_view method() const { return getValue(headers::kMethod); }
  std::string_view path() const { return getValue(headers::kPath); }
  std::string_view authority() const { return getValue(headers::kAuthority); }
  std::string_view scheme() const { return getValue(headers::kScheme); }
  // The response status, or 0 when absent or not a number.
  uint32_t status() const;

  bool operator==(const HeaderMap& other) const;

 private:
  std::vector<HeaderEntry> entries_;
  uint64_t byte_size_{0};
};

using RequestHeaderMap = HeaderMap;
using ResponseHeaderMap = HeaderMap;
using RequestTrailerMap = HeaderMap;
using ResponseTrailerMap = HeaderMap;
using HeaderMapPtr = std::unique_ptr<HeaderMap>;

// Lower-cases ASCII in place.
void toLowerInPlace(std::string& s);

}  // namespace sluice::http
