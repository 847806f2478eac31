#include "network/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>

#include "common/object_pool.h"
#include "network/io_socket.h"

namespace sluice::network {
namespace {

constexpr size_t kSunPathOffset = offsetof(sockaddr_un, sun_path);
constexpr size_t kSunPathSize = sizeof(sockaddr_un::sun_path);

// Writes an IPv4 address's dotted form ("10.0.0.1") to `out` (room for 15) and returns its
// length. Each accepted connection's peer address is formatted: glibc's inet_ntop() goes
// through sprintf, a few thousand instructions per connection.
size_t formatIpv4(const in_addr& addr, char* out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&addr.s_addr);  // network order
  char* p = out;
  for (int i = 0; i < 4; ++i) {
    const unsigned v = bytes[i];
    if (i > 0) *p++ = '.';
    if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
    *p++ = static_cast<char>('0' + v % 10);
  }
  return static_cast<size_t>(p - out);
}

// Returns nullptr after setting *error to "invalid address '<text>': <reason>".
AddressConstSharedPtr fail(std::string* error, std::string_view what, std::string_view text,
                           std::string_view reason) {
  if (error != nullptr) {
    error->clear();
    error->append(what).append(" '").append(text).append("': ").append(reason);
  }
  return nullptr;
}

AddressConstSharedPtr invalidAddress(std::string* error, std::string_view text,
                                     std::string_view reason) {
  return fail(error, "invalid address", text, reason);
}

// Parses a decimal port; false when it is not all digits. *out may exceed 65535.
bool parsePort(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 10) {
    return false;
  }
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = value;
  return true;
}

// Builds an IP address from a bracket-free IP and a port already checked to fit 16 bits.
// `text` is what the caller was given, for the error message.
AddressConstSharedPtr makeIp(std::string_view ip, uint16_t port, std::string_view text,
                             std::string* error) {
  // inet_pton needs a NUL-terminated string; the longest valid IPv6 text is 45 characters.
  char buf[INET6_ADDRSTRLEN + 1];
  if (ip.empty() || ip.size() >= sizeof(buf)) {
    return invalidAddress(error, text, "not an IP address");
  }
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = '\0';

  sockaddr_storage storage{};
  if (ip.find(':') == std::string_view::npos) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
    if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1) {
      return invalidAddress(error, text, "not an IPv4 address");
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    return fromSockAddr(storage, sizeof(sockaddr_in));
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1) {
    return invalidAddress(error, text, "not an IPv6 address");
  }
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  return fromSockAddr(storage, sizeof(sockaddr_in6));
}

AddressConstSharedPtr sockName(int fd, bool peer, std::string* error) {
  sockaddr_storage storage{};
  socklen_t len = sizeof(storage);
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &len);
  if (rc != 0) {
    if (error != nullptr) {
      *error = std::string(peer ? "getpeername" : "getsockname") + " failed on fd " +
               std::to_string(fd) + ": " + errorString(errno);
    }
    return nullptr;
  }
  AddressConstSharedPtr address = fromSockAddr(storage, len);
  if (address == nullptr && error != nullptr) {
    *error = "fd " + std::to_string(fd) + " has an unsupported address family " +
             std::to_string(storage.ss_family);
  }
  return address;
}

}  // namespace

// Derived only to reach Address's private constructor from make_shared.
struct SharedAddress : Address {
  SharedAddress(const sockaddr_storage& storage, socklen_t len, Type type)
      : Address(storage, len, type) {}
};

// A pipe address: its sockaddr_un follows the Address in the same block, so that IP
// addresses (nearly all of them) do not carry one.
struct SharedPipeAddress : Address {
  SharedPipeAddress(const sockaddr_storage& storage, socklen_t len)
      : Address(storage, len, Type::Pipe) {
    std::memset(&un, 0, sizeof(un));
    std::memcpy(&un, &storage, std::min<size_t>(len, sizeof(un)));
  }
  sockaddr_un un;
};

const std::string& Address::emptyString() {
  static const std::string empty;
  return empty;
}

const sockaddr* Address::pipeSockAddr() const {
  return reinterpret_cast<const sockaddr*>(&static_cast<const SharedPipeAddress*>(this)->un);
}

Address::Address(const sockaddr_storage& storage, socklen_t len, Type type)
    : len_(len), type_(type) {
  std::memset(&storage_, 0, sizeof(storage_));
  switch (type_) {
    case Type::Ipv4: {
      std::memcpy(&storage_, &storage, sizeof(sockaddr_in));
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage_);
      port_ = ntohs(sin->sin_port);
      char buf[INET_ADDRSTRLEN + 6];  // "255.255.255.255:65535"
      const size_t ip_len = formatIpv4(sin->sin_addr, buf);
      ip_len_ = static_cast<uint8_t>(ip_len);
      buf[ip_len] = ':';
      char* end = std::to_chars(buf + ip_len + 1, buf + sizeof(buf), port_).ptr;
      as_string_.assign(buf, static_cast<size_t>(end - buf));
      break;
    }
    case Type::Ipv6: {
      std::memcpy(&storage_, &storage, sizeof(sockaddr_in6));
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage_);
      char buf[INET6_ADDRSTRLEN];
      ::inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
      ip_len_ = static_cast<uint8_t>(::strlen(buf));
      port_ = ntohs(sin6->sin6_port);
      as_string_ = "[" + std::string(buf, ip_len_) + "]:" + std::to_string(port_);
      break;
    }
    case Type::Pipe: {
      // fromSockAddr() checked len <= sizeof(sockaddr_un); the caller's storage is a whole
      // sockaddr_storage.
      const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage);
      size_t path_len = len_ - kSunPathOffset;
      if (path_len > 0 && sun->sun_path[0] == '\0') {
        abstract_ = true;
        as_string_.reserve(path_len);
        as_string_.push_back('@');
        as_string_.append(sun->sun_path + 1, path_len - 1);
      } else {
        as_string_.assign(sun->sun_path, ::strnlen(sun->sun_path, path_len));
      }
      break;
    }
  }
}

bool Address::isAnyAddress() const {
  switch (type_) {
    case Type::Ipv4:
      return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == htonl(INADDR_ANY);
    case Type::Ipv6:
      return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
    case Type::Pipe:
      return false;
  }
  return false;
}

bool Address::isLoopback() const {
  switch (type_) {
    case Type::Ipv4:
      return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr) >> 24) == 127;
    case Type::Ipv6: {
      const in6_addr& addr = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
      return IN6_IS_ADDR_LOOPBACK(&addr) ||
             (IN6_IS_ADDR_V4MAPPED(&addr) && addr.s6_addr[12] == 127);
    }
    case Type::Pipe:
      return false;
  }
  return false;
}

bool Address::isInternal() const {
  switch (type_) {
    case Type::Ipv4: {
      const uint32_t a = ntohl(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr);
      return (a >> 24) == 10 || (a >> 16) == 0xc0a8 || (a >> 20) == 0xac1 || a == 0x7f000001;
    }
    case Type::Ipv6: {
      const in6_addr& addr = reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
      return IN6_IS_ADDR_LOOPBACK(&addr) || addr.s6_addr[0] == 0xfd;
    }
    case Type::Pipe:
      return false;
  }
  return false;
}

bool Address::operator==(const Address& other) const {
  if (type_ != other.type_) {
    return false;
  }
  switch (type_) {
    case Type::Ipv4: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
      const auto* b = reinterpret_cast<const sockaddr_in*>(&other.storage_);
      return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
    }
    case Type::Ipv6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
      const auto* b = reinterpret_cast<const sockaddr_in6*>(&other.storage_);
      return IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &b->sin6_addr) && a->sin6_port == b->sin6_port &&
             a->sin6_scope_id == b->sin6_scope_id;
    }
    case Type::Pipe:
      return abstract_ == other.abstract_ && as_string_ == other.as_string_;
  }
  return false;
}

AddressConstSharedPtr fromSockAddr(const sockaddr_storage& storage, socklen_t len) {
  if (len > sizeof(sockaddr_storage)) {
    return nullptr;
  }
  Address::Type type;
  switch (storage.ss_family) {
    case AF_INET:
      if (len < sizeof(sockaddr_in)) {
        return nullptr;
      }
      type = Address::Type::Ipv4;
      len = sizeof(sockaddr_in);
      break;
    case AF_INET6:
      if (len < sizeof(sockaddr_in6)) {
        return nullptr;
      }
      type = Address::Type::Ipv6;
      len = sizeof(sockaddr_in6);
      break;
    case AF_UNIX:
      if (len < kSunPathOffset || len > sizeof(sockaddr_un)) {
        return nullptr;
      }
      type = Address::Type::Pipe;
      break;
    default:
      return nullptr;
  }
  if (type == Address::Type::Pipe) {
    return std::make_shared<const SharedPipeAddress>(storage, len);
  }
  // A peer's address is made and freed once per connection: from the thread's free list.
  return std::allocate_shared<SharedAddress>(PoolAllocator<SharedAddress>(), storage, len, type);
}

AddressConstSharedPtr parseIpAndPort(std::string_view text, std::string* error) {
  if (text.empty()) {
    return invalidAddress(error, text, "empty");
  }
  std::string_view ip;
  std::string_view port_text;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return invalidAddress(error, text, "missing ']' after IPv6 address");
    }
    ip = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) {
      return invalidAddress(error, text, "missing port");
    }
    if (rest.front() != ':') {
      return invalidAddress(error, text, "expected ':' and a port after ']'");
    }
    port_text = rest.substr(1);
    if (ip.find(':') == std::string_view::npos) {
      return invalidAddress(error, text, "brackets are only for IPv6 addresses");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return invalidAddress(error, text, "missing port");
    }
    ip = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (ip.find(':') != std::string_view::npos) {
      return invalidAddress(error, text, "an IPv6 address must be in brackets, as in [::1]:80");
    }
  }
  if (port_text.empty()) {
    return invalidAddress(error, text, "missing port");
  }
  uint64_t port = 0;
  if (!parsePort(port_text, &port)) {
    if (!port_text.empty() && port_text.find_first_not_of("0123456789") == std::string_view::npos) {
      return invalidAddress(error, text, "port out of range");  // too many digits
    }
    return invalidAddress(error, text, "port is not a number");
  }
  if (port > 65535) {
    return invalidAddress(error, text, "port out of range");
  }
  return makeIp(ip, static_cast<uint16_t>(port), text, error);
}

AddressConstSharedPtr fromIp(std::string_view ip, uint32_t port, std::string* error) {
  if (port > 65535) {
    std::string text = ip.find(':') == std::string_view::npos
                           ? std::string(ip) + ":" + std::to_string(port)
                           : "[" + std::string(ip) + "]:" + std::to_string(port);
    return invalidAddress(error, text, "port out of range");
  }
  return makeIp(ip, static_cast<uint16_t>(port), ip, error);
}

AddressConstSharedPtr fromPipe(std::string_view path, std::string* error) {
  constexpr std::string_view kWhat = "invalid pipe address";
  if (path.empty()) {
    return fail(error, kWhat, path, "empty path");
  }
  if (path.find('\0') != std::string_view::npos) {
    return fail(error, kWhat, path, "path contains a NUL byte");
  }
  sockaddr_storage storage{};
  auto* sun = reinterpret_cast<sockaddr_un*>(&storage);
  sun->sun_family = AF_UNIX;
  socklen_t len;
  if (path.front() == '@') {
    std::string_view name = path.substr(1);
    if (name.empty()) {
      return fail(error, kWhat, path, "empty abstract socket name");
    }
    if (name.size() > kSunPathSize - 1) {
      return fail(error, kWhat, path,
                  "abstract name longer than " + std::to_string(kSunPathSize - 1) + " bytes");
    }
    sun->sun_path[0] = '\0';
    std::memcpy(sun->sun_path + 1, name.data(), name.size());
    len = static_cast<socklen_t>(kSunPathOffset + 1 + name.size());
  } else {
    if (path.size() > kSunPathSize - 1) {
      return fail(error, kWhat, path,
                  "path longer than " + std::to_string(kSunPathSize - 1) + " bytes");
    }
    std::memcpy(sun->sun_path, path.data(), path.size());
    sun->sun_path[path.size()] = '\0';
    len = static_cast<socklen_t>(kSunPathOffset + path.size() + 1);
  }
  return fromSockAddr(storage, len);
}

AddressConstSharedPtr localAddress(int fd, std::string* error) {
  return sockName(fd, /*peer=*/false, error);
}

AddressConstSharedPtr peerAddress(int fd, std::string* error) {
  return sockName(fd, /*peer=*/true, error);
}

AddressConstSharedPtr parseAddress(std::string_view text, std::string* error) {
  constexpr std::string_view kUnix = "unix:";
  if (text.starts_with(kUnix)) {
    return fromPipe(text.substr(kUnix.size()), error);
  }
  if (!text.empty() && (text.front() == '/' || text.front() == '@')) {
    return fromPipe(text, error);
  }
  return parseIpAndPort(text, error);
}

}  // namespace sluice::network
