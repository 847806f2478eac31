#include "network/io_socket.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::network {
namespace {

// Runs a syscall, retrying EINTR, and captures errno.
template <typename F>
SysResult retryEintr(F&& call) {
  for (;;) {
    int rc = call();
    if (rc >= 0) {
      return SysResult{rc, 0};
    }
    if (errno != EINTR) {
      return SysResult{rc, errno};
    }
  }
}

int familyOf(Address::Type type) {
  switch (type) {
    case Address::Type::Ipv4:
      return AF_INET;
    case Address::Type::Ipv6:
      return AF_INET6;
    case Address::Type::Pipe:
      return AF_UNIX;
  }
  return AF_UNSPEC;
}

// strerror_r is the XSI one (returns int) or the GNU one (returns char*) depending on feature
// macros; these overloads accept either.
[[maybe_unused]] const char* strerrorResult(int rc, const char* buf) {
  return rc == 0 ? buf : "Unknown error";
}
[[maybe_unused]] const char* strerrorResult(const char* result, const char*) {
  return result;
}

SocketFd failListen(std::string* error, std::string_view what, const Address& address, int err) {
  if (error != nullptr) {
    error->clear();
    error->append(what)
        .append(" ")
        .append(address.asString())
        .append(": ")
        .append(errorString(err));
  }
  return SocketFd();
}

}  // namespace

SocketFd& SocketFd::operator=(SocketFd&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.release();
  }
  return *this;
}

int SocketFd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void SocketFd::close() {
  if (fd_ >= 0) {
    // Linux frees the fd even when close() reports EINTR, so it must never be retried.
    ::close(fd_);
    fd_ = -1;
  }
}

bool SysResult::wouldBlock() const {
  return err == EAGAIN || err == EWOULDBLOCK;
}

std::string errorString(int err) {
  char buf[256];
  buf[0] = '\0';
  return strerrorResult(::strerror_r(err, buf, sizeof(buf)), buf);
}

SocketFd createSocket(Address::Type type, int sock_type, int* err) {
  int fd = ::socket(familyOf(type), sock_type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (err != nullptr) {
      *err = errno;
    }
    return SocketFd();
  }
  SocketFd socket(fd);
  if (type == Address::Type::Ipv6) {
    SysResult result = setSocketOption(socket, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (!result.ok()) {
      if (err != nullptr) {
        *err = result.err;
      }
      return SocketFd();
    }
  }
  if (err != nullptr) {
    *err = 0;
  }
  return socket;
}

SysResult bindSocket(const SocketFd& socket, const Address& address) {
  return retryEintr([&] { return ::bind(socket.fd(), address.sockAddr(), address.sockAddrLen()); });
}

SysResult listenSocket(const SocketFd& socket, int backlog) {
  return retryEintr([&] { return ::listen(socket.fd(), backlog); });
}

SysResult connectSocket(const SocketFd& socket, const Address& address) {
  // Not retried: a connect interrupted by a signal goes on in the background, and calling it
  // again would report EALREADY. It is pending, exactly like EINPROGRESS.
  int rc = ::connect(socket.fd(), address.sockAddr(), address.sockAddrLen());
  if (rc == 0) {
    return SysResult{0, 0};
  }
  int err = errno;
  return SysResult{rc, err == EINTR ? EINPROGRESS : err};
}

SysResult setSocketOption(const SocketFd& socket, int level, int name, int value) {
  return retryEintr([&] { return ::setsockopt(socket.fd(), level, name, &value, sizeof(value)); });
}

SysResult setNoDelay(const SocketFd& socket) {
  return setSocketOption(socket, IPPROTO_TCP, TCP_NODELAY, 1);
}

SysResult acceptSocket(const SocketFd& listener, SocketFd& out, sockaddr_storage* peer,
                       socklen_t* len) {
  SysResult result = retryEintr([&] {
    if (peer != nullptr && len != nullptr) {
      *len = sizeof(sockaddr_storage);
      return ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(peer), len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    return ::accept4(listener.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  });
  if (result.ok()) {
    out = SocketFd(result.rc);
  }
  return result;
}

SysResult socketError(const SocketFd& socket) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(socket.fd(), SOL_SOCKET, SO_ERROR, &value, &len) != 0) {
    return SysResult{-1, errno};
  }
  return SysResult{value == 0 ? 0 : -1, value};
}

SysResult shutdownWrite(const SocketFd& socket) {
  return retryEintr([&] { return ::shutdown(socket.fd(), SHUT_WR); });
}

SocketFd createListenSocket(const Address& address, bool reuse_port, int backlog,
                            std::string* error) {
  int err = 0;
  SocketFd socket = createSocket(address.type(), SOCK_STREAM, &err);
  if (!socket.isOpen()) {
    return failListen(error, "cannot create a socket for", address, err);
  }
  if (address.isIp()) {
    SysResult result = setSocketOption(socket, SOL_SOCKET, SO_REUSEADDR, 1);
    if (!result.ok()) {
      return failListen(error, "cannot set SO_REUSEADDR on", address, result.err);
    }
    if (reuse_port) {
      result = setSocketOption(socket, SOL_SOCKET, SO_REUSEPORT, 1);
      if (!result.ok()) {
        return failListen(error, "cannot set SO_REUSEPORT on", address, result.err);
      }
    }
    // Accepted sockets inherit it: no setsockopt() per connection.
    result = setSocketOption(socket, IPPROTO_TCP, TCP_NODELAY, 1);
    if (!result.ok()) {
      return failListen(error, "cannot set TCP_NODELAY on", address, result.err);
    }
  } else if (!address.isAbstract() && !address.path().empty()) {
    // A socket file outlives the process that bound it; only such a file may be removed.
    struct stat st;
    if (::lstat(address.path().c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      if (::unlink(address.path().c_str()) != 0 && errno != ENOENT) {
        return failListen(error, "cannot remove the stale socket file", address, errno);
      }
    }
  }
  SysResult result = bindSocket(socket, address);
  if (!result.ok()) {
    return failListen(error, "cannot bind", address, result.err);
  }
  result = listenSocket(socket, backlog);
  if (!result.ok()) {
    return failListen(error, "cannot listen on", address, result.err);
  }
  return socket;
}

}  // namespace sluice::network
