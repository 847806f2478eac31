#include "router/router.h"

#include <charconv>

#include "common/logger.h"
#include "event/dispatcher.h"
#include "http/utility.h"
#include "router/config_impl.h"
#include "stats/stats.h"

namespace sluice::router {

namespace {

// The most request body kept for a retry after a keep-alive race.
constexpr size_t kRetryBufferLimit = 64 * 1024;

std::optional<uint64_t> parseMs(std::string_view v) {
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

}  // namespace

RouterFilter::~RouterFilter() = default;

http::FilterHeadersStatus RouterFilter::decodeHeaders(http::RequestHeaderMap& headers,
                                                      bool end_stream) {
  http::StreamInfo& info = callbacks_->streamInfo();
  request_headers_ = &headers;
  request_complete_ = end_stream;
  route_ = callbacks_->route();
  if (!route_) {
    info.setResponseFlag(http::ResponseFlag::NoRouteFound);
    callbacks_->sendLocalReply(404, "", nullptr, "route_not_found");
    return http::FilterHeadersStatus::StopIteration;
  }
  entry_ = static_cast<const RouteEntry*>(route_.get());

  // require_tls: the connection is plain (TLS comes later), so such a virtual host sends
  // the client to https, as Envoy does (301); EXTERNAL_ONLY spares internal requests.
  const auto tls = entry_->virtualHost().requireTls();
  if (tls == VirtualHost::TlsRequirement::All ||
      (tls == VirtualHost::TlsRequirement::ExternalOnly &&
       headers.getValue(http::headers::kXEnvoyInternal) != "true")) {
    const std::string location =
        "https://" + std::string(headers.authority()) + std::string(headers.path());
    callbacks_->sendLocalReply(
        301, "",
        [&location](http::ResponseHeaderMap& h) { h.set(http::headers::kLocation, location); },
        "tls_redirect");
    return http::FilterHeadersStatus::StopIteration;
  }

  if (entry_->kind() == RouteEntry::Kind::DirectResponse) {
    callbacks_->sendLocalReply(
        entry_->directResponseCode(), entry_->directResponseBody(),
        [this, &info](http::ResponseHeaderMap& h) {
          entry_->finalizeResponseHeaders(h, info, request_headers_);
        },
        "direct_response");
    return http::FilterHeadersStatus::StopIteration;
  }
  if (entry_->kind() == RouteEntry::Kind::Redirect) {
    const std::string location = entry_->redirectLocation(headers);
    callbacks_->sendLocalReply(
        entry_->redirectResponseCode(), "",
        [this, &info, &location](http::ResponseHeaderMap& h) {
          h.set(http::headers::kLocation, location);
          entry_->finalizeResponseHeaders(h, info, request_headers_);
        },
        "via_redirect");
    return http::FilterHeadersStatus::StopIteration;
  }

  const uint64_t random = callbacks_->streamId();
  const std::string* cluster_name;
  if (!entry_->weightedClusters().empty()) {
    chosen_ = entry_->weightedCluster(random);
    cluster_name = chosen_ ? &chosen_->name : nullptr;
    if (chosen_ && !chosen_->cluster_header.empty()) {
      const std::string* v = headers.get(chosen_->cluster_header);
      cluster_name = (v && !v->empty()) ? v : nullptr;
    }
  } else {
    cluster_name = entry_->clusterName(headers, random);
  }
  auto* tlcm = upstream::ThreadLocalClusterManager::current();
  cluster_ = (cluster_name && tlcm) ? tlcm->get(*cluster_name) : nullptr;
  if (!cluster_) {
    info.setResponseFlag(http::ResponseFlag::NoClusterFound);
    callbacks_->sendLocalReply(503, "", nullptr, "cluster_not_found");
    return http::FilterHeadersStatus::StopIteration;
  }
  info.upstream_cluster = cluster_->info().name();

  // The timeout: the route's, unless the request asks for another (Envoy's header).
  timeout_ = entry_->timeout();
  if (auto v = headers.get("x-envoy-upstream-rq-timeout-ms")) {
    if (auto ms = parseMs(*v)) timeout_ = std::chrono::milliseconds(*ms);
    headers.remove("x-envoy-upstream-rq-timeout-ms");
  }

  host_ = cluster_->chooseHost(this);
  if (!host_) {
    cluster_->info().stats().upstream_cx_none_healthy.inc();
    info.setResponseFlag(http::ResponseFlag::NoHealthyUpstream);
    callbacks_->sendLocalReply(503, "no healthy upstream", nullptr, "no_healthy_upstream");
    return http::FilterHeadersStatus::StopIteration;
  }

  entry_->rewritePathAndHost(headers, !config_->suppress_envoy_headers);
  if (entry_->autoHostRewrite() && !host_->hostname().empty()) {
    headers.set(http::headers::kAuthority, host_->hostname());
  }
  entry_->finalizeRequestHeaders(headers, info, chosen_);
  if (!config_->suppress_envoy_headers && timeout_.count() > 0) {
    headers.set(http::headers::kXEnvoyExpectedRqTimeoutMs, std::to_string(timeout_.count()));
  }

  if (entry_->idleTimeout()) callbacks_->setStreamIdleTimeout(*entry_->idleTimeout());
  // Envoy's route timeout runs from the end of the request to the end of the response.
  if (end_stream) armTimeout();
  startUpstream(false);
  return http::FilterHeadersStatus::StopIteration;
}

void RouterFilter::startUpstream(bool new_connection) {
  callbacks_->streamInfo().upstream_host = host_->address();
  ++callbacks_->streamInfo().attempt_count;
  upstream::Http1ConnPool& pool = cluster_->connPool(host_);
  // The pool may call back right away (onPoolReady or onPoolFailure).
  pending_ = pool.newStream(upstream_, *this, new_connection);
}

void RouterFilter::onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host,
                               bool reused, const network::AddressConstSharedPtr& local_address) {
  pending_ = nullptr;
  upstream_encoder_ = &encoder;
  reused_connection_ = reused;
  http::StreamInfo& info = callbacks_->streamInfo();
  info.upstream_local_address = local_address;
  encoder.getStream().addCallbacks(upstream_);
  if (!watermarks_registered_) {
    callbacks_->addDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = true;
  }
  request_sent_ = callbacks_->dispatcher().timeSource().monotonicTime();
  info.first_upstream_tx_byte = request_sent_ - info.start_monotonic;
  upstream_request_sent_ = true;

  const bool resend = retried_ && !retry_body_.empty();
  const bool body_pending = !buffered_body_.empty();
  const bool headers_only = request_complete_ && !body_pending && !resend && !request_trailers_;
  encoder.encodeHeaders(*request_headers_, headers_only);
  if (upstream_encoder_ == nullptr) return;  // reset while encoding
  const bool body_ends = request_complete_ && !request_trailers_;
  if (resend) {
    // What went out on the first connection, then what arrived since.
    buffer::Buffer copy;
    copy.add(retry_body_);
    if (body_pending) {
      if (retry_body_.length() + buffered_body_.length() <= kRetryBufferLimit) {
        retry_body_.add(buffered_body_);
      }
      copy.move(buffered_body_);
    }
    encoder.encodeData(copy, body_ends);
  } else if (body_pending) {
    if (reused && buffered_body_.length() <= kRetryBufferLimit) {
      retry_body_.add(buffered_body_);
    } else if (reused) {
      retry_possible_ = false;
    }
    encoder.encodeData(buffered_body_, body_ends);
  }
  if (upstream_encoder_ && request_complete_ && request_trailers_) {
    encoder.encodeTrailers(*request_trailers_);
  }
  if (downstream_paused_ && upstream_encoder_) {
    downstream_paused_ = false;
    callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
  }
  if (request_complete_) info.last_upstream_tx_byte = callbacks_->dispatcher().timeSource().monotonicTime() - info.start_monotonic;
}

void RouterFilter::onPoolFailure(upstream::PoolFailureReason reason,
                                 std::string_view transport_failure_reason,
                                 const upstream::HostSharedPtr& host) {
  pending_ = nullptr;
  const char* why = reason == upstream::PoolFailureReason::Timeout ? "connection timeout"
                    : reason == upstream::PoolFailureReason::Overflow ? "overflow"
                                                                      : "connection failure";
  sendUpstreamFailure(503,
                      reason == upstream::PoolFailureReason::Overflow
                          ? http::ResponseFlag::UpstreamOverflow
                          : http::ResponseFlag::UpstreamConnectionFailure,
                      why, transport_failure_reason);
}

http::FilterDataStatus RouterFilter::decodeData(buffer::Buffer& data, bool end_stream) {
  request_complete_ = end_stream;
  if (upstream_complete_) {
    // A tunnel whose upstream side already ended: the client's bytes have nowhere to go.
    data.drain(data.length());
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  if (end_stream) armTimeout();
  if (!upstream_encoder_) {
    buffered_body_.move(data);
    const uint32_t limit = callbacks_->decoderBufferLimit();
    if (!downstream_paused_ && limit > 0 && buffered_body_.length() > limit) {
      // Waiting for a connection with more body than we hold: push back on the client
      // until the body has gone upstream.
      downstream_paused_ = true;
      callbacks_->onDecoderFilterAboveWriteBufferHighWatermark();
    }
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  // Keep a copy for a retry after a keep-alive race, as long as it stays small.
  if (reused_connection_ && retry_possible_ && !response_started_) {
    if (retry_body_.length() + data.length() <= kRetryBufferLimit) {
      retry_body_.add(data);
    } else {
      retry_possible_ = false;
      retry_body_.drain(retry_body_.length());
    }
  }
  upstream_encoder_->encodeData(data, end_stream);
  if (end_stream) {
    auto& info = callbacks_->streamInfo();
    info.last_upstream_tx_byte = callbacks_->dispatcher().timeSource().monotonicTime() - info.start_monotonic;
  }
  return http::FilterDataStatus::StopIterationNoBuffer;
}

void RouterFilter::armTimeout() {
  if (timeout_.count() == 0 || timeout_timer_) return;
  timeout_timer_ = callbacks_->dispatcher().createTimer([this] { onTimeout(); });
  timeout_timer_->enableTimer(timeout_);
}

http::FilterTrailersStatus RouterFilter::decodeTrailers(http::RequestTrailerMap& trailers) {
  request_complete_ = true;
  armTimeout();
  request_trailers_ = &trailers;
  if (upstream_encoder_) upstream_encoder_->encodeTrailers(trailers);
  return http::FilterTrailersStatus::StopIteration;
}

std::chrono::milliseconds RouterFilter::sinceRequestSent() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      callbacks_->dispatcher().timeSource().monotonicTime() - request_sent_);
}

void RouterFilter::onUpstream1xxHeaders(http::HeaderMapPtr&& headers) {
  // 100-continue was answered downstream already; other 1xx pass through.
  if (headers->status() == 100) return;
  callbacks_->encode1xxHeaders(std::move(headers));
}

void RouterFilter::onUpstreamHeaders(http::HeaderMapPtr&& headers, bool end_stream) {
  response_started_ = true;
  retry_body_.drain(retry_body_.length());
  http::StreamInfo& info = callbacks_->streamInfo();
  info.first_upstream_rx_byte = callbacks_->dispatcher().timeSource().monotonicTime() - info.start_monotonic;
  const uint32_t code = headers->status();
  const auto& stats = cluster_->info().stats();
  switch (code / 100) {
    case 1: stats.upstream_rq_1xx.inc(); break;
    case 2: stats.upstream_rq_2xx.inc(); break;
    case 3: stats.upstream_rq_3xx.inc(); break;
    case 4: stats.upstream_rq_4xx.inc(); break;
    case 5: stats.upstream_rq_5xx.inc(); break;
  }
  cluster_->info().responseCodeCounter(code).inc();
  if (code >= 500) {
    host_->stats().rq_error++;
  } else {
    host_->stats().rq_success++;
  }
  if (!config_->suppress_envoy_headers) {
    headers->set(http::headers::kXEnvoyUpstreamServiceTime, std::to_string(sinceRequestSent().count()));
  }
  entry_->finalizeResponseHeaders(*headers, info, request_headers_, chosen_);
  for (const auto& c : downstream_set_cookies_) headers->add("set-cookie", c);
  if (end_stream) onUpstreamComplete();
  callbacks_->encodeHeaders(std::move(headers), end_stream, "via_upstream");
}

void RouterFilter::onUpstreamData(buffer::Buffer& data, bool end_stream) {
  if (end_stream) onUpstreamComplete();
  callbacks_->encodeData(data, end_stream);
}

void RouterFilter::onUpstreamTrailers(http::HeaderMapPtr&& trailers) {
  onUpstreamComplete();
  callbacks_->encodeTrailers(std::move(trailers));
}

void RouterFilter::onUpstreamComplete() {
  upstream_complete_ = true;
  auto& info = callbacks_->streamInfo();
  info.last_upstream_rx_byte = callbacks_->dispatcher().timeSource().monotonicTime() - info.start_monotonic;
  cluster_->info().stats().upstream_rq_completed.inc();
  cluster_->info().stats().upstream_rq_time.recordValue(sinceRequestSent().count());
  cleanup();
}

void RouterFilter::onUpstreamReset(http::StreamResetReason reason) {
  if (done_ || upstream_complete_) return;
  upstream_encoder_ = nullptr;
  upstream_read_disabled_ = 0;  // that connection is gone
  if (watermarks_registered_) {
    callbacks_->removeDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = false;
  }
  if (response_started_) {
    // Part of the response went out: all we can do is reset the client's stream.
    cluster_->info().stats().upstream_rq_rx_reset.inc();
    cleanup();
    callbacks_->resetStream();
    return;
  }
  // The keep-alive race: the upstream closed a reused connection just as the request went
  // out, with no byte of response. Once, on a new connection.
  if (reason == http::StreamResetReason::ConnectionTermination && reused_connection_ && !retried_ &&
      retry_possible_) {
    retried_ = true;
    cluster_->info().stats().upstream_rq_retry.inc();
    SLUICE_LOG(debug, router, "upstream closed a reused connection before responding; retrying");
    startUpstream(true);
    return;
  }
  cluster_->info().stats().upstream_rq_rx_reset.inc();
  const bool termination = reason == http::StreamResetReason::ConnectionTermination;
  std::string reason_text(http::resetReasonString(reason));
  for (char& c : reason_text) {
    if (c == '_') c = ' ';
  }
  sendUpstreamFailure(503,
                      termination ? http::ResponseFlag::UpstreamConnectionTermination
                                  : http::ResponseFlag::UpstreamRemoteReset,
                      reason_text, "");
}

void RouterFilter::sendUpstreamFailure(uint32_t code, http::ResponseFlag flag,
                                       std::string_view reason,
                                       std::string_view transport_failure) {
  http::StreamInfo& info = callbacks_->streamInfo();
  info.setResponseFlag(flag);
  if (!transport_failure.empty()) info.upstream_transport_failure_reason = std::string(transport_failure);
  if (host_) host_->stats().rq_error++;
  std::string body = "upstream connect error or disconnect/reset before headers. reset reason: ";
  body.append(reason);
  if (!transport_failure.empty()) {
    body.append(", transport failure reason: ");
    body.append(transport_failure);
  }
  std::string details = "upstream_reset_before_response_started{";
  for (char c : reason) details.push_back(c == ' ' ? '_' : c);
  if (!transport_failure.empty()) {
    details.push_back('|');
    details.append(transport_failure);
  }
  details.push_back('}');
  cleanup();
  callbacks_->sendLocalReply(code, body, nullptr, details);
}

void RouterFilter::onTimeout() {
  http::StreamInfo& info = callbacks_->streamInfo();
  cluster_->info().stats().upstream_rq_timeout.inc();
  if (host_) host_->stats().rq_timeout++;
  info.setResponseFlag(http::ResponseFlag::UpstreamRequestTimeout);
  // Abandon the upstream request: its connection cannot be reused mid-request.
  if (upstream_encoder_) {
    http::RequestEncoder* enc = upstream_encoder_;
    upstream_encoder_ = nullptr;
    upstream_read_disabled_ = 0;
    enc->getStream().removeCallbacks(upstream_);
    enc->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
  if (response_started_) {
    cleanup();
    callbacks_->resetStream();
    return;
  }
  cleanup();
  callbacks_->sendLocalReply(504, "upstream request timeout", nullptr, "upstream_response_timeout");
}

std::optional<uint64_t> RouterFilter::computeHashKey() {
  const HashPolicy* policy = entry_ ? entry_->hashPolicy() : nullptr;
  if (!policy || hash_computed_) return hash_;
  hash_computed_ = true;
  const http::StreamInfo& info = callbacks_->streamInfo();
  // A generated cookie's value is the same for every request of a connection (a hash of
  // its two addresses), so racing requests get the same one, as in Envoy.
  hash_ = policy->generateHash(
      *request_headers_, info.downstream_remote_address.get(),
      [this, &info](const std::string& name, const std::string& path, std::chrono::seconds ttl) {
        std::string key;
        if (info.downstream_remote_address) key += info.downstream_remote_address->asString();
        if (info.downstream_local_address) key += info.downstream_local_address->asString();
        if (key.empty()) key = std::to_string(callbacks_->streamId());
        char hex[17];
        snprintf(hex, sizeof(hex), "%016llx",
                 static_cast<unsigned long long>(upstream::xxHash64(key)));
        downstream_set_cookies_.push_back(HashPolicy::makeSetCookie(name, hex, path, ttl));
        return std::string(hex);
      });
  return hash_;
}

void RouterFilter::cleanup() {
  if (timeout_timer_) timeout_timer_->disableTimer();
  if (pending_) {
    pending_->cancel();
    pending_ = nullptr;
  }
  if (watermarks_registered_ && upstream_complete_) {
    callbacks_->removeDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = false;
  }
  if (upstream_complete_ && upstream_encoder_) {
    // The connection goes back to the pool: it must not stay paused by this request's
    // back-pressure.
    while (upstream_read_disabled_ > 0) {
      --upstream_read_disabled_;
      upstream_encoder_->getStream().readDisable(false);
    }
    upstream_encoder_->getStream().removeCallbacks(upstream_);
    upstream_encoder_ = nullptr;
  }
}

void RouterFilter::onDestroy() {
  done_ = true;
  if (downstream_paused_) {
    downstream_paused_ = false;
    callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
  }
  timeout_timer_.reset();
  if (pending_) {
    pending_->cancel();
    pending_ = nullptr;
  }
  if (watermarks_registered_) {
    callbacks_->removeDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = false;
  }
  if (upstream_encoder_ && !upstream_complete_) {
    // The client went away (or the stream was reset) mid-request: stop the upstream one.
    http::RequestEncoder* enc = upstream_encoder_;
    upstream_encoder_ = nullptr;
    cluster_->info().stats().upstream_rq_tx_reset.inc();
    enc->getStream().removeCallbacks(upstream_);
    enc->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
}

void RouterFilter::onUpstreamAboveWriteBufferHighWatermark() {
  // The upstream is slow to take the request body.
  callbacks_->onDecoderFilterAboveWriteBufferHighWatermark();
}

void RouterFilter::onUpstreamBelowWriteBufferLowWatermark() {
  callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
}

void RouterFilter::DownstreamWatermarks::onAboveWriteBufferHighWatermark() {
  if (router.upstream_encoder_) {
    ++router.upstream_read_disabled_;
    router.upstream_encoder_->getStream().readDisable(true);
  }
}

void RouterFilter::DownstreamWatermarks::onBelowWriteBufferLowWatermark() {
  if (router.upstream_encoder_ && router.upstream_read_disabled_ > 0) {
    --router.upstream_read_disabled_;
    router.upstream_encoder_->getStream().readDisable(false);
  }
}

http::FilterFactoryCb routerFilterFactory(RouterConfigConstSharedPtr config) {
  return [config](http::FilterChainFactoryCallbacks& cb) {
    cb.addStreamDecoderFilter(std::make_shared<RouterFilter>(config));
  };
}

}  // namespace sluice::router
