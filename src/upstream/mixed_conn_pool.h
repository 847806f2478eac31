#pragma once

// auto_config's pool of one host: HTTP/2 or HTTP/1.1, as the host chooses by ALPN. Until
// the host's choice is known, requests wait while one connection offers "h2,http/1.1"; once
// it is up, the protocol it negotiated (HTTP/1.1 when none) is remembered, the connection
// joins the pool of that protocol, and this and every later request goes to that pool.

#include <list>
#include <memory>

#include "upstream/conn_pool.h"
#include "upstream/http2_conn_pool.h"

namespace sluice::upstream {

class MixedConnPool : public ConnPool {
 public:
  MixedConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                ClusterInfoConstSharedPtr cluster,
                ResourcePriority priority = ResourcePriority::Default);
  ~MixedConnPool() override;

  Cancellable* newStream(http::ResponseDecoder& decoder, ConnPoolCallbacks& callbacks,
                         bool new_connection = false) override;
  void drainConnections() override;
  bool idle() const override;
  const HostSharedPtr& host() const override { return host_; }

  enum class Protocol { Unknown, Http1, Http2 };
  Protocol protocol() const { return protocol_; }

 private:
  struct Probe;
  struct Pending;
  friend struct Probe;
  friend struct Pending;

  ConnPool& poolFor(Protocol protocol);
  void onProbeConnected();
  void onProbeFailed(std::string_view reason, bool timed_out);
  void forwardPending();

  event::Dispatcher& dispatcher_;
  const HostSharedPtr host_;
  const ClusterInfoConstSharedPtr cluster_;
  ResourceManager& resources_;
  Http1ConnPool h1_;
  Http2ConnPool h2_;
  Protocol protocol_{Protocol::Unknown};
  std::unique_ptr<Probe> probe_;
  // Requests that came while the protocol was unknown, until their pool answers them.
  std::list<std::unique_ptr<Pending>> pending_;
  bool draining_{false};
};

}  // namespace sluice::upstream
