#pragma once

// A mirrored request (route request_mirror_policies): a fire-and-forget copy of the client's
// request to another cluster, with "-shadow" appended to its host (before any port), the
// same headers and the same (buffered) body. Nobody waits for it and nothing it hears reaches
// the client: it owns itself and is deleted once its response ends, it fails, or its timeout
// fires. It shows only in the mirror cluster's stats.

#include <chrono>
#include <string>

#include "buffer/buffer.h"
#include "event/dispatcher.h"
#include "http/codec.h"
#include "upstream/cluster_manager.h"

namespace sluice::router {

// "foo.com:8080" -> "foo.com-shadow:8080"; "foo.com" -> "foo.com-shadow".
std::string shadowHost(std::string_view host);

class ShadowRequest : public http::ResponseDecoder,
                      public http::StreamCallbacks,
                      public upstream::ConnPoolCallbacks,
                      public event::DeferredDeletable {
 public:
  // Sends the copy; `timeout` (zero: none) bounds its whole life. `downstream_http2`: the
  // original came over HTTP/2 (for a cluster with use_downstream_protocol_config).
  static void start(event::Dispatcher& dispatcher, const upstream::ThreadLocalClusterSharedPtr& cluster,
                    const http::RequestHeaderMap& headers, buffer::Buffer& body,
                    const http::RequestTrailerMap* trailers, std::chrono::milliseconds timeout,
                    bool downstream_http2);
  // The calling thread's (worker's) copies still in flight. Nothing else owns them, so a
  // worker that stops calls finishAll() before its last deferred deletion: each is reset
  // and handed to the dispatcher.
  static size_t inFlight();
  static void finishAll();
  ~ShadowRequest() override;

  // http::ResponseDecoder: the answer is counted and dropped.
  void decode1xxHeaders(http::HeaderMapPtr&&) override {}
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override;
  void decodeData(buffer::Buffer& data, bool end_stream) override;
  void decodeTrailers(http::HeaderMapPtr&&) override {
    completed_ = true;
    finish(false);
  }
  // http::StreamCallbacks
  void onResetStream(http::StreamResetReason, std::string_view) override;
  void onAboveWriteBufferHighWatermark() override {}
  void onBelowWriteBufferLowWatermark() override {}
  // upstream::ConnPoolCallbacks
  void onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host, bool reused,
                   const network::AddressConstSharedPtr& local_address) override;
  void onPoolFailure(upstream::PoolFailureReason reason, std::string_view transport_failure_reason,
                     const upstream::HostSharedPtr& host) override;

 private:
  ShadowRequest(event::Dispatcher& dispatcher, upstream::ThreadLocalClusterSharedPtr cluster);
  // Ends this copy (resetting its stream if `reset`) and deletes it later.
  void finish(bool reset);

  event::Dispatcher& dispatcher_;
  // Held so that its pools outlive this copy if the cluster is replaced or removed meanwhile.
  const upstream::ThreadLocalClusterSharedPtr tl_cluster_;
  const upstream::ClusterInfo& cluster_;
  http::RequestHeaderMap headers_;
  buffer::Buffer body_;
  std::unique_ptr<http::RequestTrailerMap> trailers_;
  upstream::Cancellable* pending_{nullptr};
  http::RequestEncoder* encoder_{nullptr};
  event::TimerPtr timer_;
  bool completed_{false};
  bool done_{false};
  // This thread's list of copies, until deleted.
  ShadowRequest* prev_{nullptr};
  ShadowRequest* next_{nullptr};
};

}  // namespace sluice::router
