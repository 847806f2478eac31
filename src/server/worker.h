#pragma once

// A worker: one thread, one Dispatcher, its own listen sockets (SO_REUSEPORT) and its own
// view of the clusters. A connection lives on the worker that accepted it.

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/proxy_config.h"
#include "event/dispatcher_impl.h"
#include "network/connection.h"
#include "network/listener.h"
#include "tls/client_hello.h"
#include "upstream/cluster_manager.h"

namespace sluice::stats {
class Store;
class Counter;
class Gauge;
}  // namespace sluice::stats

namespace sluice::server {

using ListenerConfigConstSharedPtr = std::shared_ptr<const config::ListenerConfig>;

// The listen sockets of one listener, one per worker (or one shared without reuse_port).
// Shared by the listener manager and the workers that accept on them.
struct ListenSockets {
  std::vector<network::SocketFd> sockets;
  network::AddressConstSharedPtr bound;  // with the real port when the config said 0
  const network::SocketFd& forWorker(size_t i) const {
    return sockets.size() > 1 ? sockets[i] : sockets[0];
  }
};
using ListenSocketsSharedPtr = std::shared_ptr<const ListenSockets>;

// Accepts on a set of listeners and runs each connection's filter chain; used by the
// workers and by the admin listener on the main thread.
class ConnectionHandler {
 public:
  // `count`, if given, tracks the number of open connections for other threads to read.
  ConnectionHandler(event::Dispatcher& dispatcher, stats::Store& store,
                    std::atomic<size_t>* count = nullptr);
  ~ConnectionHandler();

  // `config` and `socket` outlive the handler (the admin listener).
  void addListener(const config::ListenerConfig& config, const network::SocketFd& socket,
                   network::AddressConstSharedPtr bound);
  // A listener of the listener manager, known by `tag`; keeps `sockets` while it accepts.
  void addListener(uint64_t tag, ListenerConfigConstSharedPtr config, ListenSocketsSharedPtr sockets,
                   size_t index);
  // Listener updates: new connections take `config`; connections of older configs drain
  // (the next response closes them) until finishDrain.
  void updateListener(uint64_t tag, ListenerConfigConstSharedPtr config);
  // Stops accepting on `tag` and drains its connections.
  void removeListener(uint64_t tag);
  // Closes the connections that a listener update or removal left on `config`.
  void finishDrain(const config::ListenerConfig* config);
  // Stops accepting (the sockets stay open until the handler goes).
  void stopListeners();
  // Asks every connection's HTTP connection manager to finish and close.
  void drainConnections();
  // Closes every connection now.
  void closeConnections();
  size_t numConnections() const { return num_connections_; }

 private:
  struct ActiveListener;
  struct ActiveConnection;
  struct DeferredConnection;
  struct PendingSocket;
  void onAccept(ActiveListener& listener, network::SocketFd&& socket,
                network::AddressConstSharedPtr peer);
  // With listener filters: reads the PROXY header, then peeks (consuming nothing) at the
  // ClientHello or the HTTP request line.
  void onInspectReady(PendingSocket& pending);
  void dropPending(PendingSocket& pending);
  // The listener filters are done: the pending socket becomes a connection.
  void finishPending(PendingSocket& pending, const tls::ClientHelloInfo* hello);
  // `local`/`remote`: the connection's addresses when known (remote: as accept() reported it,
  // or from a PROXY header).
  // `config`: the listener's generation the socket was accepted under.
  void finishAccept(ActiveListener& listener, const ListenerConfigConstSharedPtr& config,
                    network::SocketFd&& socket,
                    network::AddressConstSharedPtr local, network::AddressConstSharedPtr remote,
                    const tls::ClientHelloInfo* hello);
  void removeConnection(ActiveConnection& conn);
  void linkConnection(ActiveConnection& conn);
  void unlinkConnection(ActiveConnection& conn);
  // Whether `conn` is still among the live connections. Loops that collect connections first
  // and then act on each call it on a pointer that an earlier action may have removed: that
  // is safe because removeConnection() only unlinks and defers the deletion to the end of
  // the current callback, so the object is still there to ask.
  bool isLinked(const ActiveConnection& conn) const;
  void maybeForgetListener(ActiveListener& listener);

  event::Dispatcher& dispatcher_;
  stats::Store& store_;
  std::atomic<size_t>* count_;
  std::vector<std::unique_ptr<ActiveListener>> listeners_;
  // Owned (deleted when unlinked), newest first: an intrusive list, no node per connection.
  ActiveConnection* connections_head_{nullptr};
  size_t num_connections_{0};
  std::unordered_map<PendingSocket*, std::unique_ptr<PendingSocket>> pending_;
};

class Worker {
 public:
  Worker(unsigned index, event::TimeSystem& time, stats::Store& store,
         upstream::ClusterManager& cm);
  ~Worker();

  event::Dispatcher& dispatcher() { return dispatcher_; }
  upstream::ThreadLocalClusterManager& tlcm() { return tlcm_; }
  // Thread-safe (posted): listener changes from the listener manager; see ConnectionHandler.
  void addListener(uint64_t tag, ListenerConfigConstSharedPtr config, ListenSocketsSharedPtr sockets,
                   size_t index);
  void updateListener(uint64_t tag, ListenerConfigConstSharedPtr config);
  void removeListener(uint64_t tag, event::Dispatcher& reply_to, std::function<void()> done);
  void finishDrain(ListenerConfigConstSharedPtr config);
  void start();
  // Thread-safe: stops accepting; with `drain`, connections are asked to finish. `done` is
  // posted to `reply_to` once this worker no longer watches the listen sockets.
  void stopListeners(bool drain, event::Dispatcher& reply_to, std::function<void()> done);
  // Thread-safe: ends the thread (closing every connection).
  void stop();
  // Connections open on this worker (read from any thread).
  size_t activeConnections() const { return active_connections_.load(std::memory_order_relaxed); }

 private:
  event::DispatcherImpl dispatcher_;
  upstream::ThreadLocalClusterManager tlcm_;
  std::atomic<size_t> active_connections_{0};
  ConnectionHandler handler_;
  std::thread thread_;
};

}  // namespace sluice::server
