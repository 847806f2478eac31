#pragma once

// The HTTP/1.1 connection pool of one upstream host on one worker: idle keep-alive
// connections are reused, new ones are made when none is free, and requests wait in a queue
// while a connection is being made. One request per connection at a time. The cluster's
// circuit breakers bound the connections (past max_connections requests wait for one to
// free up) and the queue (past max_pending_requests a request fails with Overflow).

#include <chrono>
#include <list>
#include <memory>
#include <string_view>

#include "event/dispatcher.h"
#include "http/codec.h"
#include "network/connection.h"
#include "upstream/cluster_info.h"
#include "upstream/host.h"

namespace sluice::upstream {

enum class PoolFailureReason { ConnectionFailure, Timeout, Overflow };

class ConnPoolCallbacks {
 public:
  virtual ~ConnPoolCallbacks() = default;
  // A connection is ready for the request: encode it on `encoder`. `reused`: the connection
  // served requests before (a keep-alive connection the upstream may close at any moment).
  virtual void onPoolReady(http::RequestEncoder& encoder, const HostSharedPtr& host,
                           bool reused, const network::AddressConstSharedPtr& local_address) = 0;
  virtual void onPoolFailure(PoolFailureReason reason, std::string_view transport_failure_reason,
                             const HostSharedPtr& host) = 0;
};

// A request waiting for a connection; cancel() withdraws it.
class Cancellable {
 public:
  virtual ~Cancellable() = default;
  virtual void cancel() = 0;
};

// A connection pool of one host: HTTP/1.1 (Http1ConnPool) or HTTP/2 (Http2ConnPool).
class ConnPool {
 public:
  virtual ~ConnPool() = default;
  // Starts a request whose response goes to `decoder`. Returns null when `callbacks` were
  // already called (a ready connection, or an immediate failure); otherwise a handle to
  // cancel the waiting request. `new_connection`: never reuse an idle connection.
  virtual Cancellable* newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                                 bool new_connection = false) = 0;
  // Closes idle connections and lets busy ones close when their requests end.
  virtual void drainConnections() = 0;
  virtual bool idle() const = 0;
  virtual const HostSharedPtr& host() const = 0;
};
using ConnPoolPtr = std::unique_ptr<ConnPool>;

class Http1ConnPool : public ConnPool {
 public:
  Http1ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host, ClusterInfoConstSharedPtr cluster,
                ResourcePriority priority = ResourcePriority::Default);
  ~Http1ConnPool() override;

  // Starts a request whose response goes to `decoder`. Returns null when `callbacks` were
  // already called (a ready connection, or an immediate failure); otherwise a handle to
  // cancel the waiting request. `new_connection`: never reuse an idle connection.
  Cancellable* newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                         bool new_connection = false) override;

  // Closes idle connections and lets busy ones close when their request ends.
  void drainConnections() override;
  bool idle() const override;
  const HostSharedPtr& host() const override { return host_; }
  // Takes a connection already up (auto_config's, which negotiated HTTP/1.1) as one of the
  // pool's own.
  void adoptConnection(network::ClientConnectionPtr connection);

 private:
  struct ActiveClient;
  struct Pending;
  friend struct ActiveClient;
  friend struct Pending;

  // A new connection, if max_connections allows one (false: the requests keep waiting).
  bool tryCreateClient();
  void createClient();
  // False when max_requests is reached (the request failed with Overflow).
  bool attachToClient(ActiveClient& client, Pending& pending);
  void onClientReady(ActiveClient& client);
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
  bool draining_{false};
};

}  // namespace sluice::upstream
