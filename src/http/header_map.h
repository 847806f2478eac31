#pragma once

// HTTP headers (and trailers) as an ordered list of lower-case names and values, the one
// representation every codec produces and consumes. Requests carry the pseudo-headers
// :method, :path, :authority and :scheme, responses carry :status, whatever the protocol:
// the HTTP/1 codec makes them from the request and status lines (Envoy's convention).
// Pseudo-headers come first. Duplicate names are kept, in order.
//
// Storage is built for the request path: a map is one object with room inside it for a
// typical message's entries and bytes, so a request's headers cost one allocation (the map)
// rather than one per name or value longer than std::string's inline buffer. Names and values
// are copied into the map's byte arena and handed out as string_views. Bytes are never moved
// or reused while the map lives (set() and append() write new bytes; removal leaves the old
// ones), so a view obtained from the map stays valid until the map is destroyed or cleared,
// whatever is added or changed meanwhile. Pointers returned by get() and iterators point into
// the entry array, which moves when it grows: they last until the next add, set or remove.

#include <cstdint>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "common/object_pool.h"

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
  std::string_view key;  // lower case
  std::string_view value;
};

// Pooled: a request's two maps come from the worker's free list, not malloc (they are about
// 1 KiB, made and freed in batches when many streams are in flight).
class HeaderMap : public Pooled<HeaderMap> {
 public:
  // Entries and bytes that fit in the object itself; beyond them the map allocates. Sized so
  // that the whole object stays under 1 KiB (allocators serve that from their fast caches).
  static constexpr size_t kInlineEntries = 16;
  static constexpr size_t kInlineBytes = 440;

  HeaderMap() {}
  HeaderMap(std::initializer_list<std::pair<std::string_view, std::string_view>> init) {
    for (const auto& [k, v] : init) add(k, v);
  }
  HeaderMap(const HeaderMap& other) { copyFrom(other); }
  HeaderMap& operator=(const HeaderMap& other) {
    if (this != &other) {
      clear();
      copyFrom(other);
    }
    return *this;
  }
  // A move copies (the entries point into the object's own storage).
  HeaderMap(HeaderMap&& other) : HeaderMap(static_cast<const HeaderMap&>(other)) {}
  HeaderMap& operator=(HeaderMap&& other) { return *this = static_cast<const HeaderMap&>(other); }
  ~HeaderMap() { release(); }

  // The first value of `key`, or null. `key` must be lower case. A name that is absent is
  // usually answered from the name filter alone, without a scan.
  const std::string_view* get(std::string_view key) const {
    return mayHave(key) ? find(key) : nullptr;
  }
  // The first value of `key`, or "" when absent.
  std::string_view getValue(std::string_view key) const {
    const std::string_view* v = get(key);
    return v ? *v : std::string_view();
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
    size_t kept = 0;
    names_[0] = names_[1] = 0;
    for (size_t i = 0; i < size_; ++i) {
      if (pred(static_cast<const HeaderEntry&>(entries_[i]))) {
        byte_size_ -= entries_[i].key.size() + entries_[i].value.size();
      } else {
        if (kept != i) entries_[kept] = entries_[i];
        noteName(entries_[kept].key);
        ++kept;
      }
    }
    const size_t removed = size_ - kept;
    size_ = kept;
    return removed;
  }
  // Removes every entry and frees what the map allocated.
  void clear() {
    release();
    size_ = 0;
    byte_size_ = 0;
    names_[0] = names_[1] = 0;
  }

  // The name filter: false means no entry has the name `key`; true means one may have it.
  // One bit of 128 per name, from its length and two of its bytes; bits are set as names are
  // added and recomputed when entries are removed. For a constant `key` the bit is a constant.
  bool mayHave(std::string_view key) const {
    const uint32_t bit = nameBit(key);
    return (names_[bit >> 6] >> (bit & 63)) & 1;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Sum of the names' and values' lengths.
  uint64_t byteSize() const { return byte_size_; }

  const HeaderEntry* begin() const { return entries_; }
  const HeaderEntry* end() const { return entries_ + size_; }

  // Shorthands for the pseudo-headers.
  std::string_view method() const { return getValue(headers::kMethod); }
  std::string_view path() const { return getValue(headers::kPath); }
  std::string_view authority() const { return getValue(headers::kAuthority); }
  std::string_view scheme() const { return getValue(headers::kScheme); }
  // The response status, or 0 when absent or not a number.
  uint32_t status() const;

  bool operator==(const HeaderMap& other) const;

 private:
  // A heap block of bytes, once the inline bytes are used up; blocks form a list.
  struct Block {
    Block* next;
    // The bytes follow.
  };

  static uint32_t nameBit(std::string_view key) {
    const size_t n = key.size();
    if (n == 0) return 0;
    const uint32_t last = static_cast<unsigned char>(key[n - 1]);
    const uint32_t mid = static_cast<unsigned char>(key[n / 2]);
    return static_cast<uint32_t>(n * 2 + last + mid * 11) & 127;
  }
  void noteName(std::string_view key) {
    const uint32_t bit = nameBit(key);
    names_[bit >> 6] |= uint64_t{1} << (bit & 63);
  }
  // The first entry of `key` by a scan, or null.
  const std::string_view* find(std::string_view key) const;

  // A copy of `s` in the arena.
  std::string_view store(std::string_view s) {
    if (s.empty()) return std::string_view("", 0);
    if (s.size() > bytes_left_) newBlock(s.size());
    char* p = bytes_next_;
    std::char_traits<char>::copy(p, s.data(), s.size());
    bytes_next_ += s.size();
    bytes_left_ -= s.size();
    return std::string_view(p, s.size());
  }
  void newBlock(size_t at_least);
  // Room for one more entry.
  void reserveEntry() {
    if (size_ == capacity_) growEntries();
  }
  void growEntries();
  void copyFrom(const HeaderMap& other);
  // Frees the heap blocks and entries and returns to the inline storage.
  void release();

  HeaderEntry* entries_{inline_entries_};
  uint32_t size_{0};
  uint32_t capacity_{kInlineEntries};
  uint64_t names_[2]{0, 0};  // the name filter (mayHave)
  uint64_t byte_size_{0};
  char* bytes_next_{inline_bytes_};
  size_t bytes_left_{kInlineBytes};
  Block* blocks_{nullptr};
  // Left uninitialised: entries and bytes are written before they are read.
  union {
    HeaderEntry inline_entries_[kInlineEntries];
  };
  char inline_bytes_[kInlineBytes];
};

using RequestHeaderMap = HeaderMap;
using ResponseHeaderMap = HeaderMap;
using RequestTrailerMap = HeaderMap;
using ResponseTrailerMap = HeaderMap;
using HeaderMapPtr = std::unique_ptr<HeaderMap>;

// Lower-cases ASCII in place.
void toLowerInPlace(std::string& s);

}  // namespace sluice::http
