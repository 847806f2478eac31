#include "network/address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "network/io_socket.h"

namespace sluice::network {
namespace {

// Waits until `fd` has one of `events`, up to 5 s. No sleeping: poll returns on readiness.
bool waitFor(int fd, short events) {
  pollfd pfd{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, 5000);
  } while (rc < 0 && errno == EINTR);
  return rc == 1 && (pfd.revents & events) != 0;
}

std::string parseError(std::string_view text) {
  std::string error;
  AddressConstSharedPtr address = parseAddress(text, &error);
  EXPECT_EQ(address, nullptr) << text;
  return error;
}

void expectNonBlockingCloexec(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  ASSERT_GE(fl, 0);
  EXPECT_NE(fl & O_NONBLOCK, 0) << "fd " << fd << " is blocking";
  int fdfl = ::fcntl(fd, F_GETFD);
  ASSERT_GE(fdfl, 0);
  EXPECT_NE(fdfl & FD_CLOEXEC, 0) << "fd " << fd << " lacks FD_CLOEXEC";
}

// A connected pair through `listener` (which listens on `address`): connects a client,
// waits, accepts. Checks flags on both ends and returns them.
struct Pair {
  SocketFd client;
  SocketFd server;
  sockaddr_storage peer{};
  socklen_t peer_len{0};
};

Pair connectAndAccept(const SocketFd& listener, const Address& address) {
  Pair pair;
  pair.client = createSocket(address.type());
  EXPECT_TRUE(pair.client.isOpen());
  SysResult connected = connectSocket(pair.client, address);
  EXPECT_TRUE(connected.ok() || connected.err == EINPROGRESS) << errorString(connected.err);
  EXPECT_TRUE(waitFor(listener.fd(), POLLIN));
  SysResult accepted = acceptSocket(listener, pair.server, &pair.peer, &pair.peer_len);
  EXPECT_TRUE(accepted.ok()) << errorString(accepted.err);
  EXPECT_TRUE(pair.server.isOpen());
  EXPECT_EQ(accepted.rc, pair.server.fd());
  EXPECT_TRUE(waitFor(pair.client.fd(), POLLOUT));
  EXPECT_TRUE(socketError(pair.client).ok());
  return pair;
}

// A fresh directory for socket files, removed with its contents at the end.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/sluice_addr_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) != nullptr) {
      path_ = buf.data();
    }
  }
  ~TempDir() {
    for (const std::string& file : files_) {
      ::unlink(file.c_str());
    }
    if (!path_.empty()) {
      ::rmdir(path_.c_str());
    }
  }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

TEST(AddressTest, ParseIpv4) {
  std::string error;
  AddressConstSharedPtr address = parseIpAndPort("10.1.2.3:8080", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->type(), Address::Type::Ipv4);
  EXPECT_TRUE(address->isIp());
  EXPECT_EQ(address->ip(), "10.1.2.3");
  EXPECT_EQ(address->port(), 8080u);
  EXPECT_EQ(address->path(), "");
  EXPECT_EQ(address->asString(), "10.1.2.3:8080");
  EXPECT_EQ(address->sockAddrLen(), sizeof(sockaddr_in));
  EXPECT_EQ(address->sockAddr()->sa_family, AF_INET);
  const auto* sin = reinterpret_cast<const sockaddr_in*>(address->sockAddr());
  EXPECT_EQ(ntohs(sin->sin_port), 8080);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x0a010203u);
}

// The IP's text is a view into the address's text form, whatever its length.
TEST(AddressTest, IpIsThePartOfTheTextBeforeThePort) {
  std::string error;
  AddressConstSharedPtr address = parseIpAndPort("192.168.100.200:54321", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->ip(), "192.168.100.200");
  EXPECT_EQ(address->asString(), "192.168.100.200:54321");
  address = parseIpAndPort("[2001:db8:1234:5678:9abc:def0:1234:5678]:65535", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->ip(), "2001:db8:1234:5678:9abc:def0:1234:5678");
  EXPECT_EQ(address->port(), 65535u);
  address = parseIpAndPort("[::ffff:10.0.0.1]:1", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->ip(), "::ffff:10.0.0.1");
  EXPECT_EQ(address->asString(), "[::ffff:10.0.0.1]:1");
}

TEST(AddressTest, ParseIpv6WithBrackets) {
  std::string error;
  AddressConstSharedPtr address = parseIpAndPort("[::1]:80", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->type(), Address::Type::Ipv6);
  EXPECT_EQ(address->ip(), "::1");
  EXPECT_EQ(address->port(), 80u);
  EXPECT_EQ(address->asString(), "[::1]:80");
  EXPECT_EQ(address->sockAddrLen(), sizeof(sockaddr_in6));
  EXPECT_EQ(address->sockAddr()->sa_family, AF_INET6);

  // Printing normalizes the text form.
  address = parseIpAndPort("[2001:DB8:0:0:0:0:0:1]:443", &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->asString(), "[2001:db8::1]:443");
  EXPECT_EQ(address->ip(), "2001:db8::1");
}

TEST(AddressTest, ParseErrors) {
  EXPECT_EQ(parseError("1.2.3.4"), "invalid address '1.2.3.4': missing port");
  EXPECT_EQ(parseError("1.2.3.4:"), "invalid address '1.2.3.4:': missing port");
  EXPECT_EQ(parseError("1.2.3.4:99999"), "invalid address '1.2.3.4:99999': port out of range");
  EXPECT_EQ(parseError("1.2.3.4:65536"), "invalid address '1.2.3.4:65536': port out of range");
  EXPECT_EQ(parseError("1.2.3.4:123456789012345"),
            "invalid address '1.2.3.4:123456789012345': port out of range");
  EXPECT_EQ(parseError("1.2.3.4:http"), "invalid address '1.2.3.4:http': port is not a number");
  EXPECT_EQ(parseError("1.2.3.4:-1"), "invalid address '1.2.3.4:-1': port is not a number");
  EXPECT_EQ(parseError("garbage"), "invalid address 'garbage': missing port");
  EXPECT_EQ(parseError("garbage:80"), "invalid address 'garbage:80': not an IPv4 address");
  EXPECT_EQ(parseError("1.2.3.256:80"), "invalid address '1.2.3.256:80': not an IPv4 address");
  EXPECT_EQ(parseError(":80"), "invalid address ':80': not an IP address");
  EXPECT_EQ(parseError("::1:80"),
            "invalid address '::1:80': an IPv6 address must be in brackets, as in [::1]:80");
  EXPECT_EQ(parseError("[::1]"), "invalid address '[::1]': missing port");
  EXPECT_EQ(parseError("[::1]:"), "invalid address '[::1]:': missing port");
  EXPECT_EQ(parseError("[::1:80"), "invalid address '[::1:80': missing ']' after IPv6 address");
  EXPECT_EQ(parseError("[::1]x80"),
            "invalid address '[::1]x80': expected ':' and a port after ']'");
  EXPECT_EQ(parseError("[1.2.3.4]:80"),
            "invalid address '[1.2.3.4]:80': brackets are only for IPv6 addresses");
  EXPECT_EQ(parseError("[::g]:80"), "invalid address '[::g]:80': not an IPv6 address");
  EXPECT_EQ(parseError(""), "invalid address '': empty");

  // A null error pointer is allowed.
  EXPECT_EQ(parseIpAndPort("nope", nullptr), nullptr);
}

TEST(AddressTest, PrintingRoundTrip) {
  for (const char* text :
       {"127.0.0.1:80", "0.0.0.0:0", "255.255.255.255:65535", "[::1]:80", "[::]:0",
        "[fe80::1:2]:9000", "[::ffff:1.2.3.4]:1", "/tmp/x.sock", "@abstract"}) {
    std::string error;
    AddressConstSharedPtr address = parseAddress(text, &error);
    ASSERT_NE(address, nullptr) << text << ": " << error;
    EXPECT_EQ(address->asString(), text);
    AddressConstSharedPtr again = parseAddress(address->asString(), &error);
    ASSERT_NE(again, nullptr) << error;
    EXPECT_EQ(*again, *address);
  }
}

TEST(AddressTest, AnyAndLoopback) {
  struct Case {
    const char* text;
    bool any;
    bool loopback;
  };
  for (const Case& c :
       {Case{"0.0.0.0:1", true, false}, Case{"127.0.0.1:1", false, true},
        Case{"127.255.0.9:1", false, true}, Case{"128.0.0.1:1", false, false},
        Case{"10.0.0.1:1", false, false}, Case{"[::]:1", true, false}, Case{"[::1]:1", false, true},
        Case{"[::2]:1", false, false}, Case{"[::ffff:127.0.0.1]:1", false, true},
        Case{"[::ffff:10.0.0.1]:1", false, false}, Case{"/a/b", false, false},
        Case{"@x", false, false}}) {
    AddressConstSharedPtr address = parseAddress(c.text, nullptr);
    ASSERT_NE(address, nullptr) << c.text;
    EXPECT_EQ(address->isAnyAddress(), c.any) << c.text;
    EXPECT_EQ(address->isLoopback(), c.loopback) << c.text;
  }
}

TEST(AddressTest, InternalAsEnvoyDefinesIt) {
  for (const char* text : {"10.1.2.3:1", "172.16.0.1:1", "172.31.255.255:1", "192.168.9.9:1",
                           "127.0.0.1:1", "[::1]:1", "[fd12::1]:1"}) {
    AddressConstSharedPtr address = parseAddress(text, nullptr);
    ASSERT_NE(address, nullptr) << text;
    EXPECT_TRUE(address->isInternal()) << text;
  }
  for (const char* text : {"11.0.0.1:1", "172.32.0.1:1", "172.15.0.1:1", "192.169.0.1:1",
                           "127.0.0.2:1", "8.8.8.8:1", "[fe80::1]:1", "[2001:db8::1]:1",
                           "/a/b"}) {
    AddressConstSharedPtr address = parseAddress(text, nullptr);
    ASSERT_NE(address, nullptr) << text;
    EXPECT_FALSE(address->isInternal()) << text;
  }
}

TEST(AddressTest, FromIp) {
  std::string error;
  AddressConstSharedPtr v4 = fromIp("192.168.0.1", 65535, &error);
  ASSERT_NE(v4, nullptr) << error;
  EXPECT_EQ(v4->asString(), "192.168.0.1:65535");
  AddressConstSharedPtr v6 = fromIp("fe80::1", 0, &error);
  ASSERT_NE(v6, nullptr) << error;
  EXPECT_EQ(v6->asString(), "[fe80::1]:0");

  EXPECT_EQ(fromIp("1.2.3.4", 65536, &error), nullptr);
  EXPECT_EQ(error, "invalid address '1.2.3.4:65536': port out of range");
  EXPECT_EQ(fromIp("::1", 70000, &error), nullptr);
  EXPECT_EQ(error, "invalid address '[::1]:70000': port out of range");
  EXPECT_EQ(fromIp("[::1]", 80, &error), nullptr);
  EXPECT_EQ(error, "invalid address '[::1]': not an IPv6 address");
  EXPECT_EQ(fromIp("example.com", 80, &error), nullptr);
  EXPECT_EQ(error, "invalid address 'example.com': not an IPv4 address");
  EXPECT_EQ(fromIp("", 80, &error), nullptr);
  EXPECT_EQ(error, "invalid address '': not an IP address");
  EXPECT_EQ(fromIp(std::string(100, '1'), 80, &error), nullptr);
}

TEST(AddressTest, Pipes) {
  std::string error;
  AddressConstSharedPtr path = fromPipe("/run/sluice/admin.sock", &error);
  ASSERT_NE(path, nullptr) << error;
  EXPECT_EQ(path->type(), Address::Type::Pipe);
  EXPECT_FALSE(path->isIp());
  EXPECT_FALSE(path->isAbstract());
  EXPECT_EQ(path->path(), "/run/sluice/admin.sock");
  EXPECT_EQ(path->asString(), "/run/sluice/admin.sock");
  EXPECT_EQ(path->port(), 0u);
  EXPECT_EQ(path->ip(), "");
  const auto* sun = reinterpret_cast<const sockaddr_un*>(path->sockAddr());
  EXPECT_EQ(sun->sun_family, AF_UNIX);
  EXPECT_STREQ(sun->sun_path, "/run/sluice/admin.sock");
  EXPECT_EQ(path->sockAddrLen(), offsetof(sockaddr_un, sun_path) + path->path().size() + 1);

  AddressConstSharedPtr abstract = fromPipe("@sluice-admin", &error);
  ASSERT_NE(abstract, nullptr) << error;
  EXPECT_TRUE(abstract->isAbstract());
  EXPECT_EQ(abstract->path(), "@sluice-admin");
  EXPECT_EQ(abstract->asString(), "@sluice-admin");
  sun = reinterpret_cast<const sockaddr_un*>(abstract->sockAddr());
  EXPECT_EQ(sun->sun_path[0], '\0');
  EXPECT_EQ(std::string(sun->sun_path + 1, 12), "sluice-admin");
  // The abstract name has no terminating NUL: the length says where it ends.
  EXPECT_EQ(abstract->sockAddrLen(), offsetof(sockaddr_un, sun_path) + 1 + 12);

  EXPECT_NE(*path, *abstract);
  EXPECT_NE(*fromPipe("/x", nullptr), *fromPipe("@x", nullptr));
  EXPECT_EQ(*fromPipe("/x", nullptr), *fromPipe("/x", nullptr));

  // parseAddress forms.
  EXPECT_EQ(*parseAddress("unix:/run/a.sock", nullptr), *fromPipe("/run/a.sock", nullptr));
  EXPECT_EQ(*parseAddress("unix:@a", nullptr), *fromPipe("@a", nullptr));
  EXPECT_EQ(*parseAddress("/run/a.sock", nullptr), *fromPipe("/run/a.sock", nullptr));
  EXPECT_EQ(*parseAddress("1.2.3.4:5", nullptr), *fromIp("1.2.3.4", 5, nullptr));
  EXPECT_EQ(parseError("unix:"), "invalid pipe address '': empty path");
}

TEST(AddressTest, PipeLimits) {
  std::string error;
  const size_t max = sizeof(sockaddr_un::sun_path) - 1;  // 107 on Linux
  std::string longest = "/" + std::string(max - 1, 'p');
  AddressConstSharedPtr address = fromPipe(longest, &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->path(), longest);

  std::string too_long = longest + "p";
  EXPECT_EQ(fromPipe(too_long, &error), nullptr);
  EXPECT_EQ(error, "invalid pipe address '" + too_long + "': path longer than " +
                       std::to_string(max) + " bytes");

  std::string longest_abstract = "@" + std::string(max, 'a');
  address = fromPipe(longest_abstract, &error);
  ASSERT_NE(address, nullptr) << error;
  EXPECT_EQ(address->path(), longest_abstract);
  EXPECT_EQ(address->sockAddrLen(), sizeof(sockaddr_un));
  EXPECT_EQ(fromPipe(longest_abstract + "a", &error), nullptr);
  EXPECT_NE(error.find("abstract name longer than"), std::string::npos) << error;

  EXPECT_EQ(fromPipe("", &error), nullptr);
  EXPECT_EQ(error, "invalid pipe address '': empty path");
  EXPECT_EQ(fromPipe("@", &error), nullptr);
  EXPECT_EQ(error, "invalid pipe address '@': empty abstract socket name");
  EXPECT_EQ(fromPipe(std::string_view("/a\0b", 4), &error), nullptr);
  EXPECT_NE(error.find("NUL"), std::string::npos) << error;
}

TEST(AddressTest, FromSockAddrRoundTrip) {
  for (const char* text : {"1.2.3.4:5", "[2001:db8::7]:65535", "/tmp/s", "@abs"}) {
    AddressConstSharedPtr address = parseAddress(text, nullptr);
    ASSERT_NE(address, nullptr) << text;
    sockaddr_storage storage{};
    std::memcpy(&storage, address->sockAddr(), address->sockAddrLen());
    AddressConstSharedPtr copy = fromSockAddr(storage, address->sockAddrLen());
    ASSERT_NE(copy, nullptr) << text;
    EXPECT_EQ(*copy, *address);
    EXPECT_EQ(copy->asString(), address->asString());
    EXPECT_EQ(copy->sockAddrLen(), address->sockAddrLen());
    EXPECT_EQ(copy->type(), address->type());
  }

  // A Unix socket that was never bound (the client end of a connection) has no path.
  sockaddr_storage unnamed{};
  unnamed.ss_family = AF_UNIX;
  AddressConstSharedPtr address = fromSockAddr(unnamed, sizeof(sa_family_t));
  ASSERT_NE(address, nullptr);
  EXPECT_EQ(address->type(), Address::Type::Pipe);
  EXPECT_EQ(address->path(), "");

  // Unsupported family, and lengths too short for the family.
  sockaddr_storage other{};
  other.ss_family = AF_PACKET;
  EXPECT_EQ(fromSockAddr(other, sizeof(other)), nullptr);
  other.ss_family = AF_INET;
  EXPECT_EQ(fromSockAddr(other, sizeof(sockaddr_in) - 1), nullptr);
  other.ss_family = AF_INET6;
  EXPECT_EQ(fromSockAddr(other, sizeof(sockaddr_in)), nullptr);
}

TEST(AddressTest, Ipv4TextMatchesInetNtop) {
  // The text form is formatted by hand: each byte's one, two and three digits, zeros, the
  // extremes, and the ports at both ends.
  const uint32_t addrs[] = {0x00000000, 0xffffffff, 0x7f000001, 0x0a000001, 0xc0a864c8,
                            0x01146403, 0x090a6364, 0x64000a09};
  for (uint32_t a : addrs) {
    for (uint16_t port : {uint16_t{0}, uint16_t{9}, uint16_t{80}, uint16_t{65535}}) {
      sockaddr_storage storage{};
      auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
      sin->sin_family = AF_INET;
      sin->sin_addr.s_addr = htonl(a);
      sin->sin_port = htons(port);
      char expected_ip[INET_ADDRSTRLEN];
      ASSERT_NE(::inet_ntop(AF_INET, &sin->sin_addr, expected_ip, sizeof(expected_ip)), nullptr);
      AddressConstSharedPtr address = fromSockAddr(storage, sizeof(sockaddr_in));
      ASSERT_NE(address, nullptr);
      EXPECT_EQ(address->ip(), expected_ip);
      EXPECT_EQ(address->port(), port);
      EXPECT_EQ(address->asString(), std::string(expected_ip) + ":" + std::to_string(port));
    }
  }
}

TEST(AddressTest, Equality) {
  EXPECT_EQ(*parseAddress("1.2.3.4:5", nullptr), *parseAddress("1.2.3.4:5", nullptr));
  EXPECT_NE(*parseAddress("1.2.3.4:5", nullptr), *parseAddress("1.2.3.4:6", nullptr));
  EXPECT_NE(*parseAddress("1.2.3.4:5", nullptr), *parseAddress("1.2.3.5:5", nullptr));
  EXPECT_NE(*parseAddress("0.0.0.0:5", nullptr), *parseAddress("[::]:5", nullptr));
  EXPECT_EQ(*parseAddress("[::1]:5", nullptr), *parseAddress("[0:0::1]:5", nullptr));
  EXPECT_NE(*parseAddress("[::1]:5", nullptr), *parseAddress("/x", nullptr));
}

TEST(SocketFdTest, OwnsAndMoves) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  int write_end = fds[1];
  {
    SocketFd a(fds[0]);
    EXPECT_TRUE(a.isOpen());
    SocketFd b(std::move(a));
    EXPECT_FALSE(a.isOpen());  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(a.fd(), -1);
    EXPECT_EQ(b.fd(), fds[0]);
    SocketFd c;
    EXPECT_FALSE(c.isOpen());
    c = std::move(b);
    EXPECT_EQ(c.fd(), fds[0]);
    EXPECT_FALSE(b.isOpen());  // NOLINT(bugprone-use-after-move)
  }
  // The read end was closed exactly once: writing now fails with EPIPE.
  EXPECT_EQ(::write(write_end, "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);

  SocketFd w(write_end);
  int released = w.release();
  EXPECT_EQ(released, write_end);
  EXPECT_FALSE(w.isOpen());
  SocketFd again(released);
  again.close();
  EXPECT_FALSE(again.isOpen());
  EXPECT_EQ(::fcntl(released, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  again.close();  // closing twice is a no-op
}

TEST(IoSocketTest, ErrorString) {
  EXPECT_EQ(errorString(EADDRINUSE), "Address already in use");
  EXPECT_EQ(errorString(ECONNREFUSED), "Connection refused");
  EXPECT_FALSE(errorString(123456).empty());
}

TEST(IoSocketTest, CreatedSocketsAreNonBlockingAndCloexec) {
  for (Address::Type type : {Address::Type::Ipv4, Address::Type::Pipe}) {
    int err = -1;
    SocketFd socket = createSocket(type, SOCK_STREAM, &err);
    ASSERT_TRUE(socket.isOpen()) << errorString(err);
    EXPECT_EQ(err, 0);
    expectNonBlockingCloexec(socket.fd());
  }
  SocketFd udp = createSocket(Address::Type::Ipv4, SOCK_DGRAM);
  ASSERT_TRUE(udp.isOpen());
  expectNonBlockingCloexec(udp.fd());
  int type = 0;
  socklen_t len = sizeof(type);
  ASSERT_EQ(::getsockopt(udp.fd(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_DGRAM);
}

TEST(IoSocketTest, Ipv6SocketsAreV6Only) {
  int err = 0;
  SocketFd socket = createSocket(Address::Type::Ipv6, SOCK_STREAM, &err);
  if (!socket.isOpen() && err == EAFNOSUPPORT) {
    GTEST_SKIP() << "no IPv6 on this host";
  }
  ASSERT_TRUE(socket.isOpen()) << errorString(err);
  int value = 0;
  socklen_t len = sizeof(value);
  ASSERT_EQ(::getsockopt(socket.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &value, &len), 0);
  EXPECT_EQ(value, 1);
  expectNonBlockingCloexec(socket.fd());
}

TEST(IoSocketTest, ListenOnPortZeroConnectAndAccept) {
  std::string error;
  AddressConstSharedPtr any_port = parseIpAndPort("127.0.0.1:0", &error);
  ASSERT_NE(any_port, nullptr) << error;
  SocketFd listener = createListenSocket(*any_port, /*reuse_port=*/false, 16, &error);
  ASSERT_TRUE(listener.isOpen()) << error;
  expectNonBlockingCloexec(listener.fd());

  AddressConstSharedPtr bound = localAddress(listener.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  EXPECT_EQ(bound->ip(), "127.0.0.1");
  EXPECT_NE(bound->port(), 0u);

  // Nothing queued yet: accept says "would block", as a value.
  SocketFd none;
  SysResult empty = acceptSocket(listener, none);
  EXPECT_FALSE(empty.ok());
  EXPECT_TRUE(empty.wouldBlock()) << errorString(empty.err);
  EXPECT_FALSE(none.isOpen());

  Pair pair = connectAndAccept(listener, *bound);
  ASSERT_TRUE(pair.server.isOpen());
  expectNonBlockingCloexec(pair.server.fd());
  expectNonBlockingCloexec(pair.client.fd());
  EXPECT_TRUE(setNoDelay(pair.client).ok());
  EXPECT_TRUE(setNoDelay(pair.server).ok());

  // The peer address accept reported is the client's local address, and vice versa.
  AddressConstSharedPtr peer = fromSockAddr(pair.peer, pair.peer_len);
  ASSERT_NE(peer, nullptr);
  AddressConstSharedPtr client_local = localAddress(pair.client.fd(), &error);
  ASSERT_NE(client_local, nullptr) << error;
  EXPECT_EQ(*peer, *client_local);
  AddressConstSharedPtr server_peer = peerAddress(pair.server.fd(), &error);
  ASSERT_NE(server_peer, nullptr) << error;
  EXPECT_EQ(*server_peer, *client_local);
  AddressConstSharedPtr client_peer = peerAddress(pair.client.fd(), &error);
  ASSERT_NE(client_peer, nullptr) << error;
  EXPECT_EQ(*client_peer, *bound);

  // Bytes flow, and shutdownWrite is seen as end of stream.
  ASSERT_EQ(::write(pair.client.fd(), "hi", 2), 2);
  ASSERT_TRUE(waitFor(pair.server.fd(), POLLIN));
  char buf[8];
  ASSERT_EQ(::read(pair.server.fd(), buf, sizeof(buf)), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  EXPECT_TRUE(shutdownWrite(pair.client).ok());
  ASSERT_TRUE(waitFor(pair.server.fd(), POLLIN));
  EXPECT_EQ(::read(pair.server.fd(), buf, sizeof(buf)), 0);
}

TEST(IoSocketTest, ConnectRefusedIsReportedBySocketError) {
  // Find a free port by binding and closing.
  std::string error;
  SocketFd probe = createListenSocket(*parseIpAndPort("127.0.0.1:0", nullptr), false, 1, &error);
  ASSERT_TRUE(probe.isOpen()) << error;
  AddressConstSharedPtr target = localAddress(probe.fd(), &error);
  ASSERT_NE(target, nullptr) << error;
  probe.close();

  SocketFd client = createSocket(Address::Type::Ipv4);
  ASSERT_TRUE(client.isOpen());
  SysResult result = connectSocket(client, *target);
  if (result.err == EINPROGRESS) {
    ASSERT_TRUE(waitFor(client.fd(), POLLOUT | POLLERR | POLLHUP));
    result = socketError(client);
  }
  EXPECT_EQ(result.err, ECONNREFUSED) << errorString(result.err);
  EXPECT_FALSE(result.ok());
}

TEST(IoSocketTest, ReusePortLetsTwoListenersShareAPort) {
  std::string error;
  SocketFd first =
      createListenSocket(*parseIpAndPort("127.0.0.1:0", nullptr), /*reuse_port=*/true, 16, &error);
  ASSERT_TRUE(first.isOpen()) << error;
  AddressConstSharedPtr bound = localAddress(first.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  ASSERT_NE(bound->port(), 0u);

  SocketFd second = createListenSocket(*bound, /*reuse_port=*/true, 16, &error);
  ASSERT_TRUE(second.isOpen()) << error;
  AddressConstSharedPtr second_bound = localAddress(second.fd(), &error);
  ASSERT_NE(second_bound, nullptr) << error;
  EXPECT_EQ(*second_bound, *bound);
}

TEST(IoSocketTest, SecondBindWithoutReuseFailsWithClearMessage) {
  std::string error;
  SocketFd first =
      createListenSocket(*parseIpAndPort("127.0.0.1:0", nullptr), /*reuse_port=*/false, 16, &error);
  ASSERT_TRUE(first.isOpen()) << error;
  AddressConstSharedPtr bound = localAddress(first.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;

  SocketFd second = createListenSocket(*bound, /*reuse_port=*/false, 16, &error);
  EXPECT_FALSE(second.isOpen());
  EXPECT_EQ(error, "cannot bind " + bound->asString() + ": Address already in use");

  // Asking for SO_REUSEPORT does not help when the first listener did not ask for it.
  second = createListenSocket(*bound, /*reuse_port=*/true, 16, &error);
  EXPECT_FALSE(second.isOpen());
  EXPECT_EQ(error, "cannot bind " + bound->asString() + ": Address already in use");

  // The plain syscall wrapper reports the same as a value.
  SocketFd raw = createSocket(Address::Type::Ipv4);
  ASSERT_TRUE(raw.isOpen());
  SysResult result = bindSocket(raw, *bound);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.err, EADDRINUSE);
  EXPECT_EQ(result.rc, -1);
}

TEST(IoSocketTest, Ipv6ListenOnLoopback) {
  std::string error;
  SocketFd listener =
      createListenSocket(*parseIpAndPort("[::1]:0", nullptr), /*reuse_port=*/false, 16, &error);
  if (!listener.isOpen()) {
    GTEST_SKIP() << "no IPv6 loopback here: " << error;
  }
  AddressConstSharedPtr bound = localAddress(listener.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  EXPECT_EQ(bound->type(), Address::Type::Ipv6);
  EXPECT_NE(bound->port(), 0u);
  EXPECT_TRUE(bound->isLoopback());
  Pair pair = connectAndAccept(listener, *bound);
  ASSERT_TRUE(pair.server.isOpen());
  expectNonBlockingCloexec(pair.server.fd());
}

TEST(IoSocketTest, UnixSocketListenConnectAccept) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string error;
  AddressConstSharedPtr address = fromPipe(dir.file("listen.sock"), &error);
  ASSERT_NE(address, nullptr) << error;

  SocketFd listener = createListenSocket(*address, /*reuse_port=*/false, 16, &error);
  ASSERT_TRUE(listener.isOpen()) << error;
  expectNonBlockingCloexec(listener.fd());
  AddressConstSharedPtr bound = localAddress(listener.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  EXPECT_EQ(*bound, *address);
  EXPECT_EQ(bound->asString(), address->path());

  Pair pair = connectAndAccept(listener, *address);
  ASSERT_TRUE(pair.server.isOpen());
  expectNonBlockingCloexec(pair.server.fd());
  AddressConstSharedPtr peer = fromSockAddr(pair.peer, pair.peer_len);
  ASSERT_NE(peer, nullptr);
  EXPECT_EQ(peer->type(), Address::Type::Pipe);
  EXPECT_EQ(peer->path(), "");  // the client never bound a name
  EXPECT_FALSE(setNoDelay(pair.server).ok());

  // The socket file outlives the listener; a new listener replaces the stale file.
  pair = Pair();
  listener.close();
  struct stat st;
  ASSERT_EQ(::lstat(address->path().c_str(), &st), 0);
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
  listener = createListenSocket(*address, /*reuse_port=*/false, 16, &error);
  ASSERT_TRUE(listener.isOpen()) << error;
  listener.close();

  // A regular file at the path is never removed: the bind fails and says why.
  ASSERT_EQ(::unlink(address->path().c_str()), 0);
  int fd = ::open(address->path().c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  listener = createListenSocket(*address, /*reuse_port=*/false, 16, &error);
  EXPECT_FALSE(listener.isOpen());
  EXPECT_EQ(error, "cannot bind " + address->path() + ": Address already in use");
  EXPECT_EQ(::lstat(address->path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST(IoSocketTest, AbstractUnixSocket) {
  std::string name = "@sluice-address-test-" + std::to_string(::getpid());
  std::string error;
  AddressConstSharedPtr address = fromPipe(name, &error);
  ASSERT_NE(address, nullptr) << error;
  SocketFd listener = createListenSocket(*address, /*reuse_port=*/false, 16, &error);
  ASSERT_TRUE(listener.isOpen()) << error;
  AddressConstSharedPtr bound = localAddress(listener.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  EXPECT_EQ(*bound, *address);
  EXPECT_EQ(bound->asString(), name);
  EXPECT_TRUE(bound->isAbstract());

  Pair pair = connectAndAccept(listener, *address);
  ASSERT_TRUE(pair.server.isOpen());

  // Abstract names are unique while bound.
  SocketFd second = createListenSocket(*address, /*reuse_port=*/false, 16, &error);
  EXPECT_FALSE(second.isOpen());
  EXPECT_EQ(error, "cannot bind " + name + ": Address already in use");
}

TEST(IoSocketTest, UnixConnectToMissingPathFails) {
  TempDir dir;
  SocketFd client = createSocket(Address::Type::Pipe);
  ASSERT_TRUE(client.isOpen());
  SysResult result = connectSocket(client, *fromPipe(dir.file("missing.sock"), nullptr));
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.err, ENOENT);
}

// Out of fds, accept reports EMFILE as a value (the listener must then back off). Runs in a
// child process so that lowering RLIMIT_NOFILE does not touch the test binary.
TEST(IoSocketTest, AcceptReportsEmfileAsValue) {
  std::string error;
  SocketFd listener =
      createListenSocket(*parseIpAndPort("127.0.0.1:0", nullptr), false, 16, &error);
  ASSERT_TRUE(listener.isOpen()) << error;
  AddressConstSharedPtr bound = localAddress(listener.fd(), &error);
  ASSERT_NE(bound, nullptr) << error;
  SocketFd client = createSocket(Address::Type::Ipv4);
  ASSERT_TRUE(client.isOpen());
  SysResult connected = connectSocket(client, *bound);
  ASSERT_TRUE(connected.ok() || connected.err == EINPROGRESS);
  ASSERT_TRUE(waitFor(listener.fd(), POLLIN));

  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: no gtest assertions here, only exit codes.
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
      ::_exit(10);
    }
    limit.rlim_cur = 64;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      ::_exit(11);
    }
    for (int i = 0; i < 64; ++i) {
      if (::fcntl(0, F_DUPFD_CLOEXEC, 0) < 0) {
        if (errno != EMFILE) {
          ::_exit(12);
        }
        break;
      }
    }
    SocketFd out;
    SysResult result = acceptSocket(listener, out);
    if (result.ok() || out.isOpen()) {
      ::_exit(13);
    }
    ::_exit(result.err == EMFILE ? 0 : 14);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the exit codes in the child";

  // The connection is still queued for the parent, which has fds to spare.
  SocketFd out;
  SysResult result = acceptSocket(listener, out);
  EXPECT_TRUE(result.ok()) << errorString(result.err);
  EXPECT_TRUE(out.isOpen());
}

}  // namespace
}  // namespace sluice::network
