// Active health checks on the simulated clock, against a small server on a real socket
// (port 0) served by the same dispatcher.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "stats/stats.h"
#include "upstream/health_checker.h"

namespace sluice::upstream {
namespace {

using std::chrono::milliseconds;

// Accepts connections; answers each request (HTTP: a header block; TCP: any bytes) with
// `response`, or not at all.
class FakeServer {
 public:
  explicit FakeServer(event::Dispatcher& d) : dispatcher_(d) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    listen_event_ = d.createFileEvent(
        fd_, [this](uint32_t) { onAccept(); }, event::FileTriggerType::Level,
        event::FileReadyType::Read);
  }
  ~FakeServer() {
    stop();
    for (auto& [fd, _] : conns_) ::close(fd);
  }
  // Stops listening: new connections are refused.
  void stop() {
    listen_event_.reset();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  uint16_t port{0};
  std::string response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  bool http{true};
  bool answer{true};
  // Set: a request is complete once this is in what arrived (instead of a header block),
  // and the answer to the n-th request (from 1) is respond(n) instead of `response`.
  std::string request_end;
  std::function<std::string(int)> respond;
  int requests{0};
  int accepted{0};
  std::string last_request;

 private:
  struct Conn {
    event::FileEventPtr ev;
    std::string in;
  };
  void onAccept() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    ++accepted;
    conns_[c].ev = dispatcher_.createFileEvent(
        c, [this, c](uint32_t) { onRead(c); }, event::FileTriggerType::Level,
        event::FileReadyType::Read);
  }
  void onRead(int c) {
    char buf[4096];
    const ssize_t n = ::read(c, buf, sizeof(buf));
    if (n <= 0) {
      conns_.erase(c);
      ::close(c);
      return;
    }
    auto& in = conns_[c].in;
    in.append(buf, n);
    if (!request_end.empty()) {
      if (in.find(request_end) == std::string::npos) return;
    } else if (http && in.find("\r\n\r\n") == std::string::npos) {
      return;
    }
    ++requests;
    last_request = in;
    in.clear();
    if (answer) {
      const std::string out = respond ? respond(requests) : response;
      EXPECT_EQ(::write(c, out.data(), out.size()), ssize_t(out.size()));
    }
  }
  event::Dispatcher& dispatcher_;
  int fd_{-1};
  event::FileEventPtr listen_event_;
  std::map<int, Conn> conns_;
};

class HealthCheckerTest : public ::testing::Test {
 protected:
  // Runs the loop until `pred` holds (real I/O on loopback), at most a few seconds.
  template <class P>
  bool runUntil(P pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      dispatcher_.run(event::Dispatcher::RunType::NonBlock);
    }
    return true;
  }
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, dispatcher_); }

  std::unique_ptr<HealthChecker> make(HealthCheckConfig cfg, uint16_t port) {
    std::string error;
    host_ = std::make_shared<Host>("c", network::fromIp("127.0.0.1", port, &error), "", 1, 0,
                                   Locality{});
    auto hc = std::make_unique<HealthChecker>(cfg, info_, dispatcher_,
                                              [this](const HostSharedPtr&, bool, bool changed) {
                                                ++results_;
                                                changes_ += changed;
                                              });
    PrioritySet set;
    set.priorities.push_back({0, {host_}});
    hc->setHosts(set);
    return hc;
  }
  // Checkers of one cluster (sharing their verdicts) on one host.
  std::vector<std::unique_ptr<HealthChecker>> makeSharing(std::vector<HealthCheckConfig> cfgs,
                                                          uint16_t port) {
    std::string error;
    host_ = std::make_shared<Host>("c", network::fromIp("127.0.0.1", port, &error), "", 1, 0,
                                   Locality{});
    auto verdicts = std::make_shared<HealthVerdicts>();
    PrioritySet set;
    set.priorities.push_back({0, {host_}});
    std::vector<std::unique_ptr<HealthChecker>> out;
    for (auto& cfg : cfgs) {
      out.push_back(std::make_unique<HealthChecker>(
          cfg, info_, dispatcher_,
          [this](const HostSharedPtr&, bool, bool changed) {
            ++results_;
            changes_ += changed;
          },
          nullptr, verdicts));
      out.back()->setHosts(set);
    }
    return out;
  }
  bool failed() const { return host_->healthFlags() & Host::FailedActiveHealthCheck; }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl dispatcher_{"test", time_};
  stats::Store store_;
  ClusterInfoConstSharedPtr info_ = std::make_shared<ClusterInfo>("c", store_);
  HostSharedPtr host_;
  int results_{0};
  int changes_{0};
};

HealthCheckConfig httpConfig() {
  HealthCheckConfig c;
  c.type = HealthCheckConfig::Type::Http;
  c.path = "/healthz";
  c.timeout = milliseconds(1000);
  c.interval = milliseconds(5000);
  c.no_traffic_interval = milliseconds(5000);
  return c;
}

TEST_F(HealthCheckerTest, HostStartsFailedAndPassesOnItsFirstGoodCheck) {
  FakeServer server(dispatcher_);
  auto cfg = httpConfig();
  cfg.healthy_threshold = 3;  // the first check is not held to it (Envoy)
  cfg.host = "hc.example";
  cfg.request_headers_to_add = {{"x-hc", "1"}};
  auto hc = make(cfg, server.port);
  EXPECT_TRUE(failed());
  bool warmed = false;
  hc->onFirstRound([&] { warmed = true; });
  EXPECT_FALSE(warmed);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());
  EXPECT_TRUE(warmed);
  EXPECT_EQ(changes_, 1);
  EXPECT_EQ(hc->stats().attempt.value(), 1u);
  EXPECT_EQ(hc->stats().success.value(), 1u);
  EXPECT_EQ(hc->stats().healthy.value(), 1u);
  EXPECT_NE(server.last_request.find("GET /healthz HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(server.last_request.find("host: hc.example"), std::string::npos) << server.last_request;
  EXPECT_NE(server.last_request.find("x-hc: 1"), std::string::npos);
}

TEST_F(HealthCheckerTest, UnexpectedStatusFailsAtOnceAndHealthyThresholdBringsItBack) {
  FakeServer server(dispatcher_);
  auto cfg = httpConfig();
  cfg.unhealthy_threshold = 3;  // ignored for a wrong status (Envoy)
  cfg.healthy_threshold = 2;
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  ASSERT_FALSE(failed());

  server.response = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 2; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().failure.value(), 1u);
  EXPECT_EQ(hc->stats().network_failure.value(), 0u);
  EXPECT_EQ(hc->stats().healthy.value(), 0u);

  server.response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 3; }));
  EXPECT_TRUE(failed()) << "one pass of two";
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 4; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(hc->stats().healthy.value(), 1u);
}

TEST_F(HealthCheckerTest, ExpectedStatusesWidenWhatPasses) {
  FakeServer server(dispatcher_);
  server.response = "HTTP/1.1 204 No Content\r\n\r\n";
  auto cfg = httpConfig();
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_TRUE(failed()) << "only 200 passes by default";

  auto cfg2 = httpConfig();
  cfg2.expected_statuses = {{200, 300}};
  results_ = 0;
  auto hc2 = make(cfg2, server.port);
  hc.reset();
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());
}

TEST_F(HealthCheckerTest, NetworkFailuresTakeUnhealthyThreshold) {
  FakeServer server(dispatcher_);
  auto cfg = httpConfig();
  cfg.unhealthy_threshold = 3;
  cfg.reuse_connection = false;
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  ASSERT_FALSE(failed());
  EXPECT_EQ(server.accepted, 1);
  server.stop();  // connections are refused from now on
  for (int i = 2; i <= 3; ++i) {
    advance(milliseconds(5000));
    ASSERT_TRUE(runUntil([&] { return results_ == i; }));
    EXPECT_FALSE(failed()) << "failure " << i - 1 << " of 3";
  }
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 4; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().network_failure.value(), 3u);
  EXPECT_EQ(hc->stats().failure.value(), 3u);
}

TEST_F(HealthCheckerTest, ReuseConnectionKeepsOneConnection) {
  FakeServer server(dispatcher_);
  auto hc = make(httpConfig(), server.port);
  for (int i = 1; i <= 3; ++i) {
    advance(milliseconds(i == 1 ? 0 : 5000));
    ASSERT_TRUE(runUntil([&] { return results_ == i; }));
  }
  EXPECT_FALSE(failed());
  EXPECT_EQ(server.accepted, 1);
  EXPECT_EQ(server.requests, 3);
}

TEST_F(HealthCheckerTest, TimeoutIsANetworkFailure) {
  FakeServer server(dispatcher_);
  server.answer = false;
  auto cfg = httpConfig();
  cfg.timeout = milliseconds(700);
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return server.requests == 1; }));
  advance(milliseconds(699));
  EXPECT_EQ(results_, 0);
  advance(milliseconds(1));
  EXPECT_EQ(results_, 1);
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().network_failure.value(), 1u);
}

TEST_F(HealthCheckerTest, TcpSendAndReceive) {
  FakeServer server(dispatcher_);
  server.http = false;
  server.response = "xxPONGyyOK";
  HealthCheckConfig cfg;
  cfg.type = HealthCheckConfig::Type::Tcp;
  cfg.send = "PING";
  cfg.receive = {"PONG", "OK"};  // in order, not necessarily contiguous
  cfg.timeout = milliseconds(1000);
  cfg.interval = milliseconds(5000);
  cfg.no_traffic_interval = milliseconds(5000);
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(server.last_request, "PING");

  server.response = "OKPONG";  // wrong order: never matches
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return server.requests == 2; }));
  advance(milliseconds(1000));  // no match ever comes: the timeout ends the check
  EXPECT_EQ(results_, 2);
  EXPECT_TRUE(failed());
}

TEST_F(HealthCheckerTest, NoTrafficIntervalUntilTheClusterHasTraffic) {
  FakeServer server(dispatcher_);
  auto cfg = httpConfig();
  cfg.interval = milliseconds(1000);
  cfg.no_traffic_interval = milliseconds(60000);
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  advance(milliseconds(59999));
  EXPECT_EQ(hc->stats().attempt.value(), 1u);
  info_->stats().upstream_cx_total.inc();  // traffic: the normal interval after this check
  advance(milliseconds(1));
  ASSERT_TRUE(runUntil([&] { return results_ == 2; }));
  EXPECT_EQ(hc->stats().attempt.value(), 2u);
  advance(milliseconds(1000));
  ASSERT_TRUE(runUntil([&] { return results_ == 3; }));
  EXPECT_EQ(hc->stats().attempt.value(), 3u);
}

TEST_F(HealthCheckerTest, IntervalsByStateAndTransition) {
  // As Envoy: the check's result picks the interval; a result that counts toward a change
  // its threshold has not reached yet takes the edge interval.
  HealthCheckConfig cfg = httpConfig();
  cfg.interval = milliseconds(1000);
  cfg.no_traffic_interval = milliseconds(60000);
  cfg.unhealthy_interval = milliseconds(3000);
  cfg.unhealthy_edge_interval = milliseconds(500);
  cfg.healthy_edge_interval = milliseconds(700);
  HealthChecker hc(cfg, info_, dispatcher_, nullptr);
  EXPECT_EQ(hc.nextInterval(false, false), milliseconds(60000));
  EXPECT_EQ(hc.nextInterval(true, true), milliseconds(60000));
  info_->stats().upstream_cx_total.inc();
  EXPECT_EQ(hc.nextInterval(false, false), milliseconds(1000));
  EXPECT_EQ(hc.nextInterval(false, true), milliseconds(700));
  EXPECT_EQ(hc.nextInterval(true, false), milliseconds(3000));
  EXPECT_EQ(hc.nextInterval(true, true), milliseconds(500));

  // Defaults: unhealthy_interval and healthy_edge_interval = interval, unhealthy edge =
  // unhealthy_interval.
  HealthCheckConfig d = httpConfig();
  d.interval = milliseconds(1000);
  d.unhealthy_interval = milliseconds(2000);
  HealthChecker hd(d, info_, dispatcher_, nullptr);
  EXPECT_EQ(hd.nextInterval(false, true), milliseconds(1000));
  EXPECT_EQ(hd.nextInterval(true, true), milliseconds(2000));
}

TEST_F(HealthCheckerTest, RealChecksTakeTheIntervalOfTheirResultAndTransition) {
  info_->stats().upstream_cx_total.inc();
  FakeServer server(dispatcher_);
  HealthCheckConfig cfg = httpConfig();
  cfg.timeout = milliseconds(100);
  cfg.interval = milliseconds(1000);
  cfg.unhealthy_interval = milliseconds(3000);
  cfg.unhealthy_edge_interval = milliseconds(500);
  cfg.healthy_edge_interval = milliseconds(700);
  cfg.healthy_threshold = 2;
  cfg.unhealthy_threshold = 2;
  auto hc = make(cfg, server.port);
  // The next check comes exactly `d` after the last result.
  auto next_after = [&](milliseconds d) {
    const int r = results_;
    const int req = server.requests;
    advance(d - milliseconds(1));
    EXPECT_EQ(server.requests, req) << "no check before " << d.count() << " ms";
    advance(milliseconds(1));
    EXPECT_TRUE(runUntil([&] { return server.requests == req + 1; }));
    if (server.answer) EXPECT_TRUE(runUntil([&] { return results_ == r + 1; }));
  };
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  ASSERT_FALSE(failed());  // the first pass decides at once
  next_after(milliseconds(1000));  // passed, changed: interval
  server.response = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
  next_after(milliseconds(1000));  // passed, healthy: interval
  ASSERT_TRUE(failed());           // a wrong status fails it at once
  server.response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  next_after(milliseconds(3000));  // failed, changed: unhealthy_interval
  ASSERT_TRUE(failed());           // one pass of two
  next_after(milliseconds(700));   // passed, pending: healthy_edge_interval
  ASSERT_FALSE(failed());
  server.answer = false;
  next_after(milliseconds(1000));  // passed, changed: interval
  advance(milliseconds(100));      // the timeout: a network failure, one of two
  ASSERT_EQ(results_, 6);
  ASSERT_FALSE(failed());
  next_after(milliseconds(500));  // failed, pending: unhealthy_edge_interval
}

TEST_F(HealthCheckerTest, ConnectOnlyTcpCheckConnectsEveryTime) {
  FakeServer server(dispatcher_);
  server.http = false;
  HealthCheckConfig cfg;
  cfg.type = HealthCheckConfig::Type::Tcp;  // no send, no receive: connecting is the check
  cfg.reuse_connection = true;
  cfg.timeout = milliseconds(1000);
  cfg.interval = milliseconds(5000);
  cfg.no_traffic_interval = milliseconds(5000);
  auto hc = make(cfg, server.port);
  for (int i = 1; i <= 3; ++i) {
    advance(milliseconds(i == 1 ? 0 : 5000));
    ASSERT_TRUE(runUntil([&] { return results_ == i; }));
    ASSERT_TRUE(runUntil([&] { return server.accepted == i; }));
  }
  EXPECT_FALSE(failed());
  // Nothing listens any more: the next check cannot connect, so it fails.
  server.stop();
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 4; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().network_failure.value(), 1u);
}

TEST_F(HealthCheckerTest, JitterStaysWithinItsBounds) {
  info_->stats().upstream_cx_total.inc();
  HealthCheckConfig cfg = httpConfig();
  cfg.interval = milliseconds(1000);
  cfg.interval_jitter = milliseconds(100);
  cfg.interval_jitter_percent = 20;  // up to 200 ms more
  std::mt19937_64 gen(42);
  HealthChecker hc(cfg, info_, dispatcher_, nullptr, [&] { return gen(); });
  milliseconds lo(1 << 30), hi(0);
  for (int i = 0; i < 2000; ++i) {
    const auto d = hc.nextInterval(false, false);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, milliseconds(1000));
  EXPECT_LT(hi, milliseconds(1300));
  EXPECT_GT(hi, milliseconds(1200)) << "both jitters add up";
  EXPECT_LT(lo, milliseconds(1050));
}

TEST_F(HealthCheckerTest, FirstRoundWaitsForEveryHost) {
  FakeServer server(dispatcher_);
  server.answer = false;
  auto cfg = httpConfig();
  auto hc = make(cfg, server.port);
  bool warmed = false;
  hc->onFirstRound([&] { warmed = true; });
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return server.requests == 1; }));
  EXPECT_FALSE(warmed);
  advance(milliseconds(1000));  // timed out: a first check that failed still ends the round
  EXPECT_TRUE(warmed);
  EXPECT_TRUE(failed());
}

// ---- gRPC (grpc.health.v1 over HTTP/2, spoken by hand on the server side)

std::string h2Frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string f = {static_cast<char>(payload.size() >> 16), static_cast<char>(payload.size() >> 8),
                   static_cast<char>(payload.size()), static_cast<char>(type),
                   static_cast<char>(flags),      static_cast<char>(stream >> 24),
                   static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                   static_cast<char>(stream)};
  return f + payload;
}

// HPACK: ":status: 200" (static index 8), and "grpc-status: <s>" as a literal.
const std::string kStatus200 = "\x88";
std::string grpcStatusField(const std::string& s) {
  return std::string("\x00\x0bgrpc-status", 13) + static_cast<char>(s.size()) + s;
}

// The answer to the n-th check on one connection (stream 2n-1): a HealthCheckResponse with
// `serving` and grpc-status `status` in trailers; or, with `trailers_only`, only headers.
std::function<std::string(int)> grpcAnswer(int serving, const std::string& status,
                                           bool trailers_only = false) {
  return [=](int n) {
    const uint32_t stream = 2 * n - 1;
    std::string out = n == 1 ? h2Frame(4, 0, 0, "") : "";  // the server's SETTINGS
    if (trailers_only) {
      return out + h2Frame(1, 0x5, stream, kStatus200 + grpcStatusField(status));
    }
    out += h2Frame(1, 0x4, stream, kStatus200);
    out += h2Frame(0, 0, stream, std::string("\0\0\0\0\x02\x08", 6) + static_cast<char>(serving));
    out += h2Frame(1, 0x5, stream, grpcStatusField(status));
    return out;
  };
}

HealthCheckConfig grpcConfig(FakeServer& server) {
  HealthCheckConfig c;
  c.type = HealthCheckConfig::Type::Grpc;
  c.service_name = "pkg.Svc";
  c.timeout = milliseconds(1000);
  c.interval = milliseconds(5000);
  c.no_traffic_interval = milliseconds(5000);
  server.http = false;
  // The request's message: HealthCheckRequest{service: "pkg.Svc"} after its 5-byte prefix.
  server.request_end = std::string("\0\0\0\0\x09\x0a\x07pkg.Svc", 14);
  return c;
}

TEST_F(HealthCheckerTest, GrpcServingPassesAndTheConnectionCarriesTheNextCheck) {
  FakeServer server(dispatcher_);
  auto cfg = grpcConfig(server);
  server.respond = grpcAnswer(1, "0");
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(hc->stats().success.value(), 1u);
  EXPECT_EQ(server.last_request.rfind("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0), 0u);

  // NOT_SERVING (2) on the same connection (stream 3) fails the host at once.
  server.respond = grpcAnswer(2, "0");
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 2; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().failure.value(), 1u);
  EXPECT_EQ(hc->stats().network_failure.value(), 0u);
  EXPECT_EQ(server.accepted, 1);

  // A failed check closes its connection (as the HTTP checker does): the next one
  // connects again, and SERVING brings the host back.
  server.respond = [](int) { return grpcAnswer(1, "0")(1); };  // stream 1 of a new connection
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 3; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(server.accepted, 2);
}

// initial_metadata is applied to each Check request after the checker's own headers (the
// config compiles it; the served headers are checked end to end in grpc_test.py).
TEST_F(HealthCheckerTest, GrpcInitialMetadataIsAppliedToEachCheck) {
  FakeServer server(dispatcher_);
  auto cfg = grpcConfig(server);
  int calls = 0;
  std::string path, user_agent;
  cfg.grpc_initial_metadata = [&](http::HeaderMap& h, const http::StreamInfo&) {
    ++calls;
    path = std::string(h.getValue(":path"));
    user_agent = std::string(h.getValue("user-agent"));
  };
  server.respond = grpcAnswer(1, "0");
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(path, "/grpc.health.v1.Health/Check");
  EXPECT_EQ(user_agent, "Envoy/HC");
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 2; }));
  EXPECT_EQ(calls, 2);
}

TEST_F(HealthCheckerTest, GrpcErrorStatusFailsEvenWhenServing) {
  FakeServer server(dispatcher_);
  auto cfg = grpcConfig(server);
  server.respond = grpcAnswer(1, "14");
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().failure.value(), 1u);
}

TEST_F(HealthCheckerTest, GrpcTrailersOnlyErrorFails) {
  FakeServer server(dispatcher_);
  auto cfg = grpcConfig(server);
  server.respond = grpcAnswer(0, "12", /*trailers_only=*/true);  // UNIMPLEMENTED
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().failure.value(), 1u);
  EXPECT_EQ(hc->stats().network_failure.value(), 0u);
}

TEST_F(HealthCheckerTest, GrpcSilentServerTimesOut) {
  FakeServer server(dispatcher_);
  auto cfg = grpcConfig(server);
  server.answer = false;
  auto hc = make(cfg, server.port);
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return server.requests == 1; }));
  EXPECT_EQ(results_, 0);
  advance(milliseconds(1000));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(hc->stats().network_failure.value(), 1u);
}

// Two health checks of one cluster: a host fails while either fails it, and comes back only
// once both pass it (where Envoy lets the latest verdict win).
TEST_F(HealthCheckerTest, SeveralChecksFailAHostWhileAnyFailsIt) {
  FakeServer server(dispatcher_);
  auto strict = httpConfig();  // 200 only
  auto lenient = httpConfig();
  lenient.expected_statuses = {{200, 600}};  // any status passes
  lenient.healthy_threshold = 1;
  strict.healthy_threshold = 2;
  auto checkers = makeSharing({strict, lenient}, server.port);
  HealthChecker& a = *checkers[0];
  EXPECT_TRUE(failed());
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 2; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(changes_, 1) << "the host changed once, when the second checker passed it";

  // The strict check fails it; the lenient one's passes do not bring it back.
  server.response = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 4; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(changes_, 2);
  EXPECT_EQ(a.stats().healthy.value(), 0u);
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 6; }));
  EXPECT_TRUE(failed());
  EXPECT_EQ(changes_, 2);

  // Back to 200: the strict check wants two passes (healthy_threshold), then the host is back.
  server.response = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 8; }));
  EXPECT_TRUE(failed());
  advance(milliseconds(5000));
  ASSERT_TRUE(runUntil([&] { return results_ == 10; }));
  EXPECT_FALSE(failed());
  EXPECT_EQ(changes_, 3);
  EXPECT_EQ(store_.counter("cluster.c.health_check.attempt").value(), 10u);
}

// A host that leaves takes the checkers' votes with it: back again, it starts over (failed
// until every checker passes it).
TEST_F(HealthCheckerTest, AHostThatLeavesDropsItsVerdicts) {
  FakeServer server(dispatcher_);
  auto checkers = makeSharing({httpConfig(), httpConfig()}, server.port);
  checkers[0]->setHosts(PrioritySet{});  // gone from a before a's first check
  EXPECT_TRUE(failed());      // b still fails it
  advance(milliseconds(0));
  ASSERT_TRUE(runUntil([&] { return results_ == 1; }));
  EXPECT_FALSE(failed());     // b passed it; a's vote left with the host
  EXPECT_EQ(changes_, 1);
}

}  // namespace
}  // namespace sluice::upstream
