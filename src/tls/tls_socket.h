#pragma once

// TLS under a connection: OpenSSL works directly on the connection's non-blocking fd,
// through a socket BIO of ours that skips the read a drained socket would answer with
// EAGAIN (see SocketBio in the .cc); reads and writes go through the connection's buffers as
// plaintext. The handshake runs from
// whichever of doRead/doWrite the loop calls first; Connected is raised once it completes
// (client and server), and what was written meanwhile is then flushed. A failed handshake
// closes only its connection, counted under the context's ssl.* stats, logged at debug.

#include <memory>
#include <string>

#include "network/transport_socket.h"
#include "tls/context.h"

namespace sluice::tls {

class TlsTransportSocket : public network::TransportSocket {
 public:
  TlsTransportSocket(TlsContextConstSharedPtr context,
                     const network::TransportSocketOptions* options);

  void setTransportSocketCallbacks(network::TransportSocketCallbacks& callbacks) override;
  // The negotiated ALPN protocol ("h2"), or empty.
  std::string_view protocol() const override { return alpn_; }
  network::TransportIoResult doRead(buffer::Buffer& buffer) override;
  network::TransportIoResult doWrite(buffer::Buffer& buffer, bool end_stream) override;
  void onConnected() override;
  void closeSocket(network::ConnectionEvent event) override;

  network::SslConnectionInfoConstSharedPtr ssl() const override { return info_; }

 private:
  enum class State { Handshaking, Open, ShutdownSent, Failed };
  // Advances the handshake; false when it failed (the connection must close).
  bool doHandshake();
  // What doRead() and doWrite() do first: false when they may go on (the connection is
  // open); true when they must return `result` now, set to Close if the connection failed
  // (or its handshake fails now), left empty while the handshake is still under way.
  bool notReadyForIo(network::TransportIoResult& result);
  // An SSL_read/SSL_write error that ends the connection: `result` becomes Close with the
  // socket's errno when there is one.
  void failIo(network::TransportIoResult& result, int ssl_error, const char* op);
  void onHandshakeFailed(int ssl_error);
  friend struct SocketBio;
  // Sends close_notify once (best effort: nothing waits for the peer's). Returns false while
  // the socket had no room for it: then a later write-ready pass retries it.
  bool sendCloseNotify();
  // The write side's end after the last write: close_notify, then the FIN once the
  // close_notify is out (a FIN cutting a partly written record would corrupt the stream).
  void finishWriteSide();
  bool connectionClosed();
  network::SslConnectionInfoConstSharedPtr makeInfo() const;

  TlsContextConstSharedPtr context_;
  SslPtr ssl_;
  network::TransportSocketCallbacks* callbacks_{nullptr};
  VerifyOutcome verify_;
  std::string alpn_;
  network::SslConnectionInfoConstSharedPtr info_;
  std::string alpn_override_wire_;
  size_t bytes_to_retry_{0};  // an SSL_write that must be repeated with the same length
  State state_{State::Handshaking};
  bool read_wants_write_{false};
  bool close_notify_pending_{false};  // SSL_shutdown() wanted to write again
  bool write_side_ending_{false};     // end_stream was written: the FIN follows close_notify
  bool fin_sent_{false};
  bool socket_drained_{false};  // a short read emptied the socket during this pass
  // The last read took a whole buffer slice or more: the next offers the full reservation
  // (as RawTransportSocket does; small reads take one slice, not four).
  bool last_read_big_{false};
};

// Makes the TLS sockets of one listener filter chain or cluster. Its context is fixed, unless
// makeRotatable() was called (a context built from an SDS secret): then setContext() swaps in
// a new context (a rotated certificate or CA) for the connections that start from then on,
// while open ones keep the context they began with. Workers read the current context through
// a per-thread cache refreshed only when the generation counter moved: one atomic load per
// new connection, and nothing more for a factory that never rotates.
class TlsTransportSocketFactory : public network::TransportSocketFactory {
 public:
  explicit TlsTransportSocketFactory(TlsContextConstSharedPtr context);
  ~TlsTransportSocketFactory() override;
  network::TransportSocketPtr createTransportSocket(
      const network::TransportSocketOptions* options = nullptr) const override {
    return std::make_unique<TlsTransportSocket>(current(), options);
  }
  bool implementsSecureTransport() const override { return true; }
  void initializeStats(stats::Store& store, const std::string& prefix) const override;

  // Once, before the factory is shared with the workers.
  void makeRotatable();
  // Main thread, on a rotatable factory: new connections use `context` from now on. It takes
  // the stats this factory's contexts count under (a listener's, once it is bound).
  void setContext(TlsContextConstSharedPtr context) const;
  // The context new connections use now.
  TlsContextConstSharedPtr current() const;
  const TlsContext& context() const { return *current(); }

 private:
  struct Rotation;
  TlsContextConstSharedPtr context_;       // fixed, or the first one of a rotatable factory
  std::unique_ptr<Rotation> rotation_;     // null unless rotatable
};

}  // namespace sluice::tls
