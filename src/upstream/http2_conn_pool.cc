#include "upstream/http2_conn_pool.h"

#include "common/logger.h"
#include "http/http2/codec_impl.h"
#include "event/timer_list.h"
#include "network/connection_impl.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"

namespace sluice::upstream {

struct Http2ConnPool::Pending : public Cancellable {
  Pending(Http2ConnPool& p, http::ResponseDecoder& d, ConnPoolCallbacks& c)
      : pool(p), decoder(d), callbacks(c) {}
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
  Http2ConnPool& pool;
  http::ResponseDecoder& decoder;
  ConnPoolCallbacks& callbacks;
};

// Sits between the codec's stream and the request's decoder to see the stream end (its
// response complete, or a reset), which frees its place on the connection.
struct Http2ConnPool::StreamWrapper : public http::ResponseDecoder,
                                      public http::StreamCallbacks,
                                      public event::DeferredDeletable {
  StreamWrapper(ActiveClient& c, http::ResponseDecoder& d) : client(c), user(&d) {}

  void decode1xxHeaders(http::HeaderMapPtr&& headers) override {
    if (user) user->decode1xxHeaders(std::move(headers));
  }
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override {
    http::ResponseDecoder* d = user;
    if (end_stream) finish();
    if (d) d->decodeHeaders(std::move(headers), end_stream);
  }
  void decodeData(buffer::Buffer& data, bool end_stream) override {
    http::ResponseDecoder* d = user;
    if (end_stream) finish();
    if (d) d->decodeData(data, end_stream);
  }
  void decodeTrailers(http::HeaderMapPtr&& trailers) override {
    http::ResponseDecoder* d = user;
    finish();
    if (d) d->decodeTrailers(std::move(trailers));
  }
  void onResetStream(http::StreamResetReason, std::string_view) override { finish(); }

  void finish();

  ActiveClient& client;
  http::ResponseDecoder* user;
  http::Stream* stream{nullptr};
  bool done{false};
  std::list<std::unique_ptr<StreamWrapper>>::iterator self;
};

struct Http2ConnPool::ActiveClient : public network::ConnectionCallbacks,
                                     public network::ReadFilter,
                                     public event::ListTimer,
                                     public http::ConnectionCallbacks {
  enum class State { Connecting, Ready, Draining, Closed };

  // `adopted`: a connection already up (auto_config's, which negotiated h2) instead of a new one.
  ActiveClient(Http2ConnPool& p, network::ClientConnectionPtr adopted)
      : pool(p), created(p.dispatcher_.timeSource().monotonicTime()) {
    std::string error;
    if (adopted) {
      connection = std::move(adopted);
      connected = true;
      state = State::Ready;
    } else {
      // Over TLS the cluster's transport (its UpstreamTlsContext), offering ALPN "h2".
      network::TransportSocketOptions options;
      options.alpn = {"h2"};
      connection = network::createClientConnection(
          pool.dispatcher_, pool.host_->address(),
          pool.cluster_->createTransportSocket(
              pool.cluster_->transport_socket_factory ? &options : nullptr),
          &error);
    }
    const auto& stats = pool.cluster_->stats();
    stats.upstream_cx_total.inc();
    stats.upstream_cx_http2_total.inc();
    stats.upstream_cx_active.inc();
    pool.resources().connections().inc();
    pool.host_->stats().cx_total++;
    pool.host_->stats().cx_active++;
    if (!connection) {
      failure = error;
      return;
    }
    connection->setBufferLimits(pool.cluster_->per_connection_buffer_limit_bytes);
    connection->detectEarlyCloseWhenReadDisabled(false);
    connection->addConnectionCallbacks(*this);
    connection->addReadFilter(std::shared_ptr<network::ReadFilter>(this, [](auto*) {}));
    connection->setConnectionStats(&stats.upstream_cx_bytes);
    codec = http::http2::createClientCodec(*connection, *this, *pool.cluster_->http2_settings);
    if (!connected) connection->connect(pool.cluster_->connect_timeout);
  }

  // network::ReadFilter
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks&) override {}
  network::FilterStatus onData(buffer::Buffer& data, bool) override {
    http::CodecStatus status = codec->dispatch(data);
    if (!status.ok()) {
      pool.cluster_->stats().upstream_cx_protocol_error.inc();
      SLUICE_LOG(debug, upstream, "upstream HTTP/2 protocol error from {}: {}",
                 pool.host_->address()->asString(), status.details);
      data.drain(data.length());
      // No new stream on it while the GOAWAY the codec queued is flushed.
      state = State::Draining;
      connection->close(network::ConnectionCloseType::FlushWrite);
    }
    return network::FilterStatus::StopIteration;
  }

  // event::ListTimer: the connection stayed idle for the cluster's idle_timeout.
  void onListTimeout() override {
    pool.cluster_->stats().upstream_cx_idle_timeout.inc();
    // No new stream while a close with bytes still to write completes.
    state = State::Draining;
    connection->close(network::ConnectionCloseType::FlushWrite);
  }

  // network::ConnectionCallbacks
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) {
      connected = true;
      state = State::Ready;
      pool.attachPending(*this);
      return;
    }
    const bool timed_out = connection->transportFailureReason() == "connect timeout";
    state = State::Closed;
    codec->onConnectionClosed();  // resets the streams still open
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
    pool.cluster_->stats().upstream_cx_close_notify.inc();
    if (state != State::Closed) state = State::Draining;
    pool.upkeep_timer_->enableTimer(std::chrono::milliseconds(0));
  }

  bool hasCapacity() const { return state == State::Ready && active < pool.maxStreams(); }

  Http2ConnPool& pool;
  const event::MonotonicTime created;
  network::ClientConnectionPtr connection;
  http::ClientCodecPtr codec;
  std::list<std::unique_ptr<StreamWrapper>> streams;
  std::string failure;
  State state{State::Connecting};
  uint32_t active{0};
  uint32_t served{0};
  bool connected{false};
};

void Http2ConnPool::StreamWrapper::finish() {
  if (done) return;
  done = true;
  user = nullptr;
  // Called from inside the codec's stream callbacks: the stream is alive until they return.
  if (stream != nullptr) stream->removeCallbacks(*this);
  ActiveClient& c = client;
  std::unique_ptr<StreamWrapper> owned = std::move(*self);
  c.streams.erase(self);
  c.pool.dispatcher_.deferredDelete(std::move(owned));
  c.pool.onStreamDone(c);
}

namespace {
template <class T>
struct DeferredOwner : public event::DeferredDeletable {
  explicit DeferredOwner(std::unique_ptr<T> p) : owned(std::move(p)) {}
  std::unique_ptr<T> owned;
};
}  // namespace

Http2ConnPool::Http2ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                             ClusterInfoConstSharedPtr cluster, ResourcePriority priority)
    : dispatcher_(dispatcher), host_(std::move(host)), cluster_(std::move(cluster)),
      resources_(cluster_->resourceManager(priority)) {
  upkeep_timer_ = dispatcher_.createTimer([this] { upkeep(); });
}

Http2ConnPool::~Http2ConnPool() {
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

uint32_t Http2ConnPool::maxStreams() const {
  return std::max<uint32_t>(1, cluster_->http2_settings->max_concurrent_streams);
}

size_t Http2ConnPool::connectingCapacity() const {
  size_t capacity = 0;
  for (const auto& c : clients_) {
    if (c->state == ActiveClient::State::Connecting) capacity += maxStreams();
  }
  return capacity;
}

Cancellable* Http2ConnPool::newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                                      bool) {
  cluster_->stats().upstream_rq_total.inc();
  host_->stats().rq_total++;
  // HTTP/2 connections are shared: a request that asks for a new connection (a retry after
  // a keep-alive race, which HTTP/2's GOAWAY makes unneeded) uses one with room as well.
  for (auto& c : clients_) {
    if (c->hasCapacity()) {
      attach(*c, decoder, callbacks);
      return nullptr;
    }
  }
  ResourceManager& rm = resources();
  if (!rm.pendingRequests().canCreate()) {
    cluster_->stats().upstream_rq_pending_overflow.inc();
    callbacks.onPoolFailure(PoolFailureReason::Overflow, "", host_);
    return nullptr;
  }
  rm.pendingRequests().inc();
  cluster_->stats().upstream_rq_pending_total.inc();
  cluster_->stats().upstream_rq_pending_active.inc();
  pending_.push_back(std::make_unique<Pending>(*this, decoder, callbacks));
  Cancellable* handle = pending_.back().get();
  if (connectingCapacity() < pending_.size()) tryCreateClient();
  for (const auto& p : pending_) {
    if (p.get() == handle) return handle;
  }
  return nullptr;
}

bool Http2ConnPool::tryCreateClient() {
  if (!clients_.empty() && !resources().connections().canCreate()) {
    cluster_->stats().upstream_cx_overflow.inc();
    return false;
  }
  clients_.push_back(std::make_unique<ActiveClient>(*this, nullptr));
  ActiveClient& c = *clients_.back();
  if (!c.connection) onClientClosed(c, false, c.failure, false);
  return true;
}

void Http2ConnPool::adoptConnection(network::ClientConnectionPtr connection) {
  clients_.push_back(std::make_unique<ActiveClient>(*this, std::move(connection)));
  attachPending(*clients_.back());
}

void Http2ConnPool::attach(ActiveClient& client, http::ResponseDecoder& decoder,
                           ConnPoolCallbacks& callbacks) {
  // max_requests counts streams on connections, as the HTTP/1 pool does.
  ResourceManager& rm = resources();
  if (!rm.requests().canCreate()) {
    cluster_->stats().upstream_rq_pending_overflow.inc();
    callbacks.onPoolFailure(PoolFailureReason::Overflow, "", host_);
    return;
  }
  rm.requests().inc();
  client.disableListTimer();
  const bool reused = client.served > 0;
  ++client.active;
  ++client.served;
  cluster_->stats().upstream_rq_active.inc();
  host_->stats().rq_active++;
  const uint32_t max = cluster_->max_requests_per_connection;
  if (max != 0 && client.served >= max) {
    cluster_->stats().upstream_cx_max_requests.inc();
    client.state = ActiveClient::State::Draining;
  }
  client.streams.push_back(std::make_unique<StreamWrapper>(client, decoder));
  StreamWrapper& wrapper = *client.streams.back();
  wrapper.self = std::prev(client.streams.end());
  http::RequestEncoder& encoder = client.codec->newStream(wrapper);
  encoder.getStream().addCallbacks(wrapper);
  wrapper.stream = &encoder.getStream();
  callbacks.onPoolReady(encoder, host_, reused, client.connection->localAddress());
}

void Http2ConnPool::attachPending(ActiveClient& client) {
  while (client.hasCapacity() && !pending_.empty()) {
    std::unique_ptr<Pending> p = std::move(pending_.front());
    pending_.pop_front();
    cluster_->stats().upstream_rq_pending_active.dec();
    resources().pendingRequests().dec();
    attach(client, p->decoder, p->callbacks);
  }
  if (client.active > 0 || client.state == ActiveClient::State::Closed) return;
  if (draining_ || client.state == ActiveClient::State::Draining) {
    // Closing for the drain (or GOAWAY), not for idleness: its idle timer must not count it.
    client.disableListTimer();
    client.connection->close(network::ConnectionCloseType::FlushWrite);
    return;
  }
  // The worker's list for this duration (one per distinct idle timeout): arming it costs no
  // libevent call. Armed when the connection becomes idle, not again at every upkeep (which
  // follows any stream's end on any connection) while it stays idle.
  if (cluster_->idle_timeout.count() > 0 && !client.listTimerEnabled()) {
    dispatcher_.timerList(cluster_->idle_timeout).enable(client);
  }
}

void Http2ConnPool::onStreamDone(ActiveClient& client) {
  --client.active;
  resources().requests().dec();
  cluster_->stats().upstream_rq_active.dec();
  host_->stats().rq_active--;
  upkeep_timer_->enableTimer(std::chrono::milliseconds(0));
}

void Http2ConnPool::upkeep() {
  std::vector<ActiveClient*> clients;
  for (auto& c : clients_) clients.push_back(c.get());
  for (ActiveClient* c : clients) {
    if (c->state == ActiveClient::State::Connecting || c->state == ActiveClient::State::Closed) {
      continue;
    }
    attachPending(*c);
  }
  processPending();
}

void Http2ConnPool::onClientClosed(ActiveClient& client, bool connected, std::string_view reason,
                                   bool timed_out) {
  const auto& stats = cluster_->stats();
  client.state = ActiveClient::State::Closed;
  stats.upstream_cx_destroy.inc();
  stats.upstream_cx_length_ms.recordValue(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              dispatcher_.timeSource().monotonicTime() - client.created)
                                              .count());
  if (client.active > 0) stats.upstream_cx_destroy_with_active_rq.inc();
  stats.upstream_cx_active.dec();
  resources().connections().dec();
  host_->stats().cx_active--;
  if (!connected) {
    stats.upstream_cx_connect_fail.inc();
    host_->stats().cx_connect_fail++;
    if (timed_out) stats.upstream_cx_connect_timeout.inc();
  }
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
    // A failed connect fails the waiting requests no other connection being made will take.
    while (!pending_.empty() && pending_.size() > connectingCapacity()) {
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

void Http2ConnPool::processPending() {
  while (connectingCapacity() < pending_.size()) {
    if (!tryCreateClient()) break;
  }
}

void Http2ConnPool::drainConnections() {
  draining_ = true;
  std::vector<ActiveClient*> idle;
  for (auto& c : clients_) {
    if (c->state == ActiveClient::State::Closed) continue;
    if (c->active == 0 && c->state != ActiveClient::State::Connecting) {
      idle.push_back(c.get());
    } else if (c->state == ActiveClient::State::Ready) {
      c->state = ActiveClient::State::Draining;
    }
  }
  for (auto* c : idle) c->connection->close(network::ConnectionCloseType::NoFlush);
}

bool Http2ConnPool::idle() const { return clients_.empty() && pending_.empty(); }

}  // namespace sluice::upstream
