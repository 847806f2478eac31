#include "filters/network/tcp_proxy.h"

#include <random>
#include <unordered_set>

#include "buffer/buffer.h"
#include "common/logger.h"
#include "network/connection_impl.h"
#include "stats/stats.h"

namespace sluice::filters::tcp {

TcpProxyStats TcpProxyStats::create(stats::Store& store, const std::string& stat_prefix) {
  const std::string p = "tcp." + stat_prefix + ".";
#define SLUICE_MAKE_COUNTER(name) store.counter(p + #name),
#define SLUICE_MAKE_GAUGE(name) store.gauge(p + #name),
  TcpProxyStats s{ALL_TCP_PROXY_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE){}};
  s.downstream_cx_bytes = {&s.downstream_cx_rx_bytes_total, &s.downstream_cx_tx_bytes_total,
                           &s.downstream_cx_rx_bytes_buffered, &s.downstream_cx_tx_bytes_buffered};
  return s;
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

const std::string& TcpProxyConfig::pickCluster(uint64_t random) const {
  if (clusters.size() == 1) return clusters[0].name;
  uint64_t point = random % total_weight;
  for (const auto& c : clusters) {
    if (point < c.weight) return c.name;
    point -= c.weight;
  }
  return clusters.back().name;
}

namespace {

class TcpProxyFilter;

// The upstream connection of one downstream connection. It normally goes with its filter;
// when the downstream closes while bytes for the upstream are still buffered, it stays
// (on this thread's flushing list) until they are written or the stall guard fires.
struct Upstream : public network::ReadFilter,
                  public network::ConnectionCallbacks,
                  public event::DeferredDeletable {
  Upstream(TcpProxyFilter* p, event::Dispatcher& dispatcher,
           upstream::ClusterInfoConstSharedPtr c, upstream::HostSharedPtr h)
      : parent(p), cluster(std::move(c)), host(std::move(h)) {
    std::string error;
    connection = network::createClientConnection(dispatcher, host->address(),
                                                 cluster->createTransportSocket(), &error);
    auto& stats = cluster->stats();
    stats.upstream_cx_total.inc();
    stats.upstream_cx_active.inc();
    cluster->resourceManager().connections().inc();
    host->stats().cx_total++;
    host->stats().cx_active++;
    created = dispatcher.timeSource().monotonicTime();
    if (!connection) {
      failure = error;
      return;
    }
    connection->setBufferLimits(cluster->per_connection_buffer_limit_bytes);
    connection->enableHalfClose(true);
    connection->addConnectionCallbacks(*this);
    connection->addReadFilter(std::shared_ptr<network::ReadFilter>(this, [](auto*) {}));
    connection->setConnectionStats(&stats.upstream_cx_bytes);
    connection->connect(cluster->connect_timeout);
  }

  // network::ReadFilter
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks&) override {}
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override;

  // network::ConnectionCallbacks
  void onEvent(network::ConnectionEvent event) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;

  // The connection's end, in the cluster's stats (once).
  void account(event::Dispatcher& dispatcher) {
    if (accounted) return;
    accounted = true;
    auto& stats = cluster->stats();
    stats.upstream_cx_destroy.inc();
    stats.upstream_cx_active.dec();
    stats.upstream_cx_length_ms.recordValue(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                dispatcher.timeSource().monotonicTime() - created)
                                                .count());
    cluster->resourceManager().connections().dec();
    host->stats().cx_active--;
    if (!connected) {
      stats.upstream_cx_connect_fail.inc();
      host->stats().cx_connect_fail++;
      if (connection && connection->transportFailureReason() == "connect timeout") {
        stats.upstream_cx_connect_timeout.inc();
      }
    }
  }

  TcpProxyFilter* parent;  // null while flushing on its own
  upstream::ClusterInfoConstSharedPtr cluster;
  upstream::HostSharedPtr host;
  network::ClientConnectionPtr connection;
  std::string failure;  // no socket could be made
  event::MonotonicTime created;
  bool connected{false};
  bool accounted{false};
  bool write_ended{false};
  bool read_disabled{false};  // by the downstream's back-pressure
  // While flushing on its own: its config (and so its stats) lives as long as it does, even
  // past a listener update that dropped the config.
  TcpProxyConfigConstSharedPtr flush_config;
};

// Upstreams flushing after their downstream went; closed when the worker stops.
thread_local std::unordered_set<Upstream*> flushing;

void endFlush(Upstream& up) {
  if (!flushing.erase(&up)) return;
  up.flush_config->stats.upstream_flush_active.dec();
  event::Dispatcher& d = up.connection->dispatcher();
  d.deferredDelete(std::move(up.connection));
  d.deferredDelete(event::DeferredDeletablePtr(&up));
}

class TcpProxyFilter : public network::ReadFilter, public network::ConnectionCallbacks {
 public:
  explicit TcpProxyFilter(TcpProxyConfigConstSharedPtr config) : config_(std::move(config)) {}
  ~TcpProxyFilter() override {
    // The downstream went without a close event reaching us (shutdown): end the upstream.
    if (upstream_) closeUpstream(network::ConnectionCloseType::NoFlush);
  }

  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& callbacks) override {
    downstream_ = &callbacks.connection();
  }

  network::FilterStatus onNewConnection() override {
    auto& stats = config_->stats;
    stats.downstream_cx_total.inc();
    dispatcher_ = &downstream_->dispatcher();
    info_.emplace(dispatcher_->timeSource());
    info_->downstream_local_address = downstream_->localAddress();
    info_->downstream_remote_address = downstream_->remoteAddress();
    info_->downstream_direct_remote_address = downstream_->remoteAddress();
    info_->connection_id = downstream_->id();
    info_->downstream_ssl = downstream_->ssl();
    downstream_->addConnectionCallbacks(*this);
    downstream_->enableHalfClose(true);
    downstream_->setConnectionStats(&stats.downstream_cx_bytes);
    if (config_->idle_timeout.count() > 0) {
      idle_timer_ = dispatcher_->createTimer([this] {
        config_->stats.idle_timeout.inc();
        SLUICE_LOG(debug, connection, "[C{}] tcp proxy idle timeout", downstream_->id());
        downstream_->close(network::ConnectionCloseType::NoFlush);
      });
      idle_timer_->enableTimer(config_->idle_timeout);
    }
    // Nothing is read from downstream until the upstream is connected.
    downstream_->readDisable(true);
    downstream_read_disabled_ = true;

    thread_local std::mt19937_64 rng{std::random_device{}()};
    const std::string& name = config_->pickCluster(rng());
    info_->upstream_cluster = name;
    auto* tlcm = upstream::ThreadLocalClusterManager::current();
    cluster_ = tlcm ? tlcm->get(name) : nullptr;
    if (!cluster_) {
      stats.downstream_cx_no_route.inc();
      info_->setResponseFlag(http::NoClusterFound);
      downstream_->close(network::ConnectionCloseType::NoFlush);
      return network::FilterStatus::StopIteration;
    }
    connect();
    return network::FilterStatus::StopIteration;
  }

  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    if (idle_timer_) idle_timer_->enableTimer(config_->idle_timeout);
    if (!upstream_ || !upstream_->connected || upstream_->write_ended) {
      data.drain(data.length());
      return network::FilterStatus::StopIteration;
    }
    upstream_->write_ended = end_stream;
    upstream_->connection->write(data, end_stream);
    return network::FilterStatus::StopIteration;
  }

  // The downstream's events.
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) return;
    if (idle_timer_) idle_timer_->disableTimer();
    if (upstream_) {
      // The peer's close passes on what it sent; our own close (timeout, error) does not.
      closeUpstream(event == network::ConnectionEvent::RemoteClose
                        ? network::ConnectionCloseType::FlushWrite
                        : network::ConnectionCloseType::NoFlush);
    }
    log();
  }
  // Downstream back-pressure pauses the upstream's reads.
  void onAboveWriteBufferHighWatermark() override {
    if (upstream_ && upstream_->connected && !upstream_->read_disabled) {
      upstream_->read_disabled = true;
      upstream_->connection->readDisable(true);
    }
  }
  void onBelowWriteBufferLowWatermark() override {
    if (upstream_ && upstream_->read_disabled) {
      upstream_->read_disabled = false;
      upstream_->connection->readDisable(false);
    }
  }

  // From the upstream.
  void onUpstreamData(buffer::Buffer& data, bool end_stream) {
    if (idle_timer_) idle_timer_->enableTimer(config_->idle_timeout);
    if (downstream_write_ended_ || downstream_->state() != network::Connection::State::Open) {
      data.drain(data.length());
      return;
    }
    downstream_write_ended_ = end_stream;
    downstream_->write(data, end_stream);
  }

  void onUpstreamConnected() {
    info_->upstream_local_address = upstream_->connection->localAddress();
    SLUICE_LOG(debug, connection, "[C{}] tcp proxy connected to {}", downstream_->id(),
               upstream_->host->address()->asString());
    if (downstream_read_disabled_) {
      downstream_read_disabled_ = false;
      downstream_->readDisable(false);
    }
  }

  void onUpstreamClosed(network::ConnectionEvent event) {
    Upstream& up = *upstream_;
    const bool was_connected = up.connected;
    if (!was_connected) info_->upstream_transport_failure_reason = up.connection
                                                                       ? std::string(up.connection->transportFailureReason())
                                                                       : up.failure;
    releaseUpstream();
    if (!was_connected) {
      if (attempts_ < config_->max_connect_attempts) {
        connect();
        return;
      }
      if (config_->max_connect_attempts > 1) {
        cluster_->info().stats().upstream_cx_connect_attempts_exceeded.inc();
      }
      info_->setResponseFlag(http::UpstreamConnectionFailure);
      downstream_->close(network::ConnectionCloseType::NoFlush);
      return;
    }
    downstream_->close(event == network::ConnectionEvent::RemoteClose
                           ? network::ConnectionCloseType::FlushWrite
                           : network::ConnectionCloseType::NoFlush);
  }

  // The upstream's back-pressure pauses the downstream's reads.
  void onUpstreamAboveHighWatermark() {
    if (downstream_read_paused_) return;
    downstream_read_paused_ = true;
    config_->stats.downstream_flow_control_paused_reading_total.inc();
    downstream_->readDisable(true);
  }
  void onUpstreamBelowLowWatermark() {
    if (!downstream_read_paused_) return;
    downstream_read_paused_ = false;
    config_->stats.downstream_flow_control_resumed_reading_total.inc();
    downstream_->readDisable(false);
  }

 private:
  void connect() {
    ++attempts_;
    const upstream::ClusterInfo& info = cluster_->info();
    if (!info.resourceManager().connections().canCreate()) {
      info.stats().upstream_cx_overflow.inc();
      info_->setResponseFlag(http::UpstreamOverflow);
      downstream_->close(network::ConnectionCloseType::NoFlush);
      return;
    }
    upstream::HostSharedPtr host = cluster_->chooseHost(nullptr);
    if (!host) {
      info.stats().upstream_cx_none_healthy.inc();
      info_->setResponseFlag(http::NoHealthyUpstream);
      downstream_->close(network::ConnectionCloseType::NoFlush);
      return;
    }
    info_->upstream_host = host->address();
    upstream_ = std::make_unique<Upstream>(this, *dispatcher_, cluster_->infoPtr(), host);
    if (!upstream_->connection) onUpstreamClosed(network::ConnectionEvent::RemoteClose);
  }

  // Takes the upstream out (its close event has run): destroyed after this callback.
  void releaseUpstream() {
    std::unique_ptr<Upstream> up = std::move(upstream_);
    up->account(*dispatcher_);
    up->parent = nullptr;
    if (up->connection) dispatcher_->deferredDelete(std::move(up->connection));
    dispatcher_->deferredDelete(std::move(up));
  }

  void closeUpstream(network::ConnectionCloseType type) {
    Upstream& up = *upstream_;
    up.parent = nullptr;
    if (type == network::ConnectionCloseType::FlushWrite && up.connected &&
        up.connection->state() == network::Connection::State::Open &&
        up.connection->bufferedWriteBytes() > 0) {
      // What the client sent still goes out; the idle timeout guards a stalled upstream.
      config_->stats.upstream_flush_total.inc();
      config_->stats.upstream_flush_active.inc();
      up.flush_config = config_;
      if (up.read_disabled) {
        up.read_disabled = false;
        up.connection->readDisable(false);
      }
      up.connection->setDelayedCloseTimeout(config_->idle_timeout);
      flushing.insert(upstream_.release());
      up.connection->close(network::ConnectionCloseType::FlushWrite);
      return;
    }
    if (up.connection) up.connection->close(network::ConnectionCloseType::NoFlush);
    if (upstream_) {
      // NoFlush raised the close event (which released it) unless it was already closed.
      releaseUpstream();
    }
  }

  void log() {
    if (logged_ || !info_) return;
    logged_ = true;
    if (config_->access_logs.empty()) return;
    info_->bytes_received = downstream_->bytesReceived();
    info_->bytes_sent = downstream_->bytesSent();
    info_->request_complete = dispatcher_->timeSource().monotonicTime() - info_->start_monotonic;
    for (const auto& l : config_->access_logs) l->log(nullptr, nullptr, nullptr, *info_);
  }

  TcpProxyConfigConstSharedPtr config_;
  network::Connection* downstream_{nullptr};
  event::Dispatcher* dispatcher_{nullptr};
  upstream::ThreadLocalClusterSharedPtr cluster_;
  std::unique_ptr<Upstream> upstream_;
  std::optional<http::StreamInfo> info_;
  event::TimerPtr idle_timer_;
  uint32_t attempts_{0};
  bool downstream_read_disabled_{false};  // until the upstream connects
  bool downstream_read_paused_{false};    // by the upstream's back-pressure
  bool downstream_write_ended_{false};
  bool logged_{false};
};

network::FilterStatus Upstream::onData(buffer::Buffer& data, bool end_stream) {
  if (parent) {
    parent->onUpstreamData(data, end_stream);
  } else {
    data.drain(data.length());  // flushing: the downstream is gone
  }
  return network::FilterStatus::StopIteration;
}

void Upstream::onEvent(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::Connected) {
    connected = true;
    if (parent) parent->onUpstreamConnected();
    return;
  }
  if (parent) {
    parent->onUpstreamClosed(event);  // accounts and releases this
    return;
  }
  account(connection->dispatcher());
  endFlush(*this);
}

void Upstream::onAboveWriteBufferHighWatermark() {
  if (parent) parent->onUpstreamAboveHighWatermark();
}
void Upstream::onBelowWriteBufferLowWatermark() {
  if (parent) parent->onUpstreamBelowLowWatermark();
}

}  // namespace

network::ReadFilterSharedPtr createTcpProxyFilter(TcpProxyConfigConstSharedPtr config) {
  return std::make_shared<TcpProxyFilter>(std::move(config));
}

void closeFlushingUpstreams() {
  while (!flushing.empty()) {
    Upstream* up = *flushing.begin();
    up->connection->close(network::ConnectionCloseType::NoFlush);  // ends the flush
    if (flushing.count(up)) endFlush(*up);
  }
}

}  // namespace sluice::filters::tcp
