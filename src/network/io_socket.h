#pragma once

// RAII sockets and thin syscall wrappers. A SocketFd owns one fd and closes it exactly once.
// Every socket made here is non-blocking and close-on-exec. Syscalls never throw and never
// log: each returns a SysResult (the return code and errno, EINTR already retried), and the
// helpers that build a whole socket return a closed SocketFd plus a message naming the
// address and the reason ("cannot bind 127.0.0.1:80: Address already in use").

#include <sys/socket.h>

#include <string>

#include "network/address.h"

namespace sluice::network {

// Owner of one fd (-1 when empty). Move-only; the destructor closes it.
class SocketFd {
 public:
  SocketFd() = default;
  explicit SocketFd(int fd) : fd_(fd) {}
  ~SocketFd() { close(); }

  SocketFd(SocketFd&& other) noexcept : fd_(other.release()) {}
  SocketFd& operator=(SocketFd&& other) noexcept;
  SocketFd(const SocketFd&) = delete;
  SocketFd& operator=(const SocketFd&) = delete;

  int fd() const { return fd_; }
  bool isOpen() const { return fd_ >= 0; }
  // Gives up ownership: returns the fd (or -1) and leaves this empty.
  int release();
  // Closes the fd now (no-op when empty).
  void close();

 private:
  int fd_{-1};
};

// The outcome of one syscall: its return code and, when it failed, errno (0 on success).
struct SysResult {
  int rc{0};
  int err{0};
  bool ok() const { return err == 0; }
  // EAGAIN/EWOULDBLOCK: nothing to do now, wait for readiness.
  bool wouldBlock() const;
};

// strerror_r: "Address already in use".
std::string errorString(int err);

// A new non-blocking, close-on-exec socket of the address family of `type` (AF_INET,
// AF_INET6 or AF_UNIX). IPv6 sockets get IPV6_V6ONLY=1. On failure the result is closed and
// *err (when given) holds errno.
SocketFd createSocket(Address::Type type, int sock_type = SOCK_STREAM, int* err = nullptr);

SysResult bindSocket(const SocketFd& socket, const Address& address);
SysResult listenSocket(const SocketFd& socket, int backlog);
// Non-blocking connect: err == EINPROGRESS means pending (wait for writable, then read
// socketError()). A Unix socket whose listener's backlog is full fails with EAGAIN.
SysResult connectSocket(const SocketFd& socket, const Address& address);
SysResult setSocketOption(const SocketFd& socket, int level, int name, int value);
// TCP_NODELAY=1. Fails (EOPNOTSUPP) on Unix sockets.
SysResult setNoDelay(const SocketFd& socket);

// accept4 with SOCK_NONBLOCK|SOCK_CLOEXEC. On success `out` owns the new fd and, when `peer`
// and `len` are given, *peer/*len hold the peer's address (see fromSockAddr). EAGAIN means
// the queue is empty; EMFILE/ENFILE/ENOBUFS/ENOMEM mean out of resources; ECONNABORTED means
// that one connection died in the queue (accept again).
SysResult acceptSocket(const SocketFd& listener, SocketFd& out, sockaddr_storage* peer = nullptr,
                       socklen_t* len = nullptr);

// The pending error (SO_ERROR), read and cleared: ok() when the socket has none, else err is
// that error (e.g. ECONNREFUSED after a non-blocking connect).
SysResult socketError(const SocketFd& socket);

SysResult shutdownWrite(const SocketFd& socket);

// A listening socket on `address`: socket, SO_REUSEADDR, SO_REUSEPORT when `reuse_port`
// (IP only: every socket sharing a port must ask for it), TCP_NODELAY (IP: the sockets it
// accepts inherit it), bind, listen. For a pipe path, a
// stale socket file left at the path is unlinked first (any other kind of file is left alone
// and the bind fails). On failure returns a closed SocketFd and sets *error (when given).
SocketFd createListenSocket(const Address& address, bool reuse_port, int backlog,
                            std::string* error);

}  // namespace sluice::network
