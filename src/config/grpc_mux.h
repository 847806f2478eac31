#pragma once

// ADS: one gRPC stream (envoy.service.discovery.v3.AggregatedDiscoveryService /
// StreamAggregatedResources, state of the world) to a cluster of the bootstrap, carrying every
// subscribed resource type. It runs on the main thread over the cluster's own HTTP/2
// connection pool (so the cluster's TLS, timeouts and circuit breakers apply), as Envoy's
// `envoy_grpc` client does.
//
// The protocol, as Envoy's docs describe it: on each new stream, one DiscoveryRequest per
// subscribed type, in Envoy's order (clusters, endpoints, listeners, routes, secrets),
// carrying the version last accepted for that type (empty nonce) and the resource names its
// watches ask for (none: all, for clusters and listeners). A watch made later, or one that
// goes, sends that type's request again with the new set of names. Each response is decoded
// and checked whole, and each watch is offered the resources it asked for; it applies all of
// them or none. Then an ACK (the response's version_info and nonce) or, if any watch refused
// its part, a NACK (the last accepted version, the response's nonce, and `error_detail` with
// the same path-named errors that `--mode validate` prints). A watch started after its
// resources arrived gets the last accepted response at once. When the stream ends the proxy
// keeps its config and reconnects after a jittered exponential back-off (0.5 s doubling up to
// 30 s), resubscribing with the versions it has.
//
// Stats (Envoy's): control_plane.connected_state (gauge, 1 while the stream is up), and per
// watch under its prefix (e.g. "cluster_manager.cds."): update_attempt, update_success,
// update_rejected, update_failure (stream lost), init_fetch_timeout, version, update_time.

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "config/subscription.h"
#include "config/xds_resources.h"
#include "event/dispatcher.h"
#include "http/codec.h"
#include "upstream/cluster_manager.h"
#include "upstream/conn_pool.h"

namespace sluice::stats {
class Store;
}
namespace envoy::service::discovery::v3 {
class DiscoveryResponse;
}
namespace google::protobuf {
class Message;
}

namespace sluice::config {

class GrpcMux : public std::enable_shared_from_this<GrpcMux>,
                public http::ResponseDecoder,
                public http::StreamCallbacks,
                public upstream::ConnPoolCallbacks {
 public:
  // `tlcm`: a view of the clusters on the main thread (the ADS cluster's pools live there).
  // Made with std::make_shared: subscriptions hold it weakly and may outlive it.
  GrpcMux(event::Dispatcher& main, upstream::ThreadLocalClusterManager& tlcm, stats::Store& store);
  ~GrpcMux() override;

  // Where the stream goes; before start(). Subscriptions may be made before it is known.
  void setConfig(AdsConfig config) { config_ = std::move(config); }

  // A watch on resources of `type` (a full message name): all of them (`names` empty) or
  // those named. It asks for them when started (or when the mux starts, if later) and stops
  // being offered updates when destroyed. See SubscriptionFactory::create.
  std::unique_ptr<Subscription> subscribe(std::string_view type, std::vector<std::string> names,
                                          std::string stat_prefix, Subscription::OnUpdate on_update,
                                          std::chrono::milliseconds initial_fetch_timeout,
                                          std::function<void()> on_initialized);
  // Opens the stream (and starts the initial fetch timers of the watches started so far).
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

  class Watch;

 private:
  struct TypeState;

  void connect();
  // The stream ended (`why` is logged): keep the config, reconnect after a back-off.
  void onStreamClosed(std::string_view why);
  // The type's request: its names, or (`reply`) the ACK, or the NACK with `error`.
  void sendRequest(TypeState& type, bool reply, const std::string* error);
  void writeMessage(const std::string& bytes);
  void onMessage(std::string_view bytes);
  TypeState* watchedType(const std::string& type_url);
  // Offers a (state of the world) response to the type's watches; false with errors if any
  // refused its part.
  bool deliver(TypeState& type, const envoy::service::discovery::v3::DiscoveryResponse& resp,
               std::vector<std::string>& errors);
  // ACK, or NACK with the errors.
  void reply(TypeState& type, const envoy::service::discovery::v3::DiscoveryResponse& resp,
             const std::vector<std::string>& errors);
  // A checked resource, shared by every watch it is offered to (never copied), and its wire
  // bytes as received (may be null).
  struct Resource {
    std::shared_ptr<const google::protobuf::Message> msg;
    std::shared_ptr<const std::string> wire;
  };
  // Offers `watch` the resources it asked for (of `type`); false with errors if refused.
  // Nothing is offered (true) if the watch names resources the response lacks.
  bool offer(TypeState& type, Watch& watch, const std::string& version,
             const std::vector<Resource>& resources, std::vector<std::string>& errors);
  TypeState& typeState(std::string_view type);
  void addWatch(Watch& watch);
  void removeWatch(Watch& watch);
  void startWatch(Watch& watch);
  // Sends, on the next loop, the request of each type whose set of names changed.
  void scheduleFlush();

  event::Dispatcher& main_;
  upstream::ThreadLocalClusterManager& tlcm_;
  AdsConfig config_;
  stats::Store& store_;
  std::vector<std::unique_ptr<TypeState>> types_;  // in the order Envoy asks: CDS, EDS, LDS, ...
  bool started_{false};
  upstream::ThreadLocalClusterSharedPtr cluster_;  // held while the stream uses its pool
  upstream::Cancellable* pending_{nullptr};
  http::RequestEncoder* encoder_{nullptr};
  bool stream_up_{false};  // from onPoolReady until the stream ends (encoder_ may go first)
  bool sent_node_{false};
  buffer::Buffer inbound_;  // gRPC frames not yet whole
  event::TimerPtr retry_timer_;
  event::TimerPtr flush_timer_;
  std::chrono::milliseconds backoff_{0};
  uint64_t next_watch_id_{1};
  std::mt19937_64 rng_;
};

}  // namespace sluice::config
