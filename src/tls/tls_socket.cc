#include "tls/tls_socket.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include "buffer/buffer.h"
#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::tls {

namespace {
// One SSL_write at most this long: a full TLS record.
constexpr size_t kMaxWriteChunk = 16 * 1024;

// SSL_get_error() needs the thread's error queue empty before the call it explains. Every
// failure path here clears the queue after itself, so it is nearly always empty already:
// peeking costs a fraction of ERR_clear_error(), which resets all of the queue's slots.
void clearErrorQueue() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// The SANs of one type (GEN_URI, GEN_DNS) of a certificate.
std::vector<std::string> sansOfType(X509* cert, int type) {
  std::vector<std::string> out;
  if (!cert) return out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != type) continue;
    const ASN1_STRING* s = n->d.ia5;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}
std::vector<std::string> uriSans(X509* cert) { return sansOfType(cert, GEN_URI); }
std::vector<std::string> dnsSans(X509* cert) { return sansOfType(cert, GEN_DNS); }
std::string subjectOf(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len));
  BIO_free(bio);
  return out;
}
}  // namespace

struct TlsTransportSocketFactory::Rotation {
  struct Slot {
    uint64_t generation{0};
    TlsContextConstSharedPtr context;
  };
  std::atomic<uint64_t> generation{1};
  std::mutex mutex;
  TlsContextConstSharedPtr current;       // guarded by mutex
  std::optional<SslStats> stats;          // main thread only
  // One per stats thread slot (each worker and the main thread own one); slot 0, shared by
  // unregistered threads, always reads under the mutex.
  Slot slots[stats::ThreadSlot::kMaxSlots];
};

TlsTransportSocketFactory::TlsTransportSocketFactory(TlsContextConstSharedPtr context)
    : context_(std::move(context)) {}
TlsTransportSocketFactory::~TlsTransportSocketFactory() = default;

void TlsTransportSocketFactory::makeRotatable() {
  rotation_ = std::make_unique<Rotation>();
  rotation_->current = context_;
}

void TlsTransportSocketFactory::initializeStats(stats::Store& store,
                                                const std::string& prefix) const {
  SslStats stats = SslStats::create(store, prefix + "ssl.");
  if (!rotation_) {
    context_->bindStats(stats);
    return;
  }
  rotation_->stats.emplace(stats);
  current()->bindStats(stats);
}

void TlsTransportSocketFactory::setContext(TlsContextConstSharedPtr context) const {
  if (rotation_->stats) context->bindStats(*rotation_->stats);
  {
    std::lock_guard lock(rotation_->mutex);
    rotation_->current = std::move(context);
  }
  rotation_->generation.fetch_add(1, std::memory_order_release);
}

TlsContextConstSharedPtr TlsTransportSocketFactory::current() const {
  if (!rotation_) return context_;
  Rotation& r = *rotation_;
  const uint32_t slot = stats::ThreadSlot::current();
  const uint64_t generation = r.generation.load(std::memory_order_acquire);
  if (slot == stats::ThreadSlot::kSharedSlot) {
    std::lock_guard lock(r.mutex);
    return r.current;
  }
  Rotation::Slot& s = r.slots[slot];
  if (s.generation != generation) {
    std::lock_guard lock(r.mutex);
    s.context = r.current;
    s.generation = generation;
  }
  return s.context;
}

network::SslConnectionInfoConstSharedPtr TlsTransportSocket::makeInfo() const {
  auto info = std::make_shared<network::SslConnectionInfo>();
  info->tls_version = SSL_get_version(ssl_.get());
  if (X509* peer = SSL_get0_peer_certificate(ssl_.get())) {
    info->peer_certificate_presented = true;
    info->peer_subject = subjectOf(peer);
    info->peer_uri_sans = uriSans(peer);
    info->peer_dns_sans = dnsSans(peer);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(peer, EVP_sha256(), md, &md_len)) {
      static const char* kHex = "0123456789abcdef";
      for (unsigned int i = 0; i < md_len; ++i) {
        info->peer_cert_sha256.push_back(kHex[md[i] >> 4]);
        info->peer_cert_sha256.push_back(kHex[md[i] & 0xf]);
      }
    }
  }
  info->local_uri_sans = uriSans(SSL_get_certificate(ssl_.get()));
  return info;
}

// OpenSSL's view of the connection's socket: read() and send() on its fd, as OpenSSL's
// socket BIO does, with one difference. Events are edge-triggered, so a short read leaves the
// socket empty and whatever arrives afterwards raises a new event; the read OpenSSL would
// make next (at the end of each doRead(), to learn that it has everything) could only return
// EAGAIN. So after a short read the BIO answers "retry" without the system call, until the
// transport's next pass (doRead(), doWrite()) starts. A FIN that an event already reported
// (EPOLLRDHUP) raises no new edge: then the BIO reads on, to the end of stream.
struct SocketBio {
  static BIO_METHOD* method() {
    static BIO_METHOD* const m = [] {
      BIO_METHOD* m = BIO_meth_new(
          BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "sluice socket");
      if (m != nullptr) {
        BIO_meth_set_read(m, read);
        BIO_meth_set_write(m, write);
        BIO_meth_set_ctrl(m, ctrl);
      }
      return m;
    }();
    return m;
  }

  static TlsTransportSocket& socket(BIO* bio) {
    return *static_cast<TlsTransportSocket*>(BIO_get_data(bio));
  }

  static int read(BIO* bio, char* out, int len) {
    BIO_clear_retry_flags(bio);
    TlsTransportSocket& t = socket(bio);
    if (t.socket_drained_) {
      BIO_set_retry_read(bio);
      return -1;
    }
    errno = 0;  // EOF is a 0 with errno 0 (doRead() tells it from an error by that)
    const ssize_t n = ::read(t.callbacks_->fd(), out, static_cast<size_t>(len));
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_read(bio);
      return -1;
    }
    if (n > 0 && n < len && !t.callbacks_->peerClosedSeen()) t.socket_drained_ = true;
    return static_cast<int>(n);
  }

  static int write(BIO* bio, const char* in, int len) {
    BIO_clear_retry_flags(bio);
    errno = 0;
    const ssize_t n =
        ::send(socket(bio).callbacks_->fd(), in, static_cast<size_t>(len), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
      return -1;
    }
    return static_cast<int>(n);
  }

  static long ctrl(BIO* bio, int cmd, long, void* ptr) {  // NOLINT(google-runtime-int)
    switch (cmd) {
      case BIO_CTRL_FLUSH:
      case BIO_CTRL_DUP:
        return 1;
      case BIO_C_GET_FD: {
        const int fd = socket(bio).callbacks_->fd();
        if (ptr != nullptr) *static_cast<int*>(ptr) = fd;
        return fd;
      }
      default:
        return 0;
    }
  }
};

TlsTransportSocket::TlsTransportSocket(TlsContextConstSharedPtr context,
                                       const network::TransportSocketOptions* options)
    : context_(std::move(context)), ssl_(context_->newSsl()) {
  if (ssl_) {
    SSL_set_app_data(ssl_.get(), &verify_);
    // Read what the socket has in one read() instead of each record's header and then its
    // body (two reads per record). What is read ahead waits inside OpenSSL: doRead() reads
    // until OpenSSL wants more from the socket, and a handshake that ends with records
    // already read raises a read (below).
    SSL_set_read_ahead(ssl_.get(), 1);
  }
  if (ssl_ && options && !context_->isServer()) {
    if (!options->server_name.empty()) {
      SSL_set_tlsext_host_name(ssl_.get(), options->server_name.c_str());
    }
    if (!options->alpn.empty()) {
      alpn_override_wire_ = TlsContext::alpnWire(options->alpn);
      SSL_set_alpn_protos(ssl_.get(),
                          reinterpret_cast<const unsigned char*>(alpn_override_wire_.data()),
                          static_cast<unsigned int>(alpn_override_wire_.size()));
    }
  }
}

void TlsTransportSocket::setTransportSocketCallbacks(network::TransportSocketCallbacks& callbacks) {
  callbacks_ = &callbacks;
  if (!ssl_) return;
  BIO_METHOD* method = SocketBio::method();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio == nullptr) {
    SSL_set_fd(ssl_.get(), callbacks.fd());  // OpenSSL's own socket BIO
    return;
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);  // one reference, for both directions
}

bool TlsTransportSocket::connectionClosed() {
  return callbacks_->connection().state() == network::Connection::State::Closed;
}

void TlsTransportSocket::onConnected() {
  // The TCP connect finished: send the ClientHello. Connected is raised after the handshake.
  if (!doHandshake()) callbacks_->connection().close(network::ConnectionCloseType::NoFlush);
}

bool TlsTransportSocket::doHandshake() {
  if (!ssl_) {
    state_ = State::Failed;
    context_->stats().connection_error.inc();
    return false;
  }
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    state_ = State::Open;
    context_->stats().handshake.inc();
    if (SSL_session_reused(ssl_.get())) context_->stats().session_reused.inc();
    if (context_->isServer() && context_->config().validation) {
      X509* peer = SSL_get0_peer_certificate(ssl_.get());
      if (!peer) context_->stats().no_certificate.inc();
    }
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_.get(), &proto, &len);
    if (proto) alpn_.assign(reinterpret_cast<const char*>(proto), len);
    info_ = makeInfo();
    SLUICE_LOG(debug, connection, "[C{}] TLS handshake complete ({}, alpn '{}')",
               callbacks_->connection().id(), SSL_get_version(ssl_.get()), alpn_);
    callbacks_->raiseEvent(network::ConnectionEvent::Connected);
    if (!connectionClosed()) {
      callbacks_->flushWriteBuffer();
      // Records that came with the handshake's last flight were read ahead: the socket may
      // be drained, so no edge will announce them.
      if (SSL_has_pending(ssl_.get())) callbacks_->setTransportSocketIsReadable();
    }
    return true;
  }
  const int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
  onHandshakeFailed(err);
  return false;
}

void TlsTransportSocket::onHandshakeFailed(int ssl_error) {
  state_ = State::Failed;
  SslStats& stats = context_->stats();
  stats.connection_error.inc();
  const unsigned long e = ERR_peek_error();
  if (verify_.failure == VerifyOutcome::Failure::San) {
    stats.fail_verify_san.inc();
  } else if (verify_.failure == VerifyOutcome::Failure::Error) {
    stats.fail_verify_error.inc();
  } else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
             ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
    stats.fail_verify_no_cert.inc();
  }
  // Debug only: a scanner or a misconfigured client must not flood the log.
  char reason[256] = "";
  if (e != 0) ERR_error_string_n(e, reason, sizeof(reason));
  SLUICE_LOG(debug, connection, "[C{}] TLS handshake failed (ssl error {}): {}{}{}",
             callbacks_->connection().id(), ssl_error, reason,
             verify_.x509_error ? ", verify: " : "",
             verify_.x509_error ? X509_verify_cert_error_string(verify_.x509_error) : "");
  ERR_clear_error();
}

bool TlsTransportSocket::notReadyForIo(network::TransportIoResult& result) {
  if (state_ == State::Handshaking) doHandshake();  // a failure leaves State::Failed
  if (state_ == State::Failed) {
    result.action = network::PostIoAction::Close;
    result.err = EPROTO;
    return true;
  }
  // Until the handshake completes, what is written waits in the buffer.
  return state_ == State::Handshaking || connectionClosed();
}

void TlsTransportSocket::failIo(network::TransportIoResult& result, int ssl_error,
                                const char* op) {
  const int sys_errno = errno;
  SLUICE_LOG(debug, connection, "[C{}] TLS {} error {} (errno {})", callbacks_->connection().id(),
             op, ssl_error, sys_errno);
  result.action = network::PostIoAction::Close;
  result.err = ssl_error == SSL_ERROR_SYSCALL && sys_errno != 0 ? sys_errno : EPROTO;
  ERR_clear_error();
}

network::TransportIoResult TlsTransportSocket::doRead(buffer::Buffer& buffer) {
  network::TransportIoResult result;
  socket_drained_ = false;  // a new event: the socket may have more
  if (notReadyForIo(result)) return result;
  while (true) {
    buffer::Reservation res = buffer.reserveForRead(
        last_read_big_ ? buffer::Buffer::kDefaultReadReservation : buffer::Buffer::kDefaultSliceSize);
    size_t got = 0;
    int err = SSL_ERROR_NONE;
    for (size_t i = 0; i < res.numSlices() && err == SSL_ERROR_NONE; ++i) {
      const buffer::RawSlice& slice = res.slices()[i];
      size_t filled = 0;
      while (filled < slice.len) {
        clearErrorQueue();
        const int n = SSL_read(ssl_.get(), static_cast<uint8_t*>(slice.mem) + filled,
                               static_cast<int>(std::min<size_t>(slice.len - filled, INT32_MAX)));
        if (n <= 0) {
          err = SSL_get_error(ssl_.get(), n);
          break;
        }
        filled += static_cast<size_t>(n);
      }
      got += filled;
    }
    buffer.commit(res, got);
    result.bytes += got;
    last_read_big_ = got >= buffer::Buffer::kDefaultSliceSize;
    switch (err) {
      case SSL_ERROR_NONE:
        break;  // the reservation is full: read on
      case SSL_ERROR_WANT_READ:
        return result;  // the socket is drained: the next edge brings more
      case SSL_ERROR_WANT_WRITE:
        // A post-handshake message must be written first; the write event retries the read.
        read_wants_write_ = true;
        return result;
      case SSL_ERROR_ZERO_RETURN:
        result.end_stream_read = true;  // close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF)
        return result;
      case SSL_ERROR_SYSCALL:
        if (errno == 0) {
          result.end_stream_read = true;  // EOF without close_notify
          return result;
        }
        failIo(result, err, "read");
        return result;
      default:
        failIo(result, err, "read");
        return result;
    }
    if (callbacks_->shouldDrainReadBuffer()) {
      callbacks_->setTransportSocketIsReadable();
      return result;
    }
  }
}

network::TransportIoResult TlsTransportSocket::doWrite(buffer::Buffer& buffer, bool end_stream) {
  network::TransportIoResult result;
  socket_drained_ = false;  // the handshake may go on here: it reads as doRead() does
  if (notReadyForIo(result)) return result;
  if (read_wants_write_) {
    read_wants_write_ = false;
    callbacks_->setTransportSocketIsReadable();
  }
  if (state_ == State::ShutdownSent) {
    buffer.drain(buffer.length());
    if (write_side_ending_ || end_stream) {
      write_side_ending_ = true;
      finishWriteSide();
    }
    return result;
  }
  while (!buffer.empty()) {
    const size_t len =
        bytes_to_retry_ ? bytes_to_retry_ : std::min(buffer.length(), kMaxWriteChunk);
    void* data = buffer.linearize(len);
    clearErrorQueue();
    const int n = SSL_write(ssl_.get(), data, static_cast<int>(len));
    if (n > 0) {
      bytes_to_retry_ = 0;
      buffer.drain(static_cast<size_t>(n));
      result.bytes += static_cast<size_t>(n);
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      // OpenSSL wants the same write again once the socket is writable.
      bytes_to_retry_ = len;
      return result;
    }
    failIo(result, err, "write");
    return result;
  }
  if (end_stream) {
    write_side_ending_ = true;
    finishWriteSide();
  }
  return result;
}

void TlsTransportSocket::finishWriteSide() {
  if (fin_sent_ || !sendCloseNotify()) return;
  ::shutdown(callbacks_->fd(), SHUT_WR);
  fin_sent_ = true;
}

bool TlsTransportSocket::sendCloseNotify() {
  if (state_ == State::Open) {
    state_ = State::ShutdownSent;
  } else if (!(state_ == State::ShutdownSent && close_notify_pending_)) {
    return true;  // sent already, or no session to close
  }
  // Best effort on a non-blocking socket: the peer's close_notify is not awaited. A socket
  // with no room keeps the record (partly written) in OpenSSL: SSL_shutdown() again on the
  // next write-ready pass writes the rest.
  ERR_clear_error();
  const int rc = SSL_shutdown(ssl_.get());
  close_notify_pending_ = rc < 0 && SSL_get_error(ssl_.get(), rc) == SSL_ERROR_WANT_WRITE;
  ERR_clear_error();
  return !close_notify_pending_;
}

void TlsTransportSocket::closeSocket(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::LocalClose) sendCloseNotify();
}

}  // namespace sluice::tls
