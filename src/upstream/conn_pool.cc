#include "upstream/conn_pool.h"

#include "common/assert.h"
#include "common/logger.h"
#include "event/timer_list.h"
#include "network/connection_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::upstream {

struct Http1ConnPool::Pending : public Cancellable {
  Pending(Http1ConnPool& p, http::ResponseDecoder& d, ConnPoolCallbacks& c, bool n)
      : pool(p), decoder(d), callbacks(c), new_connection(n) {}
  void cancel() override {
    pool.cluster_->stats().upstream_rq_cancelled.inc();
    pool.cluster_->stats().upstream_rq_pending_active.dec();
    pool.resources().pendingRequests().dec();
    for (auto it = pool.pending_.begin(); it != pool.pending_.end(); ++it) {
      if (it->get() == this) {
        pool.pending_.erase(it);  // destroys this
        return;
      }
    }
  }
  Http1ConnPool& pool;
  http::ResponseDecoder& decoder;
  ConnPoolCallbacks& callbacks;
  const bool new_connection;
};

struct Http1ConnPool::ActiveClient : public network::ConnectionCallbacks,
                                     public network::ReadFilter,
                                     public event::ListTimer,
                                     public http::ConnectionCallbacks,
                                     public http::ResponseDecoder {
  enum class State { Connecting, Ready, Busy, Closed };

  // `adopted`: a connection already up (auto_config's, which negotiated HTTP/1.1).
  ActiveClient(Http1ConnPool& p, network::ClientConnectionPtr adopted)
      : pool(p), created(p.dispatcher_.timeSource().monotonicTime()) {
    std::string error;
    if (adopted) {
      connection = std::move(adopted);
      connected = true;
    } else {
      // auto_config, once the host chose HTTP/1.1: offer only that.
      network::TransportSocketOptions options;
      options.alpn = {"http/1.1"};
      connection = network::createClientConnection(
          pool.dispatcher_, pool.host_->address(),
          pool.cluster_->createTransportSocket(pool.cluster_->auto_http ? &options : nullptr),
          &error);
    }
    const auto& stats = pool.cluster_->stats();
    stats.upstream_cx_total.inc();
    stats.upstream_cx_http1_total.inc();
    stats.upstream_cx_active.inc();
    pool.resources().connections().inc();
    pool.host_->stats().cx_total++;
    pool.host_->stats().cx_active++;
    if (!connection) {
      failure = error;
      return;
    }
    connection->setBufferLimits(pool.cluster_->per_connection_buffer_limit_bytes);
    // Back-pressure from a slow client pauses reads; the upstream's close must not cut off
    // the response bytes still in the socket then.
    connection->detectEarlyCloseWhenReadDisabled(false);
    connection->addConnectionCallbacks(*this);
    connection->addReadFilter(std::shared_ptr<network::ReadFilter>(this, [](auto*) {}));
    connection->setConnectionStats(&stats.upstream_cx_bytes);
    codec = http::http1::createClientCodec(*connection, *this, pool.cluster_->http1_settings);
    if (!connected) connection->connect(pool.cluster_->connect_timeout);
  }

  ~ActiveClient() override = default;

  // network::ReadFilter
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks&) override {}
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    http::CodecStatus status = codec->dispatch(data);
    // Only a tunnel enables half-close: the upstream ended its side of it.
    if (status.ok() && end_stream) codec->onReadEndStream();
    // A response that ended in this dispatch frees the connection now that the codec has
    // finished with it.
    if (status.ok() && state == State::Busy && response_complete) release();
    if (!status.ok()) {
      pool.cluster_->stats().upstream_cx_protocol_error.inc();
      SLUICE_LOG(debug, upstream, "upstream protocol error from {}: {}",
                 pool.host_->address()->asString(), status.details);
      data.drain(data.length());
      connection->close(network::ConnectionCloseType::NoFlush);
    }
    return network::FilterStatus::StopIteration;
  }

  // event::ListTimer: the connection stayed idle for the cluster's idle_timeout.
  void onListTimeout() override {
    pool.cluster_->stats().upstream_cx_idle_timeout.inc();
    connection->close(network::ConnectionCloseType::NoFlush);
  }

  // network::ConnectionCallbacks
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) {
      connected = true;
      pool.onClientReady(*this);
      return;
    }
    const bool timed_out = connection->transportFailureReason() == "connect timeout";
    if (codec) codec->onConnectionClosed();  // ends a close-delimited body or resets the stream
    pool.onClientClosed(*this, connected, connection->transportFailureReason(), timed_out);
  }
  void onAboveWriteBufferHighWatermark() override {
    codec->onUnderlyingConnectionAboveWriteBufferHighWatermark();
  }
  void onBelowWriteBufferLowWatermark() override {
    codec->onUnderlyingConnectionBelowWriteBufferLowWatermark();
  }

  // http::ConnectionCallbacks
  void onGoAway() override {
    reusable = false;
    pool.cluster_->stats().upstream_cx_close_notify.inc();
  }

  // http::ResponseDecoder: forwards to the request's decoder, then frees the connection.
  void decode1xxHeaders(http::HeaderMapPtr&& headers) override {
    if (user) user->decode1xxHeaders(std::move(headers));
  }
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override {
    http::ResponseDecoder* d = user;
    if (headers->status() == 101) {
      tunnel = true;
      reusable = false;  // a tunnel: never back in the pool
    }
    if (end_stream) responseDone();
    if (d) d->decodeHeaders(std::move(headers), end_stream);
  }
  void decodeData(buffer::Buffer& data, bool end_stream) override {
    http::ResponseDecoder* d = user;
    if (end_stream) responseDone();
    if (d) d->decodeData(data, end_stream);
  }
  void decodeTrailers(http::HeaderMapPtr&& trailers) override {
    http::ResponseDecoder* d = user;
    responseDone();
    if (d) d->decodeTrailers(std::move(trailers));
  }

  void responseDone() {
    user = nullptr;
    response_complete = true;
  }

  // The response ended: reuse the connection if the request is also done.
  void release() {
    if (state != State::Busy || !response_complete) return;
    endRequest();
    state = State::Ready;
    // A tunnel's upstream ended its side: what the client sent before is still written out.
    const auto close_type =
        tunnel ? network::ConnectionCloseType::FlushWrite : network::ConnectionCloseType::NoFlush;
    if (codec->activeStreams() != 0) {
      // The upstream answered before the whole request was sent: the connection is out of
      // step, close it.
      connection->close(close_type);
      return;
    }
    const uint32_t max = pool.cluster_->max_requests_per_connection;
    if (max != 0 && served >= max) {
      pool.cluster_->stats().upstream_cx_max_requests.inc();
      reusable = false;
    }
    if (!reusable || pool.draining_) {
      connection->close(close_type);
      return;
    }
    pool.onClientReady(*this);
  }

  // The request left this connection: its active-request gauges go down once.
  void endRequest() {
    if (!request_counted) return;
    request_counted = false;
    pool.resources().requests().dec();
    pool.cluster_->stats().upstream_rq_active.dec();
    pool.host_->stats().rq_active--;
  }

  Http1ConnPool& pool;
  const event::MonotonicTime created;
  network::ClientConnectionPtr connection;
  http::ClientCodecPtr codec;
  http::ResponseDecoder* user{nullptr};
  std::string failure;
  State state{State::Connecting};
  uint32_t served{0};
  bool connected{false};
  bool reusable{true};
  bool tunnel{false};  // answered 101: carries a tunnel
  bool response_complete{false};
  bool request_counted{false};
};

// Lets a closed client be destroyed after the callback that closed it.
namespace {
template <class T>
struct DeferredOwner : public event::DeferredDeletable {
  explicit DeferredOwner(std::unique_ptr<T> p) : owned(std::move(p)) {}
  std::unique_ptr<T> owned;
};
}  // namespace

Http1ConnPool::Http1ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                             ClusterInfoConstSharedPtr cluster, ResourcePriority priority)
    : dispatcher_(dispatcher), host_(std::move(host)), cluster_(std::move(cluster)),
      resources_(cluster_->resourceManager(priority)) {}

Http1ConnPool::~Http1ConnPool() {
  for (auto& p : pending_) {
    (void)p;
    cluster_->stats().upstream_rq_pending_active.dec();
    resources().pendingRequests().dec();
  }
  pending_.clear();
  for (auto& c : clients_) {
    if (c->connection && c->connection->state() != network::Connection::State::Closed) {
      c->connection->removeConnectionCallbacks(*c);
      c->connection->close(network::ConnectionCloseType::NoFlush);
      cluster_->stats().upstream_cx_active.dec();
      resources().connections().dec();
      host_->stats().cx_active--;
    }
  }
}

Cancellable* Http1ConnPool::newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                                      bool new_connection) {
  cluster_->stats().upstream_rq_total.inc();
  host_->stats().rq_total++;
  if (!new_connection) {
    for (auto& c : clients_) {
      if (c->state == ActiveClient::State::Ready) {
        Pending p(*this, decoder, callbacks, false);
        attachToClient(*c, p);
        return nullptr;
      }
    }
  }
  // max_pending_requests: no room in the queue fails the request now.
  ResourceManager& rm = resources();
  if (!rm.pendingRequests().canCreate()) {
    cluster_->stats().upstream_rq_pending_overflow.inc();
    callbacks.onPoolFailure(PoolFailureReason::Overflow, "", host_);
    return nullptr;
  }
  rm.pendingRequests().inc();
  cluster_->stats().upstream_rq_pending_total.inc();
  cluster_->stats().upstream_rq_pending_active.inc();
  SLUICE_LOG(debug, upstream, "request to {} waits for a connection ({} waiting)",
             host_->address()->asString(), pending_.size() + 1);
  pending_.push_back(std::make_unique<Pending>(*this, decoder, callbacks, new_connection));
  Cancellable* handle = pending_.back().get();
  size_t connecting = 0;
  for (auto& c : clients_) connecting += c->state == ActiveClient::State::Connecting;
  if (connecting < pending_.size()) tryCreateClient();
  // A connection that could not even get a socket failed the request already.
  for (const auto& p : pending_) {
    if (p.get() == handle) return handle;
  }
  return nullptr;
}

bool Http1ConnPool::tryCreateClient() {
  // max_connections: past it the request waits for a connection of this pool to free up,
  // except that a pool with none at all may always make one (as Envoy's pools do).
  if (!clients_.empty() && !resources().connections().canCreate()) {
    cluster_->stats().upstream_cx_overflow.inc();
    return false;
  }
  createClient();
  return true;
}

void Http1ConnPool::adoptConnection(network::ClientConnectionPtr connection) {
  clients_.push_back(std::make_unique<ActiveClient>(*this, std::move(connection)));
  onClientReady(*clients_.back());
}

void Http1ConnPool::createClient() {
  clients_.push_back(std::make_unique<ActiveClient>(*this, nullptr));
  ActiveClient& c = *clients_.back();
  if (!c.connection) {
    // No socket: fail like a connect failure (callbacks run now; newStream() notices).
    onClientClosed(c, false, c.failure, false);
  }
}

bool Http1ConnPool::attachToClient(ActiveClient& client, Pending& pending) {
  // max_requests counts requests on connections, not those waiting for one (Envoy checks
  // it here too).
  ResourceManager& rm = resources();
  if (!rm.requests().canCreate()) {
    cluster_->stats().upstream_rq_pending_overflow.inc();
    pending.callbacks.onPoolFailure(PoolFailureReason::Overflow, "", host_);
    return false;
  }
  rm.requests().inc();
  client.disableListTimer();
  const bool reused = client.served > 0;
  client.state = ActiveClient::State::Busy;
  client.user = &pending.decoder;
  client.response_complete = false;
  ++client.served;
  client.request_counted = true;
  cluster_->stats().upstream_rq_active.inc();
  host_->stats().rq_active++;
  SLUICE_LOG(debug, upstream, "[C{}] request {} on this connection to {}", client.connection->id(),
             client.served, host_->address()->asString());
  ConnPoolCallbacks& callbacks = pending.callbacks;
  http::RequestEncoder& encoder = client.codec->newStream(client);
  callbacks.onPoolReady(encoder, host_, reused, client.connection->localAddress());
  return true;
}

void Http1ConnPool::onClientReady(ActiveClient& client) {
  client.state = ActiveClient::State::Ready;
  // The oldest waiting request that may use this connection.
  for (auto it = pending_.begin(); it != pending_.end();) {
    if ((*it)->new_connection && client.served > 0) {
      ++it;
      continue;
    }
    std::unique_ptr<Pending> p = std::move(*it);
    pending_.erase(it);
    cluster_->stats().upstream_rq_pending_active.dec();
    resources().pendingRequests().dec();
    if (attachToClient(client, *p)) return;
    // Overflow: that request failed (its callback may have changed the queue).
    it = pending_.begin();
  }
  if (draining_) {
    client.connection->close(network::ConnectionCloseType::NoFlush);
    return;
  }
  // The worker's list for this duration (one per distinct idle timeout): arming it costs no
  // libevent call.
  if (cluster_->idle_timeout.count() > 0) {
    dispatcher_.timerList(cluster_->idle_timeout).enable(client);
  }
}

void Http1ConnPool::onClientClosed(ActiveClient& client, bool connected, std::string_view reason,
                                   bool timed_out) {
  const auto& stats = cluster_->stats();
  const bool was_busy = client.state == ActiveClient::State::Busy;
  client.endRequest();
  client.state = ActiveClient::State::Closed;
  stats.upstream_cx_destroy.inc();
  stats.upstream_cx_length_ms.recordValue(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              dispatcher_.timeSource().monotonicTime() - client.created)
                                              .count());
  if (was_busy) stats.upstream_cx_destroy_with_active_rq.inc();
  stats.upstream_cx_active.dec();
  resources().connections().dec();
  host_->stats().cx_active--;
  if (!connected) {
    stats.upstream_cx_connect_fail.inc();
    host_->stats().cx_connect_fail++;
    if (timed_out) stats.upstream_cx_connect_timeout.inc();
  }
  // Take the client out now; destroy it after this callback.
  for (auto it = clients_.begin(); it != clients_.end(); ++it) {
    if (it->get() != &client) continue;
    std::unique_ptr<ActiveClient> owned = std::move(*it);
    clients_.erase(it);
    owned->disableListTimer();
    if (owned->connection) dispatcher_.deferredDelete(std::move(owned->connection));
    dispatcher_.deferredDelete(std::make_unique<DeferredOwner<ActiveClient>>(std::move(owned)));
    break;
  }
  if (!connected) {
    // A failed connect fails the waiting requests that no other connect attempt will serve.
    size_t connecting = 0;
    for (auto& c : clients_) connecting += c->state == ActiveClient::State::Connecting;
    while (pending_.size() > connecting) {
      std::unique_ptr<Pending> p = std::move(pending_.front());
      pending_.pop_front();
      stats.upstream_rq_pending_active.dec();
      resources().pendingRequests().dec();
      stats.upstream_rq_pending_failure_eject.inc();
      p->callbacks.onPoolFailure(
          timed_out ? PoolFailureReason::Timeout : PoolFailureReason::ConnectionFailure, reason,
          host_);
    }
  } else {
    processPending();
  }
}

void Http1ConnPool::processPending() {
  size_t connecting = 0;
  for (auto& c : clients_) connecting += c->state == ActiveClient::State::Connecting;
  while (connecting < pending_.size()) {
    if (!tryCreateClient()) break;
    ++connecting;
  }
}

void Http1ConnPool::drainConnections() {
  draining_ = true;
  std::vector<ActiveClient*> idle;
  for (auto& c : clients_) {
    if (c->state == ActiveClient::State::Ready) idle.push_back(c.get());
  }
  for (auto* c : idle) c->connection->close(network::ConnectionCloseType::NoFlush);
}

bool Http1ConnPool::idle() const { return clients_.empty() && pending_.empty(); }

}  // namespace sluice::upstream
