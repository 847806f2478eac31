#include "server/worker.h"

#include "common/logger.h"
#include "http/conn_manager_impl.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "router/shadow.h"
#include "stats/stats.h"

namespace sluice::server {

struct ConnectionHandler::ActiveListener : public network::ListenerCallbacks {
  ActiveListener(ConnectionHandler& h, const config::ListenerConfig& c,
                 const network::SocketFd& socket, network::AddressConstSharedPtr b)
      : handler(h),
        config(c),
        // A listener on one address gives every connection that local address: one shared
        // object rather than a getsockname() and an Address per connection.
        bound(b->isAnyAddress() ? nullptr : b),
        prefix("listener." + config::statAddress(*b) + "."),
        cx_total(h.store_.counter(prefix + "downstream_cx_total")),
        cx_destroy(h.store_.counter(prefix + "downstream_cx_destroy")),
        cx_active(h.store_.gauge(prefix + "downstream_cx_active")),
        no_filter_chain(h.store_.counter(prefix + "no_filter_chain_match")) {
    network::ListenerConfig lc;
    lc.accept_errors = &h.store_.counter(prefix + "downstream_cx_overflow");
    listener = std::make_unique<network::TcpListenerImpl>(h.dispatcher_, socket, *this, lc);
  }
  void onAccept(network::SocketFd&& socket) override { handler.onAccept(*this, std::move(socket)); }

  ConnectionHandler& handler;
  const config::ListenerConfig& config;
  const network::AddressConstSharedPtr bound;  // null for a wildcard address
  const std::string prefix;
  stats::Counter& cx_total;
  stats::Counter& cx_destroy;
  stats::Gauge& cx_active;
  stats::Counter& no_filter_chain;
  std::unique_ptr<network::TcpListenerImpl> listener;
};

struct ConnectionHandler::ActiveConnection : public network::ConnectionCallbacks {
  ActiveConnection(ConnectionHandler& h, ActiveListener& l, network::ConnectionPtr c)
      : handler(h), listener(l), connection(std::move(c)) {}
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) return;
    handler.removeConnection(*this);
  }
  ConnectionHandler& handler;
  ActiveListener& listener;
  network::ConnectionPtr connection;
  std::shared_ptr<http::ConnectionManagerImpl> hcm;
};

namespace {
template <class T>
struct Deferred : public event::DeferredDeletable {
  explicit Deferred(std::unique_ptr<T> p) : owned(std::move(p)) {}
  std::unique_ptr<T> owned;
};
}  // namespace

ConnectionHandler::ConnectionHandler(event::Dispatcher& dispatcher, stats::Store& store,
                                     std::atomic<size_t>* count)
    : dispatcher_(dispatcher), store_(store), count_(count) {}

ConnectionHandler::~ConnectionHandler() { closeConnections(); }

void ConnectionHandler::addListener(const config::ListenerConfig& config,
                                    const network::SocketFd& socket,
                                    network::AddressConstSharedPtr bound) {
  listeners_.push_back(std::make_unique<ActiveListener>(*this, config, socket, std::move(bound)));
}

void ConnectionHandler::onAccept(ActiveListener& listener, network::SocketFd&& socket) {
  auto conn = network::createServerConnection(
      dispatcher_, std::move(socket), std::make_unique<network::RawTransportSocket>(), listener.bound);
  const uint32_t port = conn->localAddress() ? conn->localAddress()->port() : 0;
  const config::FilterChainConfig* chain = listener.config.chainFor(port);
  if (!chain) {
    listener.no_filter_chain.inc();
    conn->close(network::ConnectionCloseType::NoFlush);
    dispatcher_.deferredDelete(std::move(conn));
    return;
  }
  listener.cx_total.inc();
  listener.cx_active.inc();
  conn->setBufferLimits(listener.config.buffer_limit);
  conn->noDelay(true);
  auto active = std::make_unique<ActiveConnection>(*this, listener, std::move(conn));
  active->hcm = std::make_shared<http::ConnectionManagerImpl>(chain->hcm);
  active->connection->addConnectionCallbacks(*active);
  active->connection->addReadFilter(active->hcm);
  ActiveConnection* raw = active.get();
  connections_.emplace(raw, std::move(active));
  if (count_) count_->store(connections_.size(), std::memory_order_relaxed);
  raw->connection->initializeReadFilters();
}

void ConnectionHandler::removeConnection(ActiveConnection& conn) {
  auto it = connections_.find(&conn);
  if (it == connections_.end()) return;
  conn.listener.cx_destroy.inc();
  conn.listener.cx_active.dec();
  std::unique_ptr<ActiveConnection> owned = std::move(it->second);
  connections_.erase(it);
  if (count_) count_->store(connections_.size(), std::memory_order_relaxed);
  dispatcher_.deferredDelete(std::move(owned->connection));
  dispatcher_.deferredDelete(std::make_unique<Deferred<ActiveConnection>>(std::move(owned)));
}

void ConnectionHandler::stopListeners() {
  // Connections keep referring to their listener's stats: stop accepting, keep the rest.
  for (auto& l : listeners_) l->listener.reset();
}

void ConnectionHandler::drainConnections() {
  std::vector<ActiveConnection*> all;
  for (auto& [raw, _] : connections_) all.push_back(raw);
  for (auto* c : all) {
    if (connections_.count(c)) c->hcm->startDrain();
  }
}

void ConnectionHandler::closeConnections() {
  while (!connections_.empty()) {
    ActiveConnection* c = connections_.begin()->first;
    c->connection->close(network::ConnectionCloseType::NoFlush);
    // The close event removed it; make sure of it when callbacks were already gone.
    if (connections_.count(c)) removeConnection(*c);
  }
}

Worker::Worker(unsigned index, event::TimeSystem& time, stats::Store& store,
               upstream::ClusterManager& cm)
    : dispatcher_("worker_" + std::to_string(index), time),
      tlcm_(dispatcher_),
      handler_(dispatcher_, store, &active_connections_) {
  cm.registerWorker(dispatcher_, tlcm_);
}

Worker::~Worker() {
  if (thread_.joinable()) stop();
}

void Worker::addListener(const config::ListenerConfig& config, const network::SocketFd& socket,
                         network::AddressConstSharedPtr bound) {
  handler_.addListener(config, socket, std::move(bound));
}

void Worker::start() {
  thread_ = std::thread([this] {
    upstream::ThreadLocalClusterManager::setCurrent(&tlcm_);
    stats::ThreadSlot::registerCurrentThread();
    dispatcher_.run(event::Dispatcher::RunType::RunUntilExit);
    handler_.closeConnections();
    handler_.stopListeners();
    // Mirrored requests belong to no connection: end them while their pools still exist.
    router::ShadowRequest::finishAll();
    tlcm_.drainAll();
    dispatcher_.clearDeferredDeleteList();
    upstream::ThreadLocalClusterManager::setCurrent(nullptr);
    stats::ThreadSlot::unregisterCurrentThread();
  });
}

void Worker::stopListeners(bool drain, event::Dispatcher& reply_to, std::function<void()> done) {
  dispatcher_.post([this, drain, &reply_to, done = std::move(done)] {
    handler_.stopListeners();
    if (drain) handler_.drainConnections();
    reply_to.post(done);
  });
}

void Worker::stop() {
  dispatcher_.exit();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sluice::server
