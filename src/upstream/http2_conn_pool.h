#pragma once

// The HTTP/2 connection pool of one upstream host on one worker: each connection carries many
// requests at once, up to the cluster's max_concurrent_streams; past that a new connection is
// made (within the max_connections circuit breaker), and requests wait while one is being
// made. A connection that got GOAWAY, or served max_requests_per_connection, takes no new
// requests and closes once its last request ends.

#include <list>
#include <memory>

#include "upstream/conn_pool.h"

namespace sluice::upstream {

class Http2ConnPool : public ConnPool {
 public:
  Http2ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                ClusterInfoConstSharedPtr cluster,
                ResourcePriority priority = ResourcePriority::Default);
  ~Http2ConnPool() override;

  Cancellable* newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                         bool new_connection = false) override;
  void drainConnections() override;
  bool idle() const override;
  const HostSharedPtr& host() const override { return host_; }
  // Takes a connection already up (its TLS negotiated h2) as one of the pool's own.
  void adoptConnection(network::ClientConnectionPtr connection);

 private:
  struct ActiveClient;
  struct Pending;
  struct StreamWrapper;
  friend struct ActiveClient;
  friend struct Pending;
  friend struct StreamWrapper;

  uint32_t maxStreams() const;
  size_t connectingCapacity() const;
  bool tryCreateClient();
  void attach(ActiveClient& client, http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks);
  void attachPending(ActiveClient& client);
  void onStreamDone(ActiveClient& client);
  void upkeep();
  void onClientClosed(ActiveClient& client, bool connected, std::string_view reason,
                      bool timed_out);
  void processPending();

  event::Dispatcher& dispatcher_;
  const HostSharedPtr host_;
  const ClusterInfoConstSharedPtr cluster_;
  // The circuit breakers of the pool's routing priority (pools are per host and priority).
  ResourceManager& resources_;
  ResourceManager& resources() const { return resources_; }
  std::list<std::unique_ptr<ActiveClient>> clients_;
  std::list<std::unique_ptr<Pending>> pending_;
  // Runs upkeep() on the next loop pass: a finished stream frees room for a waiting request,
  // or lets a draining connection close, outside the callback that finished it.
  event::TimerPtr upkeep_timer_;
  bool draining_{false};
};

}  // namespace sluice::upstream
