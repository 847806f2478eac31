// The HTTP/1.1 codec against real bytes on real loopback sockets: the codec sits on a
// ConnectionImpl, the other side is a plain socket that writes raw HTTP and reads what the
// codec wrote.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/object_pool.h"

#include "buffer/buffer.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "http/http1/codec_impl.h"
#include "http/http1/header_chars.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::http::http1 {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// The raw side of a connection: writes bytes, collects what arrives, notices the close.
class Peer {
 public:
  explicit Peer(network::SocketFd&& fd) : fd_(std::move(fd)) {}

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "send: " << errno;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  void readAvailable() {
    if (!fd_.isOpen()) return;
    char buf[16384];
    while (true) {
      const ssize_t n = ::recv(fd_.fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        received.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = true;
      return;
    }
  }
  void close() { fd_.close(); }
  int fd() const { return fd_.fd(); }

  std::string received;
  bool eof{false};

 private:
  network::SocketFd fd_;
};

template <class Fn>
bool runLoopUntil(event::Dispatcher& dispatcher, Peer* peer, Fn&& done) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (true) {
    if (peer) peer->readAvailable();
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    dispatcher.run(event::Dispatcher::RunType::NonBlock);
  }
}

// The header checks the codec applies after llhttp's (which rejects these bytes first, so the
// wire does not reach the reject paths: tested here directly).
TEST(Http1HeaderCharsTest, LowerTokenLowersTokensAndRejectsEverythingElse) {
  char out[64];
  ASSERT_TRUE(lowerToken("X-Forwarded-FOR", out));
  EXPECT_EQ(std::string_view(out, 15), "x-forwarded-for");
  ASSERT_TRUE(lowerToken("!#$%&'*+-.^_`|~09az", out));
  EXPECT_EQ(std::string_view(out, 19), "!#$%&'*+-.^_`|~09az");
  EXPECT_FALSE(lowerToken("", out));
  for (int c = 0; c < 256; ++c) {
    const bool token = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                       (c >= 'A' && c <= 'Z') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                           std::string_view::npos;
    const std::string name = "ab" + std::string(1, static_cast<char>(c)) + "cd";
    EXPECT_EQ(lowerToken(name, out), token) << c;
  }
  // In place (the copied form).
  std::string in_place = "Content-Type";
  ASSERT_TRUE(lowerToken(in_place, in_place.data()));
  EXPECT_EQ(in_place, "content-type");
}

TEST(Http1HeaderCharsTest, HasNulCrLfFindsEachAtEveryPositionOfEveryLength) {
  for (size_t n = 0; n <= 24; ++n) {
    const std::string clean(n, 'v');
    EXPECT_FALSE(hasNulCrLf(clean)) << n;
    // Bytes next to the forbidden ones, and high bytes, are fine.
    std::string near(n, '\x0b');
    for (size_t i = 0; i < n; i += 3) near[i] = i % 2 ? '\x80' : '\xff';
    EXPECT_FALSE(hasNulCrLf(near)) << n;
    for (size_t at = 0; at < n; ++at) {
      for (char bad : {'\0', '\r', '\n'}) {
        std::string s = clean;
        s[at] = bad;
        EXPECT_TRUE(hasNulCrLf(s)) << "length " << n << " at " << at << " byte " << int(bad);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Server side

// A request as the server codec delivered it.
struct TestRequest : public RequestDecoder, public StreamCallbacks {
  void decodeHeaders(HeaderMapPtr&& h, bool end) override {
    ++headers_calls;
    headers = std::move(h);
    headers_end_stream = end;
    end_stream |= end;
  }
  void decodeData(buffer::Buffer& data, bool end) override {
    EXPECT_FALSE(end_stream) << "data after end_stream";
    body += data.toString();
    data.drain(data.length());
    ++data_calls;
    end_stream |= end;
  }
  void decodeTrailers(HeaderMapPtr&& t) override {
    trailers = std::move(t);
    end_stream = true;
  }
  void onResetStream(StreamResetReason r, std::string_view) override { reset = r; }

  ResponseEncoder* encoder{nullptr};
  HeaderMapPtr headers;
  int headers_calls{0};
  bool headers_end_stream{false};
  std::string body;
  int data_calls{0};
  HeaderMapPtr trailers;
  bool end_stream{false};
  std::optional<StreamResetReason> reset;
};

// What a connection manager does with a codec, reduced to recording: dispatch on read,
// onConnectionClosed on close, a TestRequest per stream.
class ServerHarness : public network::ReadFilter,
                      public network::ConnectionCallbacks,
                      public ServerConnectionCallbacks {
 public:
  ServerHarness(const CodecSettings& settings, CodecStats stats)
      : settings_(settings), stats_(stats) {}

  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& cb) override {
    connection = &cb.connection();
    connection->addConnectionCallbacks(*this);
    codec = createServerCodec(*connection, *this, settings_, stats_);
  }
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    ++dispatches;
    CodecStatus status = codec->dispatch(data);
    if (!status.ok() && errors.empty()) errors.push_back(status);
    if (end_stream) codec->onReadEndStream();
    return network::FilterStatus::StopIteration;
  }
  void onEvent(network::ConnectionEvent e) override {
    if (e == network::ConnectionEvent::Connected) return;
    closed = true;
    codec->onConnectionClosed();
  }
  RequestDecoder& newStream(ResponseEncoder& encoder) override {
    requests.push_back(std::make_unique<TestRequest>());
    requests.back()->encoder = &encoder;
    encoder.getStream().addCallbacks(*requests.back());
    return *requests.back();
  }

  network::Connection* connection{nullptr};
  ServerCodecPtr codec;
  std::vector<std::unique_ptr<TestRequest>> requests;
  std::vector<CodecStatus> errors;
  int dispatches{0};
  bool closed{false};

 private:
  const CodecSettings settings_;
  const CodecStats stats_;
};

class Http1ServerTest : public ::testing::Test, public network::ListenerCallbacks {
 protected:
  Http1ServerTest() {
    std::string error;
    auto any = network::fromIp("127.0.0.1", 0, &error);
    listen_socket_ = network::createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = network::localAddress(listen_socket_.fd());
    listener_ = std::make_unique<network::TcpListenerImpl>(dispatcher_, listen_socket_, *this);
  }
  ~Http1ServerTest() override {
    if (connection_) connection_->close(network::ConnectionCloseType::NoFlush);
    connection_.reset();
    harness_.reset();
    listener_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    connection_ = network::createServerConnection(dispatcher_, std::move(socket),
                                                  std::make_unique<network::RawTransportSocket>(),
                                                  nullptr, std::move(peer));
    harness_ = std::make_shared<ServerHarness>(settings_, stats_);
    connection_->addReadFilter(harness_);
    connection_->initializeReadFilters();
  }

  // Connects the raw client and waits for the server connection.
  void start() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    network::SocketFd socket(fd);
    ASSERT_EQ(::connect(fd, address_->sockAddr(), address_->sockAddrLen()), 0);
    ASSERT_EQ(::fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    peer_ = std::make_unique<Peer>(std::move(socket));
    ASSERT_TRUE(runUntil([&] { return harness_ != nullptr; }));
  }

  template <class Fn>
  bool runUntil(Fn&& done) {
    return runLoopUntil(dispatcher_, peer_.get(), std::forward<Fn>(done));
  }
  // A few loop passes, to show that something does NOT happen.
  void spin() {
    for (int i = 0; i < 20; ++i) {
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
      peer_->readAvailable();
    }
  }

  ServerHarness& h() { return *harness_; }
  TestRequest& request(size_t i) { return *harness_->requests.at(i); }

  bool waitRequests(size_t n) {
    return runUntil([&] { return h().requests.size() >= n && h().requests[n - 1]->end_stream; });
  }
  bool waitError() {
    return runUntil([&] { return !h().errors.empty(); });
  }
  bool waitReceived(size_t n) {
    return runUntil([&] { return peer_->received.size() >= n; });
  }
  bool waitPeerClosed() {
    return runUntil([&] { return peer_->eof; });
  }

  // Responds with a content-length body.
  static void respond(TestRequest& r, std::string_view body, uint32_t status = 200) {
    const std::string length = std::to_string(body.size());
    r.encoder->encodeHeaders(
        HeaderMap{{":status", std::to_string(status)}, {"content-length", length}}, body.empty());
    if (!body.empty()) {
      buffer::Buffer data;
      data.add(body);
      r.encoder->encodeData(data, true);
      EXPECT_TRUE(data.empty());
    }
  }

  event::RealTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  network::SocketFd listen_socket_;
  network::AddressConstSharedPtr address_;
  std::unique_ptr<network::TcpListenerImpl> listener_;
  network::ConnectionPtr connection_;
  std::shared_ptr<ServerHarness> harness_;
  std::unique_ptr<Peer> peer_;
  CodecSettings settings_;
  stats::Store store_;
  CodecStats stats_{&store_.counter("http1.dropped_headers_with_underscores"),
                    &store_.counter("http1.requests_rejected_with_underscores_in_headers")};
};

TEST_F(Http1ServerTest, SimpleGetBecomesAHeaderMap) {
  start();
  peer_->send(
      "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Custom:  \t padded value \t \r\n"
      "User-Agent: curl/8\r\nAccept: */*\r\nAccept: text/plain\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  TestRequest& r = request(0);
  ASSERT_NE(r.headers, nullptr);
  EXPECT_TRUE(r.headers_end_stream);
  EXPECT_EQ(r.data_calls, 0);
  EXPECT_EQ(*r.headers, (HeaderMap{{":method", "GET"},
                                   {":path", "/p?q=1"},
                                   {":authority", "example.com"},
                                   {"x-custom", "padded value"},
                                   {"user-agent", "curl/8"},
                                   {"accept", "*/*"},
                                   {"accept", "text/plain"}}));
  EXPECT_FALSE(r.headers->has("host"));
  // Mixed-case names on the wire are found by their lower-case names (the map's name filter
  // sees what the codec stored).
  EXPECT_EQ(r.headers->getValue("user-agent"), "curl/8");
  EXPECT_EQ(r.headers->getValue("x-custom"), "padded value");
  EXPECT_EQ(r.headers->count("accept"), 2u);
  EXPECT_FALSE(r.headers->has("User-Agent"));
  EXPECT_EQ(h().codec->protocol(), Protocol::Http11);

  respond(r, "hi");
  const std::string expected = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_FALSE(peer_->eof);
}

// The response's head, larger than the writer's 2 KiB block, goes out whole and in order.
TEST_F(Http1ServerTest, ResponseHeadLargerThanTheWritersBlock) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  HeaderMap headers{{":status", "200"}, {"content-length", "2"}};
  std::string expected = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n";
  for (int i = 0; i < 40; ++i) {
    const std::string key = "x-line-" + std::to_string(i);
    const std::string value = i == 7 ? std::string(2100, 'v') : std::string(40, 'b');
    headers.add(key, value);
    expected += key + ": " + value + "\r\n";
  }
  expected += "\r\nok";
  request(0).encoder->encodeHeaders(headers, false);
  buffer::Buffer body;
  body.add("ok");
  request(0).encoder->encodeData(body, true);
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ServerTest, KeepAliveServesSequentialRequests) {
  start();
  peer_->send("GET /first HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  respond(request(0), "one");
  const std::string first = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none";
  ASSERT_TRUE(waitReceived(first.size()));

  peer_->send("GET /second HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
  EXPECT_EQ(request(1).headers->path(), "/second");
  respond(request(1), "two");
  const std::string second = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ntwo";
  ASSERT_TRUE(waitReceived(first.size() + second.size()));
  EXPECT_EQ(peer_->received, first + second);
  EXPECT_FALSE(peer_->eof);
  EXPECT_FALSE(h().closed);
}

TEST_F(Http1ServerTest, PipelinedRequestsWaitForThePreviousResponse) {
  start();
  peer_->send(
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
      "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  spin();
  // The second request waits in the connection's buffer, and reading has stopped.
  ASSERT_EQ(h().requests.size(), 1u);
  EXPECT_FALSE(h().connection->readEnabled());
  EXPECT_EQ(request(0).headers->path(), "/1");

  respond(request(0), "r1");
  ASSERT_TRUE(waitRequests(2));
  spin();
  ASSERT_EQ(h().requests.size(), 2u);
  EXPECT_EQ(request(1).headers->path(), "/2");
  EXPECT_EQ(request(1).body, "body");

  respond(request(1), "r2");
  ASSERT_TRUE(waitRequests(3));
  EXPECT_EQ(request(2).headers->path(), "/3");
  respond(request(2), "r3");

  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nr1"
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nr2"
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nr3";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_TRUE(h().connection->readEnabled());
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ServerTest, PostWithContentLength) {
  start();
  const std::string body(100000, 'b');
  peer_->send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).headers; }));
  EXPECT_FALSE(request(0).headers_end_stream);
  EXPECT_EQ(request(0).headers->getValue("content-length"), "100000");
  peer_->send(body);
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).body, body);
  EXPECT_EQ(request(0).trailers, nullptr);
}

TEST_F(Http1ServerTest, ChunkedBodyDropsTrailersByDefault) {
  start();
  peer_->send(
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Checksum: abc\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  TestRequest& r = request(0);
  EXPECT_FALSE(r.headers_end_stream);
  EXPECT_EQ(r.headers->getValue("transfer-encoding"), "chunked");
  EXPECT_EQ(r.body, "hello world!");
  EXPECT_EQ(r.trailers, nullptr);
}

TEST_F(Http1ServerTest, ChunkedBodyKeepsTrailersWhenEnabled) {
  settings_.enable_trailers = true;
  start();
  peer_->send(
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).body == "abc"; }));
  EXPECT_FALSE(request(0).end_stream);
  peer_->send("a\r\n0123456789\r\n0\r\nX-Checksum:  abc \r\nX-Other: 1\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  TestRequest& r = request(0);
  EXPECT_EQ(r.body, "abc0123456789");
  ASSERT_NE(r.trailers, nullptr);
  EXPECT_EQ(*r.trailers, (HeaderMap{{"x-checksum", "abc"}, {"x-other", "1"}}));
}

TEST_F(Http1ServerTest, AbsoluteFormTargetSetsAuthorityPathAndScheme) {
  start();
  peer_->send("GET http://upstream.example:8080/a/b?c=d HTTP/1.1\r\nHost: ignored\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  const HeaderMap& hdrs = *request(0).headers;
  EXPECT_EQ(hdrs.authority(), "upstream.example:8080");
  EXPECT_EQ(hdrs.path(), "/a/b?c=d");
  EXPECT_EQ(hdrs.scheme(), "http");
  EXPECT_FALSE(hdrs.has("host"));
}

TEST_F(Http1ServerTest, AbsoluteFormWithoutPathAndWithoutHost) {
  start();
  peer_->send("GET HTTPS://Example.com HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  const HeaderMap& hdrs = *request(0).headers;
  EXPECT_EQ(hdrs.authority(), "Example.com");
  EXPECT_EQ(hdrs.path(), "/");
  EXPECT_EQ(hdrs.scheme(), "https");
}

TEST_F(Http1ServerTest, Http10IsRefusedWith426ByDefault) {
  start();
  peer_->send("GET / HTTP/1.0\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitError());
  EXPECT_EQ(h().errors[0].code, CodecStatus::Code::ProtocolError);
  EXPECT_EQ(h().errors[0].http_status, 426u);
  EXPECT_EQ(h().errors[0].details, "http1.http_10_not_supported");
  // The stream exists so that the caller can reply on it; nothing was decoded.
  ASSERT_EQ(h().requests.size(), 1u);
  EXPECT_EQ(request(0).headers, nullptr);
  respond(request(0), "", 426);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received,
            "HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

TEST_F(Http1ServerTest, Http10AcceptedUsesDefaultHostAndCloseDelimitedBody) {
  settings_.accept_http_10 = true;
  settings_.default_host_for_http_10 = "default.local";
  start();
  peer_->send("GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(h().codec->protocol(), Protocol::Http10);
  EXPECT_EQ(request(0).headers->authority(), "default.local");
  EXPECT_EQ(request(0).headers->path(), "/old");

  request(0).encoder->encodeHeaders(HeaderMap{{":status", "200"}, {"x-a", "b"}}, false);
  buffer::Buffer data;
  data.add("no length here");
  request(0).encoder->encodeData(data, true);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received,
            "HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: close\r\n\r\nno length here");
  EXPECT_FALSE(request(0).reset.has_value());
}

TEST_F(Http1ServerTest, Http10WithoutHostAndWithoutDefaultHasNoAuthority) {
  settings_.accept_http_10 = true;
  start();
  peer_->send("GET / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_FALSE(request(0).headers->has(":authority"));
}

TEST_F(Http1ServerTest, Http10KeepAliveWithLengthStaysOpen) {
  settings_.accept_http_10 = true;
  start();
  peer_->send("GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  respond(request(0), "x");
  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive\r\n\r\nx";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  peer_->send("GET /again HTTP/1.0\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
}

struct BadRequestCase {
  const char* name;
  std::string raw;
  uint32_t status;
  const char* details;
  std::function<void(CodecSettings&)> configure;
};

class Http1BadRequestTest : public Http1ServerTest,
                            public ::testing::WithParamInterface<BadRequestCase> {};

TEST_P(Http1BadRequestTest, IsRejectedWithStatusAndDetails) {
  const BadRequestCase& c = GetParam();
  if (c.configure) c.configure(settings_);
  start();
  peer_->send(c.raw);
  ASSERT_TRUE(waitError());
  EXPECT_EQ(h().errors[0].code, CodecStatus::Code::ProtocolError);
  EXPECT_EQ(h().errors[0].http_status, c.status);
  EXPECT_EQ(h().errors[0].details, c.details);
  ASSERT_EQ(h().requests.size(), 1u);
  EXPECT_FALSE(request(0).end_stream);
  EXPECT_TRUE(request(0).body.empty());
  // The caller's local reply goes out on the stream, and the connection ends after it.
  respond(request(0), "bad", c.status);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0), 0u)
      << peer_->received;
  EXPECT_NE(peer_->received.find("connection: close\r\n"), std::string::npos);
}

const std::string kBigValue(2000, 'v');

INSTANTIATE_TEST_SUITE_P(
    Rejections, Http1BadRequestTest,
    ::testing::Values(
        BadRequestCase{"ContentLengthAndTransferEncoding",
                       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"TwoDifferentContentLengths",
                       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                       "Content-Length: 4\r\n\r\nabcd",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"BadChunkSize",
                       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"MissingHost", "GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400,
                       "missing_host_header", nullptr},
        BadRequestCase{"DuplicateHost", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{"SpaceInHeaderName", "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost: a\r\nBad : x\r\n\r\n", 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{"SpaceInALongHeaderName",
                       "GET / HTTP/1.1\r\nHost: a\r\nX-Longer-Than-Forty-Eight-Bytes-Of-"
                       "Scratch-Space Bad: x\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"SlashInHeaderName", "GET / HTTP/1.1\r\nHost: a\r\nBad/Name: x\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"ControlCharInHeaderName", "GET / HTTP/1.1\r\nHost: a\r\nBad\x01: x\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"NulInHeaderValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s, 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{"BareCrInHeaderValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{"BareLfInHeaderValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\nb: c\r\n\r\n",
                       400, "http1.codec_error", nullptr},
        BadRequestCase{"UnknownVersion", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{"InvalidMethod", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400,
                       "http1.codec_error", nullptr},
        BadRequestCase{
            "OversizedHeaders", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + kBigValue + "\r\n\r\n",
            431, "http1.headers_too_large", [](CodecSettings& s) { s.max_request_headers_kb = 1; }},
        BadRequestCase{"OversizedUrl", "GET /" + kBigValue + " HTTP/1.1\r\nHost: a\r\n\r\n", 431,
                       "http1.headers_too_large",
                       [](CodecSettings& s) { s.max_request_headers_kb = 1; }},
        BadRequestCase{"TooManyHeaders",
                       "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431,
                       "http1.too_many_headers", [](CodecSettings& s) { s.max_headers_count = 4; }},
        BadRequestCase{"UnderscoreRejected", "GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\n\r\n", 400,
                       "http1.unexpected_underscore",
                       [](CodecSettings& s) {
                         s.headers_with_underscores =
                             CodecSettings::UnderscoreAction::RejectRequest;
                       }}),
    [](const ::testing::TestParamInfo<BadRequestCase>& info) { return info.param.name; });

TEST_F(Http1ServerTest, UnderscoreRejectionIsCounted) {
  settings_.headers_with_underscores = CodecSettings::UnderscoreAction::RejectRequest;
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\n\r\n");
  ASSERT_TRUE(waitError());
  EXPECT_EQ(store_.counter("http1.requests_rejected_with_underscores_in_headers").value(), 1u);
  EXPECT_EQ(store_.counter("http1.dropped_headers_with_underscores").value(), 0u);
}

TEST_F(Http1ServerTest, UnderscoreHeaderIsDroppedAndCounted) {
  settings_.headers_with_underscores = CodecSettings::UnderscoreAction::DropHeader;
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\nX-Bar: 2\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_TRUE(h().errors.empty());
  EXPECT_FALSE(request(0).headers->has("x_foo"));
  EXPECT_EQ(request(0).headers->getValue("x-bar"), "2");
  EXPECT_EQ(store_.counter("http1.dropped_headers_with_underscores").value(), 1u);
  EXPECT_EQ(store_.counter("http1.requests_rejected_with_underscores_in_headers").value(), 0u);
}

TEST_F(Http1ServerTest, UnderscoresAreAllowedByDefault) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\nX_Foo: 1\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).headers->getValue("x_foo"), "1");
}

TEST_F(Http1ServerTest, ResponseWithoutLengthIsChunked) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  ResponseEncoder& encoder = *request(0).encoder;
  encoder.encodeHeaders(HeaderMap{{":status", "200"}, {"content-type", "text/plain"}}, false);
  buffer::Buffer data;
  data.add("hello");
  encoder.encodeData(data, false);
  data.add("");
  encoder.encodeData(data, false);  // an empty piece is not the last chunk
  data.add("world, again");
  encoder.encodeData(data, true);
  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
      "5\r\nhello\r\nc\r\nworld, again\r\n0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  // The connection goes on.
  peer_->send("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
}

TEST_F(Http1ServerTest, ChunkedResponseEndsWithEmptyDataAndWithTrailers) {
  settings_.enable_trailers = true;
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "200"}}, false);
  buffer::Buffer data;
  data.add("abc");
  request(0).encoder->encodeData(data, false);
  request(0).encoder->encodeData(data, true);  // empty and last
  ASSERT_TRUE(waitRequests(2));
  request(1).encoder->encodeHeaders(HeaderMap{{":status", "200"}}, false);
  data.add("xyz");
  request(1).encoder->encodeData(data, false);
  request(1).encoder->encodeTrailers(HeaderMap{{"grpc-status", "0"}});
  const std::string expected =
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n"
      "grpc-status: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, HeaderOnlyResponseGetsContentLengthZero) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "404"}, {"X-Reason", "none"}}, true);
  const std::string expected =
      "HTTP/1.1 404 Not Found\r\nX-Reason: none\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, UnknownStatusHasUnknownReason) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "299"}}, true);
  const std::string expected = "HTTP/1.1 299 Unknown\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, HeadResponseHasNoBody) {
  start();
  peer_->send("HEAD /h HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).headers->method(), "HEAD");
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "200"}, {"content-length", "10"}}, false);
  buffer::Buffer data;
  data.add("0123456789");
  request(0).encoder->encodeData(data, true);
  EXPECT_TRUE(data.empty());
  ASSERT_TRUE(waitRequests(2));
  respond(request(1), "ok");
  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, HeadResponseWithoutLengthGetsNoFraming) {
  start();
  peer_->send("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "200"}}, true);
  const std::string expected = "HTTP/1.1 200 OK\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  spin();
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, NoContentResponseHasNoLength) {
  start();
  peer_->send("DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  request(0).encoder->encodeHeaders(HeaderMap{{":status", "204"}}, true);
  const std::string expected = "HTTP/1.1 204 No Content\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  spin();
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, ContinueThenBodyThenResponse) {
  start();
  peer_->send("PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).headers; }));
  EXPECT_EQ(request(0).headers->getValue("expect"), "100-continue");
  request(0).encoder->encode1xxHeaders(HeaderMap{{":status", "100"}});
  const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
  ASSERT_TRUE(waitReceived(cont.size()));
  EXPECT_EQ(peer_->received, cont);
  peer_->send("12345");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).body, "12345");
  respond(request(0), "done", 201);
  const std::string expected = cont + "HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ServerTest, ConnectionCloseRequestEndsTheConnection) {
  start();
  peer_->send(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).headers->getValue("connection"), "close");
  respond(request(0), "bye");
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received,
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbye");
  EXPECT_EQ(h().requests.size(), 1u);
  EXPECT_FALSE(request(0).reset.has_value());
}

TEST_F(Http1ServerTest, GoAwayAddsConnectionClose) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  h().codec->goAway();
  respond(request(0), "");
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

TEST_F(Http1ServerTest, WebSocketUpgradeCarriesRawBytesBothWays) {
  start();
  peer_->send(
      "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\nearly-bytes");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).body == "early-bytes"; }));
  TestRequest& r = request(0);
  EXPECT_FALSE(r.headers_end_stream);
  EXPECT_FALSE(r.end_stream);
  EXPECT_EQ(r.headers->getValue("connection"), "Upgrade");
  EXPECT_EQ(r.headers->getValue("upgrade"), "websocket");

  r.encoder->encodeHeaders(
      HeaderMap{{":status", "101"}, {"connection", "upgrade"}, {"upgrade", "websocket"}}, false);
  buffer::Buffer data;
  data.add("\x81\x05hello");
  r.encoder->encodeData(data, false);
  const std::string expected =
      "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
      "\x81\x05hello";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);

  // Bytes that look like HTTP are tunnel payload now.
  peer_->send("GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return r.body == "early-bytesGET / HTTP/1.1\r\n\r\n"; }));
  EXPECT_EQ(h().requests.size(), 1u);
  EXPECT_TRUE(h().errors.empty());

  // The codec enabled half-close with the 101: the peer's FIN ends the tunnel's request side
  // only, and the response side still flows until it ends too.
  peer_->close();
  ASSERT_TRUE(runUntil([&] { return r.end_stream; }));
  EXPECT_FALSE(r.reset.has_value());
  EXPECT_TRUE(connection_->isHalfCloseEnabled());
}

TEST_F(Http1ServerTest, WebSocketHalfCloseEndsTheRequestSide) {
  start();
  peer_->send("GET /chat HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).headers; }));
  TestRequest& r = request(0);
  r.encoder->encodeHeaders(
      HeaderMap{{":status", "101"}, {"connection", "upgrade"}, {"upgrade", "websocket"}}, false);
  peer_->send("last words");
  ASSERT_EQ(::shutdown(peer_->fd(), SHUT_WR), 0);
  ASSERT_TRUE(runUntil([&] { return r.end_stream; }));
  EXPECT_EQ(r.body, "last words");
  buffer::Buffer data;
  data.add("bye");
  r.encoder->encodeData(data, true);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_NE(peer_->received.find("\r\n\r\nbye"), std::string::npos);
  EXPECT_FALSE(r.reset.has_value());
}

TEST_F(Http1ServerTest, RefusedUpgradeClosesAfterTheResponse) {
  start();
  peer_->send("GET /chat HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).headers; }));
  respond(request(0), "no", 403);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received,
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno");
}

TEST_F(Http1ServerTest, ResetStreamClosesTheConnection) {
  start();
  peer_->send("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  Stream& stream = request(0).encoder->getStream();
  EXPECT_EQ(stream.bufferLimit(), connection_->bufferLimit());
  stream.resetStream(StreamResetReason::LocalReset);
  ASSERT_TRUE(request(0).reset.has_value());
  EXPECT_EQ(*request(0).reset, StreamResetReason::LocalReset);
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_TRUE(peer_->received.empty());
}

TEST_F(Http1ServerTest, StreamReadDisableStopsReading) {
  start();
  peer_->send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).body == "abc"; }));
  Stream& stream = request(0).encoder->getStream();
  stream.readDisable(true);
  EXPECT_FALSE(connection_->readEnabled());
  peer_->send("def");
  spin();
  EXPECT_EQ(request(0).body, "abc");
  stream.readDisable(false);
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).body, "abcdef");
}

TEST_F(Http1ServerTest, PeerCloseMidRequestResetsTheStream) {
  start();
  peer_->send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).body == "partial"; }));
  peer_->close();
  ASSERT_TRUE(runUntil([&] { return request(0).reset.has_value(); }));
  EXPECT_EQ(*request(0).reset, StreamResetReason::ConnectionTermination);
  EXPECT_FALSE(request(0).end_stream);
}

TEST_F(Http1ServerTest, RequestSplitAcrossManyWrites) {
  start();
  const std::string raw =
      "POST /split HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Long: "
      "0123456789\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n";
  for (char c : raw) {
    peer_->send(std::string_view(&c, 1));
    dispatcher_.run(event::Dispatcher::RunType::NonBlock);
  }
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).headers->getValue("x-long"), "0123456789");
  EXPECT_EQ(request(0).body, "wxyz");
  EXPECT_TRUE(h().errors.empty());
}

// A header is read in place while one read holds it all, and copied when a read ends inside
// it: cut at every byte, the same request gives the same header map (names in lower case,
// values trimmed; a name longer than the in-place scratch, an empty value, values of 8 bytes
// and more, and chunked trailers).
TEST_F(Http1ServerTest, HeadersCutAtEveryByteGiveTheSameMap) {
  settings_.enable_trailers = true;
  start();
  // Each part goes out at once (without it, Nagle holds the second part for the first's ACK).
  const int one = 1;
  ASSERT_EQ(::setsockopt(peer_->fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
  const std::string long_name = "X-A-Header-Name-Longer-Than-Forty-Eight-Bytes-Of-Scratch";
  const std::string raw = "POST /cut HTTP/1.1\r\nHost: cut.example\r\nUser-AGENT: t/1\r\n" +
                          long_name +
                          ": long\r\nX-Empty:\r\nX-Padded: \t 0123456789abcdefXYZ \t\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                          "X-Trailer-Name: Trailer Value\r\n\r\n";
  const HeaderMap expected{{":method", "POST"},
                           {":path", "/cut"},
                           {":authority", "cut.example"},
                           {"user-agent", "t/1"},
                           {"x-a-header-name-longer-than-forty-eight-bytes-of-scratch", "long"},
                           {"x-empty", ""},
                           {"x-padded", "0123456789abcdefXYZ"},
                           {"transfer-encoding", "chunked"}};
  const std::string response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  for (size_t cut = 0; cut <= raw.size(); ++cut) {
    const size_t n = h().requests.size();
    const int dispatches = h().dispatches;
    if (cut > 0) {
      peer_->send(std::string_view(raw).substr(0, cut));
      ASSERT_TRUE(runUntil([&] { return h().dispatches > dispatches; })) << cut;
    }
    peer_->send(std::string_view(raw).substr(cut));
    ASSERT_TRUE(waitRequests(n + 1)) << cut;
    TestRequest& r = request(n);
    ASSERT_NE(r.headers, nullptr) << cut;
    EXPECT_EQ(*r.headers, expected) << "cut at " << cut;
    EXPECT_EQ(r.body, "ok") << cut;
    ASSERT_NE(r.trailers, nullptr) << cut;
    EXPECT_EQ(*r.trailers, (HeaderMap{{"x-trailer-name", "Trailer Value"}})) << cut;
    respond(r, "");
    ASSERT_TRUE(waitReceived(response.size() * (n + 1))) << cut;
  }
  EXPECT_TRUE(h().errors.empty());
}

// The parse state (llhttp's parser, URL, header strings, body spans) exists only while an
// exchange is in progress: an idle keep-alive connection holds none, and the block goes back
// to the thread's free list for the next request.
TEST_F(Http1ServerTest, IdleConnectionHoldsNoParseState) {
#ifdef SLUICE_POOL_DISABLED
  const size_t kept = 0;  // under ASan the free list is off: the block is freed
#else
  const size_t kept = 1;
#endif
  start();
  EXPECT_FALSE(holdsParseState(*h().codec));
  peer_->send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_TRUE(holdsParseState(*h().codec));
  const size_t free_before = freeParseStates();
  respond(request(0), "one");
  const std::string first = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none";
  ASSERT_TRUE(waitReceived(first.size()));
  EXPECT_FALSE(holdsParseState(*h().codec));
  EXPECT_EQ(freeParseStates(), free_before + kept);

  // Blank lines between requests begin no request: the connection stays idle.
  peer_->send("\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return h().dispatches >= 2; }));
  EXPECT_FALSE(holdsParseState(*h().codec));
  EXPECT_EQ(freeParseStates(), free_before + kept);

  // The next request takes the block back from the free list, and returns it.
  peer_->send("GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
  EXPECT_TRUE(holdsParseState(*h().codec));
  EXPECT_EQ(freeParseStates(), free_before);
  EXPECT_EQ(request(1).headers->path(), "/b");
  EXPECT_EQ(request(1).headers->authority(), "b");
  respond(request(1), "two");
  ASSERT_TRUE(waitReceived(first.size() * 2));
  EXPECT_FALSE(holdsParseState(*h().codec));
  EXPECT_TRUE(h().errors.empty());
}

// A connection that closes mid-request (or after a response with Connection: close) still
// holds its parse state when its codec goes: the block goes back to the free list too, so a
// connection per request costs no block of its own.
TEST_F(Http1ServerTest, ACodecDestroyedWhileHoldingItsParseStateGivesItBack) {
#ifdef SLUICE_POOL_DISABLED
  const size_t kept = 0;
#else
  const size_t kept = 1;
#endif
  start();
  peer_->send("GET /a HTTP/1.1\r\nHost: a\r\n");  // the headers not yet complete
  ASSERT_TRUE(runUntil([&] { return holdsParseState(*h().codec); }));
  connection_->close(network::ConnectionCloseType::NoFlush);
  ASSERT_TRUE(h().closed);
  ASSERT_TRUE(holdsParseState(*h().codec));
  const size_t free_before = freeParseStates();
  h().codec.reset();
  EXPECT_EQ(freeParseStates(), free_before + kept);
}

// A request whose bytes arrive over many reads keeps one parse state throughout (the URL,
// a header and the body split mid-way); the next request on the connection starts fresh.
TEST_F(Http1ServerTest, ParseStateLastsAcrossReadsOfOneRequest) {
  start();
  const std::string head =
      "POST /split/path HTTP/1.1\r\nHost: split.example\r\nContent-Length: 6\r\nX-Long: "
      "0123456789abcdef0123456789\r\n\r\nab";
  for (size_t i = 0; i < head.size(); i += 7) {
    peer_->send(std::string_view(head).substr(i, 7));
    ASSERT_TRUE(runUntil([&] { return h().dispatches >= static_cast<int>(i / 7 + 1); }));
    EXPECT_TRUE(holdsParseState(*h().codec)) << i;
  }
  peer_->send("cdef");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_EQ(request(0).headers->path(), "/split/path");
  EXPECT_EQ(request(0).headers->authority(), "split.example");
  EXPECT_EQ(request(0).headers->getValue("x-long"), "0123456789abcdef0123456789");
  EXPECT_EQ(request(0).body, "abcdef");
  respond(request(0), "ok");
  ASSERT_TRUE(runUntil([&] { return !holdsParseState(*h().codec); }));

  peer_->send("GET /next HTTP/1.1\r\nHost: n\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
  EXPECT_EQ(request(1).headers->path(), "/next");
  EXPECT_EQ(request(1).headers->authority(), "n");
  EXPECT_FALSE(request(1).headers->has("x-long"));
  EXPECT_TRUE(h().errors.empty());
}

// Pipelined requests: each takes a fresh parse state when the previous exchange ended, and
// the connection holds none once the last response went out.
TEST_F(Http1ServerTest, PipelinedRequestsEachTakeAFreshParseState) {
  start();
  peer_->send(
      "GET http://abs.example/1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nxyz\r\n0\r\n\r\n"
      "GET /3 HTTP/1.1\r\nHost: c\r\n\r\n");
  ASSERT_TRUE(waitRequests(1));
  EXPECT_TRUE(holdsParseState(*h().codec));
  EXPECT_EQ(request(0).headers->authority(), "abs.example");
  respond(request(0), "r1");
  ASSERT_TRUE(waitRequests(2));
  EXPECT_TRUE(holdsParseState(*h().codec));
  EXPECT_EQ(request(1).headers->path(), "/2");
  EXPECT_EQ(request(1).headers->authority(), "b");
  EXPECT_EQ(request(1).body, "xyz");
  respond(request(1), "r2");
  ASSERT_TRUE(waitRequests(3));
  EXPECT_EQ(request(2).headers->path(), "/3");
  EXPECT_EQ(request(2).headers->authority(), "c");
  respond(request(2), "r3");
  const std::string one = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nr1";
  ASSERT_TRUE(waitReceived(one.size() * 3));
  EXPECT_FALSE(holdsParseState(*h().codec));
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ServerTest, EarlyResponseBeforeTheRequestBodyEnds) {
  start();
  peer_->send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc");
  ASSERT_TRUE(runUntil([&] { return !h().requests.empty() && request(0).body == "abc"; }));
  respond(request(0), "early", 413);
  const std::string first = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 5\r\n\r\nearly";
  ASSERT_TRUE(waitReceived(first.size()));
  // The rest of the request is parsed (and no longer delivered); the next one is served.
  peer_->send("defGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(waitRequests(2));
  EXPECT_EQ(request(0).body, "abc");
  EXPECT_EQ(request(1).headers->path(), "/next");
}

// ------------------------------------------------------------------------------------------
// Client side

struct TestResponse : public ResponseDecoder, public StreamCallbacks {
  void decode1xxHeaders(HeaderMapPtr&& h) override { informational.push_back(std::move(h)); }
  void decodeHeaders(HeaderMapPtr&& h, bool end) override {
    EXPECT_EQ(headers, nullptr) << "headers twice";
    headers = std::move(h);
    headers_end_stream = end;
    end_stream |= end;
  }
  void decodeData(buffer::Buffer& data, bool end) override {
    EXPECT_FALSE(end_stream) << "data after end_stream";
    body += data.toString();
    data.drain(data.length());
    end_stream |= end;
  }
  void decodeTrailers(HeaderMapPtr&& t) override {
    trailers = std::move(t);
    end_stream = true;
  }
  void onResetStream(StreamResetReason r, std::string_view) override { reset = r; }

  std::vector<HeaderMapPtr> informational;
  HeaderMapPtr headers;
  bool headers_end_stream{false};
  std::string body;
  HeaderMapPtr trailers;
  bool end_stream{false};
  std::optional<StreamResetReason> reset;
};

class ClientHarness : public network::ReadFilter,
                      public network::ConnectionCallbacks,
                      public http::ConnectionCallbacks {
 public:
  explicit ClientHarness(const CodecSettings& settings) : settings_(settings) {}

  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& cb) override {
    connection = &cb.connection();
    connection->addConnectionCallbacks(*this);
    codec = createClientCodec(*connection, *this, settings_);
  }
  network::FilterStatus onData(buffer::Buffer& data, bool) override {
    CodecStatus status = codec->dispatch(data);
    if (!status.ok() && errors.empty()) errors.push_back(status);
    return network::FilterStatus::StopIteration;
  }
  void onEvent(network::ConnectionEvent e) override {
    if (e == network::ConnectionEvent::Connected) {
      connected = true;
      return;
    }
    closed = true;
    codec->onConnectionClosed();
  }
  void onGoAway() override { ++goaways; }

  network::Connection* connection{nullptr};
  ClientCodecPtr codec;
  std::vector<CodecStatus> errors;
  bool connected{false};
  bool closed{false};
  int goaways{0};

 private:
  const CodecSettings settings_;
};

class Http1ClientTest : public ::testing::Test {
 protected:
  Http1ClientTest() {
    std::string error;
    auto any = network::fromIp("127.0.0.1", 0, &error);
    listen_socket_ = network::createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = network::localAddress(listen_socket_.fd());
  }
  ~Http1ClientTest() override {
    if (connection_) connection_->close(network::ConnectionCloseType::NoFlush);
    connection_.reset();
    harness_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  void start() {
    std::string error;
    connection_ = network::createClientConnection(
        dispatcher_, address_, std::make_unique<network::RawTransportSocket>(), &error);
    ASSERT_NE(connection_, nullptr) << error;
    harness_ = std::make_shared<ClientHarness>(settings_);
    connection_->addReadFilter(harness_);
    connection_->connect();
    network::SocketFd accepted;
    ASSERT_TRUE(runUntil([&] {
      if (!accepted.isOpen()) network::acceptSocket(listen_socket_, accepted);
      return accepted.isOpen() && harness_->connected;
    }));
    peer_ = std::make_unique<Peer>(std::move(accepted));
  }

  template <class Fn>
  bool runUntil(Fn&& done) {
    return runLoopUntil(dispatcher_, peer_.get(), std::forward<Fn>(done));
  }
  bool waitReceived(size_t n) {
    return runUntil([&] { return peer_->received.size() >= n; });
  }

  ClientHarness& h() { return *harness_; }
  // Responses live as long as the fixture, so that a reset at teardown finds them.
  TestResponse& newResponse() {
    responses_.push_back(std::make_unique<TestResponse>());
    return *responses_.back();
  }

  // Sends a header-only GET (or `method`) and waits until the peer has it.
  RequestEncoder& sendGet(TestResponse& response, std::string_view method = "GET",
                          std::string_view path = "/") {
    RequestEncoder& encoder = h().codec->newStream(response);
    encoder.getStream().addCallbacks(response);
    encoder.encodeHeaders(
        HeaderMap{{":method", method}, {":path", path}, {":authority", "upstream"}}, true);
    const size_t before = peer_->received.size();
    EXPECT_TRUE(runUntil([&] {
      return peer_->received.size() > before &&
             std::string_view(peer_->received).ends_with("\r\n\r\n");
    }));
    return encoder;
  }

  event::RealTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  network::SocketFd listen_socket_;
  network::AddressConstSharedPtr address_;
  network::ClientConnectionPtr connection_;
  std::shared_ptr<ClientHarness> harness_;
  std::unique_ptr<Peer> peer_;
  CodecSettings settings_;
  std::vector<std::unique_ptr<TestResponse>> responses_;
};

TEST_F(Http1ClientTest, GetRequestBytesAndContentLengthResponse) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  EXPECT_EQ(h().codec->activeStreams(), 1u);
  encoder.encodeHeaders(HeaderMap{{":method", "GET"},
                                  {":path", "/index.html?x=1"},
                                  {":authority", "example.com"},
                                  {":scheme", "http"},
                                  {"user-agent", "sluice"},
                                  {"accept", "*/*"}},
                        true);
  const std::string expected =
      "GET /index.html?x=1 HTTP/1.1\r\nhost: example.com\r\nuser-agent: sluice\r\n"
      "accept: */*\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);

  peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Upstream:  yes \r\n\r\nhe");
  ASSERT_TRUE(runUntil([&] { return response.body == "he"; }));
  ASSERT_NE(response.headers, nullptr);
  EXPECT_FALSE(response.headers_end_stream);
  EXPECT_EQ(*response.headers,
            (HeaderMap{{":status", "200"}, {"content-length", "5"}, {"x-upstream", "yes"}}));
  EXPECT_EQ(h().codec->activeStreams(), 1u);
  peer_->send("llo");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(response.body, "hello");
  EXPECT_EQ(h().codec->activeStreams(), 0u);
  EXPECT_EQ(h().goaways, 0);
  EXPECT_TRUE(h().errors.empty());
}

// A head is put together in a 2 KiB block: one larger than that (a long path, a value longer
// than the block, lines that cross its end) goes out whole and in order.
TEST_F(Http1ClientTest, RequestHeadLargerThanTheWritersBlock) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  const std::string path = "/" + std::string(1500, 'p');
  const std::string big(3000, 'v');
  HeaderMap headers{{":method", "GET"}, {":path", path}, {":authority", "example.com"}};
  std::string expected = "GET " + path + " HTTP/1.1\r\nhost: example.com\r\n";
  for (int i = 0; i < 60; ++i) {
    const std::string key = "x-line-" + std::to_string(i);
    const std::string value = i == 30 ? big : std::string(static_cast<size_t>(i), 'a');
    headers.add(key, value);
    expected += key + ": " + value + "\r\n";
  }
  expected += "\r\n";
  encoder.encodeHeaders(headers, true);
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_TRUE(h().errors.empty());
}

// A client takes its parse state with its first request and keeps it: the next response on
// the connection parses with the same parser (upstream connections are few).
TEST_F(Http1ClientTest, KeepsItsParseStateAcrossRequests) {
  start();
  EXPECT_FALSE(holdsParseState(*h().codec));
  for (int i = 0; i < 2; ++i) {
    TestResponse& response = newResponse();
    RequestEncoder& encoder = h().codec->newStream(response);
    EXPECT_TRUE(holdsParseState(*h().codec));
    encoder.encodeHeaders(HeaderMap{{":method", "GET"}, {":path", "/"}, {":authority", "a"}},
                          true);
    peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
    EXPECT_EQ(response.body, "ok");
    EXPECT_EQ(h().codec->activeStreams(), 0u);
    EXPECT_TRUE(holdsParseState(*h().codec));
  }
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ClientTest, ChunkedPostAndChunkedResponseWithTrailers) {
  settings_.enable_trailers = true;
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  encoder.encodeHeaders(HeaderMap{{":method", "POST"},
                                  {":path", "/upload"},
                                  {":authority", "up:8080"},
                                  {"content-type", "text/plain"}},
                        false);
  buffer::Buffer data;
  data.add("hello");
  encoder.encodeData(data, false);
  EXPECT_TRUE(data.empty());
  data.add("world!");
  encoder.encodeData(data, false);
  encoder.encodeTrailers(HeaderMap{{"x-sum", "42"}});
  const std::string expected =
      "POST /upload HTTP/1.1\r\nhost: up:8080\r\ncontent-type: text/plain\r\n"
      "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\nworld!\r\n0\r\nx-sum: 42\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);

  peer_->send(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext\r\nabcd\r\n3\r\nefg\r\n"
      "0\r\nGrpc-Status: 0\r\nGrpc-Message: ok\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(response.body, "abcdefg");
  ASSERT_NE(response.trailers, nullptr);
  EXPECT_EQ(*response.trailers, (HeaderMap{{"grpc-status", "0"}, {"grpc-message", "ok"}}));
  EXPECT_EQ(h().codec->activeStreams(), 0u);
}

TEST_F(Http1ClientTest, ChunkedPostEndedByData) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  encoder.encodeHeaders(HeaderMap{{":method", "POST"}, {":path", "/p"}, {":authority", "x"}},
                        false);
  buffer::Buffer data;
  data.add("hello");
  encoder.encodeData(data, false);
  data.add("world!");
  encoder.encodeData(data, true);
  const std::string expected =
      "POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ClientTest, EmptyPostGetsContentLengthZero) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  encoder.encodeHeaders(HeaderMap{{":method", "POST"}, {":path", "/p"}, {":authority", "x"}}, true);
  const std::string expected = "POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ClientTest, TrailersAreDroppedWhenDisabled) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(response.body, "ab");
  EXPECT_EQ(response.trailers, nullptr);
}

TEST_F(Http1ClientTest, CloseDelimitedBodyEndsAtClose) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the ");
  ASSERT_TRUE(runUntil([&] { return response.body == "until the "; }));
  EXPECT_FALSE(response.end_stream);
  peer_->send("end");
  peer_->close();
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(response.body, "until the end");
  EXPECT_FALSE(response.reset.has_value());
  EXPECT_EQ(h().codec->activeStreams(), 0u);
}

TEST_F(Http1ClientTest, HeadResponseHasNoBodyDespiteContentLength) {
  start();
  TestResponse& head = newResponse();
  sendGet(head, "HEAD", "/h");
  EXPECT_EQ(peer_->received, "HEAD /h HTTP/1.1\r\nhost: upstream\r\n\r\n");
  peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return head.end_stream; }));
  EXPECT_TRUE(head.headers_end_stream);
  EXPECT_EQ(head.headers->getValue("content-length"), "100");
  EXPECT_EQ(h().codec->activeStreams(), 0u);

  // The connection is reusable: the next response parses from the next byte.
  TestResponse& get = newResponse();
  sendGet(get);
  peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(runUntil([&] { return get.end_stream; }));
  EXPECT_EQ(get.body, "ok");
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ClientTest, InformationalThenFinalResponse) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  ASSERT_EQ(response.informational.size(), 2u);
  EXPECT_EQ(response.informational[0]->status(), 100u);
  EXPECT_EQ(response.informational[1]->status(), 103u);
  EXPECT_EQ(response.informational[1]->getValue("link"), "</a.css>");
  EXPECT_EQ(response.headers->status(), 200u);
  EXPECT_TRUE(response.headers_end_stream);
}

TEST_F(Http1ClientTest, NoContentAndNotModifiedHaveNoBody) {
  start();
  TestResponse& first = newResponse();
  sendGet(first);
  peer_->send("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return first.end_stream; }));
  EXPECT_TRUE(first.headers_end_stream);
  TestResponse& second = newResponse();
  sendGet(second);
  peer_->send("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return second.end_stream; }));
  EXPECT_TRUE(second.headers_end_stream);
  EXPECT_EQ(h().codec->activeStreams(), 0u);
}

TEST_F(Http1ClientTest, ConnectionCloseResponseSendsGoAway) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(h().goaways, 1);
}

TEST_F(Http1ClientTest, Http10ResponseWithoutKeepAliveSendsGoAway) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(h().goaways, 1);
}

TEST_F(Http1ClientTest, CloseMidResponseResetsTheStream) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  ASSERT_TRUE(runUntil([&] { return response.body == "abc"; }));
  peer_->close();
  ASSERT_TRUE(runUntil([&] { return response.reset.has_value(); }));
  EXPECT_EQ(*response.reset, StreamResetReason::ConnectionTermination);
  EXPECT_FALSE(response.end_stream);
  EXPECT_EQ(h().codec->activeStreams(), 0u);
}

TEST_F(Http1ClientTest, CloseBeforeAnyResponseResetsTheStream) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->close();
  ASSERT_TRUE(runUntil([&] { return response.reset.has_value(); }));
  EXPECT_EQ(*response.reset, StreamResetReason::ConnectionTermination);
  EXPECT_EQ(response.headers, nullptr);
}

TEST_F(Http1ClientTest, ResponseBeforeTheRequestEnds) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  encoder.getStream().addCallbacks(response);
  encoder.encodeHeaders(
      HeaderMap{{":method", "PUT"}, {":path", "/p"}, {":authority", "x"}, {"content-length", "6"}},
      false);
  buffer::Buffer data;
  data.add("abc");
  encoder.encodeData(data, false);
  ASSERT_TRUE(waitReceived(1));
  peer_->send("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return response.end_stream; }));
  EXPECT_EQ(response.headers->status(), 413u);
  EXPECT_EQ(h().codec->activeStreams(), 1u);  // the request is still going out
  data.add("def");
  encoder.encodeData(data, true);
  EXPECT_EQ(h().codec->activeStreams(), 0u);
  const std::string expected = "PUT /p HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n\r\nabcdef";
  ASSERT_TRUE(waitReceived(expected.size()));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(Http1ClientTest, MalformedResponseIsAProtocolError) {
  start();
  TestResponse& response = newResponse();
  sendGet(response);
  peer_->send("HTTP/1.1 2x0 OK\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().errors.empty(); }));
  EXPECT_EQ(h().errors[0].code, CodecStatus::Code::ProtocolError);
  EXPECT_EQ(h().errors[0].http_status, 0u);
  EXPECT_EQ(h().errors[0].details, "http1.codec_error");
}

TEST_F(Http1ClientTest, ResponseWithoutRequestIsAnError) {
  start();
  peer_->send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return !h().errors.empty(); }));
  EXPECT_EQ(h().errors[0].code, CodecStatus::Code::PrematureResponse);
}

TEST_F(Http1ClientTest, UpgradeTunnelsRawBytes) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = h().codec->newStream(response);
  encoder.getStream().addCallbacks(response);
  encoder.encodeHeaders(HeaderMap{{":method", "GET"},
                                  {":path", "/ws"},
                                  {":authority", "x"},
                                  {"connection", "upgrade"},
                                  {"upgrade", "websocket"}},
                        false);
  const std::string request =
      "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
  ASSERT_TRUE(waitReceived(request.size()));
  EXPECT_EQ(peer_->received, request);
  peer_->send(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
      "from-server");
  ASSERT_TRUE(runUntil([&] { return response.body == "from-server"; }));
  EXPECT_EQ(response.headers->status(), 101u);
  EXPECT_FALSE(response.end_stream);
  buffer::Buffer data;
  data.add("from-client");
  encoder.encodeData(data, false);
  ASSERT_TRUE(waitReceived(request.size() + 11));
  EXPECT_EQ(peer_->received, request + "from-client");
  peer_->send("HTTP/1.1 200 OK\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return response.body == "from-serverHTTP/1.1 200 OK\r\n\r\n"; }));
  EXPECT_TRUE(h().errors.empty());
}

TEST_F(Http1ClientTest, LocalResetClosesTheConnection) {
  start();
  TestResponse& response = newResponse();
  RequestEncoder& encoder = sendGet(response);
  encoder.getStream().resetStream(StreamResetReason::LocalReset);
  ASSERT_TRUE(response.reset.has_value());
  EXPECT_EQ(*response.reset, StreamResetReason::LocalReset);
  EXPECT_EQ(h().codec->activeStreams(), 0u);
  ASSERT_TRUE(runUntil([&] { return peer_->eof; }));
}

}  // namespace
}  // namespace sluice::http::http1
