// The HTTP connection manager's filter chain against real bytes: a ConnectionManagerImpl on a
// real server connection and Dispatcher, scripted filters that record every call and return
// the statuses a test gives them, a terminal filter in the router's place, and a raw client
// socket that writes HTTP/1.1 and reads what a client would see. The rules under test are
// Envoy's filter manager's (src/http/filter.h).

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "buffer/buffer.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"
#include "http/conn_manager_impl.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::http {
namespace {

using namespace std::chrono_literals;

// The raw client: writes bytes, collects what arrives, notices the close.
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
    if (eof) return;
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

  std::string received;
  bool eof{false};

 private:
  network::SocketFd fd_;
};

// Every filter call, in order: "A:decodeHeaders+end", "B:encodeData(abc)", ... ("+end" when
// the call carried end_stream; data longer than 24 bytes shows as its length).
using CallLog = std::vector<std::string>;

std::string describe(const buffer::Buffer& data) {
  if (data.length() > 24) return std::to_string(data.length()) + " bytes";
  return data.toString();
}

// A filter for both directions. Each callback logs itself, runs the test's action for it (if
// any) and returns the next scripted status (or the default once the script ran out).
class ScriptedFilter : public StreamFilter {
 public:
  ScriptedFilter(std::string name, CallLog& log) : name_(std::move(name)), log_(log) {}

  template <class Status>
  struct Script {
    std::deque<Status> next;  // returned first, in order
    Status otherwise{Status::Continue};
    std::function<void()> action;  // runs inside the callback, before it returns

    Status take() {
      if (next.empty()) return otherwise;
      Status s = next.front();
      next.pop_front();
      return s;
    }
  };
  Script<FilterHeadersStatus> decode_headers, encode_headers;
  Script<FilterDataStatus> decode_data, encode_data;
  Script<FilterTrailersStatus> decode_trailers, encode_trailers;

  StreamDecoderFilterCallbacks* dec{nullptr};
  StreamEncoderFilterCallbacks* enc{nullptr};
  int running{0};  // this filter's callbacks on the stack right now
  int destroys{0};

  void setDecoderFilterCallbacks(StreamDecoderFilterCallbacks& cb) override { dec = &cb; }
  void setEncoderFilterCallbacks(StreamEncoderFilterCallbacks& cb) override { enc = &cb; }
  FilterHeadersStatus decodeHeaders(RequestHeaderMap&, bool end) override {
    return call("decodeHeaders", end, decode_headers);
  }
  FilterDataStatus decodeData(buffer::Buffer& data, bool end) override {
    return call("decodeData(" + describe(data) + ")", end, decode_data);
  }
  FilterTrailersStatus decodeTrailers(RequestTrailerMap&) override {
    return call("decodeTrailers", false, decode_trailers);
  }
  FilterHeadersStatus encodeHeaders(ResponseHeaderMap& headers, bool end) override {
    return call("encodeHeaders(" + std::to_string(headers.status()) + ")", end, encode_headers);
  }
  FilterDataStatus encodeData(buffer::Buffer& data, bool end) override {
    return call("encodeData(" + describe(data) + ")", end, encode_data);
  }
  FilterTrailersStatus encodeTrailers(ResponseTrailerMap&) override {
    return call("encodeTrailers", false, encode_trailers);
  }
  void onDestroy() override { ++destroys; }

 private:
  template <class Status>
  Status call(const std::string& what, bool end, Script<Status>& script) {
    log_.push_back(name_ + ":" + what + (end ? "+end" : ""));
    ++running;
    if (std::function<void()> action = script.action) action();
    --running;
    return script.take();
  }

  const std::string name_;
  CallLog& log_;
};

// The last decoder filter, in the router's place: it logs the request and takes its body (as
// the router does), and once the request is complete answers with `response` through the
// encoder filters, from inside that last callback, unless the test answers with the send*()
// calls itself.
class Terminal : public StreamDecoderFilter {
 public:
  explicit Terminal(CallLog& log) : log_(log) {}

  struct Response {
    uint32_t status{200};
    std::vector<std::string> body;  // one encodeData() each
    bool content_length{true};      // else the codec chunks it
    bool trailers{false};           // "x-trailer: t"
  };
  Response response;
  bool auto_respond{true};
  StreamDecoderFilterCallbacks* cb{nullptr};
  std::string body;

  void sendHeaders(uint32_t status, bool end_stream, std::optional<size_t> content_length) {
    auto h = std::make_unique<HeaderMap>();
    h->add(":status", std::to_string(status));
    if (content_length) h->add("content-length", std::to_string(*content_length));
    cb->encodeHeaders(std::move(h), end_stream, "terminal_response");
  }
  void sendData(std::string_view bytes, bool end_stream) {
    buffer::Buffer b;
    b.add(bytes);
    cb->encodeData(b, end_stream);
  }
  void sendTrailers() {
    auto t = std::make_unique<HeaderMap>();
    t->add("x-trailer", "t");
    cb->encodeTrailers(std::move(t));
  }
  void respond() {
    size_t length = 0;
    for (const auto& chunk : response.body) length += chunk.size();
    const bool headers_only = response.body.empty() && !response.trailers;
    sendHeaders(response.status, headers_only,
                response.content_length ? std::optional<size_t>(length) : std::nullopt);
    for (size_t i = 0; i < response.body.size(); ++i) {
      sendData(response.body[i], i + 1 == response.body.size() && !response.trailers);
    }
    if (response.trailers) sendTrailers();
  }

  void setDecoderFilterCallbacks(StreamDecoderFilterCallbacks& callbacks) override {
    cb = &callbacks;
  }
  FilterHeadersStatus decodeHeaders(RequestHeaderMap&, bool end) override {
    log_.push_back(std::string("T:decodeHeaders") + (end ? "+end" : ""));
    if (end && auto_respond) respond();
    return FilterHeadersStatus::StopIteration;
  }
  FilterDataStatus decodeData(buffer::Buffer& data, bool end) override {
    log_.push_back("T:decodeData(" + describe(data) + ")" + (end ? "+end" : ""));
    body += data.toString();
    data.drain(data.length());
    if (end && auto_respond) respond();
    return FilterDataStatus::StopIterationNoBuffer;
  }
  FilterTrailersStatus decodeTrailers(RequestTrailerMap&) override {
    log_.push_back("T:decodeTrailers");
    if (auto_respond) respond();
    return FilterTrailersStatus::StopIteration;
  }

 private:
  CallLog& log_;
};

// What the access log saw of each finished stream.
class CapturingLog : public AccessLog {
 public:
  void log(const RequestHeaderMap*, const ResponseHeaderMap*, const ResponseTrailerMap*,
           const StreamInfo& info) override {
    codes.push_back(info.response_code.value_or(0));
    details.push_back(info.response_code_details);
  }
  std::vector<uint32_t> codes;
  std::vector<std::string> details;
};

// Counts what the connection manager tells the router about downstream back-pressure.
class WatermarkCounter : public DownstreamWatermarkCallbacks {
 public:
  void onAboveWriteBufferHighWatermark() override { ++above; }
  void onBelowWriteBufferLowWatermark() override { ++below; }
  int above{0};
  int below{0};
};

class ConnManagerTest : public ::testing::Test, public network::ListenerCallbacks {
 protected:
  explicit ConnManagerTest(
      std::unique_ptr<event::TimeSystem> time = std::make_unique<event::RealTimeSystem>())
      : time_(std::move(time)) {
    std::string error;
    auto any = network::fromIp("127.0.0.1", 0, &error);
    listen_socket_ = network::createListenSocket(*any, false, 128, &error);
    EXPECT_TRUE(listen_socket_.isOpen()) << error;
    address_ = network::localAddress(listen_socket_.fd());
    listener_ = std::make_unique<network::TcpListenerImpl>(dispatcher_, listen_socket_, *this);
    terminal_ = std::make_shared<Terminal>(log_);
    terminal_->response.body = {"ok"};
  }
  ~ConnManagerTest() override {
    if (connection_) connection_->close(network::ConnectionCloseType::NoFlush);
    dispatcher_.clearDeferredDeleteList();
    connection_.reset();
    hcm_.reset();
    listener_.reset();
    dispatcher_.clearDeferredDeleteList();
  }

  // Filters in chain order (decoding A, B, ..., T; encoding ..., B, A).
  ScriptedFilter& addFilter(std::string name) {
    filters_.push_back(std::make_shared<ScriptedFilter>(std::move(name), log_));
    return *filters_.back();
  }

  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    connection_ = network::createServerConnection(dispatcher_, std::move(socket),
                                                  std::make_unique<network::RawTransportSocket>(),
                                                  nullptr, std::move(peer));
    connection_->setBufferLimits(buffer_limit_);
    auto config = std::make_shared<ConnectionManagerConfig>();
    config->stat_prefix = "test";
    config->generate_request_id = false;
    config->idle_timeout = idle_timeout_;
    config->http1_settings.enable_trailers = true;
    config->access_logs.push_back(access_log_);
    config->stats = std::make_shared<ConnectionManagerStats>(
        ConnectionManagerStats::create(store_, config->stat_prefix));
    // One stream per test: the filter objects are the test's, added to the chain as they are.
    config->filter_factories.push_back([this](FilterChainFactoryCallbacks& cb) {
      for (auto& f : filters_) cb.addStreamFilter(f);
      cb.addStreamDecoderFilter(terminal_);
    });
    hcm_ = std::make_shared<ConnectionManagerImpl>(config);
    connection_->addReadFilter(hcm_);
    connection_->initializeReadFilters();
  }

  // Connects the raw client and waits for the server side.
  void start() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    network::SocketFd socket(fd);
    ASSERT_EQ(::connect(fd, address_->sockAddr(), address_->sockAddrLen()), 0);
    ASSERT_EQ(::fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    peer_ = std::make_unique<Peer>(std::move(socket));
    ASSERT_TRUE(runUntil([&] { return hcm_ != nullptr; }));
  }

  // Runs the loop (and reads what the client got) until `done`, for at most 20 s.
  template <class Fn>
  bool runUntil(Fn&& done) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (true) {
      if (peer_) peer_->readAvailable();
      if (done()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    }
  }
  // A few loop passes, to show that something does NOT happen.
  void spin() {
    for (int i = 0; i < 20; ++i) {
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
      peer_->readAvailable();
    }
  }
  // Runs `fn` from the loop, as a timer or an upstream event would, and waits until it ran.
  void later(std::function<void()> fn) {
    bool ran = false;
    dispatcher_.post([&] {
      fn();
      ran = true;
    });
    ASSERT_TRUE(runUntil([&] { return ran; }));
  }

  bool waitLog(size_t n) {
    return runUntil([&] { return log_.size() >= n; });
  }
  bool waitReceived(const std::string& expected) {
    return runUntil([&] { return peer_->received.size() >= expected.size(); });
  }
  bool waitStreamsDone() {
    return runUntil([&] { return hcm_->activeStreams() == 0; });
  }
  bool waitPeerClosed() {
    return runUntil([&] { return peer_->eof; });
  }
  bool connectionOpen() const { return connection_->state() == network::Connection::State::Open; }

  uint64_t counter(const std::string& name) { return store_.counter("http.test." + name).value(); }

  std::unique_ptr<event::TimeSystem> time_;
  event::DispatcherImpl dispatcher_{"test", *time_};
  std::chrono::milliseconds idle_timeout_{0};
  network::SocketFd listen_socket_;
  network::AddressConstSharedPtr address_;
  std::unique_ptr<network::TcpListenerImpl> listener_;
  network::ConnectionPtr connection_;
  std::shared_ptr<ConnectionManagerImpl> hcm_;
  std::unique_ptr<Peer> peer_;
  stats::Store store_;
  std::shared_ptr<CapturingLog> access_log_{std::make_shared<CapturingLog>()};
  uint32_t buffer_limit_{0};
  CallLog log_;
  std::vector<std::shared_ptr<ScriptedFilter>> filters_;
  std::shared_ptr<Terminal> terminal_;
};

constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nserver: envoy\r\n\r\nok";

// ------------------------------------------------------------------------------------------
// Pass-through

TEST_F(ConnManagerTest, PassThroughCallsEveryFilterInOrderAndDestroysEachOnce) {
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(peer_->received, kOk);
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "T:decodeHeaders+end",
                           "B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(ok)+end",
                           "A:encodeData(ok)+end"}));
  // A filter on both sides is destroyed once, not once per side.
  EXPECT_EQ(a.destroys, 1);
  EXPECT_EQ(b.destroys, 1);
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_rq_2xx"), 1u);
}

// More filters than a stream keeps inline, and streams one after another on a connection:
// each stream (a pooled block, deleted after the loop pass that ended it) runs its whole
// chain in order and destroys each filter once.
TEST_F(ConnManagerTest, LongChainOverSeveralStreamsOfOneConnection) {
  std::vector<ScriptedFilter*> chain;
  for (const char* name : {"A", "B", "C", "D", "E", "F"}) chain.push_back(&addFilter(name));
  start();
  std::string expected;
  for (int i = 0; i < 3; ++i) {
    peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    expected += kOk;
    ASSERT_TRUE(waitReceived(expected));
    ASSERT_TRUE(waitStreamsDone());
  }
  EXPECT_EQ(peer_->received, expected);
  ASSERT_EQ(log_.size(), 3u * (6 + 1 + 6 + 6));
  EXPECT_EQ(log_[0], "A:decodeHeaders+end");
  EXPECT_EQ(log_[5], "F:decodeHeaders+end");
  EXPECT_EQ(log_[6], "T:decodeHeaders+end");
  EXPECT_EQ(log_[7], "F:encodeHeaders(200)");
  EXPECT_EQ(log_[12], "A:encodeHeaders(200)");
  EXPECT_EQ(log_[18], "A:encodeData(ok)+end");
  for (ScriptedFilter* f : chain) EXPECT_EQ(f->destroys, 3);
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_rq_2xx"), 3u);
}

// ------------------------------------------------------------------------------------------
// Decoding: stop and continue

TEST_F(ConnManagerTest, DecodeHeadersStoppedThenContinuedWithBodyAndTrailersBehindThem) {
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  a.decode_data.otherwise = FilterDataStatus::StopIterationAndWatermark;
  a.decode_trailers.next = {FilterTrailersStatus::StopIteration};
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n");
  ASSERT_TRUE(waitLog(1));
  peer_->send("5\r\nhello\r\n");
  ASSERT_TRUE(waitLog(2));
  peer_->send("6\r\n world\r\n");
  ASSERT_TRUE(waitLog(3));
  peer_->send("0\r\nx-req: t\r\n\r\n");
  ASSERT_TRUE(waitLog(4));
  spin();
  // Everything reached A, which holds it; nothing went past it.
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "A:decodeData(hello)", "A:decodeData( world)",
                           "A:decodeTrailers"}));
  ASSERT_NE(a.dec->decodingBuffer(), nullptr);
  EXPECT_EQ(a.dec->decodingBuffer()->toString(), "hello world");
  EXPECT_TRUE(peer_->received.empty());

  log_.clear();
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  // Headers, then the kept body in one piece, then the trailers: each to every later filter.
  EXPECT_EQ(log_, (CallLog{"B:decodeHeaders", "T:decodeHeaders", "B:decodeData(hello world)",
                           "T:decodeData(hello world)", "B:decodeTrailers", "T:decodeTrailers",
                           "B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(ok)+end",
                           "A:encodeData(ok)+end"}));
  EXPECT_EQ(terminal_->body, "hello world");
  EXPECT_EQ(peer_->received, kOk);
}

TEST_F(ConnManagerTest, HeadersOnlyRequestContinuedCarriesEndStream) {
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(1));
  spin();
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end"}));
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "T:decodeHeaders+end",
                           "B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(ok)+end",
                           "A:encodeData(ok)+end"}));
}

TEST_F(ConnManagerTest, ContinueReturnedFromDecodeDataResumesStoppedHeaders) {
  // Envoy's contract: after StopIteration from decodeHeaders, Continue from decodeData
  // resumes iteration (the headers go first).
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "A:decodeData(hello)+end", "B:decodeHeaders",
                           "T:decodeHeaders", "B:decodeData(hello)+end", "T:decodeData(hello)+end",
                           "B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(ok)+end",
                           "A:encodeData(ok)+end"}));
}

TEST_F(ConnManagerTest, StopIterationAndBufferThenContinueFromTheLastData) {
  // The buffer filter's pattern: keep the body until its end, then Continue.
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  a.decode_data.next = {FilterDataStatus::StopIterationAndBuffer};
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello");
  ASSERT_TRUE(waitLog(2));
  peer_->send("world");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(log_,
            (CallLog{"A:decodeHeaders", "A:decodeData(hello)", "A:decodeData(world)+end",
                     "B:decodeHeaders", "T:decodeHeaders", "B:decodeData(helloworld)+end",
                     "T:decodeData(helloworld)+end", "B:encodeHeaders(200)", "A:encodeHeaders(200)",
                     "B:encodeData(ok)+end", "A:encodeData(ok)+end"}));
}

TEST_F(ConnManagerTest, StopIterationAndBufferThenContinueDecodingLater) {
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello");
  ASSERT_TRUE(waitLog(4));
  peer_->send("world");
  ASSERT_TRUE(waitLog(5));
  spin();
  // The headers went through; the body waits at A.
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "B:decodeHeaders", "T:decodeHeaders",
                           "A:decodeData(hello)", "A:decodeData(world)+end"}));
  EXPECT_EQ(a.dec->decodingBuffer()->toString(), "helloworld");
  log_.clear();
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(log_, (CallLog{"B:decodeData(helloworld)+end", "T:decodeData(helloworld)+end",
                           "B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(ok)+end",
                           "A:encodeData(ok)+end"}));
  EXPECT_EQ(counter("downstream_rq_too_large"), 0u);
}

TEST_F(ConnManagerTest, FilterThatTookTheLastFramePassesAnEmptyEndOnContinue) {
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_data.next = {FilterDataStatus::StopIterationNoBuffer};
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello");
  ASSERT_TRUE(waitLog(4));
  spin();
  EXPECT_EQ(a.dec->decodingBuffer(), nullptr);
  log_.clear();
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  // The headers went with end_stream=false: the end still has to reach B and T.
  EXPECT_EQ(log_,
            (CallLog{"B:decodeData()+end", "T:decodeData()+end", "B:encodeHeaders(200)",
                     "A:encodeHeaders(200)", "B:encodeData(ok)+end", "A:encodeData(ok)+end"}));
}

TEST_F(ConnManagerTest, WatermarkHoldPushesBackOnTheClientInsteadOfFailing) {
  // Kept with StopIterationAndWatermark, a body over the buffer limit stops the reading of
  // the connection, not the request; continuing lets it all through in order.
  buffer_limit_ = 64;
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  a.decode_data.otherwise = FilterDataStatus::StopIterationAndWatermark;
  start();
  const std::string first(100, 'a');
  const std::string rest(900, 'b');
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n" + first);
  ASSERT_TRUE(runUntil([&] { return !connection_->readEnabled(); }));
  peer_->send(rest);
  spin();
  // Paused: the rest stays in the socket, A keeps only the first part, nothing failed.
  EXPECT_FALSE(connection_->readEnabled());
  ASSERT_NE(a.dec->decodingBuffer(), nullptr);
  EXPECT_EQ(a.dec->decodingBuffer()->length(), 100u);
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "A:decodeData(100 bytes)"}));
  EXPECT_TRUE(peer_->received.empty());
  EXPECT_EQ(counter("downstream_rq_too_large"), 0u);

  a.decode_data.otherwise = FilterDataStatus::Continue;
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(peer_->received, kOk);
  EXPECT_EQ(terminal_->body, first + rest);
  EXPECT_TRUE(connection_->readEnabled());
  EXPECT_EQ(counter("downstream_rq_too_large"), 0u);
}

TEST_F(ConnManagerTest, TwoStoppedFiltersKeepTheirOwnDataInOrder) {
  // B holds the first part; later A holds the last part. Each passes on only what it kept,
  // with the end where it saw it.
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.next = {FilterHeadersStatus::StopIteration};
  b.decode_data.otherwise = FilterDataStatus::StopIterationAndWatermark;
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nfirst");
  ASSERT_TRUE(waitLog(4));
  a.decode_data.next = {FilterDataStatus::StopIterationAndBuffer};
  peer_->send("-last");
  ASSERT_TRUE(waitLog(5));
  spin();
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "B:decodeHeaders", "A:decodeData(first)",
                           "B:decodeData(first)", "A:decodeData(-last)+end"}));
  log_.clear();
  later([&] { b.dec->continueDecoding(); });
  EXPECT_EQ(log_, (CallLog{"T:decodeHeaders", "T:decodeData(first)"}));
  log_.clear();
  b.decode_data.otherwise = FilterDataStatus::Continue;
  later([&] { a.dec->continueDecoding(); });
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(log_,
            (CallLog{"B:decodeData(-last)+end", "T:decodeData(-last)+end", "B:encodeHeaders(200)",
                     "A:encodeHeaders(200)", "B:encodeData(ok)+end", "A:encodeData(ok)+end"}));
  EXPECT_EQ(terminal_->body, "first-last");
}

TEST_F(ConnManagerTest, ContinueFromInsideOwnDecodeCallbacksTakesEffectWhenTheyReturn) {
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  // Headers: StopIteration with a continue already asked for acts as Continue.
  a.decode_headers.next = {FilterHeadersStatus::StopIteration};
  a.decode_headers.action = [&] { a.dec->continueDecoding(); };
  // Data: the frame is kept first, then iteration resumes with it.
  a.decode_data.next = {FilterDataStatus::StopIterationAndBuffer};
  a.decode_data.action = [&] { a.dec->continueDecoding(); };
  std::vector<int> a_running_when_b_called;
  b.decode_headers.action = [&] { a_running_when_b_called.push_back(a.running); };
  b.decode_data.action = [&] { a_running_when_b_called.push_back(a.running); };
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(
      log_,
      (CallLog{"A:decodeHeaders", "B:decodeHeaders", "T:decodeHeaders", "A:decodeData(hello)+end",
               "B:decodeData(hello)+end", "T:decodeData(hello)+end", "B:encodeHeaders(200)",
               "A:encodeHeaders(200)", "B:encodeData(ok)+end", "A:encodeData(ok)+end"}));
  // B ran after A's callback had returned, never inside it.
  EXPECT_EQ(a_running_when_b_called, (std::vector<int>{0, 0}));
}

// ------------------------------------------------------------------------------------------
// Encoding: stop and continue

TEST_F(ConnManagerTest, EncodeHeadersStoppedThenDataAndTrailersWaitForContinue) {
  // B is the first encoder filter. What reaches it while its headers are stopped (data,
  // trailers) waits, and reaches A and the client in order on continue.
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_headers.next = {FilterHeadersStatus::StopIteration};
  b.encode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  b.encode_trailers.next = {FilterTrailersStatus::StopIteration};
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  log_.clear();
  later([&] { terminal_->sendHeaders(200, false, std::nullopt); });
  later([&] { terminal_->sendData("abc", false); });
  later([&] { terminal_->sendData("def", false); });
  later([&] { terminal_->sendTrailers(); });
  spin();
  EXPECT_EQ(log_, (CallLog{"B:encodeHeaders(200)", "B:encodeData(abc)", "B:encodeData(def)",
                           "B:encodeTrailers"}));
  EXPECT_EQ(b.enc->encodingBuffer()->toString(), "abcdef");
  EXPECT_TRUE(peer_->received.empty());

  log_.clear();
  b.encode_data.otherwise = FilterDataStatus::Continue;
  later([&] { b.enc->continueEncoding(); });
  const std::string expected =
      "HTTP/1.1 200 OK\r\nserver: envoy\r\ntransfer-encoding: chunked\r\n\r\n"
      "6\r\nabcdef\r\n0\r\nx-trailer: t\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(log_, (CallLog{"A:encodeHeaders(200)", "A:encodeData(abcdef)", "A:encodeTrailers"}));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, EncodeDataBufferedThenTrailersContinue) {
  // The headers went out; B keeps the data; Continue from its trailers callback sends the
  // kept data (not ending the stream) and then the trailers.
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  log_.clear();
  const std::string head = "HTTP/1.1 200 OK\r\nserver: envoy\r\ntransfer-encoding: chunked\r\n\r\n";
  later([&] { terminal_->sendHeaders(200, false, std::nullopt); });
  ASSERT_TRUE(waitReceived(head));
  later([&] { terminal_->sendData("abc", false); });
  later([&] { terminal_->sendData("def", false); });
  spin();
  EXPECT_EQ(peer_->received, head);
  later([&] { terminal_->sendTrailers(); });
  const std::string expected = head + "6\r\nabcdef\r\n0\r\nx-trailer: t\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(log_, (CallLog{"B:encodeHeaders(200)", "A:encodeHeaders(200)", "B:encodeData(abc)",
                           "B:encodeData(def)", "B:encodeTrailers", "A:encodeData(abcdef)",
                           "A:encodeTrailers"}));
}

TEST_F(ConnManagerTest, ContinueReturnedFromEncodeDataResumesStoppedHeaders) {
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_headers.next = {FilterHeadersStatus::StopIteration};
  terminal_->response.body = {"o", "k"};
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(peer_->received, kOk);
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "T:decodeHeaders+end",
                           "B:encodeHeaders(200)", "B:encodeData(o)", "A:encodeHeaders(200)",
                           "A:encodeData(o)", "B:encodeData(k)+end", "A:encodeData(k)+end"}));
  EXPECT_EQ(a.destroys, 1);
}

TEST_F(ConnManagerTest, ContinueFromInsideOwnEncodeHeadersTakesEffectWhenItReturns) {
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_headers.next = {FilterHeadersStatus::StopIteration};
  b.encode_headers.action = [&] { b.enc->continueEncoding(); };
  int b_running_when_a_called = -1;
  a.encode_headers.action = [&] { b_running_when_a_called = b.running; };
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(peer_->received, kOk);
  EXPECT_EQ(b_running_when_a_called, 0);
}

TEST_F(ConnManagerTest, EncodeWatermarkHoldPushesBackOnTheUpstream) {
  buffer_limit_ = 64;
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_data.next = {FilterDataStatus::StopIterationAndWatermark};
  terminal_->auto_respond = false;
  WatermarkCounter upstream;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  const std::string body(100, 'z');
  later([&] {
    terminal_->cb->addDownstreamWatermarkCallbacks(upstream);
    terminal_->sendHeaders(200, false, body.size() + 2);
    terminal_->sendData(body, false);
  });
  spin();
  EXPECT_EQ(upstream.above, 1);
  EXPECT_EQ(upstream.below, 0);
  EXPECT_EQ(counter("rs_too_large"), 0u);
  EXPECT_EQ(peer_->received, "HTTP/1.1 200 OK\r\ncontent-length: 102\r\nserver: envoy\r\n\r\n");
  // The kept data moves on: the upstream may read again. (Writing it then backs up the
  // connection itself, which the upstream hears about too: only the first release counts.)
  later([&] {
    b.enc->continueEncoding();
    EXPECT_EQ(upstream.below, 1);
    terminal_->cb->removeDownstreamWatermarkCallbacks(upstream);
  });
  later([&] { terminal_->sendData("ok", true); });
  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-length: 102\r\nserver: envoy\r\n\r\n" + body + "ok";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
}

// ------------------------------------------------------------------------------------------
// Buffer limits

TEST_F(ConnManagerTest, RequestBodyKeptOverTheBufferLimitIs413) {
  buffer_limit_ = 64;
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  start();
  // 200 bytes of a 1000-byte body: over the limit before the request is complete.
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n" + std::string(200, 'x'));
  const std::string expected =
      "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 17\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\nconnection: close\r\n\r\nPayload Too Large";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(counter("downstream_rq_too_large"), 1u);
  EXPECT_EQ(counter("downstream_rq_4xx"), 1u);
  EXPECT_EQ(counter("downstream_rq_response_before_rq_complete"), 1u);
  EXPECT_EQ(access_log_->details, (std::vector<std::string>{"request_payload_too_large"}));
  // The reply ran through every encoder filter; T never had any of the body.
  ASSERT_GE(log_.size(), 4u);
  EXPECT_EQ(
      std::vector<std::string>(log_.end() - 4, log_.end()),
      (CallLog{"B:encodeHeaders(413)", "A:encodeHeaders(413)",
               "B:encodeData(Payload Too Large)+end", "A:encodeData(Payload Too Large)+end"}));
  EXPECT_TRUE(terminal_->body.empty());
  // The rest of the request cannot be read past: the connection closes.
  EXPECT_FALSE(connectionOpen());
}

TEST_F(ConnManagerTest, RequestBodyOverTheLimitOnceAllReadIs413AndKeepsTheConnection) {
  buffer_limit_ = 64;
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 200\r\n\r\n" + std::string(200, 'x'));
  const std::string expected =
      "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 17\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\n\r\nPayload Too Large";
  ASSERT_TRUE(waitReceived(expected));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(counter("downstream_rq_too_large"), 1u);
  EXPECT_EQ(counter("downstream_rq_response_before_rq_complete"), 0u);
  // The whole request was read: the next one can follow on the same connection.
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, ResponseBodyKeptOverTheLimitBeforeHeadersWentOutIs500) {
  buffer_limit_ = 64;
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_headers.next = {FilterHeadersStatus::StopIteration};
  b.encode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  log_.clear();
  later([&] {
    terminal_->sendHeaders(200, false, std::nullopt);
    terminal_->sendData(std::string(100, 'y'), false);
    // The upstream goes on: nothing more reaches the filters or the client.
    terminal_->sendData("more", true);
  });
  const std::string expected =
      "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 21\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\n\r\nInternal Server Error";
  ASSERT_TRUE(waitReceived(expected));
  ASSERT_TRUE(waitStreamsDone());
  spin();
  EXPECT_EQ(peer_->received, expected);
  // The reply went straight to the client: A never saw a response.
  EXPECT_EQ(log_, (CallLog{"B:encodeHeaders(200)", "B:encodeData(100 bytes)"}));
  EXPECT_EQ(a.destroys, 1);
  EXPECT_EQ(counter("rs_too_large"), 1u);
  EXPECT_EQ(counter("downstream_rq_5xx"), 1u);
  EXPECT_EQ(counter("downstream_rq_2xx"), 0u);
  EXPECT_EQ(access_log_->details, (std::vector<std::string>{"response_payload_too_large"}));
  EXPECT_EQ(access_log_->codes, (std::vector<uint32_t>{500}));
  // The request was complete: the connection stays for the next one.
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, ResponseBodyKeptOverTheLimitAfterHeadersWentOutResets) {
  buffer_limit_ = 64;
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  const std::string head = "HTTP/1.1 200 OK\r\nserver: envoy\r\ntransfer-encoding: chunked\r\n\r\n";
  later([&] { terminal_->sendHeaders(200, false, std::nullopt); });
  ASSERT_TRUE(waitReceived(head));
  later([&] { terminal_->sendData(std::string(100, 'y'), false); });
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received, head);
  EXPECT_EQ(counter("rs_too_large"), 1u);
  EXPECT_EQ(counter("downstream_rq_tx_reset"), 1u);
  EXPECT_EQ(hcm_->activeStreams(), 0u);
}

// ------------------------------------------------------------------------------------------
// Local replies

TEST_F(ConnManagerTest, LocalReplyFromDecodeHeadersRunsThroughAllEncoderFilters) {
  // Sent when B's callback has returned (B's Continue is ignored): no decoder filter after
  // B runs, and the reply goes through every encoder filter, B's included, as in Envoy.
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.action = [&] {
    const std::string why = "test";  // gone when the callback returns
    b.dec->sendLocalReply(
        403, "denied", [&why](ResponseHeaderMap& h) { h.set("x-why", why); }, "denied_by_b");
  };
  int b_running_at_reply = -1;
  b.encode_headers.action = [&] { b_running_at_reply = b.running; };
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  const std::string expected =
      "HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n"
      "x-why: test\r\nserver: envoy\r\n\r\ndenied";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "B:encodeHeaders(403)",
                           "A:encodeHeaders(403)", "B:encodeData(denied)+end",
                           "A:encodeData(denied)+end"}));
  EXPECT_EQ(b_running_at_reply, 1);  // only the encodeHeaders call itself, not decodeHeaders
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(a.destroys, 1);
  EXPECT_EQ(b.destroys, 1);
  EXPECT_EQ(access_log_->details, (std::vector<std::string>{"denied_by_b"}));
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, LocalReplyToAGrpcRequestIsAGrpcErrorTrailersOnly) {
  // As Envoy: HTTP 200, content-type application/grpc, grpc-status mapped from the HTTP code
  // (503: UNAVAILABLE), the body as a percent-encoded grpc-message, and no body.
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.action = [&] {
    b.dec->sendLocalReply(503, "no healthy upstream\n100%", nullptr, "no_healthy_upstream");
  };
  start();
  peer_->send("POST /pkg.Svc/Call HTTP/1.1\r\nhost: a\r\ncontent-type: application/grpc+proto\r\n"
              "content-length: 0\r\n\r\n");
  const std::string expected =
      "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\n"
      "grpc-message: no healthy upstream%0A100%25\r\nserver: envoy\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(log_, (CallLog{"B:decodeHeaders+end", "B:encodeHeaders(200)+end"}));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(access_log_->codes, (std::vector<uint32_t>{200}));
}

TEST_F(ConnManagerTest, LocalReplyToAGrpcRequestKeepsAGrpcStatusTheCallerSet) {
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.action = [&] {
    b.dec->sendLocalReply(
        404, "", [](ResponseHeaderMap& h) { h.set("grpc-status", "8"); }, "route_not_found");
  };
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\ncontent-type: application/grpc\r\n\r\n");
  const std::string expected =
      "HTTP/1.1 200 OK\r\ngrpc-status: 8\r\ncontent-type: application/grpc\r\n"
      "server: envoy\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(ConnManagerTest, LocalReplyToANonGrpcContentTypeStaysHttp) {
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.action = [&] { b.dec->sendLocalReply(503, "", nullptr, "x"); };
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\ncontent-type: application/grpcx\r\n\r\n");
  const std::string expected =
      "HTTP/1.1 503 Service Unavailable\r\nserver: envoy\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
}

TEST_F(ConnManagerTest, LocalReplyStoppedByAnEncoderFilterGoesOutOnContinue) {
  // A local reply is a response like any other to the encoder filters: A holds its headers
  // and body, and sends them on when it continues.
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_headers.action = [&] { b.dec->sendLocalReply(403, "denied", nullptr, "denied"); };
  a.encode_headers.next = {FilterHeadersStatus::StopIteration};
  a.encode_data.next = {FilterDataStatus::StopIterationAndBuffer};
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(6));
  spin();
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "B:encodeHeaders(403)",
                           "A:encodeHeaders(403)", "B:encodeData(denied)+end",
                           "A:encodeData(denied)+end"}));
  EXPECT_TRUE(peer_->received.empty());
  later([&] { a.enc->continueEncoding(); });
  const std::string expected =
      "HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\n\r\ndenied";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(access_log_->codes, (std::vector<uint32_t>{403}));
}

TEST_F(ConnManagerTest, LocalReplyFromDecodeDataWhileTheBodyIsIncomplete) {
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.decode_data.action = [&] { b.dec->sendLocalReply(400, "bad body", nullptr, "bad_body"); };
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhello");
  const std::string expected =
      "HTTP/1.1 400 Bad Request\r\ncontent-length: 8\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\nconnection: close\r\n\r\nbad body";
  ASSERT_TRUE(waitReceived(expected));
  EXPECT_EQ(peer_->received, expected);
  peer_->send("world");
  spin();
  // T had the headers, none of the body; nobody saw the rest of the request.
  EXPECT_EQ(log_,
            (CallLog{"A:decodeHeaders", "B:decodeHeaders", "T:decodeHeaders", "A:decodeData(hello)",
                     "B:decodeData(hello)", "B:encodeHeaders(400)", "A:encodeHeaders(400)",
                     "B:encodeData(bad body)+end", "A:encodeData(bad body)+end"}));
  EXPECT_EQ(counter("downstream_rq_response_before_rq_complete"), 1u);
  EXPECT_EQ(counter("downstream_rq_4xx"), 1u);
  EXPECT_FALSE(connectionOpen());
}

TEST_F(ConnManagerTest, LocalReplyFromALaterFilterWhileAnEarlierOneHoldsTheBody) {
  // A keeps the body; B (stopped on the headers) gives up from a timer. The reply goes out;
  // A continuing afterwards delivers nothing.
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  a.decode_data.otherwise = FilterDataStatus::StopIterationAndBuffer;
  b.decode_headers.next = {FilterHeadersStatus::StopIteration};
  start();
  peer_->send("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhelloworld");
  ASSERT_TRUE(waitLog(3));
  spin();
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders", "B:decodeHeaders", "A:decodeData(helloworld)+end"}));
  log_.clear();
  later([&] {
    b.dec->sendLocalReply(503, "", nullptr, "b_gave_up");
    a.dec->continueDecoding();
  });
  const std::string expected =
      "HTTP/1.1 503 Service Unavailable\r\nserver: envoy\r\ncontent-length: 0\r\n\r\n";
  ASSERT_TRUE(waitReceived(expected));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_EQ(peer_->received, expected);
  EXPECT_EQ(log_, (CallLog{"B:encodeHeaders(503)+end", "A:encodeHeaders(503)+end"}));
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, LocalReplyFromAnEncoderFilterGoesStraightToTheClient) {
  ScriptedFilter& a = addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_headers.action = [&] { b.enc->sendLocalReply(503, "no way", nullptr, "b_refused"); };
  terminal_->response.body = {"hello"};
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  const std::string expected =
      "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n"
      "server: envoy\r\n\r\nno way";
  ASSERT_TRUE(waitReceived(expected));
  ASSERT_TRUE(waitStreamsDone());
  spin();
  EXPECT_EQ(peer_->received, expected);
  // A never saw either response; the terminal's body went nowhere.
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end", "B:decodeHeaders+end", "T:decodeHeaders+end",
                           "B:encodeHeaders(200)"}));
  EXPECT_EQ(a.destroys, 1);
  EXPECT_EQ(counter("downstream_rq_5xx"), 1u);
  EXPECT_EQ(counter("downstream_rq_2xx"), 0u);
  EXPECT_EQ(access_log_->details, (std::vector<std::string>{"b_refused"}));
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, LocalReplyFromAnEncoderFilterAfterHeadersWentOutResets) {
  addFilter("A");
  ScriptedFilter& b = addFilter("B");
  b.encode_data.action = [&] { b.enc->sendLocalReply(500, "", nullptr, "b_broke"); };
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(3));
  const std::string head = "HTTP/1.1 200 OK\r\nserver: envoy\r\ntransfer-encoding: chunked\r\n\r\n";
  later([&] { terminal_->sendHeaders(200, false, std::nullopt); });
  ASSERT_TRUE(waitReceived(head));
  later([&] {
    terminal_->sendData("abc", false);
    terminal_->sendData("def", true);  // after the reset: ignored
  });
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received, head);
  EXPECT_EQ(counter("downstream_rq_tx_reset"), 1u);
  EXPECT_EQ(access_log_->details, (std::vector<std::string>{"b_broke"}));
}

TEST_F(ConnManagerTest, ResetFromInsideADecoderCallbackStopsIteration) {
  ScriptedFilter& a = addFilter("A");
  addFilter("B");
  a.decode_headers.action = [&] { a.dec->resetStream(); };
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_TRUE(peer_->received.empty());
  EXPECT_EQ(log_, (CallLog{"A:decodeHeaders+end"}));
  EXPECT_EQ(a.destroys, 1);
  EXPECT_EQ(counter("downstream_rq_tx_reset"), 1u);
}

// ------------------------------------------------------------------------------------------
// Soft drain (a listener update): no HTTP/1 connection closes unannounced

TEST_F(ConnManagerTest, SoftDrainOfAnIdleConnectionWaitsForItsNextResponse) {
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  ASSERT_TRUE(waitStreamsDone());
  later([&] { hcm_->startDrain(false); });
  spin();
  EXPECT_TRUE(connectionOpen()) << "an idle keep-alive connection is not closed under a client";
  peer_->received.clear();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_NE(peer_->received.find("connection: close\r\n"), std::string::npos) << peer_->received;
  EXPECT_EQ(counter("downstream_cx_drain_close"), 1u);
}

TEST_F(ConnManagerTest, SoftDrainDuringAResponseThatWentOutWithoutCloseKeepsTheConnection) {
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(1));
  later([&] { terminal_->sendHeaders(200, false, std::nullopt); });
  later([&] { hcm_->startDrain(false); });
  later([&] { terminal_->sendData("ok", true); });
  ASSERT_TRUE(waitStreamsDone());
  spin();
  // Its headers promised keep-alive: closing now would fail the client's next request.
  EXPECT_EQ(peer_->received.find("connection: close"), std::string::npos);
  EXPECT_TRUE(connectionOpen());
}

TEST_F(ConnManagerTest, HardDrainOfAnIdleConnectionClosesIt) {
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  ASSERT_TRUE(waitStreamsDone());
  later([&] { hcm_->startDrain(); });
  ASSERT_TRUE(waitPeerClosed());
}

// ------------------------------------------------------------------------------------------
// An idle HTTP/1 connection holds no codec: it goes when an exchange ends with nothing after
// it, and the next request's bytes make a new one (of HTTP/1, whatever those bytes are).

TEST_F(ConnManagerTest, AKeepAliveConnectionHoldsNoCodecBetweenItsRequests) {
  terminal_->auto_respond = false;  // the response comes later, as from an upstream
  start();
  EXPECT_FALSE(hcm_->holdsCodec());  // AUTO: the first bytes pick the codec
  for (int i = 0; i < 3; ++i) {
    peer_->received.clear();
    peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
    ASSERT_TRUE(runUntil([&] { return terminal_->cb != nullptr && hcm_->activeStreams() == 1; }));
    EXPECT_TRUE(hcm_->holdsCodec());
    later([&] { terminal_->respond(); });
    ASSERT_TRUE(waitReceived(std::string(kOk)));
    EXPECT_EQ(peer_->received, kOk);
    ASSERT_TRUE(waitStreamsDone());
    terminal_->cb = nullptr;
    EXPECT_FALSE(hcm_->holdsCodec()) << "request " << i;
  }
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_cx_http1_total"), 1u);
  EXPECT_EQ(store_.gauge("http.test.downstream_cx_http1_active").value(), 1);
  EXPECT_EQ(counter("downstream_rq_completed"), 3u);
  peer_.reset();  // the client closes
  ASSERT_TRUE(runUntil([&] { return !connectionOpen(); }));
  EXPECT_EQ(store_.gauge("http.test.downstream_cx_http1_active").value(), 0);
}

TEST_F(ConnManagerTest, ARequestAnsweredWhileItIsParsedLeavesNoCodecEither) {
  // The terminal answers from decodeHeaders, inside the codec's dispatch: the stream ends
  // before the codec has finished the request, so the release waits for dispatch to return.
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_FALSE(hcm_->holdsCodec());
  peer_->received.clear();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  EXPECT_EQ(peer_->received, kOk);
}

TEST_F(ConnManagerTest, PipelinedRequestsAreAnsweredInOrderAcrossCodecs) {
  // The second request's bytes wait in the connection while the first is answered; the
  // codec may go with the first exchange, and the one made for those bytes parses them.
  terminal_->auto_respond = false;
  start();
  peer_->send("GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return terminal_->cb != nullptr; }));
  StreamDecoderFilterCallbacks* first = terminal_->cb;
  later([&] { terminal_->respond(); });
  ASSERT_TRUE(runUntil([&] { return terminal_->cb != first && hcm_->activeStreams() == 1; }));
  EXPECT_TRUE(hcm_->holdsCodec());
  later([&] { terminal_->respond(); });
  ASSERT_TRUE(waitReceived(std::string(kOk) + std::string(kOk)));
  EXPECT_EQ(peer_->received, std::string(kOk) + std::string(kOk));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_FALSE(hcm_->holdsCodec());
  EXPECT_EQ(counter("downstream_rq_completed"), 2u);
  EXPECT_EQ(access_log_->details.size(), 2u);
}

TEST_F(ConnManagerTest, ARequestAnsweredAtItsEndWithAPipelinedOneBehindIt) {
  // The terminal answers when the POST's body ends, inside the codec's dispatch; the codec
  // finishes that exchange there and goes on parsing the GET behind it in the same bytes.
  // It must still be the connection's codec (found by review: it was let go mid-dispatch,
  // and the GET's stream used a codec on its way to deletion).
  start();
  peer_->send(
      "POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx"
      "GET /y HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk) + std::string(kOk)));
  EXPECT_EQ(peer_->received, std::string(kOk) + std::string(kOk));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_FALSE(hcm_->holdsCodec());

  // The same with only the start of the pipelined request in the first bytes.
  peer_->received.clear();
  peer_->send("POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nxGET /y HTTP/1.1\r\nho");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  spin();
  EXPECT_EQ(hcm_->activeStreams(), 1u);  // the GET's stream, waiting for its headers' end
  EXPECT_TRUE(hcm_->holdsCodec());
  peer_->send("st: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk) + std::string(kOk)));
  EXPECT_EQ(peer_->received, std::string(kOk) + std::string(kOk));
  ASSERT_TRUE(waitStreamsDone());
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_rq_completed"), 4u);
  EXPECT_EQ(counter("downstream_cx_protocol_error"), 0u);
}

TEST_F(ConnManagerTest, AnHttp2PrefaceAfterAnHttp1RequestIsNotAProtocolSwitch) {
  // AUTO picks the protocol from a connection's first bytes only: a codec made again for a
  // later request is HTTP/1, which refuses the preface as a request.
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  ASSERT_TRUE(waitStreamsDone());
  ASSERT_FALSE(hcm_->holdsCodec());
  peer_->received.clear();
  peer_->send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  ASSERT_TRUE(waitPeerClosed());
  EXPECT_EQ(peer_->received.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << peer_->received;
  EXPECT_EQ(counter("downstream_cx_http2_total"), 0u);
  EXPECT_EQ(counter("downstream_cx_http1_total"), 1u);
  EXPECT_EQ(counter("downstream_cx_protocol_error"), 1u);
}

// ------------------------------------------------------------------------------------------
// Connection idle timeout (common_http_protocol_options.idle_timeout), on simulated time

class ConnManagerIdleTest : public ConnManagerTest {
 protected:
  ConnManagerIdleTest() : ConnManagerTest(std::make_unique<event::SimulatedTimeSystem>()) {
    idle_timeout_ = 100ms;
  }
  void advance(std::chrono::milliseconds d) {
    static_cast<event::SimulatedTimeSystem&>(*time_).advanceTimeAndRun(d, dispatcher_);
    peer_->readAvailable();
  }
};

TEST_F(ConnManagerIdleTest, ClosesAConnectionIdleForTheTimeoutCountedFromItsLastResponse) {
  start();
  advance(60ms);
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitReceived(std::string(kOk)));
  ASSERT_TRUE(waitStreamsDone());
  advance(99ms);  // 159 ms after the accept: the first deadline (100 ms) is gone
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_cx_idle_timeout"), 0u);
  advance(1ms);
  EXPECT_EQ(counter("downstream_cx_idle_timeout"), 1u);
  EXPECT_FALSE(connectionOpen());
  advance(1000ms);  // the delayed close (1 s by default) waits for the peer to close first
  ASSERT_TRUE(waitPeerClosed());
}

TEST_F(ConnManagerIdleTest, AConnectionWithARequestInFlightIsNotIdle) {
  terminal_->auto_respond = false;
  start();
  peer_->send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  ASSERT_TRUE(waitLog(1));
  advance(1000ms);
  EXPECT_TRUE(connectionOpen());
  EXPECT_EQ(counter("downstream_cx_idle_timeout"), 0u);
  later([&] { terminal_->respond(); });
  ASSERT_TRUE(waitStreamsDone());
  advance(99ms);
  EXPECT_TRUE(connectionOpen());
  advance(1ms);
  EXPECT_EQ(counter("downstream_cx_idle_timeout"), 1u);
  EXPECT_FALSE(connectionOpen());
  advance(1000ms);  // the delayed close (1 s by default) waits for the peer to close first
  ASSERT_TRUE(waitPeerClosed());
}

}  // namespace
}  // namespace sluice::http
