#pragma once

// One try of a request upstream (Envoy's UpstreamRequest): its wait for a connection, then
// its stream. The router makes one per try (a retry or a hedge is another), and forwards
// what each hears to itself with the try. A try the router has given up on is detached:
// whatever its stream still reports afterwards is dropped.

#include <chrono>

#include "common/object_pool.h"
#include "event/dispatcher.h"
#include "http/codec.h"
#include "upstream/conn_pool.h"
#include "upstream/host.h"

namespace sluice::router {

class RouterFilter;

class UpstreamRequest : public http::ResponseDecoder,
                        public http::StreamCallbacks,
                        public upstream::ConnPoolCallbacks,
                        public event::DeferredDeletable,
                        public Pooled<UpstreamRequest> {
 public:
  UpstreamRequest(RouterFilter& parent, upstream::HostSharedPtr host);
  ~UpstreamRequest() override;

  // Asks the host's pool for a stream; may call back before returning.
  void start(upstream::ConnPool& pool, bool new_connection);
  // Gives up on this try: withdraws it from the pool or resets its stream, and goes quiet.
  void abandon();
  // The response is complete: leave the stream to the pool (which reuses the connection).
  void release();

  // http::ResponseDecoder
  void decode1xxHeaders(http::HeaderMapPtr&& headers) override;
  void decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) override;
  void decodeData(buffer::Buffer& data, bool end_stream) override;
  void decodeTrailers(http::HeaderMapPtr&& trailers) override;
  // http::StreamCallbacks
  void onResetStream(http::StreamResetReason reason, std::string_view) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  // upstream::ConnPoolCallbacks
  void onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host, bool reused,
                   const network::AddressConstSharedPtr& local_address) override;
  void onPoolFailure(upstream::PoolFailureReason reason, std::string_view transport_failure_reason,
                     const upstream::HostSharedPtr& host) override;

  // Back-pressure from the client: pause (or resume) this try's response.
  void readDisable(bool disable);

  const upstream::HostSharedPtr host;
  upstream::Cancellable* pending{nullptr};
  http::RequestEncoder* encoder{nullptr};
  event::TimerPtr per_try_timer;
  event::TimerPtr per_try_idle_timer;
  event::MonotonicTime sent{};
  bool reused{false};
  bool headers_received{false};
  bool response_done{false};  // the upstream finished its response
  bool complete{false};       // ... and the router took it as the request's response
  bool detached{false};
  bool above_watermark{false};  // the upstream pushes back on the request body
  bool timeout_reported{false};  // outlier detection has heard of this try's timeout

 private:
  RouterFilter& parent_;
  uint32_t read_disabled_{0};
};
using UpstreamRequestPtr = std::unique_ptr<UpstreamRequest>;

}  // namespace sluice::router
