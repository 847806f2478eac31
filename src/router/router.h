#pragma once

// The router: the last HTTP filter. It resolves the route, answers redirects and direct
// responses itself, and otherwise picks a cluster and a host, sends the request upstream
// through that host's connection pool, and streams the response back, with the route's
// timeout, header rewrites and the response flags Envoy users know (NR, NC, UH, UF, UC, UT).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "buffer/buffer.h"
#include "http/filter.h"
#include "upstream/cluster_manager.h"
#include "upstream/conn_pool.h"

namespace sluice::router {

class RouteEntry;
struct WeightedCluster;

struct RouterConfig {
  // Envoy sets x-envoy-expected-rq-timeout-ms, x-envoy-upstream-service-time and the
  // x-envoy-original-path header unless told not to.
  bool suppress_envoy_headers{false};
};
using RouterConfigConstSharedPtr = std::shared_ptr<const RouterConfig>;

class RouterFilter : public http::StreamDecoderFilter,
                     public upstream::ConnPoolCallbacks,
                     public upstream::LoadBalancerContext {
 public:
  explicit RouterFilter(RouterConfigConstSharedPtr config) : config_(std::move(config)) {}
  ~RouterFilter() override;

  // http::StreamDecoderFilter
  void setDecoderFilterCallbacks(http::StreamDecoderFilterCallbacks& callbacks) override {
    callbacks_ = &callbacks;
  }
  http::FilterHeadersStatus decodeHeaders(http::RequestHeaderMap& headers, bool end_stream) override;
  http::FilterDataStatus decodeData(buffer::Buffer& data, bool end_stream) override;
  http::FilterTrailersStatus decodeTrailers(http::RequestTrailerMap& trailers) override;
  void onDestroy() override;

  // The upstream response and stream events (through upstream_).
  void onUpstream1xxHeaders(http::HeaderMapPtr&& headers);
  void onUpstreamHeaders(http::HeaderMapPtr&& headers, bool end_stream);
  void onUpstreamData(buffer::Buffer& data, bool end_stream);
  void onUpstreamTrailers(http::HeaderMapPtr&& trailers);
  void onUpstreamReset(http::StreamResetReason reason);
  void onUpstreamAboveWriteBufferHighWatermark();
  void onUpstreamBelowWriteBufferLowWatermark();

  // upstream::ConnPoolCallbacks
  void onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host, bool reused,
                   const network::AddressConstSharedPtr& local_address) override;
  void onPoolFailure(upstream::PoolFailureReason reason, std::string_view transport_failure_reason,
                     const upstream::HostSharedPtr& host) override;

  // upstream::LoadBalancerContext: the route's hash_policy, computed once per request.
  std::optional<uint64_t> computeHashKey() override;
  const network::Connection* downstreamConnection() const override {
    return callbacks_ ? callbacks_->connection() : nullptr;
  }

 private:
  // The upstream side: its response decoder and stream callbacks. (A member object: the
  // names collide with the filter's own.)
  struct Upstream : public http::ResponseDecoder, public http::StreamCallbacks {
    explicit Upstream(RouterFilter& r) : router(r) {}
    void decode1xxHeaders(http::HeaderMapPtr&& h) override { router.onUpstream1xxHeaders(std::move(h)); }
    void decodeHeaders(http::HeaderMapPtr&& h, bool end) override {
      router.onUpstreamHeaders(std::move(h), end);
    }
    void decodeData(buffer::Buffer& d, bool end) override { router.onUpstreamData(d, end); }
    void decodeTrailers(http::HeaderMapPtr&& t) override { router.onUpstreamTrailers(std::move(t)); }
    void onResetStream(http::StreamResetReason reason, std::string_view) override {
      router.onUpstreamReset(reason);
    }
    void onAboveWriteBufferHighWatermark() override { router.onUpstreamAboveWriteBufferHighWatermark(); }
    void onBelowWriteBufferLowWatermark() override { router.onUpstreamBelowWriteBufferLowWatermark(); }
    RouterFilter& router;
  };
  struct DownstreamWatermarks : public http::DownstreamWatermarkCallbacks {
    explicit DownstreamWatermarks(RouterFilter& r) : router(r) {}
    void onAboveWriteBufferHighWatermark() override;
    void onBelowWriteBufferLowWatermark() override;
    RouterFilter& router;
  };
  // The client is slow to take the response: pause the upstream. (A member object, since
  // the callback names collide with StreamCallbacks'.)

  void startUpstream(bool new_connection);
  void armTimeout();
  void onTimeout();
  void sendUpstreamFailure(uint32_t code, http::ResponseFlag flag, std::string_view reason,
                           std::string_view transport_failure);
  void cleanup();
  void onUpstreamComplete();
  std::chrono::milliseconds sinceRequestSent() const;

  RouterConfigConstSharedPtr config_;
  http::StreamDecoderFilterCallbacks* callbacks_{nullptr};
  http::RouteConstSharedPtr route_;
  const RouteEntry* entry_{nullptr};
  const WeightedCluster* chosen_{nullptr};
  http::RequestHeaderMap* request_headers_{nullptr};
  upstream::ThreadLocalCluster* cluster_{nullptr};
  upstream::HostSharedPtr host_;
  upstream::Cancellable* pending_{nullptr};
  http::RequestEncoder* upstream_encoder_{nullptr};
  buffer::Buffer buffered_body_;  // request body that arrived before the connection
  buffer::Buffer retry_body_;     // a copy, for one retry after a keep-alive race
  http::HeaderMapPtr request_trailers_copy_;
  http::RequestTrailerMap* request_trailers_{nullptr};
  event::TimerPtr timeout_timer_;
  DownstreamWatermarks watermarks_{*this};
  Upstream upstream_{*this};
  event::MonotonicTime request_sent_;
  std::chrono::milliseconds timeout_{0};
  uint32_t upstream_read_disabled_{0};
  bool request_complete_{false};
  bool upstream_request_sent_{false};
  bool response_started_{false};
  bool upstream_complete_{false};
  bool reused_connection_{false};
  bool retried_{false};
  bool retry_possible_{true};
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
