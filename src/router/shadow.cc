#include "router/shadow.h"

#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::router {

std::string shadowHost(std::string_view host) {
  // A port follows the last ':' unless that ':' is inside an IPv6 literal's brackets.
  const size_t colon = host.rfind(':');
  const size_t bracket = host.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || bracket < colon)) {
    return std::string(host.substr(0, colon)) + "-shadow" + std::string(host.substr(colon));
  }
  return std::string(host) + "-shadow";
}

namespace {
thread_local ShadowRequest* live_shadows = nullptr;  // this worker's, linked
thread_local size_t live_count = 0;
}  // namespace

ShadowRequest::ShadowRequest(event::Dispatcher& dispatcher,
                             upstream::ThreadLocalClusterSharedPtr cluster)
    : dispatcher_(dispatcher), tl_cluster_(std::move(cluster)), cluster_(tl_cluster_->info()) {
  next_ = live_shadows;
  if (next_) next_->prev_ = this;
  live_shadows = this;
  ++live_count;
}

ShadowRequest::~ShadowRequest() {
  if (prev_) {
    prev_->next_ = next_;
  } else {
    live_shadows = next_;
  }
  if (next_) next_->prev_ = prev_;
  --live_count;
}

size_t ShadowRequest::inFlight() { return live_count; }

void ShadowRequest::finishAll() {
  // finish() only hands a copy to the dispatcher (it stays listed until deleted).
  for (ShadowRequest* s = live_shadows; s; s = s->next_) s->finish(true);
}

void ShadowRequest::start(event::Dispatcher& dispatcher,
                          const upstream::ThreadLocalClusterSharedPtr& tl_cluster,
                          const http::RequestHeaderMap& headers, buffer::Buffer& body,
                          const http::RequestTrailerMap* trailers,
                          std::chrono::milliseconds timeout, bool downstream_http2) {
  upstream::ThreadLocalCluster& cluster = *tl_cluster;
  upstream::HostSharedPtr host = cluster.chooseHost(nullptr);
  if (!host) {
    cluster.info().stats().upstream_cx_none_healthy.inc();
    return;
  }
  // Owned by itself from here: finish() hands it to the dispatcher.
  auto* shadow = new ShadowRequest(dispatcher, tl_cluster);
  shadow->headers_ = headers;
  shadow->headers_.set(http::headers::kAuthority, shadowHost(headers.authority()));
  shadow->body_.move(body);
  if (trailers) shadow->trailers_ = std::make_unique<http::RequestTrailerMap>(*trailers);
  if (timeout.count() > 0) {
    shadow->timer_ = dispatcher.createTimer([shadow] {
      shadow->cluster_.stats().upstream_rq_timeout.inc();
      shadow->finish(true);
    });
    shadow->timer_->enableTimer(timeout);
  }
  // Mirrors stay at DEFAULT priority (docs/proxy.md).
  upstream::Cancellable* handle =
      cluster.connPool(host, upstream::ResourcePriority::Default, downstream_http2)
          .newStream(*shadow, *shadow);
  if (handle && !shadow->done_) shadow->pending_ = handle;
}

void ShadowRequest::onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr&,
                                bool, const network::AddressConstSharedPtr&) {
  pending_ = nullptr;
  encoder_ = &encoder;
  encoder.getStream().addCallbacks(*this);
  const bool has_body = !body_.empty();
  encoder.encodeHeaders(headers_, !has_body && !trailers_);
  if (encoder_ && has_body) encoder_->encodeData(body_, !trailers_);
  if (encoder_ && trailers_) encoder_->encodeTrailers(*trailers_);
}

void ShadowRequest::onPoolFailure(upstream::PoolFailureReason, std::string_view,
                                  const upstream::HostSharedPtr&) {
  pending_ = nullptr;
  finish(false);
}

void ShadowRequest::decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) {
  const uint32_t code = headers->status();
  const auto& stats = cluster_.stats();
  switch (code / 100) {
    case 2: stats.upstream_rq_2xx.inc(); break;
    case 3: stats.upstream_rq_3xx.inc(); break;
    case 4: stats.upstream_rq_4xx.inc(); break;
    case 5: stats.upstream_rq_5xx.inc(); break;
  }
  cluster_.responseCodeCounter(code).inc();
  if (end_stream) {
    completed_ = true;
    finish(false);
  }
}

void ShadowRequest::decodeData(buffer::Buffer& data, bool end_stream) {
  data.drain(data.length());
  if (end_stream) {
    completed_ = true;
    finish(false);
  }
}

void ShadowRequest::onResetStream(http::StreamResetReason, std::string_view) {
  encoder_ = nullptr;
  cluster_.stats().upstream_rq_rx_reset.inc();
  finish(false);
}

void ShadowRequest::finish(bool reset) {
  if (done_) return;
  done_ = true;
  timer_.reset();
  if (pending_) {
    pending_->cancel();
    pending_ = nullptr;
  }
  if (encoder_) {
    http::RequestEncoder* enc = encoder_;
    encoder_ = nullptr;
    enc->getStream().removeCallbacks(*this);
    if (reset) enc->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
  if (completed_) cluster_.stats().upstream_rq_completed.inc();
  dispatcher_.deferredDelete(std::unique_ptr<event::DeferredDeletable>(this));
}

}  // namespace sluice::router
