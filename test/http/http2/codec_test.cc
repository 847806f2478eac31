// The HTTP/2 codecs against each other on real loopback sockets: a client codec on a client
// ConnectionImpl talks to a server codec on the accepted ConnectionImpl, both on one
// Dispatcher.

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "buffer/buffer.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"
#include "http/http2/codec_impl.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::http::http2 {
namespace {

using namespace std::chrono_literals;

// One side's view of a stream: what its decoder got, and whether it was reset.
struct Received {
  HeaderMapPtr headers;
  std::vector<HeaderMapPtr> informational;
  std::string body;
  HeaderMapPtr trailers;
  bool end_stream{false};
  std::optional<StreamResetReason> reset;
};

struct ServerStream : public RequestDecoder, public StreamCallbacks {
  void decodeHeaders(HeaderMapPtr&& h, bool end) override {
    got.headers = std::move(h);
    got.end_stream = end;
  }
  void decodeData(buffer::Buffer& data, bool end) override {
    EXPECT_FALSE(got.end_stream);
    got.body += data.toString();
    data.drain(data.length());
    got.end_stream = end;
  }
  void decodeTrailers(HeaderMapPtr&& t) override {
    got.trailers = std::move(t);
    got.end_stream = true;
  }
  void onResetStream(StreamResetReason r, std::string_view) override { got.reset = r; }
  ResponseEncoder* encoder{nullptr};
  Received got;
};

struct ClientStream : public ResponseDecoder, public StreamCallbacks {
  void decode1xxHeaders(HeaderMapPtr&& h) override { got.informational.push_back(std::move(h)); }
  void decodeHeaders(HeaderMapPtr&& h, bool end) override {
    got.headers = std::move(h);
    got.end_stream = end;
  }
  void decodeData(buffer::Buffer& data, bool end) override {
    EXPECT_FALSE(got.end_stream);
    got.body += data.toString();
    data.drain(data.length());
    got.end_stream = end;
  }
  void decodeTrailers(HeaderMapPtr&& t) override {
    got.trailers = std::move(t);
    got.end_stream = true;
  }
  void onResetStream(StreamResetReason r, std::string_view) override { got.reset = r; }
  void onAboveWriteBufferHighWatermark() override { ++above; }
  void onBelowWriteBufferLowWatermark() override { ++below; }
  RequestEncoder* encoder{nullptr};
  Received got;
  int above{0};
  int below{0};
};

// A codec's owner reduced to recording: dispatch on read, onConnectionClosed on close.
template <class Codec>
struct Side : public network::ReadFilter, public network::ConnectionCallbacks {
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks&) override {}
  network::FilterStatus onData(buffer::Buffer& data, bool) override {
    received_bytes += data.length();
    CodecStatus status = codec->dispatch(data);
    if (!status.ok()) {
      errors.push_back(status);
      connection->close(network::ConnectionCloseType::FlushWrite);
    }
    return network::FilterStatus::StopIteration;
  }
  void onEvent(network::ConnectionEvent e) override {
    if (e == network::ConnectionEvent::Connected) return;
    closed = true;
    if (codec) codec->onConnectionClosed();
  }
  void onAboveWriteBufferHighWatermark() override {
    codec->onUnderlyingConnectionAboveWriteBufferHighWatermark();
  }
  void onBelowWriteBufferLowWatermark() override {
    codec->onUnderlyingConnectionBelowWriteBufferLowWatermark();
  }
  network::Connection* connection{nullptr};
  Codec codec;
  std::vector<CodecStatus> errors;
  uint64_t received_bytes{0};
  bool closed{false};
};

struct ServerSide : public Side<ServerCodecPtr>, public ServerConnectionCallbacks {
  RequestDecoder& newStream(ResponseEncoder& encoder) override {
    streams.push_back(std::make_unique<ServerStream>());
    streams.back()->encoder = &encoder;
    encoder.getStream().addCallbacks(*streams.back());
    if (on_new_stream) on_new_stream(*streams.back());
    return *streams.back();
  }
  std::vector<std::unique_ptr<ServerStream>> streams;
  std::function<void(ServerStream&)> on_new_stream;
};

struct ClientSide : public Side<ClientCodecPtr>, public http::ConnectionCallbacks {
  void onGoAway() override { ++goaways; }
  int goaways{0};
};

class Http2CodecTest : public ::testing::Test, public network::ListenerCallbacks {
 protected:
  // `simulated`: timers run on the simulated clock (keepalive tests); I/O stays real.
  explicit Http2CodecTest(bool simulated = false)
      : sim_time_(simulated ? std::make_unique<event::SimulatedTimeSystem>() : nullptr),
        dispatcher_("test", sim_time_ ? static_cast<event::TimeSystem&>(*sim_time_) : time_) {
    std::string error;
    auto any = network::fromIp("127.0.0.1", 0, &error);
    listen_socket_ = network::createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = network::localAddress(listen_socket_.fd());
    listener_ = std::make_unique<network::TcpListenerImpl>(dispatcher_, listen_socket_, *this);
  }
  ~Http2CodecTest() override {
    if (client_conn_) client_conn_->close(network::ConnectionCloseType::NoFlush);
    if (server_conn_) server_conn_->close(network::ConnectionCloseType::NoFlush);
    client_.codec.reset();
    server_.codec.reset();
    client_conn_.reset();
    server_conn_.reset();
    listener_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    server_conn_ = network::createServerConnection(dispatcher_, std::move(socket),
                                                   std::make_unique<network::RawTransportSocket>(),
                                                   nullptr, std::move(peer));
    server_conn_->setBufferLimits(buffer_limit_);
    server_.connection = server_conn_.get();
    server_conn_->addConnectionCallbacks(server_);
    server_conn_->addReadFilter(std::shared_ptr<network::ReadFilter>(&server_, [](auto*) {}));
    server_.codec = createServerCodec(*server_conn_, server_, server_settings_);
    server_conn_->initializeReadFilters();
  }

  void start() {
    std::string error;
    client_conn_ = network::createClientConnection(
        dispatcher_, address_, std::make_unique<network::RawTransportSocket>(), &error);
    ASSERT_NE(client_conn_, nullptr) << error;
    client_conn_->setBufferLimits(buffer_limit_);
    client_.connection = client_conn_.get();
    client_conn_->addConnectionCallbacks(client_);
    client_conn_->addReadFilter(std::shared_ptr<network::ReadFilter>(&client_, [](auto*) {}));
    client_.codec = createClientCodec(*client_conn_, client_, client_settings_);
    client_conn_->connect();
    ASSERT_TRUE(runUntil([&] { return server_conn_ != nullptr; }));
  }

  template <class Fn>
  bool runUntil(Fn&& done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    }
    return true;
  }
  void spin() {
    for (int i = 0; i < 50; ++i) dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  }

  ClientStream& request(const HeaderMap& headers, bool end_stream) {
    client_streams_.push_back(std::make_unique<ClientStream>());
    ClientStream& s = *client_streams_.back();
    s.encoder = &client_.codec->newStream(s);
    s.encoder->getStream().addCallbacks(s);
    s.encoder->encodeHeaders(headers, end_stream);
    return s;
  }
  static HeaderMap get(std::string_view path) {
    return HeaderMap{{":method", "GET"}, {":path", path}, {":authority", "example.com"},
                     {":scheme", "http"}};
  }
  static void send(Stream& s, RequestEncoder& e, std::string body, bool end) {
    (void)s;
    buffer::Buffer b;
    b.add(body);
    e.encodeData(b, end);
  }

  event::RealTimeSystem time_;
  std::unique_ptr<event::SimulatedTimeSystem> sim_time_;
  event::DispatcherImpl dispatcher_;
  network::SocketFd listen_socket_;
  network::AddressConstSharedPtr address_;
  std::unique_ptr<network::TcpListenerImpl> listener_;
  network::ConnectionPtr server_conn_;
  network::ClientConnectionPtr client_conn_;
  ServerSide server_;
  ClientSide client_;
  std::vector<std::unique_ptr<ClientStream>> client_streams_;
  CodecSettings server_settings_;
  CodecSettings client_settings_;
  uint32_t buffer_limit_{1024 * 1024};
};

TEST_F(Http2CodecTest, PrefaceDetection) {
  bool need_more = false;
  buffer::Buffer b;
  b.add("PRI * HTTP/2.0\r\n");
  EXPECT_FALSE(startsWithPreface(b, need_more));
  EXPECT_TRUE(need_more);
  b.add("\r\nSM\r\n\r\nxyz");
  EXPECT_TRUE(startsWithPreface(b, need_more));
  EXPECT_FALSE(need_more);
  buffer::Buffer h1;
  h1.add("POST / HTTP/1.1\r\n");
  EXPECT_FALSE(startsWithPreface(h1, need_more));
  EXPECT_FALSE(need_more);
}

TEST_F(Http2CodecTest, RequestAndResponseWithBodiesAndTrailers) {
  start();
  HeaderMap h{{":method", "POST"}, {":path", "/upload"}, {":authority", "example.com"},
              {":scheme", "http"},  {"x-one", "1"},      {"connection", "keep-alive"},
              {"te", "trailers"}};
  ClientStream& c = request(h, false);
  send(c.encoder->getStream(), *c.encoder, "hello ", false);
  send(c.encoder->getStream(), *c.encoder, "world", false);
  c.encoder->encodeTrailers(HeaderMap{{"x-checksum", "abc"}});
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty() && server_.streams[0]->got.end_stream; }));
  ServerStream& s = *server_.streams[0];
  EXPECT_EQ(s.got.headers->method(), "POST");
  EXPECT_EQ(s.got.headers->path(), "/upload");
  EXPECT_EQ(s.got.headers->authority(), "example.com");
  EXPECT_EQ(s.got.headers->getValue("x-one"), "1");
  EXPECT_FALSE(s.got.headers->has("connection"));  // connection-specific: never on HTTP/2
  EXPECT_EQ(s.got.headers->getValue("te"), "trailers");
  EXPECT_EQ(s.got.body, "hello world");
  ASSERT_NE(s.got.trailers, nullptr);
  EXPECT_EQ(s.got.trailers->getValue("x-checksum"), "abc");

  s.encoder->encode1xxHeaders(HeaderMap{{":status", "103"}, {"link", "</a>"}});
  s.encoder->encodeHeaders(HeaderMap{{":status", "200"}, {"content-type", "application/grpc"}},
                           false);
  buffer::Buffer b;
  b.add("response");
  s.encoder->encodeData(b, false);
  s.encoder->encodeTrailers(HeaderMap{{"grpc-status", "0"}, {"grpc-message", "ok"}});
  ASSERT_TRUE(runUntil([&] { return c.got.end_stream; }));
  ASSERT_EQ(c.got.informational.size(), 1u);
  EXPECT_EQ(c.got.informational[0]->status(), 103u);
  EXPECT_EQ(c.got.headers->status(), 200u);
  EXPECT_EQ(c.got.body, "response");
  ASSERT_NE(c.got.trailers, nullptr);
  EXPECT_EQ(c.got.trailers->getValue("grpc-status"), "0");
  EXPECT_EQ(c.got.trailers->getValue("grpc-message"), "ok");
  EXPECT_FALSE(c.got.reset);
  EXPECT_FALSE(s.got.reset);
  ASSERT_TRUE(runUntil([&] { return client_.codec->activeStreams() == 0; }));
}

TEST_F(Http2CodecTest, HostBecomesAuthorityAndCookiesAreJoined) {
  start();
  ClientStream& c = request(HeaderMap{{":method", "GET"}, {":path", "/"}, {"host", "h.example"},
                                      {"cookie", "a=1"}, {"cookie", "b=2"}},
                            true);
  (void)c;
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty() && server_.streams[0]->got.end_stream; }));
  const HeaderMap& h = *server_.streams[0]->got.headers;
  EXPECT_EQ(h.authority(), "h.example");
  EXPECT_FALSE(h.has("host"));
  EXPECT_EQ(h.scheme(), "http");
  EXPECT_EQ(h.getValue("cookie"), "a=1; b=2");
}

// Header blocks longer than the codec's on-stack nv array (24 entries) go out whole, in order,
// both ways (request headers, response headers, trailers).
TEST_F(Http2CodecTest, LongHeaderListsBothWays) {
  start();
  HeaderMap req = get("/long");
  HeaderMap resp{{":status", "200"}};
  HeaderMap trailers;
  for (int i = 0; i < 40; ++i) {
    req.add("x-req-" + std::to_string(i), std::to_string(i));
    resp.add("x-resp-" + std::to_string(i), std::to_string(i * 2));
    trailers.add("x-trailer-" + std::to_string(i), std::to_string(i * 3));
  }
  ClientStream& c = request(req, true);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty() && server_.streams[0]->got.end_stream; }));
  const HeaderMap& got = *server_.streams[0]->got.headers;
  EXPECT_EQ(got.size(), req.size());
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(got.getValue("x-req-" + std::to_string(i)), std::to_string(i));
  }
  ResponseEncoder& e = *server_.streams[0]->encoder;
  e.encodeHeaders(resp, false);
  buffer::Buffer b;
  b.add("body");
  e.encodeData(b, false);
  e.encodeTrailers(trailers);
  ASSERT_TRUE(runUntil([&] { return c.got.end_stream; }));
  ASSERT_NE(c.got.headers, nullptr);
  ASSERT_NE(c.got.trailers, nullptr);
  EXPECT_EQ(c.got.headers->size(), resp.size());
  EXPECT_EQ(c.got.trailers->size(), trailers.size());
  std::vector<std::string> order;
  for (const HeaderEntry& h : *c.got.headers) order.emplace_back(h.key);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(order[static_cast<size_t>(i) + 1], "x-resp-" + std::to_string(i));
    EXPECT_EQ(c.got.headers->getValue("x-resp-" + std::to_string(i)), std::to_string(i * 2));
    EXPECT_EQ(c.got.trailers->getValue("x-trailer-" + std::to_string(i)), std::to_string(i * 3));
  }
  EXPECT_EQ(c.got.body, "body");
}

// Every callback of a stream hears its reset, beyond the two the stream keeps inline; one
// removed before the reset does not.
TEST_F(Http2CodecTest, ResetReachesEveryCallbackOfAStream) {
  struct Counting : public StreamCallbacks {
    void onResetStream(StreamResetReason r, std::string_view) override { got.push_back(r); }
    std::vector<StreamResetReason> got;
  };
  start();
  Counting extra[4];
  ClientStream& c = request(get("/many-callbacks"), false);
  for (Counting& cb : extra) c.encoder->getStream().addCallbacks(cb);
  c.encoder->getStream().removeCallbacks(extra[2]);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  server_.streams[0]->encoder->getStream().resetStream(StreamResetReason::LocalReset);
  ASSERT_TRUE(runUntil([&] { return c.got.reset.has_value(); }));
  EXPECT_EQ(*c.got.reset, StreamResetReason::RemoteReset);
  for (int i = 0; i < 4; ++i) {
    if (i == 2) {
      EXPECT_TRUE(extra[i].got.empty());
    } else {
      ASSERT_EQ(extra[i].got.size(), 1u) << i;
      EXPECT_EQ(extra[i].got[0], StreamResetReason::RemoteReset);
    }
  }
}

TEST_F(Http2CodecTest, ManyConcurrentStreamsOnOneConnection) {
  start();
  constexpr int kStreams = 200;
  for (int i = 0; i < kStreams; ++i) request(get("/s/" + std::to_string(i)), true);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == kStreams; }));
  // Answer in reverse order: each response finds its own stream.
  for (int i = kStreams - 1; i >= 0; --i) {
    ServerStream& s = *server_.streams[i];
    s.encoder->encodeHeaders(HeaderMap{{":status", "200"}}, false);
    buffer::Buffer b;
    b.add(std::string(s.got.headers->path()));
    s.encoder->encodeData(b, true);
  }
  ASSERT_TRUE(runUntil([&] {
    for (auto& c : client_streams_) {
      if (!c->got.end_stream) return false;
    }
    return true;
  }));
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_EQ(client_streams_[i]->got.body, "/s/" + std::to_string(i));
  }
  ASSERT_TRUE(runUntil([&] { return client_.codec->activeStreams() == 0; }));
}

TEST_F(Http2CodecTest, LargeBodiesBothWaysWithSmallWindows) {
  server_settings_.initial_stream_window_size = 65535;
  server_settings_.initial_connection_window_size = 65535;
  client_settings_.initial_stream_window_size = 65535;
  client_settings_.initial_connection_window_size = 65535;
  start();
  std::string big(3 * 1024 * 1024 + 7, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  ClientStream& c = request(HeaderMap{{":method", "PUT"}, {":path", "/big"}, {":scheme", "http"},
                                      {":authority", "e"}},
                            false);
  send(c.encoder->getStream(), *c.encoder, big, true);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty() && server_.streams[0]->got.end_stream; }));
  ServerStream& s = *server_.streams[0];
  EXPECT_EQ(s.got.body, big);
  s.encoder->encodeHeaders(HeaderMap{{":status", "200"}}, false);
  buffer::Buffer b;
  b.add(big);
  s.encoder->encodeData(b, true);
  ASSERT_TRUE(runUntil([&] { return c.got.end_stream; }));
  EXPECT_EQ(c.got.body, big);
}

// A read-disabled stream takes no more than its window: the peer's sender stops, its bytes
// wait on its side (above the high watermark) until reads resume.
TEST_F(Http2CodecTest, ReadDisabledStreamClosesThePeersWindow) {
  server_settings_.initial_stream_window_size = 65535;
  server_settings_.initial_connection_window_size = 1024 * 1024;
  buffer_limit_ = 256 * 1024;
  server_.on_new_stream = [](ServerStream& s) { s.encoder->getStream().readDisable(true); };
  start();
  ClientStream& c = request(HeaderMap{{":method", "POST"}, {":path", "/slow"},
                                      {":scheme", "http"}, {":authority", "e"}},
                            false);
  const std::string chunk(1024 * 1024, 'z');
  send(c.encoder->getStream(), *c.encoder, chunk, false);
  EXPECT_EQ(c.above, 1);  // 1 MiB waits on the client's stream, over its 256 KiB limit
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  spin();
  // At most one stream window (plus frame overhead and the headers) reached the server.
  EXPECT_LT(server_.received_bytes, 65535u + 4096u);
  EXPECT_EQ(server_.streams[0]->got.body.size(), 0u);
  send(c.encoder->getStream(), *c.encoder, "end", true);
  server_.streams[0]->encoder->getStream().readDisable(false);
  ASSERT_TRUE(runUntil([&] { return server_.streams[0]->got.end_stream; }));
  EXPECT_EQ(server_.streams[0]->got.body.size(), chunk.size() + 3);
  EXPECT_GE(c.below, 1);
}

TEST_F(Http2CodecTest, ClientResetReachesTheServer) {
  start();
  ClientStream& c = request(get("/r"), false);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  c.encoder->getStream().resetStream(StreamResetReason::LocalReset);
  EXPECT_EQ(c.got.reset, StreamResetReason::LocalReset);
  ASSERT_TRUE(runUntil([&] { return server_.streams[0]->got.reset.has_value(); }));
  EXPECT_EQ(*server_.streams[0]->got.reset, StreamResetReason::RemoteReset);
  ASSERT_TRUE(runUntil([&] { return client_.codec->activeStreams() == 0; }));
  // The connection still carries new streams.
  ClientStream& c2 = request(get("/after"), true);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == 2; }));
  server_.streams[1]->encoder->encodeHeaders(HeaderMap{{":status", "204"}}, true);
  ASSERT_TRUE(runUntil([&] { return c2.got.end_stream; }));
}

TEST_F(Http2CodecTest, RefusedStreamIsRemoteRefusedStreamReset) {
  start();
  ClientStream& c = request(get("/refuse"), true);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  server_.streams[0]->encoder->getStream().resetStream(StreamResetReason::LocalRefusedStreamReset);
  ASSERT_TRUE(runUntil([&] { return c.got.reset.has_value(); }));
  EXPECT_EQ(*c.got.reset, StreamResetReason::RemoteRefusedStreamReset);
}

TEST_F(Http2CodecTest, ResponseBeforeRequestEndsTheStreamCleanly) {
  start();
  ClientStream& c = request(HeaderMap{{":method", "POST"}, {":path", "/early"},
                                      {":scheme", "http"}, {":authority", "e"}},
                            false);
  send(c.encoder->getStream(), *c.encoder, "part", false);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  server_.streams[0]->encoder->encodeHeaders(HeaderMap{{":status", "413"}}, true);
  ASSERT_TRUE(runUntil([&] { return c.got.end_stream; }));
  EXPECT_EQ(c.got.headers->status(), 413u);
  EXPECT_FALSE(c.got.reset);
  ASSERT_TRUE(runUntil([&] { return client_.codec->activeStreams() == 0; }));
  EXPECT_FALSE(server_.streams[0]->got.reset);  // not a reset from the server's user's view
}

TEST_F(Http2CodecTest, GoAwayReachesTheClientAndStreamsFinish) {
  start();
  ClientStream& c = request(get("/inflight"), true);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  server_.codec->goAway();
  ASSERT_TRUE(runUntil([&] { return client_.goaways == 1; }));
  server_.streams[0]->encoder->encodeHeaders(HeaderMap{{":status", "200"}}, true);
  ASSERT_TRUE(runUntil([&] { return c.got.end_stream; }));
  EXPECT_FALSE(c.got.reset);
}

TEST_F(Http2CodecTest, ConnectionCloseResetsOpenStreams) {
  start();
  ClientStream& c = request(get("/x"), true);
  ASSERT_TRUE(runUntil([&] { return !server_.streams.empty(); }));
  client_conn_->close(network::ConnectionCloseType::NoFlush);
  ASSERT_TRUE(c.got.reset.has_value());
  EXPECT_EQ(*c.got.reset, StreamResetReason::ConnectionTermination);
  EXPECT_EQ(client_.codec->activeStreams(), 0u);
  // (The peer's side of a close is covered end to end: in this harness the accepted
  // connection does not see the client's close; see the report.)
}

// HPACK bomb: a header list over the limit resets the stream without keeping it; the
// connection goes on.
TEST_F(Http2CodecTest, HeaderListOverTheLimitResetsTheStream) {
  server_settings_.max_headers_kb = 8;
  start();
  HeaderMap big = get("/big-headers");
  for (int i = 0; i < 20; ++i) big.add("x-h" + std::to_string(i), std::string(1000, 'v'));
  ClientStream& c = request(big, true);
  ASSERT_TRUE(runUntil([&] { return c.got.reset.has_value(); }));
  EXPECT_TRUE(server_.streams.empty());
  HeaderMap many = get("/many-headers");
  for (int i = 0; i < 150; ++i) many.add("x-n" + std::to_string(i), "v");
  ClientStream& c2 = request(many, true);
  ASSERT_TRUE(runUntil([&] { return c2.got.reset.has_value(); }));
  EXPECT_TRUE(server_.streams.empty());
  ClientStream& ok = request(get("/fine"), true);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == 1; }));
  server_.streams[0]->encoder->encodeHeaders(HeaderMap{{":status", "200"}}, true);
  ASSERT_TRUE(runUntil([&] { return ok.got.end_stream; }));
}

// Rapid reset (CVE-2023-44487): streams opened and reset past the limit close the connection;
// under it the connection carries on.
TEST_F(Http2CodecTest, RapidResetClosesTheConnection) {
  server_settings_.reset_burst = 20;
  server_settings_.resets_per_second = 1;
  start();
  auto open_and_reset = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ClientStream& c = request(get("/rr"), false);
      c.encoder->getStream().resetStream(StreamResetReason::LocalReset);
    }
  };
  open_and_reset(10);
  ClientStream& ok = request(get("/still-fine"), true);
  ASSERT_TRUE(runUntil([&] {
    return !server_.streams.empty() && server_.streams.back()->got.headers &&
           server_.streams.back()->got.headers->path() == "/still-fine";
  }));
  server_.streams.back()->encoder->encodeHeaders(HeaderMap{{":status", "200"}}, true);
  ASSERT_TRUE(runUntil([&] { return ok.got.end_stream; }));
  EXPECT_FALSE(server_.closed);
  open_and_reset(100);
  ASSERT_TRUE(runUntil([&] { return server_.closed && client_.closed; }));
  EXPECT_EQ(client_.goaways, 1);
  ASSERT_EQ(server_.errors.size(), 1u);
}

// A frame as bytes: the 9-byte header, then the payload.
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  f.push_back(static_cast<char>((payload.size() >> 16) & 0xff));
  f.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  f.push_back(static_cast<char>(payload.size() & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<char>((stream >> shift) & 0xff));
  f.append(payload);
  return f;
}

// CONTINUATION flood (CVE-2024-27316 and kin): a header block split over more CONTINUATION
// frames than allowed closes the connection; nothing of it reaches a stream.
TEST_F(Http2CodecTest, ContinuationFloodClosesTheConnection) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  network::SocketFd raw(fd);
  ASSERT_EQ(::connect(fd, address_->sockAddr(), address_->sockAddrLen()), 0);
  ASSERT_TRUE(runUntil([&] { return server_conn_ != nullptr; }));
  std::string bytes(kConnectionPreface);
  bytes += frame(0x4, 0, 0, "");  // SETTINGS
  // HEADERS without END_HEADERS: :method GET, :path /, :scheme http (HPACK static indexes).
  bytes += frame(0x1, 0x1, 1, "\x82\x84\x86");
  const std::string literal("\x00\x01x\x01y", 5);  // "x: y", not indexed
  for (int i = 0; i < 50; ++i) bytes += frame(0x9, 0, 1, literal);  // CONTINUATION
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  ASSERT_TRUE(runUntil([&] { return server_.closed; }));
  EXPECT_TRUE(server_.streams.empty());
  EXPECT_EQ(server_.errors.size(), 1u);
}

// PING and SETTINGS floods: a peer that sends frames demanding an ACK faster than it takes
// them (here all in one read) is cut off once max_outbound_acks are waiting; a peer under the
// limit is not.
class Http2FloodTest : public Http2CodecTest {
 protected:
  // Sends the preface, an empty SETTINGS and `n` copies of `f` in one write; returns the fd.
  int flood(const std::string& f, int n) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    raw_ = std::make_unique<network::SocketFd>(fd);
    EXPECT_EQ(::connect(fd, address_->sockAddr(), address_->sockAddrLen()), 0);
    EXPECT_TRUE(runUntil([&] { return server_conn_ != nullptr; }));
    std::string bytes(kConnectionPreface);
    bytes += frame(0x4, 0, 0, "");
    for (int i = 0; i < n; ++i) bytes += f;
    EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    return fd;
  }
  std::unique_ptr<network::SocketFd> raw_;
};

TEST_F(Http2FloodTest, PingFloodClosesTheConnection) {
  server_settings_.max_outbound_acks = 10;
  flood(frame(0x6, 0, 0, "12345678"), 200);  // PING
  ASSERT_TRUE(runUntil([&] { return server_.closed; }));
  EXPECT_EQ(server_.errors.size(), 1u);
}

TEST_F(Http2FloodTest, SettingsFloodClosesTheConnection) {
  server_settings_.max_outbound_acks = 10;
  flood(frame(0x4, 0, 0, ""), 200);  // SETTINGS
  ASSERT_TRUE(runUntil([&] { return server_.closed; }));
  EXPECT_EQ(server_.errors.size(), 1u);
}

TEST_F(Http2FloodTest, PingsUnderTheLimitAreAnswered) {
  // The same 200 PINGs under the default limit (1000) are all answered.
  const int fd = flood(frame(0x6, 0, 0, "12345678"), 200);
  std::string got;
  ASSERT_TRUE(runUntil([&] {
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) got.append(buf, n);
    size_t acks = 0;
    for (size_t pos = 0; (pos = got.find(frame(0x6, 0x1, 0, "12345678"), pos)) !=
                         std::string::npos; ++pos) {
      ++acks;
    }
    return acks == 200;
  }));
  EXPECT_FALSE(server_.closed);
}

}  // namespace
}  // namespace sluice::http::http2

namespace sluice::http::http2 {
namespace {

// connection_keepalive on the simulated clock: PINGs on the interval, and a peer that does
// not answer one within the timeout loses the connection.
class Http2KeepaliveTest : public Http2CodecTest {
 protected:
  Http2KeepaliveTest() : Http2CodecTest(true) {}
  void advance(std::chrono::milliseconds d) { sim_time_->advanceTimeAndRun(d, dispatcher_); }
  stats::Store store_;
  stats::Counter& timeouts_ = store_.counter("http2.keepalive_timeout");
};

TEST_F(Http2KeepaliveTest, PingsOnTheIntervalAreAnsweredAndTheConnectionStays) {
  client_settings_.keepalive_interval = 1000ms;
  client_settings_.keepalive_timeout = 500ms;
  client_settings_.keepalive_jitter_percent = 0;
  client_settings_.keepalive_timeout_counter = &timeouts_;
  start();
  spin();
  std::chrono::milliseconds until_next = 1000ms;  // the interval runs from the last ACK
  for (int round = 0; round < 3; ++round) {
    const uint64_t before = server_.received_bytes;
    advance(until_next - 1ms);
    spin();
    EXPECT_EQ(server_.received_bytes, before) << "no PING before the interval";
    advance(1ms);
    // A PING frame: 9 bytes of header and 8 of payload.
    ASSERT_TRUE(runUntil([&] { return server_.received_bytes >= before + 17; }));
    const uint64_t acks = client_.received_bytes;
    ASSERT_TRUE(runUntil([&] { return client_.received_bytes >= acks + 17; }));
    spin();
    advance(600ms);  // past the timeout: the ACK came, nothing happens
    spin();
    EXPECT_FALSE(client_.closed);
    until_next = 400ms;
  }
  EXPECT_EQ(timeouts_.value(), 0u);
}

TEST_F(Http2KeepaliveTest, AnUnansweredPingClosesTheConnectionAndResetsItsStreams) {
  client_settings_.keepalive_interval = 1000ms;
  client_settings_.keepalive_timeout = 500ms;
  client_settings_.keepalive_timeout_counter = &timeouts_;
  start();
  ClientStream& s = request(get("/"), true);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == 1; }));
  server_conn_->readDisable(true);  // the peer stops reading: no ACK will come
  advance(1150ms);                  // the interval, with up to 15% jitter
  spin();
  EXPECT_FALSE(client_.closed);
  EXPECT_EQ(timeouts_.value(), 0u);
  advance(500ms);
  ASSERT_TRUE(runUntil([&] { return client_.closed; }));
  EXPECT_EQ(timeouts_.value(), 1u);
  ASSERT_TRUE(s.got.reset.has_value());
  EXPECT_EQ(*s.got.reset, StreamResetReason::ConnectionTermination);
}

TEST_F(Http2KeepaliveTest, TheServerSideClosesAClientThatDoesNotAnswer) {
  server_settings_.keepalive_interval = 200ms;
  server_settings_.keepalive_timeout = 100ms;
  server_settings_.keepalive_jitter_percent = 0;
  server_settings_.keepalive_timeout_counter = &timeouts_;
  start();
  spin();
  client_conn_->readDisable(true);
  advance(200ms);
  spin();
  EXPECT_FALSE(server_.closed);
  advance(99ms);
  spin();
  EXPECT_FALSE(server_.closed);
  advance(1ms);
  ASSERT_TRUE(runUntil([&] { return server_.closed; }));
  EXPECT_EQ(timeouts_.value(), 1u);
}

TEST_F(Http2KeepaliveTest, ANewStreamOnAnIdleConnectionSendsAPingFirst) {
  // No interval PINGs: only connection_idle_interval.
  client_settings_.keepalive_timeout = 500ms;
  client_settings_.keepalive_idle_interval = 1000ms;
  client_settings_.keepalive_timeout_counter = &timeouts_;
  start();
  ClientStream& first = request(get("/"), true);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == 1; }));
  HeaderMap ok{{":status", "200"}};
  server_.streams[0]->encoder->encodeHeaders(ok, true);
  ASSERT_TRUE(runUntil([&] { return first.got.end_stream; }));
  // Not idle long enough: no PING, so an unread connection stays up.
  advance(900ms);
  server_conn_->readDisable(true);
  request(get("/second"), true);
  advance(600ms);
  spin();
  EXPECT_FALSE(client_.closed);
  server_conn_->readDisable(false);
  ASSERT_TRUE(runUntil([&] { return server_.streams.size() == 2; }));
  spin();
  // Idle past the interval: the next stream sends a PING, unanswered here.
  advance(1000ms);
  server_conn_->readDisable(true);
  ClientStream& third = request(get("/third"), true);
  advance(499ms);
  spin();
  EXPECT_FALSE(client_.closed);
  advance(1ms);
  ASSERT_TRUE(runUntil([&] { return client_.closed; }));
  EXPECT_EQ(timeouts_.value(), 1u);
  EXPECT_TRUE(third.got.reset.has_value());
}

}  // namespace
}  // namespace sluice::http::http2
