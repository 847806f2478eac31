#include "upstream/health_checker.h"

#include <random>

#include "buffer/buffer.h"
#include "common/logger.h"
#include "http/codec.h"
#include "http/header_map.h"
#include "http/http1/codec_impl.h"
#include "http/http2/codec_impl.h"
#include "network/connection_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::upstream {

HealthCheckerStats HealthCheckerStats::create(stats::Store& store,
                                              const std::string& cluster_name) {
  const std::string p = "cluster." + cluster_name + ".health_check.";
#define SLUICE_MAKE_COUNTER(name) store.counter(p + #name),
#define SLUICE_MAKE_GAUGE(name) store.gauge(p + #name),
  return HealthCheckerStats{ALL_HEALTH_CHECKER_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE)};
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

namespace {

HealthCheckConfig withDefaults(HealthCheckConfig c) {
  if (c.unhealthy_interval.count() == 0) c.unhealthy_interval = c.interval;
  if (c.unhealthy_edge_interval.count() == 0) c.unhealthy_edge_interval = c.unhealthy_interval;
  if (c.healthy_edge_interval.count() == 0) c.healthy_edge_interval = c.interval;
  if (c.expected_statuses.empty()) c.expected_statuses.push_back({200, 201});
  if (c.unhealthy_threshold == 0) c.unhealthy_threshold = 1;
  if (c.healthy_threshold == 0) c.healthy_threshold = 1;
  return c;
}

// grpc.health.v1: the request is HealthCheckRequest{service = 1 (string)} in one gRPC
// message (a 5-byte prefix: not compressed, big-endian length). Hand-encoded: two fields
// do not need generated code.
std::string grpcHealthRequest(const std::string& service) {
  std::string msg;
  if (!service.empty()) {
    msg.push_back(0x0a);  // field 1, length-delimited
    size_t n = service.size();
    do {
      msg.push_back(static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
      n >>= 7;
    } while (n != 0);
    msg += service;
  }
  std::string frame(5, '\0');
  const uint32_t len = static_cast<uint32_t>(msg.size());
  frame[1] = static_cast<char>(len >> 24);
  frame[2] = static_cast<char>(len >> 16);
  frame[3] = static_cast<char>(len >> 8);
  frame[4] = static_cast<char>(len);
  return frame + msg;
}

// The ServingStatus of a HealthCheckResponse{status = 1 (enum)} in one uncompressed gRPC
// message; -1 when `body` is not exactly that. Unknown fields are skipped.
int grpcHealthStatus(std::string_view body) {
  if (body.size() < 5 || body[0] != 0) return -1;
  const uint32_t len = (uint32_t(uint8_t(body[1])) << 24) | (uint32_t(uint8_t(body[2])) << 16) |
                       (uint32_t(uint8_t(body[3])) << 8) | uint32_t(uint8_t(body[4]));
  if (body.size() != 5 + size_t{len}) return -1;
  std::string_view m = body.substr(5);
  auto varint = [&m](uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && !m.empty(); shift += 7) {
      const uint8_t b = static_cast<uint8_t>(m.front());
      m.remove_prefix(1);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  int status = 0;  // proto3: absent is UNKNOWN (0)
  while (!m.empty()) {
    uint64_t key = 0, v = 0;
    if (!varint(key)) return -1;
    switch (key & 7) {
      case 0:
        if (!varint(v)) return -1;
        if (key >> 3 == 1) status = static_cast<int>(v);
        break;
      case 1: if (m.size() < 8) return -1; m.remove_prefix(8); break;
      case 5: if (m.size() < 4) return -1; m.remove_prefix(4); break;
      case 2:
        if (!varint(v) || v > m.size()) return -1;
        m.remove_prefix(v);
        break;
      default: return -1;
    }
  }
  return status;
}

// What a check's connection owns; destroyed after the callback that let it go.
struct Client : public event::DeferredDeletable {
  network::ClientConnectionPtr connection;
  http::ClientCodecPtr codec;  // HTTP only; destroyed before the connection
};

}  // namespace

// One host's checks: a timer between them, a connection kept across them when
// reuse_connection allows it.
class HealthChecker::Session : public network::ConnectionCallbacks,
                               public network::ReadFilter,
                               public http::ConnectionCallbacks,
                               public http::ResponseDecoder {
  HealthChecker& parent_;  // first: the members below are initialized from it

 public:
  Session(HealthChecker& parent, HostSharedPtr h) : parent_(parent), host(std::move(h)) {
    interval_timer_ = parent_.main_.createTimer([this] { start(); });
    timeout_timer_ = parent_.main_.createTimer([this] { onTimeout(); });
    interval_timer_->enableTimer(std::chrono::milliseconds(0));  // the first check at once
  }
  ~Session() override { closeClient(); }

  const HostSharedPtr host;
  bool failed{true};  // this checker's verdict (a new host starts failed, as in Envoy)
  bool first_check{true};
  uint32_t num_healthy{0};
  uint32_t num_unhealthy{0};

  // network::ReadFilter
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks&) override {}
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    if (!in_progress_) {
      data.drain(data.length());  // bytes between checks: nothing to match them against
      return network::FilterStatus::StopIteration;
    }
    if (client_ && client_->codec) {
      const http::CodecStatus status = client_->codec->dispatch(data);
      if (!status.ok()) {
        data.drain(data.length());
        finish(false, true);
      }
      return network::FilterStatus::StopIteration;
    }
    tcp_received_.append(data.toString());
    data.drain(data.length());
    if (tcpMatched()) {
      finish(true, false);
    } else if (end_stream) {
      finish(false, false);
    }
    return network::FilterStatus::StopIteration;
  }

  // network::ConnectionCallbacks
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) {
      if (in_progress_) sendRequest();
      return;
    }
    // The peer (or the kernel) closed it: the connection is gone; a close-delimited response
    // may end with it.
    if (client_ && client_->codec) client_->codec->onConnectionClosed();
    if (client_) parent_.main_.deferredDelete(std::move(client_));
    if (in_progress_) finish(false, true);
  }

  // http::ConnectionCallbacks
  void onGoAway() override { keep_alive_ = false; }

  // http::ResponseDecoder
  void decode1xxHeaders(http::HeaderMapPtr&&) override {}
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override {
    const uint32_t code = headers->status();
    if (parent_.config_.type == HealthCheckConfig::Type::Grpc) {
      grpc_body_.clear();
      grpc_http_ok_ = code == 200;
      // A trailers-only response carries the status in these headers.
      if (end_stream) grpcDone(headers->getValue("grpc-status"));
      return;
    }
    http_passed_ = false;
    for (const auto& [start, end] : parent_.config_.expected_statuses) {
      http_passed_ |= code >= start && code < end;
    }
    if (headers->getValue(http::headers::kConnection) == "close") keep_alive_ = false;
    if (!http_passed_ && (parent_.config_.always_log_health_check_failures || !failedNow())) {
      SLUICE_LOG(info, upstream, "health check of {} (cluster '{}'): status {}",
                 host->address()->asString(), host->clusterName(), code);
    }
    if (end_stream) finish(http_passed_, false);
  }
  void decodeData(buffer::Buffer& data, bool end_stream) override {
    if (parent_.config_.type == HealthCheckConfig::Type::Grpc) {
      // One small message is expected: keep a bounded amount.
      if (grpc_body_.size() < 4096) grpc_body_.append(data.toString());
      data.drain(data.length());
      if (end_stream) grpcDone("");  // no trailers: no grpc-status
      return;
    }
    data.drain(data.length());
    if (end_stream) finish(http_passed_, false);
  }
  void decodeTrailers(http::HeaderMapPtr&& trailers) override {
    if (parent_.config_.type == HealthCheckConfig::Type::Grpc) {
      grpcDone(trailers->getValue("grpc-status"));
      return;
    }
    finish(http_passed_, false);
  }

 private:
  bool failedNow() const { return failed; }

  // Envoy's rule: a pass is HTTP 200, grpc-status 0 and a response saying SERVING (1).
  void grpcDone(std::string_view grpc_status) {
    const int serving = grpcHealthStatus(grpc_body_);
    const bool passed = grpc_http_ok_ && grpc_status == "0" && serving == 1;
    if (!passed && (parent_.config_.always_log_health_check_failures || !failedNow())) {
      SLUICE_LOG(info, upstream,
                 "gRPC health check of {} (cluster '{}'): http ok {}, grpc-status '{}', "
                 "serving status {}",
                 host->address()->asString(), host->clusterName(), grpc_http_ok_, grpc_status,
                 serving);
    }
    grpc_body_.clear();
    finish(passed, false);
  }

  void start() {
    const auto& cfg = parent_.config_;
    parent_.stats_.attempt.inc();
    in_progress_ = true;
    tcp_received_.clear();
    timeout_timer_->enableTimer(cfg.timeout);
    if (client_) {
      sendRequest();
      return;
    }
    std::string error;
    auto c = std::make_unique<Client>();
    // A gRPC check over TLS offers ALPN "h2", as the cluster's HTTP/2 pool does.
    network::TransportSocketOptions h2_options;
    h2_options.alpn = {"h2"};
    const bool h2_alpn = cfg.type == HealthCheckConfig::Type::Grpc &&
                         parent_.cluster_->transport_socket_factory != nullptr;
    c->connection = network::createClientConnection(
        parent_.main_, host->address(),
        parent_.cluster_->createTransportSocket(h2_alpn ? &h2_options : nullptr), &error);
    if (!c->connection) {
      SLUICE_LOG(debug, upstream, "health check of {}: {}", host->address()->asString(), error);
      finish(false, true);
      return;
    }
    keep_alive_ = true;
    c->connection->addConnectionCallbacks(*this);
    c->connection->addReadFilter(std::shared_ptr<network::ReadFilter>(this, [](auto*) {}));
    if (cfg.type == HealthCheckConfig::Type::Http) {
      c->codec =
          http::http1::createClientCodec(*c->connection, *this, parent_.cluster_->http1_settings);
    } else if (cfg.type == HealthCheckConfig::Type::Grpc) {
      c->codec = http::http2::createClientCodec(
          *c->connection, *this,
          parent_.cluster_->http2_settings.value_or(http::http2::CodecSettings{}));
    }
    client_ = std::move(c);
    client_->connection->connect(cfg.timeout);
  }

  void sendRequest() {
    const auto& cfg = parent_.config_;
    if (cfg.type == HealthCheckConfig::Type::Tcp) {
      if (!cfg.send.empty()) {
        buffer::Buffer b;
        b.add(cfg.send);
        client_->connection->write(b, false);
      }
      if (cfg.receive.empty()) finish(true, false);  // connecting is the check
      return;
    }
    if (cfg.type == HealthCheckConfig::Type::Grpc) {
      http::HeaderMap headers;
      headers.set(http::headers::kMethod, "POST");
      headers.set(http::headers::kScheme, "http");
      headers.set(http::headers::kPath, "/grpc.health.v1.Health/Check");
      headers.set(http::headers::kAuthority,
                  cfg.authority.empty() ? parent_.cluster_->name() : cfg.authority);
      headers.set(http::headers::kContentType, "application/grpc");
      headers.set("te", "trailers");
      headers.set(http::headers::kUserAgent, "Envoy/HC");
      if (cfg.grpc_initial_metadata) {
        cfg.grpc_initial_metadata(headers, http::StreamInfo(parent_.main_.timeSource()));
      }
      grpc_http_ok_ = false;
      grpc_body_.clear();
      http::RequestEncoder& encoder = client_->codec->newStream(*this);
      encoder.encodeHeaders(headers, false);
      buffer::Buffer body;
      body.add(grpcHealthRequest(cfg.service_name));
      encoder.encodeData(body, true);
      return;
    }
    http::HeaderMap headers;
    headers.set(http::headers::kMethod, "GET");
    headers.set(http::headers::kPath, cfg.path);
    headers.set(http::headers::kAuthority, cfg.host.empty() ? parent_.cluster_->name() : cfg.host);
    headers.set(http::headers::kUserAgent, "Envoy/HC");
    for (const auto& [k, v] : cfg.request_headers_to_add) headers.add(k, v);
    http_passed_ = false;
    client_->codec->newStream(*this).encodeHeaders(headers, true);
  }

  // Each receive block, in order, somewhere in what came back (Envoy's fuzzy match).
  bool tcpMatched() const {
    size_t pos = 0;
    for (const auto& block : parent_.config_.receive) {
      pos = tcp_received_.find(block, pos);
      if (pos == std::string::npos) return false;
      pos += block.size();
    }
    return true;
  }

  void onTimeout() {
    if (!in_progress_) return;
    SLUICE_LOG(debug, upstream, "health check of {}: timeout", host->address()->asString());
    closeClient();  // a connection mid-check cannot carry the next one
    finish(false, true);
  }

  void closeClient() {
    if (!client_) return;
    client_->connection->removeConnectionCallbacks(*this);
    client_->connection->close(network::ConnectionCloseType::NoFlush);
    parent_.main_.deferredDelete(std::move(client_));
  }

  // Ends the check in progress: `network`: a failure to connect, a timeout or a close.
  void finish(bool passed, bool network) {
    if (!in_progress_) return;
    in_progress_ = false;
    timeout_timer_->disableTimer();
    // A connect-only TCP check (nothing to receive) closes after each pass, as Envoy's
    // does: connecting is the check, so every check must connect again.
    const bool connect_only =
        parent_.config_.type == HealthCheckConfig::Type::Tcp && parent_.config_.receive.empty();
    if (!parent_.config_.reuse_connection || !keep_alive_ || !passed || connect_only) {
      closeClient();
    }
    bool changed = false;
    const auto next = parent_.onCheckDone(*this, passed, network, changed);
    // The session may be gone now only if the host left, which happens in setHosts, never
    // inside a callback; so this is still alive.
    interval_timer_->enableTimer(next);
  }

  std::unique_ptr<Client> client_;
  event::TimerPtr interval_timer_;
  event::TimerPtr timeout_timer_;
  std::string tcp_received_;
  bool in_progress_{false};
  bool keep_alive_{true};
  bool http_passed_{false};
  bool grpc_http_ok_{false};
  std::string grpc_body_;
};

HealthChecker::HealthChecker(HealthCheckConfig config, ClusterInfoConstSharedPtr cluster,
                             event::Dispatcher& main, ResultCb on_result, RandomFn random,
                             std::shared_ptr<HealthVerdicts> verdicts)
    : config_(withDefaults(std::move(config))),
      cluster_(std::move(cluster)),
      main_(main),
      stats_(HealthCheckerStats::create(cluster_->store(), cluster_->name())),
      on_result_(std::move(on_result)),
      random_(std::move(random)),
      verdicts_(verdicts ? std::move(verdicts) : std::make_shared<HealthVerdicts>()) {
  if (!random_) {
    random_ = [gen = std::make_shared<std::mt19937_64>(std::random_device{}())] {
      return (*gen)();
    };
  }
}

HealthChecker::~HealthChecker() = default;

bool HealthVerdicts::update(Host& host, bool was_failed, bool failed) {
  if (was_failed == failed) return false;
  if (failed) {
    if (failing_[&host]++ > 0) return false;
    const bool changed = !(host.healthFlags() & Host::FailedActiveHealthCheck);
    host.setHealthFlag(Host::FailedActiveHealthCheck);
    return changed;
  }
  auto it = failing_.find(&host);
  if (it == failing_.end() || --it->second > 0) return false;
  failing_.erase(it);
  const bool changed = host.healthFlags() & Host::FailedActiveHealthCheck;
  host.clearHealthFlag(Host::FailedActiveHealthCheck);
  return changed;
}

void HealthChecker::setHosts(const PrioritySet& set) {
  std::unordered_map<const Host*, std::unique_ptr<Session>> next;
  for (const auto& p : set.priorities) {
    for (const auto& h : p.hosts) {
      auto it = sessions_.find(h.get());
      if (it != sessions_.end()) {
        next.emplace(h.get(), std::move(it->second));
        sessions_.erase(it);
        continue;
      }
      // Envoy: a host under active health checking starts failed until its first check passes.
      verdicts_->update(*h, false, true);
      ++first_round_pending_;
      next.emplace(h.get(), std::make_unique<Session>(*this, h));
    }
  }
  for (auto& [_, s] : sessions_) {
    if (s->first_check) --first_round_pending_;
    verdicts_->update(*s->host, s->failed, false);  // the host left: this checker's vote goes
  }
  sessions_ = std::move(next);
  updateHealthyGauge();
  if (first_round_pending_ == 0 && on_first_round_) std::exchange(on_first_round_, nullptr)();
}

void HealthChecker::onFirstRound(std::function<void()> cb) {
  if (first_round_pending_ == 0) {
    cb();
    return;
  }
  on_first_round_ = std::move(cb);
}

void HealthChecker::updateHealthyGauge() {
  uint64_t healthy = 0;
  for (const auto& [h, _] : sessions_) {
    if (!(h->healthFlags() & Host::FailedActiveHealthCheck)) ++healthy;
  }
  stats_.healthy.set(healthy);
}

std::chrono::milliseconds HealthChecker::onCheckDone(Session& s, bool passed, bool network,
                                                     bool& changed) {
  Host& h = *s.host;
  const bool failed = s.failed;  // this checker's verdict; the host's flag combines them all
  bool verdict_changed = false;
  if (passed) {
    stats_.success.inc();
    s.num_unhealthy = 0;
    // The first check of a new host decides at once; after that it takes healthy_threshold.
    if (failed && (s.first_check || ++s.num_healthy >= config_.healthy_threshold)) {
      s.failed = false;
      verdict_changed = true;
      s.num_healthy = 0;
    }
  } else {
    stats_.failure.inc();
    if (network) stats_.network_failure.inc();
    s.num_healthy = 0;
    // A wrong answer fails a host at once; a network failure takes unhealthy_threshold.
    if (!failed && (!network || ++s.num_unhealthy >= config_.unhealthy_threshold)) {
      s.failed = true;
      verdict_changed = true;
      s.num_unhealthy = 0;
    }
    if (verdict_changed || config_.always_log_health_check_failures) {
      SLUICE_LOG(info, upstream, "health check of {} (cluster '{}') failed{}",
                 h.address()->asString(), h.clusterName(), verdict_changed ? ": now unhealthy" : "");
    }
  }
  changed = verdicts_->update(h, failed, s.failed);
  if (changed) updateHealthyGauge();
  const bool first = std::exchange(s.first_check, false);
  // As Envoy: the check's result picks the interval; a result that goes against the
  // checker's verdict without changing it yet (a threshold not reached) takes the edge
  // interval.
  const bool pending = !verdict_changed && passed == failed;
  const auto next = nextInterval(!passed, pending);
  if (on_result_) on_result_(s.host, passed, changed);
  if (first && --first_round_pending_ == 0 && on_first_round_) {
    std::exchange(on_first_round_, nullptr)();
  }
  return next;
}

std::chrono::milliseconds HealthChecker::nextInterval(bool failed_check, bool pending) {
  uint64_t base;
  if (cluster_->stats().upstream_cx_total.value() == 0) {
    base = config_.no_traffic_interval.count();  // no traffic yet: check rarely
  } else if (failed_check) {
    base = (pending ? config_.unhealthy_edge_interval : config_.unhealthy_interval).count();
  } else {
    base = (pending ? config_.healthy_edge_interval : config_.interval).count();
  }
  uint64_t jitter = 0;
  const uint64_t pct_span = config_.interval_jitter_percent * base / 100;
  if (pct_span > 0) jitter += random_() % pct_span;
  if (config_.interval_jitter.count() > 0) jitter += random_() % config_.interval_jitter.count();
  return std::chrono::milliseconds(base + jitter);
}

}  // namespace sluice::upstream
