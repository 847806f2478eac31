#pragma once

// Network addresses: an IPv4 or IPv6 address with a port, or a Unix domain socket path
// ("pipe", including Linux abstract sockets written "@name"). An Address is immutable and
// shared (AddressConstSharedPtr); it holds the sockaddr that the kernel takes, and its text
// form is computed once at construction, so passing, printing and comparing addresses on the
// request path costs no formatting and no allocation.
//
// Factories never throw: on bad input they return nullptr and, when `error` is not null, set
// it to a message naming the input, e.g. "invalid address '1.2.3.4:99999': port out of range".

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::network {

class Address;
using AddressConstSharedPtr = std::shared_ptr<const Address>;

class Address {
 public:
  enum class Type : uint8_t { Ipv4, Ipv6, Pipe };

  Type type() const { return type_; }
  bool isIp() const { return type_ != Type::Pipe; }

  // The sockaddr to hand to bind()/connect()/sendto().
  const sockaddr* sockAddr() const {
    return type_ == Type::Pipe ? pipeSockAddr() : reinterpret_cast<const sockaddr*>(&storage_);
  }
  socklen_t sockAddrLen() const { return len_; }

  // The port in host order; 0 for pipes.
  uint32_t port() const { return port_; }
  // The IP in text form without brackets ("127.0.0.1", "::1"); empty for pipes.
  std::string_view ip() const {
    return std::string_view(as_string_).substr(type_ == Type::Ipv6 ? 1 : 0, ip_len_);
  }
  // The pipe path ("/run/x.sock", or "@name" for an abstract socket; empty for an unnamed
  // socket such as the client end of a Unix connection); empty for IPs.
  const std::string& path() const { return type_ == Type::Pipe ? as_string_ : emptyString(); }
  bool isAbstract() const { return abstract_; }

  // "127.0.0.1:80", "[::1]:80", or the pipe path. parseAddress(asString()) gives back an
  // equal address for every named address.
  const std::string& asString() const { return as_string_; }

  // 0.0.0.0 or ::. False for pipes.
  bool isAnyAddress() const;
  // 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. False for pipes.
  bool isLoopback() const;
  // Envoy's default "internal" address: RFC1918 (10/8, 172.16/12, 192.168/16) and 127.0.0.1
  // for IPv4; RFC4193 (fd00::/8) and ::1 for IPv6. False for pipes.
  bool isInternal() const;

  // Same family, same IP, same port (and IPv6 scope id); or the same pipe path.
  bool operator==(const Address& other) const;

 private:
  friend AddressConstSharedPtr fromSockAddr(const sockaddr_storage& storage, socklen_t len);
  friend struct SharedAddress;      // one allocation with its shared_ptr count (address.cc)
  friend struct SharedPipeAddress;  // the same with a sockaddr_un (address.cc)
  Address(const sockaddr_storage& storage, socklen_t len, Type type);
  static const std::string& emptyString();
  // A pipe's sockaddr_un, kept after the Address in its SharedPipeAddress block.
  const sockaddr* pipeSockAddr() const;

  // Every accepted connection holds its peer's Address, so its size counts per connection:
  // the IP families' union is 28 bytes; a pipe's 110-byte sockaddr_un is only in a pipe's
  // block, and its path is its as_string_.
  union Storage {
    sockaddr_in in4;
    sockaddr_in6 in6;
  };

  Storage storage_;
  socklen_t len_;
  uint32_t port_{0};
  Type type_;
  bool abstract_{false};
  // The IP's text is part of as_string_ ("ip:port", "[ip]:port"): its length, not a copy.
  uint8_t ip_len_{0};
  std::string as_string_;
};

// "1.2.3.4:80" or "[::1]:80". The port is required (0 is allowed, for "any port").
AddressConstSharedPtr parseIpAndPort(std::string_view text, std::string* error);

// An IP without brackets ("10.0.0.1", "fe80::1") and a port <= 65535.
AddressConstSharedPtr fromIp(std::string_view ip, uint32_t port, std::string* error);

// A Unix socket path; "@name" is the abstract socket "name". The path must fit sun_path
// (107 bytes for a file path, 107 for an abstract name) and contain no NUL byte.
AddressConstSharedPtr fromPipe(std::string_view path, std::string* error);

// The address the kernel gave (accept, getsockname, recvfrom). nullptr for a family other
// than AF_INET, AF_INET6 and AF_UNIX, or a length too short for the family.
AddressConstSharedPtr fromSockAddr(const sockaddr_storage& storage, socklen_t len);

// getsockname()/getpeername() of an fd; nullptr (and `error` set) on failure.
AddressConstSharedPtr localAddress(int fd, std::string* error = nullptr);
AddressConstSharedPtr peerAddress(int fd, std::string* error = nullptr);

// Any address as written in config or on a command line: "unix:/path", "unix:@abstract",
// "/path", "@abstract", "1.2.3.4:80" or "[::1]:80".
AddressConstSharedPtr parseAddress(std::string_view text, std::string* error);

}  // namespace sluice::network
