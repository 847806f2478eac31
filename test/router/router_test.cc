// The router filter on the simulated clock, against real sockets: per-try timeouts that
// retry, hedging (the first try kept, the first answer wins), a per-try timeout with no
// retry left (504 UT), and the max_requests circuit breaker. The upstreams are plain
// listening sockets that the test drives by hand.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "router/config_impl.h"
#include "router/router.h"
#include "stats/stats.h"
#include "upstream/cluster_manager.h"

namespace sluice::router {
namespace {

using std::chrono::milliseconds;

// A listening socket standing in for an upstream host; one connection at a time.
struct RawUpstream {
  RawUpstream() {
    listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(listen_fd, 16);
    socklen_t len = sizeof(a);
    ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~RawUpstream() {
    if (fd >= 0) ::close(fd);
    ::close(listen_fd);
  }
  // Non-blocking steps, called while the dispatcher runs.
  void poll() {
    if (fd < 0) {
      fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) ++accepted;
    }
    if (fd < 0) return;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) received.append(buf, n);
    if (n == 0) eof = true;
  }
  bool gotRequest() const { return received.find("\r\n\r\n") != std::string::npos; }
  void respond(const std::string& who) {
    const std::string r = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-from: " + who + "\r\n\r\n";
    ASSERT_EQ(::write(fd, r.data(), r.size()), static_cast<ssize_t>(r.size()));
  }
  int listen_fd{-1};
  int fd{-1};
  uint16_t port{0};
  int accepted{0};
  std::string received;
  bool eof{false};
};

class FakeCallbacks : public http::StreamDecoderFilterCallbacks {
 public:
  FakeCallbacks(event::Dispatcher& d, std::shared_ptr<const RouteTableImpl> table)
      : dispatcher_(d), table_(std::move(table)), info_(d.timeSource()) {}
  const network::Connection* connection() override { return nullptr; }
  event::Dispatcher& dispatcher() override { return dispatcher_; }
  void resetStream() override { reset = true; }
  http::RouteConstSharedPtr route() override { return table_->route(*headers, 0); }
  void clearRouteCache() override {}
  http::StreamInfo& streamInfo() override { return info_; }
  uint64_t streamId() const override { return 1; }
  void sendLocalReply(uint32_t code, std::string_view, const http::ModifyHeadersCb& modify,
                      std::string_view details) override {
    http::ResponseHeaderMap h;
    if (modify) modify(h);
    local_reply = code;
    local_details = std::string(details);
    overloaded = h.getValue("x-envoy-overloaded") == "true";
  }
  void continueDecoding() override {}
  const buffer::Buffer* decodingBuffer() override { return nullptr; }
  void encode1xxHeaders(http::HeaderMapPtr&&) override {}
  void encodeHeaders(http::HeaderMapPtr&& h, bool end, std::string_view) override {
    status = h->status();
    from = h->getValue("x-from");
    ended = end;
  }
  void encodeData(buffer::Buffer& data, bool end) override {
    data.drain(data.length());
    ended = end;
  }
  void encodeTrailers(http::HeaderMapPtr&&) override { ended = true; }
  void onDecoderFilterAboveWriteBufferHighWatermark() override {}
  void onDecoderFilterBelowWriteBufferLowWatermark() override {}
  void addDownstreamWatermarkCallbacks(http::DownstreamWatermarkCallbacks&) override {}
  void removeDownstreamWatermarkCallbacks(http::DownstreamWatermarkCallbacks&) override {}
  uint32_t decoderBufferLimit() override { return 1024 * 1024; }
  void setStreamIdleTimeout(milliseconds) override {}
  const http::RequestHeaderMap* requestHeaders() override { return headers; }

  http::RequestHeaderMap* headers{nullptr};
  uint32_t status{0};
  std::string from;
  bool ended{false};
  uint32_t local_reply{0};
  std::string local_details;
  bool overloaded{false};
  bool reset{false};

 private:
  event::Dispatcher& dispatcher_;
  std::shared_ptr<const RouteTableImpl> table_;
  http::StreamInfo info_;
};

class RouterTest : public testing::Test {
 protected:
  void setUp(const std::string& route_action, upstream::CircuitBreakerThresholds cb = {}) {
    envoy::config::route::v3::RouteConfiguration proto;
    const std::string text = "virtual_hosts { name: 'v' domains: '*' routes { match { prefix: '/' } "
                             "route { cluster: 'c' timeout { seconds: 10 } " +
                             route_action + " } } }";
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &proto));
    std::string error;
    table_ = RouteTableImpl::create(proto, &error);
    ASSERT_NE(table_, nullptr) << error;
    info_ = std::make_shared<upstream::ClusterInfo>("c", store_);
    info_->setCircuitBreakers(cb);
    auto set = std::make_shared<upstream::PrioritySet>();
    set->priorities.resize(1);
    for (RawUpstream* u : {&a_, &b_}) {
      set->priorities[0].hosts.push_back(std::make_shared<upstream::Host>(
          "c", network::fromIp("127.0.0.1", u->port, &error), "", 1, 0, upstream::Locality{}));
    }
    tlcm_.addOrUpdate(info_, set);
    upstream::ThreadLocalClusterManager::setCurrent(&tlcm_);
  }
  void TearDown() override {
    for (auto& f : filters_) f->onDestroy();
    filters_.clear();
    dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    upstream::ThreadLocalClusterManager::setCurrent(nullptr);
  }

  // A GET through a new router filter.
  FakeCallbacks& request() {
    callbacks_.push_back(std::make_unique<FakeCallbacks>(dispatcher_, table_));
    FakeCallbacks& cb = *callbacks_.back();
    headers_.push_back(std::make_unique<http::RequestHeaderMap>(http::RequestHeaderMap{
        {":method", "GET"}, {":path", "/"}, {":authority", "host"}, {":scheme", "http"}}));
    cb.headers = headers_.back().get();
    filters_.push_back(std::make_shared<RouterFilter>(std::make_shared<RouterConfig>()));
    filters_.back()->setDecoderFilterCallbacks(cb);
    filters_.back()->decodeHeaders(*cb.headers, true);
    return cb;
  }

  // Runs the dispatcher (real sockets; simulated time stands still) until `pred`.
  template <class Pred>
  bool runUntil(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
      a_.poll();
      b_.poll();
      if (pred()) return true;
    }
    return false;
  }
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }
  uint64_t counter(const std::string& name) { return store_.counter("cluster.c." + name).value(); }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  stats::Store store_;
  RawUpstream a_, b_;
  std::shared_ptr<const RouteTableImpl> table_;
  std::shared_ptr<upstream::ClusterInfo> info_;
  upstream::ThreadLocalClusterManager tlcm_{dispatcher_};
  std::vector<std::unique_ptr<FakeCallbacks>> callbacks_;
  std::vector<std::unique_ptr<http::RequestHeaderMap>> headers_;
  std::vector<std::shared_ptr<RouterFilter>> filters_;
};

constexpr char kRetry[] =
    "retry_policy { retry_on: '5xx' num_retries { value: 1 } per_try_timeout { nanos: 200000000 } "
    "retry_back_off { base_interval { nanos: 10000000 } } }";

TEST_F(RouterTest, PerTryTimeoutThenRetryOnTheNextHost) {
  setUp(kRetry);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(199));
  EXPECT_EQ(counter("upstream_rq_per_try_timeout"), 0u);
  EXPECT_FALSE(b_.gotRequest());
  advance(milliseconds(1));  // the per-try timeout: the try on a is cut
  EXPECT_EQ(counter("upstream_rq_per_try_timeout"), 1u);
  EXPECT_EQ(counter("upstream_rq_retry"), 1u);
  ASSERT_TRUE(runUntil([&] { return a_.eof; }));
  advance(milliseconds(10));  // the back-off is within [0, 10ms)
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.status, 200u);
  EXPECT_EQ(cb.from, "b");
  EXPECT_EQ(cb.streamInfo().attempt_count, 2u);
  EXPECT_EQ(cb.local_reply, 0u);
  EXPECT_EQ(counter("upstream_rq_retry_success"), 1u);
}

// An HTTP/2 frame as bytes (for the raw upstreams below, which speak h2c by hand).
std::string h2Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string f = {static_cast<char>(payload.size() >> 16), static_cast<char>(payload.size() >> 8),
                   static_cast<char>(payload.size()), static_cast<char>(type),
                   static_cast<char>(flags),      static_cast<char>(stream >> 24),
                   static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                   static_cast<char>(stream)};
  return f + payload;
}

// An HTTP/2 upstream refuses the stream (REFUSED_STREAM): with retry_on refused-stream the
// router tries again, and the retry's answer is the response.
TEST_F(RouterTest, Http2RefusedStreamIsRetried) {
  setUp("retry_policy { retry_on: 'refused-stream' num_retries { value: 1 } "
        "retry_back_off { base_interval { nanos: 10000000 } } }");
  info_->http2_settings = http::http2::CodecSettings{};
  FakeCallbacks& cb = request();
  const std::string preface = "PRI * HTTP/2.0";
  ASSERT_TRUE(runUntil([&] { return a_.received.find(preface) != std::string::npos; }));
  ASSERT_TRUE(runUntil([&] { return a_.received.size() > 60; }));  // preface, SETTINGS, HEADERS
  const std::string refuse = h2Frame(4, 0, 0, "") + h2Frame(3, 0, 1, std::string("\0\0\0\x07", 4));
  ASSERT_EQ(::write(a_.fd, refuse.data(), refuse.size()), static_cast<ssize_t>(refuse.size()));
  ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_retry") == 1; }));
  EXPECT_EQ(cb.local_reply, 0u);
  const size_t a_before = a_.received.size();
  advance(milliseconds(10));
  // The retry goes to b (a new connection) or to a (a new stream on the same connection).
  ASSERT_TRUE(runUntil([&] {
    return b_.received.size() > 60 || a_.received.size() > a_before + 20;
  }));
  if (b_.received.size() > 60) {
    const std::string r = h2Frame(4, 0, 0, "") + h2Frame(1, 0x5, 1, "\x88");
    ASSERT_EQ(::write(b_.fd, r.data(), r.size()), static_cast<ssize_t>(r.size()));
  } else {
    const std::string r = h2Frame(1, 0x5, 3, "\x88");
    ASSERT_EQ(::write(a_.fd, r.data(), r.size()), static_cast<ssize_t>(r.size()));
  }
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.status, 200u);
  EXPECT_EQ(cb.streamInfo().attempt_count, 2u);
  EXPECT_EQ(counter("upstream_cx_http2_total") >= 1, true);
}

TEST_F(RouterTest, PerTryTimeoutWithoutRetriesIs504UT) {
  setUp("retry_policy { retry_on: 'connect-failure' per_try_timeout { nanos: 200000000 } }");
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));
  EXPECT_EQ(cb.local_reply, 504u);
  EXPECT_EQ(cb.local_details, "upstream_per_try_timeout");
  EXPECT_TRUE(cb.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamRequestTimeout));
  EXPECT_EQ(counter("upstream_rq_retry"), 0u);
  ASSERT_TRUE(runUntil([&] { return a_.eof; }));
}

TEST_F(RouterTest, PerTryIdleTimeoutRetriesASilentTry) {
  setUp("retry_policy { retry_on: 'reset' per_try_idle_timeout { nanos: 100000000 } "
        "retry_back_off { base_interval { nanos: 1000000 } } }");
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(99));
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 0u);
  advance(milliseconds(1));
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 1u);
  advance(milliseconds(1));
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "b");
}

TEST_F(RouterTest, HedgingKeepsTheFirstTryAndTheFirstAnswerWins) {
  setUp(std::string(kRetry) + " hedge_policy { hedge_on_per_try_timeout: true }");
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));
  advance(milliseconds(10));
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  EXPECT_FALSE(a_.eof);  // the first try is still going
  EXPECT_EQ(cb.status, 0u);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "a");
  EXPECT_TRUE(cb.ended);
  ASSERT_TRUE(runUntil([&] { return b_.eof; }));  // the hedge is reset
  EXPECT_EQ(counter("upstream_rq_per_try_timeout"), 1u);
  EXPECT_EQ(counter("upstream_rq_retry"), 1u);
}

TEST_F(RouterTest, MaxRequestsOverflowIs503UO) {
  upstream::CircuitBreakerThresholds cb_limits;
  cb_limits.max_requests = 1;
  setUp("", cb_limits);
  FakeCallbacks& first = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  FakeCallbacks& second = request();
  EXPECT_EQ(second.local_reply, 503u);
  EXPECT_TRUE(second.overloaded);
  EXPECT_TRUE(second.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamOverflow));
  EXPECT_EQ(counter("upstream_rq_pending_overflow"), 1u);
  EXPECT_EQ(info_->resourceManager().requests().count(), 1u);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return first.status != 0; }));
  EXPECT_EQ(info_->resourceManager().requests().count(), 0u);
}

}  // namespace
}  // namespace sluice::router
