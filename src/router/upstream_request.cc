#include "router/upstream_request.h"

#include "router/router.h"
#include "upstream/resource_manager.h"

namespace sluice::router {

UpstreamRequest::UpstreamRequest(RouterFilter& parent, upstream::HostSharedPtr h)
    : host(std::move(h)), parent_(parent) {}

UpstreamRequest::~UpstreamRequest() { abandon(); }

void UpstreamRequest::start(upstream::ConnPool& pool, bool new_connection) {
  upstream::Cancellable* handle = pool.newStream(*this, *this, new_connection);
  // The pool may have called back already (and this try may be over).
  if (!encoder && !detached) pending = handle;
}

void UpstreamRequest::abandon() {
  if (detached) return;
  detached = true;
  per_try_timer.reset();
  per_try_idle_timer.reset();
  if (pending) {
    pending->cancel();
    pending = nullptr;
  }
  if (encoder) {
    http::RequestEncoder* enc = encoder;
    encoder = nullptr;
    enc->getStream().removeCallbacks(*this);
    // A finished response leaves the connection to the pool; otherwise it cannot be reused
    // mid-response.
    if (!response_done) enc->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
}

void UpstreamRequest::release() {
  if (detached) return;
  detached = true;
  per_try_timer.reset();
  per_try_idle_timer.reset();
  if (encoder) {
    // The connection goes back to the pool: it must not stay paused by this request's
    // back-pressure.
    while (read_disabled_ > 0) {
      --read_disabled_;
      encoder->getStream().readDisable(false);
    }
    encoder->getStream().removeCallbacks(*this);
    encoder = nullptr;
  }
}

void UpstreamRequest::readDisable(bool disable) {
  if (!encoder || detached) return;
  if (disable) {
    ++read_disabled_;
    encoder->getStream().readDisable(true);
  } else if (read_disabled_ > 0) {
    --read_disabled_;
    encoder->getStream().readDisable(false);
  }
}

void UpstreamRequest::decode1xxHeaders(http::HeaderMapPtr&& headers) {
  if (!detached) parent_.onUpstream1xxHeaders(*this, std::move(headers));
}

void UpstreamRequest::decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) {
  if (end_stream) response_done = true;
  if (!detached) parent_.onUpstreamHeaders(*this, std::move(headers), end_stream);
}

void UpstreamRequest::decodeData(buffer::Buffer& data, bool end_stream) {
  if (end_stream) response_done = true;
  if (!detached) parent_.onUpstreamData(*this, data, end_stream);
}

void UpstreamRequest::decodeTrailers(http::HeaderMapPtr&& trailers) {
  response_done = true;
  if (!detached) parent_.onUpstreamTrailers(*this, std::move(trailers));
}

void UpstreamRequest::onResetStream(http::StreamResetReason reason, std::string_view) {
  encoder = nullptr;  // that connection is gone
  read_disabled_ = 0;
  if (!detached) parent_.onUpstreamReset(*this, reason);
}

void UpstreamRequest::onAboveWriteBufferHighWatermark() {
  if (!detached) parent_.onUpstreamAboveWriteBufferHighWatermark(*this);
}

void UpstreamRequest::onBelowWriteBufferLowWatermark() {
  if (!detached) parent_.onUpstreamBelowWriteBufferLowWatermark(*this);
}

void UpstreamRequest::onPoolReady(http::RequestEncoder& enc, const upstream::HostSharedPtr&,
                                  bool was_reused,
                                  const network::AddressConstSharedPtr& local_address) {
  pending = nullptr;
  if (detached) return;
  encoder = &enc;
  reused = was_reused;
  enc.getStream().addCallbacks(*this);
  parent_.onPoolReady(*this, enc, local_address);
}

void UpstreamRequest::onPoolFailure(upstream::PoolFailureReason reason,
                                    std::string_view transport_failure_reason,
                                    const upstream::HostSharedPtr&) {
  pending = nullptr;
  if (!detached) parent_.onPoolFailure(*this, reason, transport_failure_reason);
}

}  // namespace sluice::router
