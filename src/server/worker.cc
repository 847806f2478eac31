#include "server/worker.h"

#include "common/logger.h"
#include "common/object_pool.h"
#include "filters/network/tcp_proxy.h"
#include "http/conn_manager_impl.h"
#include "network/connection_impl.h"
#include "network/listener_filters.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"
#include "router/shadow.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include "stats/stats.h"

namespace sluice::server {

struct ConnectionHandler::ActiveListener : public network::ListenerCallbacks {
  ActiveListener(ConnectionHandler& h, uint64_t t, ListenerConfigConstSharedPtr c,
                 ListenSocketsSharedPtr s, const network::SocketFd& socket,
                 network::AddressConstSharedPtr b)
      : handler(h),
        tag(t),
        config(std::move(c)),
        sockets(std::move(s)),
        // A listener on one address gives every connection that local address: one shared
        // object rather than a getsockname() and an Address per connection.
        bound(b->isAnyAddress() ? nullptr : b),
        prefix("listener." + config::statAddress(*b) + "."),
        cx_total(h.store_.counter(prefix + "downstream_cx_total")),
        cx_destroy(h.store_.counter(prefix + "downstream_cx_destroy")),
        cx_active(h.store_.gauge(prefix + "downstream_cx_active")),
        no_filter_chain(h.store_.counter(prefix + "no_filter_chain_match")),
        pre_cx_timeout(config->hasListenerFilters()
                           ? &h.store_.counter(prefix + "downstream_pre_cx_timeout")
                           : nullptr) {
    network::ListenerConfig lc;
    lc.accept_errors = &h.store_.counter(prefix + "downstream_cx_overflow");
    listener = std::make_unique<network::TcpListenerImpl>(h.dispatcher_, socket, *this, lc);
  }
  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    handler.onAccept(*this, std::move(socket), std::move(peer));
  }

  ConnectionHandler& handler;
  const uint64_t tag;  // 0: not the listener manager's (admin)
  // The config new connections take; replaced by a listener update.
  ListenerConfigConstSharedPtr config;
  ListenSocketsSharedPtr sockets;  // kept while accepting
  size_t connections{0};           // open and pending, which refer to this listener's stats
  bool removed{false};
  const network::AddressConstSharedPtr bound;  // null for a wildcard address
  const std::string prefix;
  stats::Counter& cx_total;
  stats::Counter& cx_destroy;
  stats::Gauge& cx_active;
  stats::Counter& no_filter_chain;
  // With proxy_protocol: Envoy's names, rooted at proxy_proto. Looked up when first needed
  // (a listener update may add the filter).
  void initProxyProtoStats() {
    if (pp_not_found_allowed) return;
    pp_not_found_allowed = &handler.store_.counter("proxy_proto.not_found_allowed");
    pp_not_found_disallowed = &handler.store_.counter("proxy_proto.not_found_disallowed");
    for (int v = 0; v < 2; ++v) {
      const std::string vp = "proxy_proto.versions.v" + std::to_string(v + 1) + ".";
      pp_found[v] = &handler.store_.counter(vp + "found");
      pp_error[v] = &handler.store_.counter(vp + "error");
    }
  }

  stats::Counter* pre_cx_timeout;  // with a listener filter (or looked up when one comes)
  stats::Gauge* pre_cx_active{nullptr};  // sockets in the listener filters (looked up at the first)
  stats::Counter* pp_not_found_allowed{nullptr};
  stats::Counter* pp_not_found_disallowed{nullptr};
  stats::Counter* pp_found[2]{};
  stats::Counter* pp_error[2]{};
  std::unique_ptr<network::TcpListenerImpl> listener;
};

// Made and freed once per connection: from the worker's free list (common/object_pool.h).
// Not itself deferred-deletable (a second vtable pointer in every idle connection would
// take it to the next malloc size): DeferredConnection carries it to its deletion.
struct ConnectionHandler::ActiveConnection : public network::ConnectionCallbacks,
                                             public Pooled<ActiveConnection> {
  ActiveConnection(ActiveListener& l, ListenerConfigConstSharedPtr cfg, network::ConnectionPtr c)
      : listener(l), config(std::move(cfg)), connection(std::move(c)) {}
  void onEvent(network::ConnectionEvent event) override {
    if (event == network::ConnectionEvent::Connected) return;
    listener.handler.removeConnection(*this);
  }
  ActiveListener& listener;
  ListenerConfigConstSharedPtr config;  // the generation it was accepted under
  network::ConnectionPtr connection;
  std::shared_ptr<http::ConnectionManagerImpl> hcm;  // null for a TCP proxy chain
  // The handler's list of connections (intrusive: no hash-map node per connection). Both
  // null and not the head: no longer in the list.
  ActiveConnection* prev{nullptr};
  ActiveConnection* next{nullptr};
};

// An ActiveConnection on its way out, for the dispatcher's deferred deletion.
struct ConnectionHandler::DeferredConnection : public event::DeferredDeletable,
                                               public Pooled<DeferredConnection> {
  explicit DeferredConnection(std::unique_ptr<ActiveConnection> c) : owned(std::move(c)) {}
  std::unique_ptr<ActiveConnection> owned;
};

struct ConnectionHandler::PendingSocket : public event::DeferredDeletable {
  PendingSocket(ActiveListener& l, network::SocketFd&& s, network::AddressConstSharedPtr a,
                network::AddressConstSharedPtr peer)
      : listener(l),
        config(l.config),
        socket(std::move(s)),
        local(std::move(a)),
        remote(std::move(peer)) {}
  ActiveListener& listener;
  // The generation it was accepted under: its listener filters and its chain come from it,
  // even if an update swaps the listener's config while it is inspected.
  ListenerConfigConstSharedPtr config;
  network::SocketFd socket;
  network::AddressConstSharedPtr local;
  // The socket's peer (null: ask the socket), or the source a PROXY header names.
  network::AddressConstSharedPtr remote;
  bool proxy_protocol_done{false};
  event::FileEventPtr event;
  event::TimerPtr timer;
};

ConnectionHandler::ConnectionHandler(event::Dispatcher& dispatcher, stats::Store& store,
                                     std::atomic<size_t>* count)
    : dispatcher_(dispatcher), store_(store), count_(count) {}

ConnectionHandler::~ConnectionHandler() { closeConnections(); }

void ConnectionHandler::addListener(const config::ListenerConfig& config,
                                    const network::SocketFd& socket,
                                    network::AddressConstSharedPtr bound) {
  // Not owned: a shared_ptr that deletes nothing.
  listeners_.push_back(std::make_unique<ActiveListener>(
      *this, 0, ListenerConfigConstSharedPtr(&config, [](const config::ListenerConfig*) {}),
      nullptr, socket, std::move(bound)));
}

void ConnectionHandler::addListener(uint64_t tag, ListenerConfigConstSharedPtr config,
                                    ListenSocketsSharedPtr sockets, size_t index) {
  const network::SocketFd& socket = sockets->forWorker(index);
  network::AddressConstSharedPtr bound = sockets->bound;
  listeners_.push_back(std::make_unique<ActiveListener>(*this, tag, std::move(config),
                                                        std::move(sockets), socket,
                                                        std::move(bound)));
}

void ConnectionHandler::updateListener(uint64_t tag, ListenerConfigConstSharedPtr config) {
  for (auto& l : listeners_) {
    if (l->tag != tag || l->removed) continue;
    l->config = std::move(config);
    // Collected first: a drain that writes (HTTP/2 GOAWAY) may fail and close a connection.
    std::vector<ActiveConnection*> old;
    for (ActiveConnection* raw = connections_head_; raw != nullptr; raw = raw->next) {
      if (&raw->listener == l.get() && raw->config != l->config) old.push_back(raw);
    }
    for (auto* c : old) {
      // A TCP proxy connection has nothing to drain: it stays until finishDrain closes it.
      if (isLinked(*c) && c->hcm) c->hcm->startDrain(false);
    }
    return;
  }
}

void ConnectionHandler::removeListener(uint64_t tag) {
  for (auto& l : listeners_) {
    if (l->tag != tag || l->removed) continue;
    l->listener.reset();
    l->sockets.reset();
    std::vector<PendingSocket*> pending;
    for (auto& [raw, _] : pending_) {
      if (&raw->listener == l.get()) pending.push_back(raw);
    }
    for (auto* p : pending) dropPending(*p);
    std::vector<ActiveConnection*> conns;
    for (ActiveConnection* raw = connections_head_; raw != nullptr; raw = raw->next) {
      if (&raw->listener == l.get()) conns.push_back(raw);
    }
    for (auto* c : conns) {
      // A TCP proxy connection has nothing to drain: it stays until finishDrain closes it.
      if (isLinked(*c) && c->hcm) c->hcm->startDrain(false);
    }
    l->removed = true;  // only now: the drops above must not forget it under our feet
    maybeForgetListener(*l);
    return;
  }
}

void ConnectionHandler::finishDrain(const config::ListenerConfig* config) {
  // Sockets of the drained generation still in their listener filters go too: made into
  // connections later, nothing would close them (a TCP proxy one has no drain of its own).
  std::vector<PendingSocket*> pending;
  for (auto& [raw, _] : pending_) {
    if (raw->config.get() == config &&
        (raw->listener.removed || raw->listener.config.get() != config)) {
      pending.push_back(raw);
    }
  }
  for (auto* p : pending) dropPending(*p);
  std::vector<ActiveConnection*> conns;
  for (ActiveConnection* raw = connections_head_; raw != nullptr; raw = raw->next) {
    if (raw->config.get() == config &&
        (raw->listener.removed || raw->listener.config.get() != config)) {
      conns.push_back(raw);
    }
  }
  for (auto* c : conns) {
    if (!isLinked(*c)) continue;
    c->connection->close(network::ConnectionCloseType::NoFlush);
    if (isLinked(*c)) removeConnection(*c);
  }
}

void ConnectionHandler::maybeForgetListener(ActiveListener& listener) {
  if (!listener.removed || listener.connections > 0) return;
  for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
    if (it->get() != &listener) continue;
    // Not inside its own accept callback (removals come posted), so it can go now.
    listeners_.erase(it);
    return;
  }
}

void ConnectionHandler::onAccept(ActiveListener& listener, network::SocketFd&& socket,
                                 network::AddressConstSharedPtr peer) {
  // The chain (and so the transport: TLS or not) is chosen before the connection is made.
  network::AddressConstSharedPtr local =
      listener.bound ? listener.bound : network::localAddress(socket.fd());
  if (!listener.config->hasListenerFilters()) {
    finishAccept(listener, listener.config, std::move(socket), std::move(local), std::move(peer),
                 nullptr);
    return;
  }
  auto pending = std::make_unique<PendingSocket>(listener, std::move(socket), std::move(local),
                                                 std::move(peer));
  PendingSocket* raw = pending.get();
  ++listener.connections;
  if (!listener.pre_cx_active) {
    listener.pre_cx_active = &store_.gauge(listener.prefix + "downstream_pre_cx_active");
  }
  listener.pre_cx_active->inc();
  // Edge-triggered: bytes peeked stay in the socket, so only new bytes raise a new event.
  raw->event = dispatcher_.createFileEvent(
      raw->socket.fd(), [this, raw](uint32_t) { onInspectReady(*raw); },
      event::FileTriggerType::Edge, event::FileReadyType::Read | event::FileReadyType::Closed);
  if (listener.config->listener_filters_timeout.count() > 0) {
    raw->timer = dispatcher_.createTimer([this, raw] {
      ActiveListener& l = raw->listener;
      if (!l.pre_cx_timeout) {
        l.pre_cx_timeout = &l.handler.store_.counter(l.prefix + "downstream_pre_cx_timeout");
      }
      l.pre_cx_timeout->inc();
      dropPending(*raw);
    });
    raw->timer->enableTimer(listener.config->listener_filters_timeout);
  }
  pending_.emplace(raw, std::move(pending));
}

void ConnectionHandler::onInspectReady(PendingSocket& pending) {
  if (!pending.socket.isOpen()) return;
  ActiveListener& listener = pending.listener;
  const config::ListenerConfig& config = *pending.config;
  static thread_local std::vector<uint8_t> buf(
      std::max(tls::kMaxClientHelloPeek, network::kMaxProxyProtocolHeader));
  ssize_t n = ::recv(pending.socket.fd(), buf.data(), buf.size(), MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    dropPending(pending);  // closed (or failed) before the listener filters were done
    return;
  }
  if (config.proxy_protocol && !pending.proxy_protocol_done) {
    listener.initProxyProtoStats();
    network::ProxyProtocolHeader header;
    switch (network::parseProxyProtocol(buf.data(), static_cast<size_t>(n), header)) {
      case network::ParseResult::NeedMoreData:
        return;  // the rest raises a new edge
      case network::ParseResult::NotFound:
        if (!config.proxy_protocol->allow_requests_without_proxy_protocol) {
          listener.pp_not_found_disallowed->inc();
          dropPending(pending);
          return;
        }
        listener.pp_not_found_allowed->inc();
        break;
      case network::ParseResult::Error:
        listener.pp_error[header.version == 2 ? 1 : 0]->inc();
        SLUICE_LOG(debug, connection, "malformed PROXY protocol v{} header", header.version);
        dropPending(pending);
        return;
      case network::ParseResult::Done: {
        listener.pp_found[header.version - 1]->inc();
        // Consume exactly the header; what follows is the connection's own data.
        size_t left = header.length;
        while (left > 0) {
          const ssize_t r = ::recv(pending.socket.fd(), buf.data(), left, 0);
          if (r <= 0) {
            dropPending(pending);
            return;
          }
          left -= static_cast<size_t>(r);
        }
        if (!header.local) {
          pending.remote = std::move(header.source);
          pending.local = std::move(header.destination);
        }
        break;
      }
    }
    pending.proxy_protocol_done = true;
    if (!config.tls_inspector && !config.http_inspector) {
      finishPending(pending, nullptr);
      return;
    }
    // The bytes after the header may be here already (no new edge for them): look again.
    n = ::recv(pending.socket.fd(), buf.data(), buf.size(), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      dropPending(pending);
      return;
    }
  }
  tls::ClientHelloInfo hello;
  const size_t len = static_cast<size_t>(n);
  const bool full = len >= buf.size();
  if (config.tls_inspector &&
      tls::parseClientHello(buf.data(), std::min(len, tls::kMaxClientHelloPeek), hello) ==
          tls::ClientHelloResult::NeedMoreData &&
      len < tls::kMaxClientHelloPeek) {
    return;  // the rest of the hello raises a new edge
  }
  if (config.http_inspector && !hello.is_tls) {
    std::string_view protocol;
    if (network::detectHttpProtocol(buf.data(), len, protocol) ==
            network::ParseResult::NeedMoreData &&
        !full) {
      return;
    }
    if (!protocol.empty()) hello.alpn.assign(1, std::string(protocol));
  }
  finishPending(pending, &hello);
}

void ConnectionHandler::finishPending(PendingSocket& pending, const tls::ClientHelloInfo* hello) {
  ActiveListener& listener = pending.listener;
  ListenerConfigConstSharedPtr config = pending.config;
  network::SocketFd socket = std::move(pending.socket);
  network::AddressConstSharedPtr local = std::move(pending.local);
  network::AddressConstSharedPtr remote = std::move(pending.remote);
  tls::ClientHelloInfo info;
  if (hello) info = *hello;
  dropPending(pending);
  finishAccept(listener, config, std::move(socket), std::move(local), std::move(remote),
               hello ? &info : nullptr);
}

void ConnectionHandler::dropPending(PendingSocket& pending) {
  auto it = pending_.find(&pending);
  if (it == pending_.end()) return;
  std::unique_ptr<PendingSocket> owned = std::move(it->second);
  pending_.erase(it);
  --owned->listener.connections;
  owned->listener.pre_cx_active->dec();
  // Unregistered before the fd closes; the rest (maybe the running callback's owner) goes
  // after the callback.
  owned->event.reset();
  if (owned->timer) owned->timer->disableTimer();
  owned->socket.close();
  ActiveListener& listener = owned->listener;
  dispatcher_.deferredDelete(std::move(owned));
  maybeForgetListener(listener);
}

void ConnectionHandler::finishAccept(ActiveListener& listener,
                                     const ListenerConfigConstSharedPtr& config,
                                     network::SocketFd&& socket,
                                     network::AddressConstSharedPtr local,
                                     network::AddressConstSharedPtr remote,
                                     const tls::ClientHelloInfo* hello) {
  const uint32_t port = local ? local->port() : 0;
  const config::FilterChainConfig* chain =
      hello ? config->chainFor(port, hello->server_name, hello->is_tls ? "tls" : "raw_buffer",
                               hello->alpn)
            : config->chainFor(port);
  if (!chain) {
    listener.no_filter_chain.inc();
    return;  // the socket closes here
  }
  auto conn = network::createServerConnection(
      dispatcher_, std::move(socket),
      chain->transport_socket ? chain->transport_socket->createTransportSocket()
                              : std::make_unique<network::RawTransportSocket>(),
      std::move(local), std::move(remote));
  listener.cx_total.inc();
  listener.cx_active.inc();
  conn->setBufferLimits(config->buffer_limit);
  ++listener.connections;
  // No Nagle delay, as Envoy's listeners: TCP_NODELAY came from the listening socket
  // (createListenSocket() sets it; accepted sockets inherit it).
  auto active = std::make_unique<ActiveConnection>(listener, config, std::move(conn));
  active->connection->addConnectionCallbacks(*active);
  if (chain->hcm) {
    active->hcm = std::allocate_shared<http::ConnectionManagerImpl>(
        PoolAllocator<http::ConnectionManagerImpl>(), chain->hcm);
    active->connection->addReadFilter(active->hcm);
  } else {
    active->connection->addReadFilter(filters::tcp::createTcpProxyFilter(chain->tcp_proxy));
  }
  ActiveConnection* raw = active.release();
  linkConnection(*raw);
  raw->connection->initializeReadFilters();
  // Accepted under a generation an update replaced while its listener filters ran: it
  // drains as the other connections of that generation do.
  if (config != listener.config && raw->hcm && isLinked(*raw)) raw->hcm->startDrain(false);
}

void ConnectionHandler::removeConnection(ActiveConnection& conn) {
  if (!isLinked(conn)) return;
  ActiveListener& listener = conn.listener;
  listener.cx_destroy.inc();
  listener.cx_active.dec();
  --listener.connections;
  unlinkConnection(conn);
  std::unique_ptr<ActiveConnection> owned(&conn);
  dispatcher_.deferredDelete(std::move(owned->connection));
  dispatcher_.deferredDelete(std::make_unique<DeferredConnection>(std::move(owned)));
  maybeForgetListener(listener);
}

void ConnectionHandler::linkConnection(ActiveConnection& conn) {
  conn.next = connections_head_;
  if (connections_head_ != nullptr) connections_head_->prev = &conn;
  connections_head_ = &conn;
  ++num_connections_;
  if (count_) count_->store(num_connections_, std::memory_order_relaxed);
}

void ConnectionHandler::unlinkConnection(ActiveConnection& conn) {
  (conn.prev != nullptr ? conn.prev->next : connections_head_) = conn.next;
  if (conn.next != nullptr) conn.next->prev = conn.prev;
  conn.prev = conn.next = nullptr;
  --num_connections_;
  if (count_) count_->store(num_connections_, std::memory_order_relaxed);
}

bool ConnectionHandler::isLinked(const ActiveConnection& conn) const {
  return conn.prev != nullptr || connections_head_ == &conn;
}

void ConnectionHandler::stopListeners() {
  // Connections keep referring to their listener's stats: stop accepting, keep the rest.
  for (auto& l : listeners_) l->listener.reset();
}

void ConnectionHandler::drainConnections() {
  std::vector<ActiveConnection*> all;
  for (ActiveConnection* c = connections_head_; c != nullptr; c = c->next) all.push_back(c);
  for (auto* c : all) {
    if (isLinked(*c) && c->hcm) c->hcm->startDrain();
  }
}

void ConnectionHandler::closeConnections() {
  while (!pending_.empty()) dropPending(*pending_.begin()->first);
  while (connections_head_ != nullptr) {
    ActiveConnection* c = connections_head_;
    c->connection->close(network::ConnectionCloseType::NoFlush);
    // The close event removed it; make sure of it when callbacks were already gone.
    if (isLinked(*c)) removeConnection(*c);
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

void Worker::addListener(uint64_t tag, ListenerConfigConstSharedPtr config,
                         ListenSocketsSharedPtr sockets, size_t index) {
  dispatcher_.post([this, tag, config = std::move(config), sockets = std::move(sockets), index] {
    handler_.addListener(tag, config, sockets, index);
  });
}

void Worker::updateListener(uint64_t tag, ListenerConfigConstSharedPtr config) {
  dispatcher_.post([this, tag, config = std::move(config)] { handler_.updateListener(tag, config); });
}

void Worker::removeListener(uint64_t tag, event::Dispatcher& reply_to, std::function<void()> done) {
  dispatcher_.post([this, tag, &reply_to, done = std::move(done)] {
    handler_.removeListener(tag);
    if (done) reply_to.post(done);
  });
}

void Worker::finishDrain(ListenerConfigConstSharedPtr config) {
  dispatcher_.post([this, config = std::move(config)] { handler_.finishDrain(config.get()); });
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
    filters::tcp::closeFlushingUpstreams();
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
