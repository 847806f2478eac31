#pragma once

// The router: the last HTTP filter. It resolves the route, answers redirects and direct
// responses itself, and otherwise picks a cluster and a host, sends the request upstream
// through that host's connection pool, and streams the response back, with the route's
// timeout, header rewrites and the response flags Envoy users know (NR, NC, UH, UF, UC, UT).
// Each try upstream is an UpstreamRequest; the route's retry policy may make more (retries
// after a back-off, a hedge after a per-try timeout), and its mirror policies send a copy of
// the request to other clusters (ShadowRequest).

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "common/small_vector.h"
#include "event/timer_list.h"
#include "http/filter.h"
#include "upstream/cluster_manager.h"
#include "upstream/conn_pool.h"
#include "router/upstream_request.h"

namespace sluice::router {

class RouteEntry;
class RetryState;
struct WeightedCluster;

struct RouterConfig {
  // Envoy sets x-envoy-expected-rq-timeout-ms, x-envoy-upstream-service-time and the
  // x-envoy-original-path header unless told not to.
  bool suppress_envoy_headers{false};
  // The randomness of the retry back-off's jitter (unset: a per-thread generator); tests
  // fix it.
  std::function<uint64_t()> random;
};
using RouterConfigConstSharedPtr = std::shared_ptr<const RouterConfig>;

class RouterFilter : public http::StreamDecoderFilter, public upstream::LoadBalancerContext {
 public:
  explicit RouterFilter(RouterConfigConstSharedPtr config);
  ~RouterFilter() override;

  // http::StreamDecoderFilter
  void setDecoderFilterCallbacks(http::StreamDecoderFilterCallbacks& callbacks) override {
    callbacks_ = &callbacks;
  }
  http::FilterHeadersStatus decodeHeaders(http::RequestHeaderMap& headers, bool end_stream) override;
  http::FilterDataStatus decodeData(buffer::Buffer& data, bool end_stream) override;
  http::FilterTrailersStatus decodeTrailers(http::RequestTrailerMap& trailers) override;
  void onDestroy() override;

  // upstream::LoadBalancerContext: the previous_hosts retry predicate.
  bool shouldSelectAnotherHost(const upstream::Host& host) override;
  uint32_t hostSelectionRetryCount() const override;

  // What a try (UpstreamRequest) hears, forwarded with the try.
  void onPoolReady(UpstreamRequest& ur, http::RequestEncoder& encoder,
                   const network::AddressConstSharedPtr& local_address);
  void onPoolFailure(UpstreamRequest& ur, upstream::PoolFailureReason reason,
                     std::string_view transport_failure_reason);
  void onUpstream1xxHeaders(UpstreamRequest& ur, http::HeaderMapPtr&& headers);
  void onUpstreamHeaders(UpstreamRequest& ur, http::HeaderMapPtr&& headers, bool end_stream);
  void onUpstreamData(UpstreamRequest& ur, buffer::Buffer& data, bool end_stream);
  void onUpstreamTrailers(UpstreamRequest& ur, http::HeaderMapPtr&& trailers);
  void onUpstreamReset(UpstreamRequest& ur, http::StreamResetReason reason);
  void onUpstreamAboveWriteBufferHighWatermark(UpstreamRequest& ur);
  void onUpstreamBelowWriteBufferLowWatermark(UpstreamRequest& ur);
  void onPerTryTimeout(UpstreamRequest& ur, bool idle);
  event::Dispatcher& dispatcher() { return callbacks_->dispatcher(); }

  // upstream::LoadBalancerContext: the route's hash_policy, computed once per request.
  std::optional<uint64_t> computeHashKey() override;
  const network::Connection* downstreamConnection() const override {
    return callbacks_ ? callbacks_->connection() : nullptr;
  }

 private:
  // The client is slow to take the response: pause the upstream. (A member object, since
  // the callback names collide with StreamCallbacks'.)
  struct DownstreamWatermarks : public http::DownstreamWatermarkCallbacks {
    explicit DownstreamWatermarks(RouterFilter& r) : router(r) {}
    void onAboveWriteBufferHighWatermark() override;
    void onBelowWriteBufferLowWatermark() override;
    RouterFilter& router;
  };
  // The route's own timeout runs on the worker's list of timers of its length: a relink per
  // request instead of a libevent timer made, armed and deleted. (A timeout a request header
  // chose has a real timer: such durations do not repeat.)
  struct RouteTimeout : public event::ListTimer {
    explicit RouteTimeout(RouterFilter& r) : router(r) {}
    ~RouteTimeout() = default;
    void onListTimeout() override { router.onTimeout(); }
    RouterFilter& router;
  };

  void startAttempt(const upstream::HostSharedPtr& host, bool new_connection);
  // Stops a try and hands it to the dispatcher for deletion.
  void abandonAttempt(UpstreamRequest& ur);
  UpstreamRequest* sendingAttempt();
  // Keeps a copy of request body bytes for a retry, while within the buffer limit.
  void keepForRetry(const buffer::Buffer& data);
  // A retry for `failure` (or a retriable response) if the policy, the tries left and the
  // cluster allow it; sets URX/UO as Envoy does when they do not.
  bool maybeRetry(bool would_retry);
  bool retryPossible() const { return retry_state_ && keep_body_ && !response_started_; }
  void scheduleRetry();
  // Stops a retry waiting for its back-off (a try won, or the request is over).
  void cancelRetry();
  void doRetry();
  void armPerTryTimer(UpstreamRequest& ur);
  void armTimeout();
  void onTimeout();
  void sendUpstreamFailure(uint32_t code, http::ResponseFlag flag, std::string_view reason,
                           std::string_view transport_failure);
  void sendOverflow();
  void cleanup();
  void onUpstreamComplete(UpstreamRequest& ur);
  void startShadows();

  RouterConfigConstSharedPtr config_;
  http::StreamDecoderFilterCallbacks* callbacks_{nullptr};
  http::RouteConstSharedPtr route_;
  const RouteEntry* entry_{nullptr};
  const WeightedCluster* chosen_{nullptr};
  http::RequestHeaderMap* request_headers_{nullptr};
  // Held for the request's life: a cluster replaced or removed meanwhile stays usable.
  upstream::ThreadLocalClusterSharedPtr cluster_;
  // Clusters a retry moved off (replaced by CDS): kept while this request's tries on them
  // and its retry state (the first cluster's breakers) still refer to them.
  std::vector<upstream::ThreadLocalClusterSharedPtr> earlier_clusters_;
  upstream::HostSharedPtr host_;
  SmallVector<UpstreamRequestPtr, 2> attempts_;  // the tries in flight (two while hedging)
  UpstreamRequest* final_{nullptr};           // the try whose response the client gets
  std::vector<const upstream::Host*> attempted_hosts_;
  std::unique_ptr<RetryState> retry_state_;
  event::TimerPtr retry_timer_;
  bool retry_pending_{false};  // retry_timer_ is armed: a retry is coming
  buffer::Buffer buffered_body_;  // request body that arrived while no try could take it
  buffer::Buffer retry_body_;     // the body sent so far, for a retry (while keep_body_)
  http::RequestTrailerMap* request_trailers_{nullptr};
  event::TimerPtr timeout_timer_;
  RouteTimeout route_timeout_{*this};
  bool timeout_armed_{false};  // the timeout was started (once per request)
  DownstreamWatermarks watermarks_{*this};
  upstream::ResourcePriority priority_{upstream::ResourcePriority::Default};  // the route's
  std::chrono::milliseconds timeout_{0};
  std::chrono::milliseconds per_try_timeout_{0};
  std::chrono::milliseconds per_try_idle_timeout_{0};
  uint32_t buffer_limit_{0};
  bool request_complete_{false};
  bool response_started_{false};
  bool upstream_complete_{false};
  bool reused_connection_{false};  // the latest try went out on a reused connection
  bool retried_{false};            // the keep-alive race retry was taken
  bool keep_body_{true};           // retry_body_ holds every body byte sent so far
  bool hedge_{false};
  bool shadowing_{false};
  bool watermarks_registered_{false};
  bool downstream_paused_{false};  // we paused the client while no connection took the body
  bool done_{false};
  bool hash_computed_{false};
  std::optional<uint64_t> hash_;
  std::vector<std::string> downstream_set_cookies_;  // from hash_policy cookies with a ttl
};

// Adds the router to each stream's filter chain.
http::FilterFactoryCb routerFilterFactory(RouterConfigConstSharedPtr config);

}  // namespace sluice::router
