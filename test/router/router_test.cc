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
#include "router/shadow.h"
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
  // Drops the connection (the router sees a reset).
  void drop() {
    ::close(fd);
    fd = -1;
  }
  void send(const std::string& bytes) {
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }
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
      hosts_.push_back(set->priorities[0].hosts.back());
    }
    // Round robin starts at a (seed 0): the tests expect the first try there.
    tlcm_.setSeed(0);
    tlcm_.addOrUpdate(info_, set);
    // "m", a mirror cluster on b.
    mirror_info_ = std::make_shared<upstream::ClusterInfo>("m", store_);
    auto mirror_set = std::make_shared<upstream::PrioritySet>();
    mirror_set->priorities.resize(1);
    mirror_set->priorities[0].hosts.push_back(std::make_shared<upstream::Host>(
        "m", network::fromIp("127.0.0.1", b_.port, &error), "", 1, 0, upstream::Locality{}));
    tlcm_.addOrUpdate(mirror_info_, mirror_set);
    upstream::ThreadLocalClusterManager::setCurrent(&tlcm_);
  }
  void TearDown() override {
    for (auto& f : filters_) f->onDestroy();
    filters_.clear();
    ShadowRequest::finishAll();
    dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    upstream::ThreadLocalClusterManager::setCurrent(nullptr);
  }

  // A GET through a new router filter (a POST with `content_length` when not `end_stream`).
  FakeCallbacks& request(bool end_stream = true, size_t content_length = 0) {
    callbacks_.push_back(std::make_unique<FakeCallbacks>(dispatcher_, table_));
    FakeCallbacks& cb = *callbacks_.back();
    headers_.push_back(std::make_unique<http::RequestHeaderMap>(http::RequestHeaderMap{
        {":method", end_stream ? "GET" : "POST"}, {":path", "/"}, {":authority", "host"},
        {":scheme", "http"}}));
    if (!end_stream) headers_.back()->set("content-length", std::to_string(content_length));
    cb.headers = headers_.back().get();
    auto config = std::make_shared<RouterConfig>();
    config->random = random_;
    filters_.push_back(std::make_shared<RouterFilter>(config));
    filters_.back()->setDecoderFilterCallbacks(cb);
    filters_.back()->decodeHeaders(*cb.headers, end_stream);
    return cb;
  }
  void sendBody(std::string_view bytes, bool end_stream) {
    buffer::Buffer data;
    data.add(bytes);
    filters_.back()->decodeData(data, end_stream);
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
  // Runs what is ready now (no waiting): a timer that fired has done its work by then, and
  // a connection or a close it caused shows in the hosts' stats at once.
  void runReady() {
    dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    a_.poll();
    b_.poll();
  }

  uint64_t counter(const std::string& name) { return store_.counter("cluster.c." + name).value(); }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  stats::Store store_;
  RawUpstream a_, b_;
  std::shared_ptr<const RouteTableImpl> table_;
  std::shared_ptr<upstream::ClusterInfo> info_;
  std::shared_ptr<upstream::ClusterInfo> mirror_info_;
  std::vector<upstream::HostSharedPtr> hosts_;  // a_, b_
  std::function<uint64_t()> random_;             // the back-off's jitter
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

// A CDS update replaces the cluster between a try and its retry: the retry looks the
// cluster up again and goes to the new definition's hosts and pools.
TEST_F(RouterTest, ARetryUsesTheClusterThatReplacedTheFirstTrys) {
  setUp(kRetry);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  // The new definition arrives while the first try is out: one host, a new Host object for
  // b's address. (Before the 503, not after: the back-off may be 0 ms and the retry already
  // under way when the 503's counter is seen.)
  auto new_info = std::make_shared<upstream::ClusterInfo>("c", store_);
  auto set = std::make_shared<upstream::PrioritySet>();
  set->priorities.resize(1);
  std::string error;
  auto b2 = std::make_shared<upstream::Host>("c", network::fromIp("127.0.0.1", b_.port, &error),
                                             "", 1, 0, upstream::Locality{});
  set->priorities[0].hosts.push_back(b2);
  tlcm_.addOrUpdate(new_info, set);
  a_.send("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_retry") == 1; }));
  advance(milliseconds(10));  // the back-off
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.status, 200u);
  EXPECT_EQ(b2->stats().rq_total.load(), 1u);
  EXPECT_EQ(hosts_[1]->stats().rq_total.load(), 0u);  // the old definition's b took nothing
  EXPECT_EQ(info_->resourceManager().retries().count(), 0u);
}

TEST_F(RouterTest, ARetryAfterItsClusterWasRemovedIs503NC) {
  setUp(kRetry);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  tlcm_.remove("c");  // while the first try is out (see above)
  a_.send("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
  ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_retry") == 1; }));
  advance(milliseconds(10));  // the back-off
  ASSERT_TRUE(runUntil([&] { return cb.local_reply != 0; }));
  EXPECT_EQ(cb.local_reply, 503u);
  EXPECT_EQ(cb.local_details, "cluster_not_found");
  EXPECT_TRUE(cb.streamInfo().hasResponseFlag(http::ResponseFlag::NoClusterFound));
  EXPECT_EQ(info_->resourceManager().retries().count(), 0u);
  EXPECT_EQ(b_.accepted, 0);
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

// The HTTP/2 pool's max_requests: streams on connections count; one past it is 503 UO.
TEST_F(RouterTest, Http2MaxRequestsOverflowIs503UO) {
  upstream::CircuitBreakerThresholds cb_limits;
  cb_limits.max_requests = 1;
  setUp("", cb_limits);
  info_->http2_settings = http::http2::CodecSettings{};
  FakeCallbacks& first = request();  // a stream on a's connection
  ASSERT_TRUE(runUntil([&] { return a_.received.size() > 60; }));  // preface, SETTINGS, HEADERS
  EXPECT_EQ(info_->resourceManager().requests().count(), 1u);
  FakeCallbacks& second = request();  // on b: its stream would be the second request
  ASSERT_TRUE(runUntil([&] { return second.local_reply != 0; }));
  EXPECT_EQ(second.local_reply, 503u);
  EXPECT_TRUE(second.overloaded);
  EXPECT_TRUE(second.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamOverflow));
  EXPECT_EQ(counter("upstream_rq_pending_overflow"), 1u);
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_open").value(), 1u);
  EXPECT_EQ(info_->resourceManager().requests().count(), 1u);
  const std::string r = h2Frame(4, 0, 0, "") + h2Frame(1, 0x5, 1, "\x88");  // :status 200
  ASSERT_EQ(::write(a_.fd, r.data(), r.size()), static_cast<ssize_t>(r.size()));
  ASSERT_TRUE(runUntil([&] { return first.status != 0; }));
  EXPECT_EQ(first.status, 200u);
  ASSERT_TRUE(runUntil([&] { return info_->resourceManager().requests().count() == 0; }));
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_open").value(), 0u);
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

constexpr char kIdle[] =
    "retry_policy { retry_on: 'reset' per_try_idle_timeout { nanos: 100000000 } "
    "retry_back_off { base_interval { nanos: 1000000 } } }";

TEST_F(RouterTest, PerTryIdleTimeoutStartsOnceTheWholeRequestWentOut) {
  setUp(kIdle);
  FakeCallbacks& cb = request(false, 5);
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(500));  // the client is slow to send its body: not the upstream's fault
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 0u);
  sendBody("hello", true);
  ASSERT_TRUE(runUntil([&] { return a_.received.find("hello") != std::string::npos; }));
  advance(milliseconds(99));
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 0u);
  advance(milliseconds(1));
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 1u);
  EXPECT_EQ(cb.local_reply, 0u);  // retried
}

TEST_F(RouterTest, PerTryIdleTimeoutGoesOnWhileTheResponseStreams) {
  setUp(kIdle);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(50));
  a_.send("HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-from: a\r\n\r\n12345");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  advance(milliseconds(99));  // each response byte restarts the idle timer
  EXPECT_FALSE(cb.reset);
  advance(milliseconds(1));  // ... and a response that stalls is cut
  EXPECT_EQ(counter("upstream_rq_per_try_idle_timeout"), 1u);
  EXPECT_TRUE(cb.reset);
  EXPECT_TRUE(cb.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamRequestTimeout));
  ASSERT_TRUE(runUntil([&] { return a_.eof; }));
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
  // The request's upstream host is the winner's, not the latest try's.
  EXPECT_EQ(cb.streamInfo().upstream_host->asString(), "127.0.0.1:" + std::to_string(a_.port));
}

TEST_F(RouterTest, MaxRequestsOverflowIs503UO) {
  upstream::CircuitBreakerThresholds cb_limits;
  cb_limits.max_requests = 1;
  setUp("", cb_limits);
  FakeCallbacks& first = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  // max_requests counts requests on connections: the second overflows when its connection
  // would take it.
  FakeCallbacks& second = request();
  ASSERT_TRUE(runUntil([&] { return second.local_reply != 0; }));
  EXPECT_EQ(second.local_reply, 503u);
  EXPECT_TRUE(second.overloaded);
  EXPECT_TRUE(second.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamOverflow));
  EXPECT_EQ(counter("upstream_rq_pending_overflow"), 1u);
  EXPECT_EQ(info_->resourceManager().requests().count(), 1u);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return first.status != 0; }));
  EXPECT_EQ(info_->resourceManager().requests().count(), 0u);
}

TEST_F(RouterTest, HighPriorityRouteHasItsOwnBreakersAndPools) {
  upstream::CircuitBreakerThresholds cb_limits;
  cb_limits.max_requests = 1;
  setUp("", cb_limits);  // DEFAULT: one request at a time; HIGH: Envoy's defaults
  envoy::config::route::v3::RouteConfiguration proto;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "virtual_hosts { name: 'v' domains: '*' routes { match { prefix: '/' } "
      "route { cluster: 'c' priority: HIGH } } }",
      &proto));
  std::string error;
  auto high_table = RouteTableImpl::create(proto, &error);
  ASSERT_NE(high_table, nullptr) << error;
  auto default_table = table_;
  upstream::ResourceManager& def = info_->resourceManager();
  upstream::ResourceManager& high = info_->resourceManager(upstream::ResourcePriority::High);

  FakeCallbacks& first = request();  // DEFAULT, on a; holds the one DEFAULT request
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  EXPECT_EQ(def.requests().count(), 1u);
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_open").value(), 1u);
  table_ = high_table;
  FakeCallbacks& h1 = request();  // HIGH, on b
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  EXPECT_EQ(high.requests().count(), 1u);
  b_.received.clear();
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return h1.status != 0; }));
  EXPECT_EQ(h1.status, 200u);
  table_ = default_table;
  FakeCallbacks& second = request();  // DEFAULT, on a: overflows
  ASSERT_TRUE(runUntil([&] { return second.local_reply != 0; }));
  EXPECT_EQ(second.local_reply, 503u);
  EXPECT_TRUE(second.overloaded);
  EXPECT_TRUE(second.streamInfo().hasResponseFlag(http::ResponseFlag::UpstreamOverflow));
  table_ = high_table;
  FakeCallbacks& h2 = request();  // HIGH, on b, while DEFAULT is full: reuses its own pool
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return h2.status != 0; }));
  EXPECT_EQ(h2.status, 200u);
  EXPECT_EQ(h2.from, "b");
  EXPECT_EQ(b_.accepted, 1);  // one connection: the HIGH pool of b kept it
  EXPECT_EQ(counter("upstream_rq_pending_overflow"), 1u);
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.high.rq_open").value(), 0u);
  EXPECT_EQ(high.requests().count(), 0u);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return first.status != 0; }));
  EXPECT_EQ(def.requests().count(), 0u);
}

TEST_F(RouterTest, HighPriorityRetriesCountAgainstTheHighBreaker) {
  random_ = [] { return uint64_t{0}; };
  upstream::CircuitBreakerThresholds cb_limits;
  cb_limits.max_retries = 0;  // DEFAULT allows no retry; HIGH keeps 3
  setUp(std::string(kRetry) + " priority: HIGH", cb_limits);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));  // per-try timeout: a retry on b
  EXPECT_EQ(info_->resourceManager(upstream::ResourcePriority::High).retries().count(), 1u);
  advance(milliseconds(10));
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "b");
  EXPECT_EQ(counter("upstream_rq_retry_overflow"), 0u);
  EXPECT_EQ(info_->resourceManager(upstream::ResourcePriority::High).retries().count(), 0u);
}

// Hedging with two retries and a 50 ms back-off (the jitter fixed by random_).
constexpr char kHedge2[] =
    "retry_policy { retry_on: '5xx' num_retries { value: 2 } per_try_timeout { nanos: 200000000 } "
    "retry_back_off { base_interval { nanos: 100000000 } } } "
    "hedge_policy { hedge_on_per_try_timeout: true }";

TEST_F(RouterTest, AFailureDuringAHedgesBackOffTakesNoSecondRetry) {
  random_ = [] { return uint64_t{50}; };
  setUp(kHedge2);
  upstream::ResourceManager& rm = info_->resourceManager();
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));  // per-try timeout: a hedge, after 50 ms
  EXPECT_EQ(rm.retries().count(), 1u);
  a_.drop();  // the first try fails during the back-off
  ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_rx_reset") == 1; }));
  // The hedge already coming is the retry: one retry resource, one retry taken.
  EXPECT_EQ(rm.retries().count(), 1u);
  EXPECT_EQ(counter("upstream_rq_retry"), 1u);
  EXPECT_EQ(cb.local_reply, 0u);
  advance(milliseconds(50));
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  b_.respond("b");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "b");
  // The retry had its outcome: the breaker is back to zero (it leaked one before).
  EXPECT_EQ(rm.retries().count(), 0u);
  EXPECT_EQ(store_.gauge("cluster.c.circuit_breakers.default.rq_retry_open").value(), 0u);
}

TEST_F(RouterTest, RetryBreakerIsBalancedAfterManyHedgeRaces) {
  random_ = [] { return uint64_t{50}; };
  upstream::CircuitBreakerThresholds limits;
  limits.max_retries = 1;
  setUp(kHedge2, limits);
  upstream::ResourceManager& rm = info_->resourceManager();
  for (int i = 0; i < 3; ++i) {
    FakeCallbacks& cb = request();
    ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
    a_.received.clear();
    advance(milliseconds(200));
    a_.drop();
    ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_rx_reset") == uint64_t(i + 1); }));
    advance(milliseconds(50));
    ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
    b_.received.clear();
    b_.respond("b");
    ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
    EXPECT_EQ(cb.from, "b") << i;
    EXPECT_EQ(rm.retries().count(), 0u) << i;
    b_.drop();
  }
  EXPECT_EQ(counter("upstream_rq_retry_overflow"), 0u);
}

TEST_F(RouterTest, AWinningTryCancelsTheHedgeWaitingForItsBackOff) {
  random_ = [] { return uint64_t{50}; };
  setUp(kHedge2);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));  // a hedge is coming in 50 ms
  a_.respond("a");             // ... but the first try answers first
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "a");
  advance(milliseconds(100));  // past the back-off: nothing goes upstream again
  runReady();
  // A retry would have opened a connection to b in its timer's callback (connect() is issued
  // at once): none was made, nor asked of any pool.
  EXPECT_EQ(hosts_[1]->stats().cx_total.load(), 0u);
  EXPECT_EQ(counter("upstream_rq_total"), 1u);
  EXPECT_EQ(b_.accepted, 0);
  EXPECT_EQ(cb.streamInfo().attempt_count, 1u);
  EXPECT_EQ(info_->resourceManager().retries().count(), 0u);
}

TEST_F(RouterTest, AHedgeThatOverflowsLeavesTheFirstTryRunning) {
  random_ = [] { return uint64_t{0}; };
  upstream::CircuitBreakerThresholds limits;
  limits.max_requests = 1;
  setUp(kHedge2, limits);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));  // the hedge starts now, and overflows max_requests
  ASSERT_TRUE(runUntil([&] { return counter("upstream_rq_pending_overflow") == 1; }));
  EXPECT_EQ(cb.local_reply, 0u);
  runReady();
  // The first try still holds its connection and its request (abandoning it would have
  // closed the connection at once).
  EXPECT_EQ(hosts_[0]->stats().cx_active.load(), 1u);
  EXPECT_EQ(hosts_[0]->stats().rq_active.load(), 1u);
  EXPECT_FALSE(a_.eof);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.status, 200u);
  EXPECT_EQ(cb.from, "a");
  EXPECT_EQ(cb.streamInfo().upstream_host->asString(), "127.0.0.1:" + std::to_string(a_.port));
}

TEST_F(RouterTest, AHedgeWithNoHealthyHostLeavesTheFirstTryRunning) {
  random_ = [] { return uint64_t{0}; };
  setUp(kHedge2);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  // Both hosts fail their health checks meanwhile (the balancer's snapshot is stale).
  for (auto& h : hosts_) h->setHealthFlag(upstream::Host::FailedActiveHealthCheck);
  advance(milliseconds(200));  // the hedge finds no host
  EXPECT_EQ(counter("upstream_cx_none_healthy"), 1u);
  EXPECT_EQ(cb.local_reply, 0u);
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(cb.from, "a");
  EXPECT_EQ(info_->resourceManager().retries().count(), 0u);
}

TEST_F(RouterTest, RouteTimeoutReportsEachTryOnce) {
  random_ = [] { return uint64_t{5}; };
  setUp(std::string(kRetry) + " hedge_policy { hedge_on_per_try_timeout: true }");
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest(); }));
  advance(milliseconds(200));  // a's per-try timeout: hedge to b after 5 ms
  advance(milliseconds(5));
  ASSERT_TRUE(runUntil([&] { return b_.gotRequest(); }));
  advance(milliseconds(200));  // b's per-try timeout; no retry left: both tries go on
  EXPECT_EQ(counter("upstream_rq_per_try_timeout"), 2u);
  EXPECT_EQ(hosts_[0]->stats().rq_timeout, 1u);
  EXPECT_EQ(hosts_[1]->stats().rq_timeout, 1u);
  advance(milliseconds(10000));  // the route timeout
  EXPECT_EQ(cb.local_reply, 504u);
  EXPECT_EQ(counter("upstream_rq_timeout"), 1u);
  // Each try's host heard of its timeout once (b was counted twice before).
  EXPECT_EQ(hosts_[0]->stats().rq_timeout, 1u);
  EXPECT_EQ(hosts_[1]->stats().rq_timeout, 1u);
}

constexpr char kMirror[] = "request_mirror_policies { cluster: 'm' }";

TEST_F(RouterTest, AMirrorGetsTheWholeBodyWhenTheResponseStartedFirst) {
  setUp(kMirror);
  FakeCallbacks& cb = request(false, 11);
  sendBody("hello ", false);
  ASSERT_TRUE(runUntil([&] { return a_.received.find("hello ") != std::string::npos; }));
  a_.send("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-from: a\r\n\r\n");  // body to come
  ASSERT_TRUE(runUntil([&] { return cb.status != 0; }));
  EXPECT_EQ(b_.accepted, 0);  // the mirror waits for the whole request
  sendBody("world", true);
  ASSERT_TRUE(runUntil([&] { return b_.received.find("hello world") != std::string::npos; }));
  EXPECT_NE(b_.received.find("host-shadow"), std::string::npos);
  EXPECT_NE(b_.received.find("content-length: 11"), std::string::npos);
}

TEST_F(RouterTest, AMirrorGetsTheWholeBodyWhenTheResponseEndedFirst) {
  setUp(kMirror);
  FakeCallbacks& cb = request(false, 11);
  sendBody("hello ", false);
  ASSERT_TRUE(runUntil([&] { return a_.received.find("hello ") != std::string::npos; }));
  a_.respond("a");  // a whole response before the whole request
  ASSERT_TRUE(runUntil([&] { return cb.ended; }));
  sendBody("world", true);
  ASSERT_TRUE(runUntil([&] { return b_.received.find("hello world") != std::string::npos; }));
}

TEST_F(RouterTest, WorkerShutdownFinishesMirrorsInFlight) {
  setUp(kMirror);
  FakeCallbacks& cb = request();
  ASSERT_TRUE(runUntil([&] { return a_.gotRequest() && b_.gotRequest(); }));
  a_.respond("a");
  ASSERT_TRUE(runUntil([&] { return cb.ended; }));
  EXPECT_EQ(ShadowRequest::inFlight(), 1u);  // the mirror never answers
  // What a stopping worker does before its last deferred deletion.
  ShadowRequest::finishAll();
  dispatcher_.clearDeferredDeleteList();
  EXPECT_EQ(ShadowRequest::inFlight(), 0u);
  ASSERT_TRUE(runUntil([&] { return b_.eof; }));  // its stream was reset
}

}  // namespace
}  // namespace sluice::router
