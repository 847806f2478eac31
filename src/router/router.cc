#include "router/router.h"

#include <charconv>
#include <random>

#include "common/logger.h"
#include "common/object_pool.h"
#include "event/dispatcher.h"
#include "http/utility.h"
#include "router/config_impl.h"
#include "router/retry_state.h"
#include "router/shadow.h"
#include "stats/stats.h"
#include "upstream/outlier_detection.h"

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

uint64_t random64() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen();
}

constexpr std::string_view kAttemptCount = "x-envoy-attempt-count";

// A number's decimal digits on the stack, for a header value (no std::to_string per request).
struct Decimal {
  explicit Decimal(uint64_t v) : len(std::to_chars(buf, buf + sizeof(buf), v).ptr - buf) {}
  std::string_view view() const { return {buf, len}; }
  char buf[20];
  size_t len;
};

}  // namespace

RouterFilter::RouterFilter(RouterConfigConstSharedPtr config) : config_(std::move(config)) {}

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
  std::optional<std::string_view> cluster_name;
  if (!entry_->weightedClusters().empty()) {
    chosen_ = entry_->weightedCluster(random);
    if (chosen_) cluster_name = chosen_->name;
    if (chosen_ && !chosen_->cluster_header.empty()) {
      const std::string_view* v = headers.get(chosen_->cluster_header);
      cluster_name = (v && !v->empty()) ? std::optional<std::string_view>(*v) : std::nullopt;
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

  // The timeout: the route's, unless the request asks for another (Envoy's header). A route
  // with max_stream_duration has none (the connection manager runs that deadline); a gRPC
  // request on a route with the legacy max_grpc_timeout takes its grpc-timeout, less
  // grpc_timeout_offset, capped by max_grpc_timeout (0: no cap), as Envoy's finalTimeout.
  const bool legacy_grpc_timeout =
      !entry_->streamDurationPolicy() && entry_->maxGrpcTimeout() &&
      http::isGrpcContentType(headers.getValue(http::headers::kContentType));
  if (entry_->streamDurationPolicy()) {
    timeout_ = std::chrono::milliseconds(0);
  } else if (legacy_grpc_timeout) {
    auto t = http::parseGrpcTimeout(headers.getValue("grpc-timeout"))
                 .value_or(std::chrono::milliseconds(0));
    if (const auto offset = entry_->grpcTimeoutOffset(); offset && *offset < t) t -= *offset;
    const auto max = *entry_->maxGrpcTimeout();
    if (max.count() > 0 && (t.count() == 0 || t > max)) t = max;
    timeout_ = t;
  } else {
    timeout_ = entry_->timeout();
  }
  if (auto v = headers.get("x-envoy-upstream-rq-timeout-ms")) {
    if (auto ms = parseMs(*v)) timeout_ = std::chrono::milliseconds(*ms);
    headers.remove("x-envoy-upstream-rq-timeout-ms");
  }
  // Retries: the route's (or virtual host's) policy merged with the request's headers.
  const RetryPolicy* policy = entry_->retryPolicy();
  priority_ = entry_->highPriority() ? upstream::ResourcePriority::High
                                     : upstream::ResourcePriority::Default;
  retry_state_ = RetryState::create(policy, headers, cluster_->info(), priority_);
  if (policy) {
    per_try_timeout_ = policy->per_try_timeout;
    per_try_idle_timeout_ = policy->per_try_idle_timeout;
  }
  if (auto v = headers.get("x-envoy-upstream-rq-per-try-timeout-ms")) {
    if (auto ms = parseMs(*v)) per_try_timeout_ = std::chrono::milliseconds(*ms);
    headers.remove("x-envoy-upstream-rq-per-try-timeout-ms");
  }
  // A per-try timeout as long as the whole request's would never fire first.
  if (timeout_.count() > 0 && per_try_timeout_ >= timeout_) per_try_timeout_ = {};
  hedge_ = per_try_timeout_.count() > 0 && entry_->hedgeOnPerTryTimeout();
  shadowing_ = !entry_->mirrorPolicies().empty();
  if (retry_state_ || shadowing_) {
    buffer_limit_ = entry_->perRequestBufferLimit().value_or(callbacks_->decoderBufferLimit());
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
  const auto expected = per_try_timeout_.count() > 0 ? per_try_timeout_ : timeout_;
  if (expected.count() > 0) {
    if (!config_->suppress_envoy_headers) {
      headers.set(http::headers::kXEnvoyExpectedRqTimeoutMs, Decimal(expected.count()).view());
    }
    // The upstream gRPC server learns the deadline it really has.
    if (legacy_grpc_timeout) headers.set("grpc-timeout", http::formatGrpcTimeout(expected));
  }

  if (entry_->idleTimeout()) callbacks_->setStreamIdleTimeout(*entry_->idleTimeout());
  // Envoy's route timeout runs from the end of the request to the end of the response.
  if (end_stream) {
    armTimeout();
    if (shadowing_) startShadows();
  }
  startAttempt(host_, false);
  return http::FilterHeadersStatus::StopIteration;
}

bool RouterFilter::shouldSelectAnotherHost(const upstream::Host& host) {
  if (!retry_state_ || !retry_state_->policy().previous_hosts) return false;
  for (const upstream::Host* h : attempted_hosts_) {
    if (h == &host) return true;
  }
  return false;
}

uint32_t RouterFilter::hostSelectionRetryCount() const {
  return retry_state_ ? retry_state_->policy().host_selection_max_attempts : 0;
}

void RouterFilter::startAttempt(const upstream::HostSharedPtr& host, bool new_connection) {
  // (max_requests and max_pending_requests are the pool's to check: an overflow comes back
  // as onPoolFailure.)
  host_ = host;
  http::StreamInfo& info = callbacks_->streamInfo();
  info.upstream_host = host->address();
  ++info.attempt_count;
  if (retry_state_ && retry_state_->policy().previous_hosts) attempted_hosts_.push_back(host.get());
  if (entry_->virtualHost().includeRequestAttemptCount()) {
    request_headers_->set(kAttemptCount, std::to_string(info.attempt_count));
  }
  attempts_.push_back(std::make_unique<UpstreamRequest>(*this, host));
  UpstreamRequest& ur = *attempts_.back();
  // The pool may call back right away (onPoolReady or onPoolFailure).
  ur.start(cluster_->connPool(host, priority_, info.protocol == http::Protocol::Http2),
           new_connection);
}

void RouterFilter::abandonAttempt(UpstreamRequest& ur) {
  if (ur.above_watermark && !done_) {
    ur.above_watermark = false;
    callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
  }
  ur.abandon();
  for (auto it = attempts_.begin(); it != attempts_.end(); ++it) {
    if (it->get() != &ur) continue;
    UpstreamRequestPtr owned = std::move(*it);
    attempts_.erase(it);
    // Its stream may still be delivering this event: delete it afterwards.
    callbacks_->dispatcher().deferredDelete(std::move(owned));
    break;
  }
  if (final_ == &ur) final_ = nullptr;
}

UpstreamRequest* RouterFilter::sendingAttempt() {
  if (final_) return final_->encoder ? final_ : nullptr;
  for (auto it = attempts_.rbegin(); it != attempts_.rend(); ++it) {
    if ((*it)->encoder) return it->get();
  }
  return nullptr;
}

void RouterFilter::keepForRetry(const buffer::Buffer& data) {
  // Once a response is going downstream no retry needs the body, but a mirror still to
  // start does: it gets the whole body or nothing.
  if (!keep_body_ || (response_started_ && !shadowing_)) return;
  // Without a retry policy or a mirror only the keep-alive race needs the body, and only
  // on a reused connection.
  const bool wanted = retry_state_ || shadowing_ || (reused_connection_ && !retried_);
  if (!wanted) return;
  const size_t limit = (retry_state_ || shadowing_) ? buffer_limit_ : kRetryBufferLimit;
  if (retry_body_.length() + data.length() > limit) {
    // Past the buffer limit: no retry can replay the body any more.
    keep_body_ = false;
    retry_body_.drain(retry_body_.length());
    return;
  }
  retry_body_.add(data);
}

void RouterFilter::onPoolReady(UpstreamRequest& ur, http::RequestEncoder& encoder,
                               const network::AddressConstSharedPtr& local_address) {
  reused_connection_ = ur.reused;
  if (auto* od = ur.host->outlierDetector()) {
    od->putResult(upstream::LocalOriginResult::ConnectSuccess);
  }
  http::StreamInfo& info = callbacks_->streamInfo();
  info.upstream_local_address = local_address;
  if (!watermarks_registered_) {
    callbacks_->addDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = true;
  }
  ur.sent = callbacks_->dispatcher().approximateMonotonicTime();
  info.first_upstream_tx_byte = ur.sent - info.start_monotonic;

  // What went out on an earlier try, then what arrived since.
  buffer::Buffer body;
  if (!retry_body_.empty()) body.add(retry_body_);
  if (!buffered_body_.empty()) {
    keepForRetry(buffered_body_);
    body.move(buffered_body_);
  }
  const bool headers_only = request_complete_ && body.empty() && !request_trailers_;
  encoder.encodeHeaders(*request_headers_, headers_only);
  if (ur.encoder == nullptr) return;  // reset while encoding
  if (!body.empty()) encoder.encodeData(body, request_complete_ && !request_trailers_);
  if (ur.encoder && request_complete_ && request_trailers_) {
    encoder.encodeTrailers(*request_trailers_);
  }
  if (ur.encoder == nullptr) return;
  if (downstream_paused_) {
    downstream_paused_ = false;
    callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
  }
  if (request_complete_) {
    info.last_upstream_tx_byte =
        callbacks_->dispatcher().approximateMonotonicTime() - info.start_monotonic;
    armPerTryTimer(ur);
  }
}

void RouterFilter::onPoolFailure(UpstreamRequest& ur, upstream::PoolFailureReason reason,
                                 std::string_view transport_failure_reason) {
  const bool overflow = reason == upstream::PoolFailureReason::Overflow;
  const std::string transport(transport_failure_reason);
  ur.host->stats().rq_error++;
  if (auto* od = ur.host->outlierDetector(); od && !overflow) {
    od->putResult(reason == upstream::PoolFailureReason::Timeout
                      ? upstream::LocalOriginResult::Timeout
                      : upstream::LocalOriginResult::ConnectFailed);
  }
  abandonAttempt(ur);
  if (!overflow && retryPossible() &&
      maybeRetry(retry_state_->wouldRetry(RetryState::Failure::ConnectFailure))) {
    return;
  }
  if (!attempts_.empty()) return;  // a hedged try is still going
  if (overflow) {
    sendOverflow();
    return;
  }
  const char* why =
      reason == upstream::PoolFailureReason::Timeout ? "connection timeout" : "connection failure";
  sendUpstreamFailure(503, http::ResponseFlag::UpstreamConnectionFailure, why, transport);
}

bool RouterFilter::maybeRetry(bool would_retry) {
  // A retry already waiting for its back-off (a hedge, say) stands in for this try too:
  // deciding again would take a second retry for one request.
  if (would_retry && retry_pending_) return true;
  switch (retry_state_->decide(would_retry)) {
    case RetryState::Decision::Retry:
      scheduleRetry();
      return true;
    case RetryState::Decision::LimitExceeded:
      callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::UpstreamRetryLimitExceeded);
      return false;
    case RetryState::Decision::Overflow:
      callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::UpstreamOverflow);
      return false;
    case RetryState::Decision::No:
      return false;
  }
  return false;
}

void RouterFilter::scheduleRetry() {
  const auto delay = retry_state_->backOff(config_->random ? config_->random() : random64());
  SLUICE_LOG(debug, router, "retrying in {} ms", delay.count());
  if (!retry_timer_) retry_timer_ = callbacks_->dispatcher().createTimer([this] { doRetry(); });
  retry_pending_ = true;
  retry_timer_->enableTimer(delay);
}

void RouterFilter::cancelRetry() {
  if (!retry_pending_) return;
  retry_pending_ = false;
  retry_timer_->disableTimer();
  retry_state_->release();
}

void RouterFilter::doRetry() {
  retry_pending_ = false;
  // A try won meanwhile (its response is going downstream): nothing to retry.
  if (response_started_ || done_) return;
  // The retry cannot start: a hedge's other tries may still answer; otherwise 503.
  auto fail = [this](http::ResponseFlag flag, std::string_view body, std::string_view details) {
    retry_state_->release();
    if (!attempts_.empty()) return;
    callbacks_->streamInfo().setResponseFlag(flag);
    cleanup();
    callbacks_->sendLocalReply(503, body, nullptr, details);
  };
  // The cluster again: a CDS update may have replaced it since the first try (its new hosts
  // and pools take the retry) or removed it. The old one stays alive while tries on it run.
  auto* tlcm = upstream::ThreadLocalClusterManager::current();
  upstream::ThreadLocalClusterSharedPtr now = tlcm ? tlcm->get(cluster_->info().name()) : nullptr;
  if (!now) return fail(http::ResponseFlag::NoClusterFound, "", "cluster_not_found");
  if (now != cluster_) {
    earlier_clusters_.push_back(std::move(cluster_));
    cluster_ = std::move(now);
  }
  // The balancer honours the previous_hosts predicate (shouldSelectAnotherHost).
  upstream::HostSharedPtr host = cluster_->chooseHost(this);
  if (!host) {
    cluster_->info().stats().upstream_cx_none_healthy.inc();
    return fail(http::ResponseFlag::NoHealthyUpstream, "no healthy upstream", "no_healthy_upstream");
  }
  startAttempt(host, false);
}

void RouterFilter::armPerTryTimer(UpstreamRequest& ur) {
  // Both per-try timers start once the whole request went out on this try's connection.
  if (ur.detached || !ur.encoder) return;
  if (per_try_timeout_.count() > 0 && !ur.per_try_timer) {
    ur.per_try_timer =
        callbacks_->dispatcher().createTimer([this, &ur] { onPerTryTimeout(ur, false); });
    ur.per_try_timer->enableTimer(per_try_timeout_);
  }
  if (per_try_idle_timeout_.count() > 0 && !ur.per_try_idle_timer) {
    ur.per_try_idle_timer =
        callbacks_->dispatcher().createTimer([this, &ur] { onPerTryTimeout(ur, true); });
    ur.per_try_idle_timer->enableTimer(per_try_idle_timeout_);
  }
}

void RouterFilter::onPerTryTimeout(UpstreamRequest& ur, bool idle) {
  const auto& stats = cluster_->info().stats();
  if (response_started_) {
    // Once the client has the response's headers the per-try timeout no longer applies, but
    // the idle one does (Envoy's): a response that stops making progress is cut.
    if (!idle || &ur != final_) return;
    stats.upstream_rq_per_try_idle_timeout.inc();
    ur.host->stats().rq_timeout++;
    callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::UpstreamRequestTimeout);
    cleanup();
    callbacks_->resetStream();
    return;
  }
  (idle ? stats.upstream_rq_per_try_idle_timeout : stats.upstream_rq_per_try_timeout).inc();
  ur.host->stats().rq_timeout++;
  ur.timeout_reported = true;
  if (auto* od = ur.host->outlierDetector()) od->putResult(upstream::LocalOriginResult::Timeout);
  if (hedge_ && !idle) {
    // Hedging: this try keeps going, and another starts beside it if a retry is left; the
    // first answer wins. (No flag here: the tries still going may yet answer.)
    if (retryPossible() && !retry_pending_ &&
        retry_state_->decide(retry_state_->wouldRetry(RetryState::Failure::PerTryTimeout)) ==
            RetryState::Decision::Retry) {
      scheduleRetry();
    }
    return;
  }
  abandonAttempt(ur);
  if (retryPossible() && maybeRetry(retry_state_->wouldRetry(RetryState::Failure::PerTryTimeout))) {
    return;
  }
  if (!attempts_.empty()) return;  // a hedged try is still going
  callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::UpstreamRequestTimeout);
  cleanup();
  callbacks_->sendLocalReply(504, "upstream request timeout", nullptr,
                             idle ? "upstream_per_try_idle_timeout" : "upstream_per_try_timeout");
}

http::FilterDataStatus RouterFilter::decodeData(buffer::Buffer& data, bool end_stream) {
  request_complete_ = end_stream;
  if (upstream_complete_) {
    // The upstream answered before the request ended (or a tunnel's upstream side ended):
    // the client's bytes have nowhere to go but a mirror still waiting for the whole body.
    if (shadowing_) {
      keepForRetry(data);
      if (end_stream) startShadows();
    }
    data.drain(data.length());
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  if (end_stream) armTimeout();
  UpstreamRequest* ur = sendingAttempt();
  if (!ur) {
    buffered_body_.move(data);
    const uint32_t limit = callbacks_->decoderBufferLimit();
    if (!downstream_paused_ && limit > 0 && buffered_body_.length() > limit) {
      // Waiting for a connection with more body than we hold: push back on the client
      // until the body has gone upstream.
      downstream_paused_ = true;
      callbacks_->onDecoderFilterAboveWriteBufferHighWatermark();
    }
    if (end_stream && shadowing_) startShadows();
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  keepForRetry(data);
  if (end_stream && shadowing_) startShadows();
  ur->encoder->encodeData(data, end_stream);
  if (end_stream) {
    auto& info = callbacks_->streamInfo();
    info.last_upstream_tx_byte = callbacks_->dispatcher().approximateMonotonicTime() - info.start_monotonic;
    armPerTryTimer(*ur);
  }
  return http::FilterDataStatus::StopIterationNoBuffer;
}

void RouterFilter::armTimeout() {
  if (timeout_.count() == 0 || timeout_armed_) return;
  timeout_armed_ = true;
  if (timeout_ == entry_->timeout()) {
    callbacks_->dispatcher().timerList(timeout_).enable(route_timeout_);
    return;
  }
  timeout_timer_ = callbacks_->dispatcher().createTimer([this] { onTimeout(); });
  timeout_timer_->enableTimer(timeout_);
}

http::FilterTrailersStatus RouterFilter::decodeTrailers(http::RequestTrailerMap& trailers) {
  request_complete_ = true;
  armTimeout();
  request_trailers_ = &trailers;
  if (shadowing_) startShadows();
  if (UpstreamRequest* ur = sendingAttempt()) {
    ur->encoder->encodeTrailers(trailers);
    armPerTryTimer(*ur);
  }
  return http::FilterTrailersStatus::StopIteration;
}

void RouterFilter::onUpstream1xxHeaders(UpstreamRequest&, http::HeaderMapPtr&& headers) {
  // 100-continue was answered downstream already; other 1xx pass through.
  if (headers->status() == 100 || response_started_) return;
  callbacks_->encode1xxHeaders(std::move(headers));
}

void RouterFilter::onUpstreamHeaders(UpstreamRequest& ur, http::HeaderMapPtr&& headers,
                                     bool end_stream) {
  if (response_started_) return;  // a hedged try that lost
  if (ur.per_try_idle_timer) ur.per_try_idle_timer->enableTimer(per_try_idle_timeout_);
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
  if (auto* od = ur.host->outlierDetector()) od->putHttpResponseCode(code);
  if (code >= 500) {
    ur.host->stats().rq_error++;
  } else {
    ur.host->stats().rq_success++;
  }
  if (retryPossible()) {
    const bool would_retry = retry_state_->wouldRetry(*headers);
    if (would_retry && attempts_.size() > 1) {
      // Hedging: another try may still answer better.
      abandonAttempt(ur);
      return;
    }
    if (maybeRetry(would_retry)) {
      abandonAttempt(ur);
      return;
    }
  }

  // This try's response goes to the client; any other try is dropped, and so is a retry
  // still waiting for its back-off.
  response_started_ = true;
  final_ = &ur;
  cancelRetry();
  host_ = ur.host;
  callbacks_->streamInfo().upstream_host = ur.host->address();
  std::vector<UpstreamRequest*> losers;
  for (auto& a : attempts_) {
    if (a.get() != &ur) losers.push_back(a.get());
  }
  for (UpstreamRequest* l : losers) abandonAttempt(*l);
  ur.per_try_timer.reset();
  if (!shadowing_) retry_body_.drain(retry_body_.length());
  http::StreamInfo& info = callbacks_->streamInfo();
  info.first_upstream_rx_byte = callbacks_->dispatcher().approximateMonotonicTime() - info.start_monotonic;
  if (!config_->suppress_envoy_headers) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        callbacks_->dispatcher().approximateMonotonicTime() - ur.sent);
    headers->set(http::headers::kXEnvoyUpstreamServiceTime, Decimal(elapsed.count()).view());
  }
  if (entry_->virtualHost().includeAttemptCountInResponse()) {
    headers->set(kAttemptCount, std::to_string(info.attempt_count));
  }
  entry_->finalizeResponseHeaders(*headers, info, request_headers_, chosen_);
  for (const auto& c : downstream_set_cookies_) headers->add("set-cookie", c);
  if (end_stream) onUpstreamComplete(ur);
  callbacks_->encodeHeaders(std::move(headers), end_stream, "via_upstream");
}

void RouterFilter::onUpstreamData(UpstreamRequest& ur, buffer::Buffer& data, bool end_stream) {
  if (&ur != final_) return;
  if (ur.per_try_idle_timer) ur.per_try_idle_timer->enableTimer(per_try_idle_timeout_);
  if (end_stream) onUpstreamComplete(ur);
  callbacks_->encodeData(data, end_stream);
}

void RouterFilter::onUpstreamTrailers(UpstreamRequest& ur, http::HeaderMapPtr&& trailers) {
  if (&ur != final_) return;
  onUpstreamComplete(ur);
  callbacks_->encodeTrailers(std::move(trailers));
}

void RouterFilter::onUpstreamComplete(UpstreamRequest& ur) {
  upstream_complete_ = true;
  ur.complete = true;
  auto& info = callbacks_->streamInfo();
  const auto now = callbacks_->dispatcher().approximateMonotonicTime();
  info.last_upstream_rx_byte = now - info.start_monotonic;
  cluster_->info().stats().upstream_rq_completed.inc();
  cluster_->info().stats().upstream_rq_time.recordValue(
      std::chrono::duration_cast<std::chrono::milliseconds>(now - ur.sent).count());
  cleanup();
}

void RouterFilter::onUpstreamReset(UpstreamRequest& ur, http::StreamResetReason reason) {
  if (done_ || upstream_complete_) return;
  if (response_started_) {
    if (&ur != final_) return;
    // Part of the response went out: all we can do is reset the client's stream.
    cluster_->info().stats().upstream_rq_rx_reset.inc();
    cleanup();
    callbacks_->resetStream();
    return;
  }
  // The keep-alive race: the upstream closed a reused connection just as the request went
  // out, with no byte of response. Once, on a new connection.
  if (reason == http::StreamResetReason::ConnectionTermination && ur.reused && !retried_ &&
      keep_body_ && attempts_.size() == 1) {
    retried_ = true;
    cluster_->info().stats().upstream_rq_retry.inc();
    SLUICE_LOG(debug, router, "upstream closed a reused connection before responding; retrying");
    const upstream::HostSharedPtr host = ur.host;
    abandonAttempt(ur);
    startAttempt(host, true);
    return;
  }
  cluster_->info().stats().upstream_rq_rx_reset.inc();
  ur.host->stats().rq_error++;
  if (auto* od = ur.host->outlierDetector()) od->putResult(upstream::LocalOriginResult::Reset);
  abandonAttempt(ur);
  // HTTP/2 REFUSED_STREAM: the upstream did not process the request (retry_on refused-stream).
  const auto failure = reason == http::StreamResetReason::RemoteRefusedStreamReset
                           ? RetryState::Failure::RefusedStream
                           : RetryState::Failure::Reset;
  if (retryPossible() && maybeRetry(retry_state_->wouldRetry(failure))) return;
  if (!attempts_.empty()) return;  // a hedged try is still going
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

void RouterFilter::sendOverflow() {
  // A circuit breaker is open: 503, flag UO, and x-envoy-overloaded as Envoy answers.
  callbacks_->streamInfo().setResponseFlag(http::ResponseFlag::UpstreamOverflow);
  cleanup();
  const bool suppress = config_->suppress_envoy_headers;
  callbacks_->sendLocalReply(
      503, "upstream connect error or disconnect/reset before headers. reset reason: overflow",
      [suppress](http::ResponseHeaderMap& h) {
        if (!suppress) h.set("x-envoy-overloaded", "true");
      },
      "upstream_reset_before_response_started{overflow}");
}

void RouterFilter::onTimeout() {
  http::StreamInfo& info = callbacks_->streamInfo();
  cluster_->info().stats().upstream_rq_timeout.inc();
  // Every try still waiting for its response timed out on its host; once per try (a hedged
  // try whose per-try timeout fired was reported then). A try still waiting for a
  // connection never reached its host.
  for (auto& a : attempts_) {
    if (response_started_ || !a->encoder || a->timeout_reported) continue;
    a->timeout_reported = true;
    a->host->stats().rq_timeout++;
    if (auto* od = a->host->outlierDetector()) od->putResult(upstream::LocalOriginResult::Timeout);
  }
  info.setResponseFlag(http::ResponseFlag::UpstreamRequestTimeout);
  // cleanup() abandons every try: a connection cannot be reused mid-request.
  cleanup();
  if (response_started_) {
    callbacks_->resetStream();
    return;
  }
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
  route_timeout_.disableListTimer();
  cancelRetry();
  if (retry_state_) retry_state_->release();  // the request is over
  if (watermarks_registered_) {
    callbacks_->removeDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = false;
  }
  while (!attempts_.empty()) {
    UpstreamRequest& ur = *attempts_.back();
    if (&ur == final_ && ur.complete) {
      // The connection goes back to the pool.
      ur.release();
      callbacks_->dispatcher().deferredDelete(std::move(attempts_.back()));
      attempts_.pop_back();
    } else {
      abandonAttempt(ur);
    }
  }
  final_ = nullptr;
}

void RouterFilter::onDestroy() {
  done_ = true;
  if (downstream_paused_) {
    downstream_paused_ = false;
    callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
  }
  timeout_timer_.reset();
  route_timeout_.disableListTimer();
  cancelRetry();
  retry_timer_.reset();
  if (retry_state_) retry_state_->release();
  if (watermarks_registered_) {
    callbacks_->removeDownstreamWatermarkCallbacks(watermarks_);
    watermarks_registered_ = false;
  }
  while (!attempts_.empty()) {
    UpstreamRequest& ur = *attempts_.back();
    // The client went away (or the stream was reset) mid-request: stop the upstream one.
    if (ur.encoder && !ur.complete) cluster_->info().stats().upstream_rq_tx_reset.inc();
    abandonAttempt(ur);
  }
  final_ = nullptr;
}

void RouterFilter::onUpstreamAboveWriteBufferHighWatermark(UpstreamRequest& ur) {
  // The upstream is slow to take the request body.
  if (ur.above_watermark) return;
  ur.above_watermark = true;
  callbacks_->onDecoderFilterAboveWriteBufferHighWatermark();
}

void RouterFilter::onUpstreamBelowWriteBufferLowWatermark(UpstreamRequest& ur) {
  if (!ur.above_watermark) return;
  ur.above_watermark = false;
  callbacks_->onDecoderFilterBelowWriteBufferLowWatermark();
}

void RouterFilter::DownstreamWatermarks::onAboveWriteBufferHighWatermark() {
  for (auto& a : router.attempts_) a->readDisable(true);
}

void RouterFilter::DownstreamWatermarks::onBelowWriteBufferLowWatermark() {
  for (auto& a : router.attempts_) a->readDisable(false);
}

void RouterFilter::startShadows() {
  shadowing_ = false;  // once per request
  if (!keep_body_) return;  // the body outgrew the buffer: nothing whole to mirror
  auto* tlcm = upstream::ThreadLocalClusterManager::current();
  if (!tlcm) return;
  for (const MirrorPolicy& m : entry_->mirrorPolicies()) {
    if (m.numerator < m.denominator && random64() % m.denominator >= m.numerator) continue;
    upstream::ThreadLocalClusterSharedPtr cluster = tlcm->get(m.cluster);
    if (!cluster) continue;
    buffer::Buffer body;
    body.add(retry_body_);
    body.add(buffered_body_);
    ShadowRequest::start(callbacks_->dispatcher(), cluster, *request_headers_, body,
                         request_trailers_, timeout_,
                         callbacks_->streamInfo().protocol == http::Protocol::Http2);
  }
  if (response_started_) retry_body_.drain(retry_body_.length());  // kept only for the mirror
}

http::FilterFactoryCb routerFilterFactory(RouterConfigConstSharedPtr config) {
  return [config](http::FilterChainFactoryCallbacks& cb) {
    // One pooled block for the filter and its count.
    cb.addStreamDecoderFilter(std::allocate_shared<RouterFilter>(PoolAllocator<RouterFilter>(), config));
  };
}

}  // namespace sluice::router
