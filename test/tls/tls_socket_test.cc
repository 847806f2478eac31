// TLS contexts and the TLS transport socket: a real client and server connection over
// loopback on one Dispatcher, with certificates made by test/tls/gen_certs.sh.

#include <fcntl.h>
#include <openssl/ssl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "buffer/buffer.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "stats/stats.h"
#include "tls/context.h"
#include "tls/tls_socket.h"

namespace sluice::tls {
namespace {

using namespace std::chrono_literals;
using network::ConnectionEvent;

const std::string& certDir() {
  static const std::string dir = [] {
    std::string d = ::testing::TempDir() + "sluice_tls_certs_" + std::to_string(getpid());
    const std::string cmd = std::string(SLUICE_SOURCE_DIR) + "/test/tls/gen_certs.sh " + d;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d;
  }();
  return dir;
}

std::string readCert(const std::string& name) {
  std::ifstream in(certDir() + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Peer : public network::ReadFilter, public network::ConnectionCallbacks {
 public:
  explicit Peer(bool echo = false) : echo_(echo) {}
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& cb) override {
    connection = &cb.connection();
  }
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    bytes_seen += data.length();
    if (echo_) {
      connection->write(data, false);
    } else {
      received += data.toString();
      data.drain(data.length());
    }
    if (end_stream) got_end_stream = true;
    return network::FilterStatus::Continue;
  }
  void onEvent(ConnectionEvent e) override { events.push_back(e); }
  bool connected() const { return has(ConnectionEvent::Connected); }
  bool closed() const {
    return has(ConnectionEvent::RemoteClose) || has(ConnectionEvent::LocalClose);
  }
  bool has(ConnectionEvent e) const {
    for (auto x : events) {
      if (x == e) return true;
    }
    return false;
  }

  network::Connection* connection{nullptr};
  std::string received;  // unless it echoes
  size_t bytes_seen{0};
  bool got_end_stream{false};
  std::vector<ConnectionEvent> events;

 private:
  bool echo_;
};

class TlsSocketTest : public ::testing::Test, public network::ListenerCallbacks {
 protected:
  TlsSocketTest() {
    std::string error;
    auto any = network::fromIp("127.0.0.1", 0, &error);
    listen_socket_ = network::createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = network::localAddress(listen_socket_.fd());
    listener_ = std::make_unique<network::TcpListenerImpl>(dispatcher_, listen_socket_, *this);
  }
  ~TlsSocketTest() override {
    for (auto& c : server_connections_) c->close(network::ConnectionCloseType::NoFlush);
    if (client_) client_->close(network::ConnectionCloseType::NoFlush);
    server_connections_.clear();
    client_.reset();
    listener_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  static TlsContextConfig serverConfig() {
    TlsContextConfig c = TlsContextConfig::serverDefaults();
    c.cert_chain_pem = readCert("server.pem");
    c.private_key_pem = readCert("server.key");
    return c;
  }
  static TlsContextConfig clientConfig() { return TlsContextConfig::clientDefaults(); }
  static ValidationConfig trust(const std::string& ca = "ca.pem") {
    ValidationConfig v;
    v.trusted_ca_pem = readCert(ca);
    return v;
  }

  void useServer(const TlsContextConfig& config) {
    std::string error;
    server_ctx_ = TlsContext::create(config, SslStats::create(store_, "listener.test.ssl."),
                                     &error);
    ASSERT_NE(server_ctx_, nullptr) << error;
  }

  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    auto conn = network::createServerConnection(
        dispatcher_, std::move(socket), std::make_unique<TlsTransportSocket>(server_ctx_, nullptr),
        nullptr, std::move(peer));
    conn->addConnectionCallbacks(server_peer_);
    conn->addReadFilter(std::shared_ptr<network::ReadFilter>(&server_peer_, [](auto*) {}));
    conn->initializeReadFilters();
    server_connections_.push_back(std::move(conn));
  }

  network::ClientConnection& connect(const TlsContextConfig& config,
                                     const network::TransportSocketOptions* options = nullptr) {
    std::string error;
    client_ctx_ = TlsContext::create(config, SslStats::create(store_, "cluster.test.ssl."), &error);
    EXPECT_NE(client_ctx_, nullptr) << error;
    client_ = network::createClientConnection(
        dispatcher_, address_, std::make_unique<TlsTransportSocket>(client_ctx_, options), &error);
    client_->addConnectionCallbacks(client_peer_);
    client_->addReadFilter(std::shared_ptr<network::ReadFilter>(&client_peer_, [](auto*) {}));
    client_->connect();
    return *client_;
  }

  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    }
    return true;
  }

  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }

  event::RealTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  stats::Store store_;
  network::SocketFd listen_socket_;
  network::AddressConstSharedPtr address_;
  std::unique_ptr<network::TcpListenerImpl> listener_;
  TlsContextConstSharedPtr server_ctx_;
  TlsContextConstSharedPtr client_ctx_;
  Peer server_peer_{true};
  Peer client_peer_;
  std::vector<network::ConnectionPtr> server_connections_;
  network::ClientConnectionPtr client_;
};

std::string pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST_F(TlsSocketTest, HandshakeThenEchoALargePayload) {
  TlsContextConfig sc = serverConfig();
  sc.alpn = {"h2", "http/1.1"};
  useServer(sc);
  TlsContextConfig cc = clientConfig();
  cc.validation = trust();
  cc.validation->san_matchers.push_back(
      {SanMatcher::Type::Uri, SanMatcher::Kind::Exact, "spiffe://cluster.local/ns/default/sa/server"});
  cc.alpn = {"http/1.1", "h2"};
  network::ClientConnection& conn = connect(cc);
  // Written before the handshake: held until it completes, then sent.
  const std::string payload = pattern(3 * 1024 * 1024 + 17);
  buffer::Buffer data;
  data.add(payload);
  conn.write(data, false);
  ASSERT_TRUE(runUntil([&] { return client_peer_.received.size() == payload.size(); }));
  EXPECT_EQ(client_peer_.received, payload);
  EXPECT_TRUE(client_peer_.connected());
  EXPECT_TRUE(server_peer_.connected());  // raised after the server's handshake too
  // The server picks by its own preference.
  EXPECT_EQ(conn.transportProtocol(), "h2");
  EXPECT_EQ(server_connections_[0]->transportProtocol(), "h2");
  EXPECT_EQ(counter("listener.test.ssl.handshake"), 1u);
  EXPECT_EQ(counter("cluster.test.ssl.handshake"), 1u);
  EXPECT_EQ(counter("listener.test.ssl.connection_error"), 0u);
}

// A short message written before the handshake leaves right behind the client's Finished,
// often in the same segment: the server reads it ahead with the handshake's last flight
// (read_ahead) and must deliver it without another edge from the socket.
TEST_F(TlsSocketTest, ShortMessageSentWithTheHandshakeIsDelivered) {
  useServer(serverConfig());
  network::ClientConnection& conn = connect(clientConfig());
  buffer::Buffer data;
  data.add("ping");
  conn.write(data, false);
  ASSERT_TRUE(runUntil([&] { return client_peer_.received.size() == 4; }));
  EXPECT_EQ(client_peer_.received, "ping");
  buffer::Buffer more;
  more.add("pong!");
  conn.write(more, false);
  ASSERT_TRUE(runUntil([&] { return client_peer_.received.size() == 9; }));
  EXPECT_EQ(client_peer_.received, "pingpong!");
}

// A peer that sends its last bytes and closes the TCP connection without close_notify: when
// both arrive before the server reads, one event reports them, and the server's read of the
// bytes comes back short. The read must go on to the end of stream there (no new edge will
// come for the FIN), not stop as after any other short read.
TEST_F(TlsSocketTest, LastBytesAndAFinThatCameTogetherAreBothRead) {
  useServer(serverConfig());
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(0, ::connect(fd, address_->sockAddr(), address_->sockAddrLen()));
  ASSERT_EQ(0, ::fcntl(fd, F_SETFL, O_NONBLOCK));
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  ASSERT_TRUE(runUntil([&] { return SSL_connect(ssl.get()) == 1; }));
  ASSERT_TRUE(runUntil([&] { return server_peer_.connected(); }));
  ASSERT_EQ(3, SSL_write(ssl.get(), "bye", 3));
  ASSERT_EQ(0, ::shutdown(fd, SHUT_WR));  // FIN right behind the record, no close_notify
  ASSERT_TRUE(runUntil([&] { return server_peer_.closed(); }));
  EXPECT_EQ(server_peer_.bytes_seen, 3u);
  EXPECT_TRUE(server_peer_.has(ConnectionEvent::RemoteClose));
  ::close(fd);
}

// Reads disabled on the server while a record arrives: the record waits in the socket (the
// transport's read after the last short one was skipped, see SocketBio) and resuming reads
// it without a new edge from the socket.
TEST_F(TlsSocketTest, ARecordThatArrivedWhileReadsWereDisabledIsReadOnResume) {
  useServer(serverConfig());
  network::ClientConnection& conn = connect(clientConfig());
  buffer::Buffer one;
  one.add("one");
  conn.write(one, false);
  ASSERT_TRUE(runUntil([&] { return client_peer_.received == "one"; }));
  network::Connection& server = *server_connections_[0];
  const int server_fd = dynamic_cast<network::TransportSocketCallbacks&>(server).fd();
  server.readDisable(true);
  buffer::Buffer two;
  two.add("two");
  conn.write(two, false);
  ASSERT_TRUE(runUntil([&] {
    int queued = 0;
    return ::ioctl(server_fd, FIONREAD, &queued) == 0 && queued > 0;
  }));
  // The socket's edge comes and goes while reads are off.
  for (int i = 0; i < 20; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  EXPECT_EQ(server_peer_.bytes_seen, 3u);
  server.readDisable(false);
  ASSERT_TRUE(runUntil([&] { return client_peer_.received == "onetwo"; }));
  EXPECT_EQ(server_peer_.bytes_seen, 6u);
}

// A server's staged close (FlushWriteAndDelay: close_notify and FIN after the last byte,
// then a wait for the peer) puts the close_notify record out before its FIN: a FIN without
// it reads as an unexpected end of stream (a truncation attack, to a TLS client). Here the
// response waits in the server's send queue, over a send buffer shrunk below what it holds,
// when the close begins. (Linux still appends a small record to a queued, unsent segment;
// when it refuses one, the socket retries it on the next write-ready pass before its FIN:
// that branch is not forced here.)
TEST_F(TlsSocketTest, AStagedCloseSendsItsCloseNotifyBeforeTheFin) {
  useServer(serverConfig());
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  const int small = 4096;
  ASSERT_EQ(0, ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small));
  ASSERT_EQ(0, ::connect(fd, address_->sockAddr(), address_->sockAddrLen()));
  ASSERT_EQ(0, ::fcntl(fd, F_SETFL, O_NONBLOCK));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  ASSERT_TRUE(runUntil([&] { return SSL_connect(ssl.get()) == 1; }));
  ASSERT_TRUE(runUntil([&] { return server_peer_.connected(); }));
  network::Connection& server = *server_connections_[0];
  const int server_fd = dynamic_cast<network::TransportSocketCallbacks&>(server).fd();
  const int big = 1 << 20;
  ASSERT_EQ(0, ::setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big));
  const std::string payload = pattern(128 * 1024 + 3);
  buffer::Buffer data;
  data.add(payload);
  server.write(data, false);
  ASSERT_TRUE(runUntil([&] { return server.bufferedWriteBytes() == 0; }));
  // Most of it waits in the server's send queue (the client's window is closed).
  ASSERT_EQ(0, ::setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
  server.setDelayedCloseTimeout(std::chrono::milliseconds(20000));
  server.close(network::ConnectionCloseType::FlushWriteAndDelay);
  std::string got;
  int last = 0;
  ASSERT_TRUE(runUntil([&] {
    char buf[16384];
    const int n = SSL_read(ssl.get(), buf, sizeof buf);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      return false;
    }
    last = SSL_get_error(ssl.get(), n);
    return last != SSL_ERROR_WANT_READ;
  }));
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_EQ(last, SSL_ERROR_ZERO_RETURN) << "the FIN came without a close_notify before it";
  ::close(fd);
}

TEST_F(TlsSocketTest, ClientCloseEndsTheServersStream) {
  useServer(serverConfig());
  network::ClientConnection& conn = connect(clientConfig());
  ASSERT_TRUE(runUntil([&] { return client_peer_.connected() && server_peer_.connected(); }));
  conn.close(network::ConnectionCloseType::FlushWrite);
  ASSERT_TRUE(runUntil([&] { return server_peer_.closed(); }));
  EXPECT_TRUE(server_peer_.has(ConnectionEvent::RemoteClose));
}

TEST_F(TlsSocketTest, PerConnectionAlpnOverride) {
  TlsContextConfig sc = serverConfig();
  sc.alpn = {"h2", "http/1.1"};
  useServer(sc);
  network::TransportSocketOptions options;
  options.alpn = {"http/1.1"};
  network::ClientConnection& conn = connect(clientConfig(), &options);
  ASSERT_TRUE(runUntil([&] { return client_peer_.connected(); }));
  EXPECT_EQ(conn.transportProtocol(), "http/1.1");
}

TEST_F(TlsSocketTest, MutualTlsAccepted) {
  TlsContextConfig sc = serverConfig();
  sc.validation = trust();
  sc.validation->san_matchers.push_back({SanMatcher::Type::Uri, SanMatcher::Kind::Prefix,
                                         "spiffe://cluster.local/ns/default/"});
  sc.require_client_certificate = true;
  useServer(sc);
  TlsContextConfig cc = clientConfig();
  cc.cert_chain_pem = readCert("client.pem");
  cc.private_key_pem = readCert("client.key");
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return server_peer_.connected(); }));
  EXPECT_EQ(counter("listener.test.ssl.handshake"), 1u);
  EXPECT_EQ(counter("listener.test.ssl.connection_error"), 0u);
}

struct RefusalCase {
  const char* name;
  const char* cert;  // "" for none
  const char* counter;
};

class TlsRefusalTest : public TlsSocketTest,
                       public ::testing::WithParamInterface<RefusalCase> {};

TEST_P(TlsRefusalTest, MutualTlsRefusedClosesOnlyThatConnection) {
  TlsContextConfig sc = serverConfig();
  sc.validation = trust();
  sc.validation->crl_pem = readCert("ca.crl");
  sc.validation->san_matchers.push_back({SanMatcher::Type::Uri, SanMatcher::Kind::Prefix,
                                         "spiffe://cluster.local/ns/default/"});
  sc.require_client_certificate = true;
  useServer(sc);
  TlsContextConfig cc = clientConfig();
  const std::string cert = GetParam().cert;
  if (!cert.empty()) {
    cc.cert_chain_pem = readCert(cert + ".pem");
    cc.private_key_pem = readCert(cert + ".key");
  }
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.closed(); }));
  ASSERT_TRUE(runUntil([&] { return server_peer_.closed(); }));
  EXPECT_FALSE(server_peer_.connected());
  EXPECT_EQ(counter("listener.test.ssl.connection_error"), 1u);
  EXPECT_EQ(counter(std::string("listener.test.ssl.") + GetParam().counter), 1u);
  EXPECT_EQ(counter("listener.test.ssl.handshake"), 0u);
  // The listener still serves a good client afterwards.
  client_peer_ = Peer();
  server_peer_ = Peer(true);
  TlsContextConfig good = clientConfig();
  good.cert_chain_pem = readCert("client.pem");
  good.private_key_pem = readCert("client.key");
  connect(good);
  ASSERT_TRUE(runUntil([&] { return client_peer_.connected(); }));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TlsRefusalTest,
    ::testing::Values(RefusalCase{"NoCert", "", "fail_verify_no_cert"},
                      RefusalCase{"UntrustedCa", "untrusted_client", "fail_verify_error"},
                      RefusalCase{"SanMismatch", "client2", "fail_verify_san"},
                      RefusalCase{"Revoked", "revoked", "fail_verify_error"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(TlsSocketTest, ClientRefusesAnExpiredServerCertificate) {
  TlsContextConfig sc = serverConfig();
  sc.cert_chain_pem = readCert("expired.pem");
  sc.private_key_pem = readCert("expired.key");
  useServer(sc);
  TlsContextConfig cc = clientConfig();
  cc.validation = trust();
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.closed(); }));
  EXPECT_FALSE(client_peer_.connected());
  EXPECT_EQ(counter("cluster.test.ssl.fail_verify_error"), 1u);
  EXPECT_FALSE(client_->transportFailureReason().empty());
}

TEST_F(TlsSocketTest, ExpiredAllowedWhenConfigured) {
  TlsContextConfig sc = serverConfig();
  sc.cert_chain_pem = readCert("expired.pem");
  sc.private_key_pem = readCert("expired.key");
  useServer(sc);
  TlsContextConfig cc = clientConfig();
  cc.validation = trust();
  cc.validation->allow_expired_certificate = true;
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.connected(); }));
}

TEST_F(TlsSocketTest, ClientRefusesAServerFromAnotherCa) {
  useServer(serverConfig());
  TlsContextConfig cc = clientConfig();
  cc.validation = trust("other_ca.pem");
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.closed(); }));
  EXPECT_EQ(counter("cluster.test.ssl.fail_verify_error"), 1u);
}

TEST_F(TlsSocketTest, ServerSanCheckedByTheClient) {
  useServer(serverConfig());
  TlsContextConfig cc = clientConfig();
  cc.validation = trust();
  cc.validation->san_matchers.push_back(
      {SanMatcher::Type::Dns, SanMatcher::Kind::Exact, "other.test"});
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.closed(); }));
  EXPECT_EQ(counter("cluster.test.ssl.fail_verify_san"), 1u);
}

TEST_F(TlsSocketTest, VersionRangesThatDoNotMeetFail) {
  TlsContextConfig sc = serverConfig();
  sc.min_version = TLS1_3_VERSION;
  useServer(sc);
  TlsContextConfig cc = clientConfig();  // Envoy's client default: at most TLS 1.2
  connect(cc);
  ASSERT_TRUE(runUntil([&] { return client_peer_.closed() && server_peer_.closed(); }));
  EXPECT_EQ(counter("listener.test.ssl.connection_error"), 1u);
  EXPECT_EQ(counter("cluster.test.ssl.connection_error"), 1u);
}

TEST(TlsContextTest, RefusesBadMaterialNamingTheField) {
  stats::Store store;
  auto make = [&](TlsContextConfig c) {
    std::string error;
    auto ctx = TlsContext::create(c, SslStats::create(store, "x.ssl."), &error);
    EXPECT_EQ(ctx, nullptr);
    return error;
  };
  TlsContextConfig c = TlsContextConfig::serverDefaults();
  c.cert_chain_pem = "not a pem";
  c.private_key_pem = readCert("server.key");
  EXPECT_EQ(make(c), "tls_certificates[0].certificate_chain: no PEM certificate found");
  c.cert_chain_pem = readCert("server.pem");
  c.private_key_pem = readCert("client.key");
  EXPECT_EQ(make(c), "tls_certificates[0].private_key: does not match the certificate");
  c.private_key_pem = "junk";
  EXPECT_EQ(make(c), "tls_certificates[0].private_key: no PEM private key found");
  c.private_key_pem = readCert("server.key");
  c.cipher_suites = "NO-SUCH-CIPHER";
  EXPECT_NE(make(c).find("tls_params.cipher_suites"), std::string::npos);
  c.cipher_suites = "";
  c.ecdh_curves = "P-999";
  EXPECT_NE(make(c).find("tls_params.ecdh_curves"), std::string::npos);
  c.ecdh_curves = "";
  c.min_version = TLS1_3_VERSION;
  c.max_version = TLS1_2_VERSION;
  EXPECT_NE(make(c).find("tls_params"), std::string::npos);
  TlsContextConfig v = TlsContextConfig::serverDefaults();
  v.cert_chain_pem = readCert("server.pem");
  v.private_key_pem = readCert("server.key");
  v.validation = ValidationConfig{};
  v.validation->trusted_ca_pem = "x";
  EXPECT_EQ(make(v), "validation_context.trusted_ca: no PEM certificate found");
  TlsContextConfig server_without_cert = TlsContextConfig::serverDefaults();
  EXPECT_EQ(make(server_without_cert), "tls_certificates: a server needs a certificate");
}

TEST(SanMatcherTest, Kinds) {
  SanMatcher m{SanMatcher::Type::Uri, SanMatcher::Kind::Exact, "spiffe://a/b"};
  EXPECT_TRUE(m.matches("spiffe://a/b"));
  EXPECT_FALSE(m.matches("spiffe://a/bc"));
  m.ignore_case = true;
  EXPECT_TRUE(m.matches("SPIFFE://A/B"));
  SanMatcher p{SanMatcher::Type::Uri, SanMatcher::Kind::Prefix, "spiffe://a/"};
  EXPECT_TRUE(p.matches("spiffe://a/x"));
  EXPECT_FALSE(p.matches("spiffe://b/x"));
  SanMatcher s{SanMatcher::Type::Dns, SanMatcher::Kind::Suffix, ".example.com"};
  EXPECT_TRUE(s.matches("api.example.com"));
  EXPECT_FALSE(s.matches("example.com"));
  SanMatcher c{SanMatcher::Type::Dns, SanMatcher::Kind::Contains, "mid"};
  EXPECT_TRUE(c.matches("a.mid.b"));
  EXPECT_FALSE(c.matches("a.b"));
}

}  // namespace
}  // namespace sluice::tls
