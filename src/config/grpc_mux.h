#pragma once

// ADS: one gRPC stream (envoy.service.discovery.v3.AggregatedDiscoveryService /
// StreamAggregatedResources, state of the world) to a cluster of the bootstrap, carrying every
// subscribed resource type. It runs on the main thread over the cluster's own HTTP/2
// connection pool (so the cluster's TLS, timeouts and circuit breakers apply), as Envoy's
// `envoy_grpc` client does.
//
// The protocol, as Envoy's docs describe it: on each new stream, one DiscoveryRequest per
// subscribed type, in the order subscribed, carrying the version last accepted for that type
// (empty nonce). Each response is decoded and checked whole and offered to the type's
// consumer, which applies all of it or none; then an ACK (the response's version_info and
// nonce) or a NACK (the last accepted version, the response's nonce, and `error_detail` with
// the same path-named errors that `--mode validate` prints). When the stream ends the proxy
// keeps its config and reconnects after a jittered exponential back-off (0.5 s doubling up to
// 30 s), resubscribing with the versions it has.
//
// Stats (Envoy's): control_plane.connected_state (gauge, 1 while the stream is up), and per
// type under its prefix (e.g. "cluster_manager.cds."): update_attempt, update_success,
// update_rejected, update_failure (stream lost), init_fetch_timeout, version, update_time.

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "config/xds_resources.h"
#include "event/dispatcher.h"
#include "http/codec.h"
#include "upstream/cluster_manager.h"
#include "upstream/conn_pool.h"

namespace sluice::stats {
class Store;
}

namespace sluice::config {

class GrpcMux : public http::ResponseDecoder,
                public http::StreamCallbacks,
                public upstream::ConnPoolCallbacks {
 public:
  // Applies an update; false (with "path: message" errors) refuses it, changing nothing.
  using OnUpdate = std::function<bool(DiscoveryUpdate& update, std::vector<std::string>& errors)>;

  // `tlcm`: a view of the clusters on the main thread (the ADS cluster's pools live there).
  GrpcMux(event::Dispatcher& main, upstream::ThreadLocalClusterManager& tlcm, AdsConfig config,
          stats::Store& store);
  ~GrpcMux() override;

  // Subscribes to every resource of `type` (a full message name, e.g. kClusterType).
  // `on_initialized` runs once: after the first update (accepted or refused) or when
  // `initial_fetch_timeout` (0: none) passes without one. Call before start().
  void subscribe(std::string_view type, std::string stat_prefix, OnUpdate on_update,
                 std::chrono::milliseconds initial_fetch_timeout,
                 std::function<void()> on_initialized);
  void start();

  // The version_info last accepted for `type` ("" before one).
  const std::string& version(std::string_view type) const;
  bool connected() const { return encoder_ != nullptr; }

  // ResponseDecoder
  void decode1xxHeaders(http::HeaderMapPtr&&) override {}
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override;
  void decodeData(buffer::Buffer& data, bool end_stream) override;
  void decodeTrailers(http::HeaderMapPtr&& trailers) override;
  // StreamCallbacks
  void onResetStream(http::StreamResetReason reason, std::string_view details) override;
  // ConnPoolCallbacks
  void onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host, bool reused,
                   const network::AddressConstSharedPtr& local_address) override;
  void onPoolFailure(upstream::PoolFailureReason reason, std::string_view transport_failure_reason,
                     const upstream::HostSharedPtr& host) override;

 private:
  struct Subscription;

  void connect();
  // The stream ended (`why` is logged): keep the config, reconnect after a back-off.
  void onStreamClosed(std::string_view why);
  void sendRequest(Subscription& sub, const std::string& nonce, const std::string* error);
  void onMessage(std::string_view bytes);
  void initialized(Subscription& sub);
  Subscription* find(std::string_view type);

  event::Dispatcher& main_;
  upstream::ThreadLocalClusterManager& tlcm_;
  const AdsConfig config_;
  stats::Store& store_;
  std::vector<std::unique_ptr<Subscription>> subs_;
  upstream::ThreadLocalClusterSharedPtr cluster_;  // held while the stream uses its pool
  upstream::Cancellable* pending_{nullptr};
  http::RequestEncoder* encoder_{nullptr};
  bool stream_up_{false};  // from onPoolReady until the stream ends (encoder_ may go first)
  bool sent_node_{false};
  buffer::Buffer inbound_;  // gRPC frames not yet whole
  event::TimerPtr retry_timer_;
  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_;
};

}  // namespace sluice::config
