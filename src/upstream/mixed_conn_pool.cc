#include "upstream/mixed_conn_pool.h"

#include "common/logger.h"
#include "network/connection_impl.h"
#include "stats/stats.h"

namespace sluice::upstream {

// A request that came while the protocol was unknown. It stands between the request and the
// pool it is given to, so that the request's handle stays valid: cancel() reaches that
// pool's own handle, and the pool's answer passes through (and frees this).
struct MixedConnPool::Pending : public Cancellable, public ConnPoolCallbacks {
  Pending(MixedConnPool& p, http::ResponseDecoder& d, ConnPoolCallbacks& c, bool n)
      : pool(p), decoder(d), callbacks(c), new_connection(n) {}

  void cancel() override {
    if (inner != nullptr) {
      inner->cancel();  // the inner pool counts it
    } else if (!forwarded) {
      pool.cluster_->stats().upstream_rq_cancelled.inc();
      unqueue();
    }
    erase();
  }
  void onPoolReady(http::RequestEncoder& encoder, const HostSharedPtr& host, bool reused,
                   const network::AddressConstSharedPtr& local_address) override {
    ConnPoolCallbacks& cb = callbacks;
    erase();
    cb.onPoolReady(encoder, host, reused, local_address);
  }
  void onPoolFailure(PoolFailureReason reason, std::string_view transport_failure_reason,
                     const HostSharedPtr& host) override {
    ConnPoolCallbacks& cb = callbacks;
    erase();
    cb.onPoolFailure(reason, transport_failure_reason, host);
  }

  // Leaves the wait for the protocol (the pending gauges it held).
  void unqueue() {
    pool.cluster_->stats().upstream_rq_pending_active.dec();
    pool.resources_.pendingRequests().dec();
  }
  void erase() {
    for (auto it = pool.pending_.begin(); it != pool.pending_.end(); ++it) {
      if (it->get() == this) {
        pool.pending_.erase(it);  // destroys this
        return;
      }
    }
  }

  MixedConnPool& pool;
  http::ResponseDecoder& decoder;
  ConnPoolCallbacks& callbacks;
  const bool new_connection;
  bool forwarded{false};          // given to the pool of the protocol
  Cancellable* inner{nullptr};    // that pool's handle while it still waits there
};

// The connection that finds out the host's protocol; it becomes one of that pool's own.
struct MixedConnPool::Probe : public network::ConnectionCallbacks {
  explicit Probe(MixedConnPool& p) : pool(p) {
    network::TransportSocketOptions options;
    options.alpn = {"h2", "http/1.1"};
    connection = network::createClientConnection(
        pool.dispatcher_, pool.host_->address(), pool.cluster_->createTransportSocket(&options),
        &failure);
    if (!connection) return;
    const auto& stats = pool.cluster_->stats();
    connection->setBufferLimits(pool.cluster_->per_connection_buffer_limit_bytes);
    connection->detectEarlyCloseWhenReadDisabled(false);
    connection->addConnectionCallbacks(*this);
    connection->setConnectionStats(&stats.upstream_cx_bytes);
    connection->connect(pool.cluster_->connect_timeout);
  }

  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) {
      pool.onProbeConnected();
      return;
    }
    pool.onProbeFailed(connection->transportFailureReason(),
                       connection->transportFailureReason() == "connect timeout");
  }

  MixedConnPool& pool;
  network::ClientConnectionPtr connection;
  std::string failure;
};

namespace {
struct DeferredProbe : public event::DeferredDeletable {
  explicit DeferredProbe(std::unique_ptr<network::ConnectionCallbacks> p,
                         network::ClientConnectionPtr c)
      : probe(std::move(p)), connection(std::move(c)) {}
  std::unique_ptr<network::ConnectionCallbacks> probe;
  network::ClientConnectionPtr connection;
};
}  // namespace

MixedConnPool::MixedConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                             ClusterInfoConstSharedPtr cluster, ResourcePriority priority)
    : dispatcher_(dispatcher), host_(host), cluster_(cluster),
      resources_(cluster_->resourceManager(priority)),
      h1_(dispatcher, host, cluster, priority),
      h2_(dispatcher, host, cluster, priority) {}

MixedConnPool::~MixedConnPool() {
  for (auto& p : pending_) {
    if (!p->forwarded) p->unqueue();
  }
  pending_.clear();
  if (probe_ && probe_->connection &&
      probe_->connection->state() != network::Connection::State::Closed) {
    probe_->connection->removeConnectionCallbacks(*probe_);
    probe_->connection->close(network::ConnectionCloseType::NoFlush);
  }
}

ConnPool& MixedConnPool::poolFor(Protocol protocol) {
  if (protocol == Protocol::Http2) return h2_;
  return h1_;
}

Cancellable* MixedConnPool::newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                                      bool new_connection) {
  if (protocol_ != Protocol::Unknown) {
    return poolFor(protocol_).newStream(decoder, callbacks, new_connection);
  }
  // The wait for the protocol counts as pending (max_pending_requests bounds it); the pool
  // the request then goes to counts upstream_rq_total and its own wait.
  if (!resources_.pendingRequests().canCreate()) {
    cluster_->stats().upstream_rq_total.inc();
    cluster_->stats().upstream_rq_pending_overflow.inc();
    callbacks.onPoolFailure(PoolFailureReason::Overflow, "", host_);
    return nullptr;
  }
  resources_.pendingRequests().inc();
  cluster_->stats().upstream_rq_pending_active.inc();
  pending_.push_back(std::make_unique<Pending>(*this, decoder, callbacks, new_connection));
  Cancellable* handle = pending_.back().get();
  if (!probe_) {
    probe_ = std::make_unique<Probe>(*this);
    if (!probe_->connection) onProbeFailed(probe_->failure, false);
  }
  for (const auto& p : pending_) {
    if (p.get() == handle) return handle;
  }
  return nullptr;
}

void MixedConnPool::onProbeConnected() {
  const std::string_view alpn = probe_->connection->transportProtocol();
  // As Envoy: HTTP/2 when the host picked h2, HTTP/1.1 otherwise (also with no ALPN at all).
  protocol_ = alpn == "h2" ? Protocol::Http2 : Protocol::Http1;
  SLUICE_LOG(debug, upstream, "{} negotiated '{}': {}", host_->address()->asString(), alpn,
             protocol_ == Protocol::Http2 ? "HTTP/2" : "HTTP/1.1");
  network::ClientConnectionPtr connection = std::move(probe_->connection);
  connection->removeConnectionCallbacks(*probe_);
  dispatcher_.deferredDelete(std::make_unique<DeferredProbe>(std::move(probe_), nullptr));
  if (protocol_ == Protocol::Http2) {
    h2_.adoptConnection(std::move(connection));
  } else {
    h1_.adoptConnection(std::move(connection));
  }
  forwardPending();
  if (draining_) poolFor(protocol_).drainConnections();
}

void MixedConnPool::forwardPending() {
  ConnPool& pool = poolFor(protocol_);
  for (;;) {
    Pending* next = nullptr;
    for (auto& p : pending_) {
      if (!p->forwarded) {
        next = p.get();
        break;
      }
    }
    if (next == nullptr) return;
    next->forwarded = true;
    next->unqueue();
    // Null: the pool answered already (and `next` is gone).
    Cancellable* handle = pool.newStream(next->decoder, *next, next->new_connection);
    if (handle != nullptr) next->inner = handle;
  }
}

void MixedConnPool::onProbeFailed(std::string_view reason, bool timed_out) {
  const auto& stats = cluster_->stats();
  // The attempt counts as a connection of the cluster that failed to connect.
  stats.upstream_cx_total.inc();
  stats.upstream_cx_connect_fail.inc();
  stats.upstream_cx_destroy.inc();
  if (timed_out) stats.upstream_cx_connect_timeout.inc();
  host_->stats().cx_total++;
  host_->stats().cx_connect_fail++;
  const std::string why(reason);
  std::unique_ptr<Probe> probe = std::move(probe_);
  network::ClientConnectionPtr connection = std::move(probe->connection);
  dispatcher_.deferredDelete(std::make_unique<DeferredProbe>(std::move(probe),
                                                              std::move(connection)));
  // Every request waiting for the protocol fails; the next request tries again.
  while (!pending_.empty()) {
    Pending* p = nullptr;
    for (auto& q : pending_) {
      if (!q->forwarded) {
        p = q.get();
        break;
      }
    }
    if (p == nullptr) break;
    p->forwarded = true;
    p->unqueue();
    stats.upstream_rq_total.inc();
    stats.upstream_rq_pending_failure_eject.inc();
    p->onPoolFailure(timed_out ? PoolFailureReason::Timeout : PoolFailureReason::ConnectionFailure,
                     why, host_);
  }
}

void MixedConnPool::drainConnections() {
  draining_ = true;
  h1_.drainConnections();
  h2_.drainConnections();
}

bool MixedConnPool::idle() const {
  return !probe_ && pending_.empty() && h1_.idle() && h2_.idle();
}

}  // namespace sluice::upstream
