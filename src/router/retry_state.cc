#include "router/retry_state.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "stats/stats.h"

namespace sluice::router {

std::chrono::milliseconds BackOff::next(uint64_t random) {
  const uint64_t window = std::min(next_, max_);
  // Double the window for the next time, up to the maximum.
  next_ = next_ > max_ / 2 ? max_ : next_ * 2;
  return std::chrono::milliseconds(window == 0 ? 0 : random % window);
}

namespace {
const RetryPolicy& defaultPolicy() {
  static const RetryPolicy* p = new RetryPolicy();
  return *p;
}
}  // namespace

std::unique_ptr<RetryState> RetryState::create(const RetryPolicy* policy,
                                               const http::RequestHeaderMap& request,
                                               const upstream::ClusterInfo& cluster,
                                               upstream::ResourcePriority priority) {
  uint32_t retry_on = policy ? policy->retry_on : 0;
  uint32_t num_retries = policy ? policy->num_retries : 1;
  if (const std::string_view* v = request.get("x-envoy-retry-on")) {
    retry_on |= RetryPolicy::parseRetryOn(*v);
  }
  if (const std::string_view* v = request.get("x-envoy-retry-grpc-on")) {
    retry_on |= RetryPolicy::parseRetryOn(*v) & RetryPolicy::kGrpcAll;
  }
  if (const std::string_view* v = request.get("x-envoy-max-retries")) {
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (ec == std::errc() && p == v->data() + v->size()) num_retries = n;
  }
  if (retry_on == 0 || num_retries == 0) return nullptr;
  std::unique_ptr<RetryState> state(new RetryState(policy, retry_on, num_retries, cluster, priority));
  // Comma lists; an entry that does not parse is skipped (as Envoy does).
  auto forEach = [](std::string_view list, auto&& fn) {
    while (!list.empty()) {
      const size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!item.empty()) fn(item);
    }
  };
  if (const std::string_view* v = request.get("x-envoy-retriable-status-codes")) {
    forEach(*v, [&](std::string_view item) {
      uint32_t code = 0;
      auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), code);
      if (ec == std::errc() && p == item.data() + item.size()) state->request_codes_.push_back(code);
    });
  }
  if (const std::string_view* v = request.get("x-envoy-retriable-header-names")) {
    forEach(*v, [&](std::string_view item) {
      std::string name(item);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      state->request_header_names_.push_back(std::move(name));
    });
  }
  return state;
}

RetryState::RetryState(const RetryPolicy* policy, uint32_t retry_on, uint32_t num_retries,
                       const upstream::ClusterInfo& cluster,
                       upstream::ResourcePriority priority)
    : policy_(policy ? policy : &defaultPolicy()),
      retry_on_(retry_on),
      retries_left_(num_retries),
      cluster_(cluster),
      resources_(cluster.resourceManager(priority)),
      back_off_(policy_->base_interval, policy_->max_interval) {}

bool RetryState::wouldRetry(const http::ResponseHeaderMap& response) const {
  // An upstream that says it is overloaded is not retried, whatever the policy (Envoy looks
  // only at the header's presence).
  return retriableResponse(response) && !response.get("x-envoy-overloaded");
}

bool RetryState::retriableResponse(const http::ResponseHeaderMap& response) const {
  const uint32_t code = response.status();
  if ((retry_on_ & RetryPolicy::k5xx) && code >= 500 && code < 600) return true;
  if ((retry_on_ & RetryPolicy::kGatewayError) && code >= 502 && code <= 504) return true;
  if ((retry_on_ & RetryPolicy::kRetriable4xx) && code == 409) return true;
  if (retry_on_ & RetryPolicy::kRetriableStatusCodes) {
    const auto& codes = policy_->retriable_status_codes;
    if (std::find(codes.begin(), codes.end(), code) != codes.end()) return true;
    if (std::find(request_codes_.begin(), request_codes_.end(), code) != request_codes_.end()) {
      return true;
    }
  }
  if (retry_on_ & RetryPolicy::kGrpcAll) {
    // A gRPC error in a trailers-only response. (A status in trailers comes after the
    // headers went to the client: too late to retry, in Envoy too.)
    if (const std::string_view* v = response.get("grpc-status")) {
      uint32_t bit = 0;
      if (*v == "1") bit = RetryPolicy::kGrpcCancelled;
      else if (*v == "4") bit = RetryPolicy::kGrpcDeadlineExceeded;
      else if (*v == "8") bit = RetryPolicy::kGrpcResourceExhausted;
      else if (*v == "13") bit = RetryPolicy::kGrpcInternal;
      else if (*v == "14") bit = RetryPolicy::kGrpcUnavailable;
      if (retry_on_ & bit) return true;
    }
  }
  if (retry_on_ & RetryPolicy::kRetriableHeaders) {
    for (const HeaderMatcher& m : policy_->retriable_headers) {
      if (m.matches(response)) return true;
    }
    for (const std::string& name : request_header_names_) {
      if (response.get(name)) return true;
    }
  }
  return false;
}

bool RetryState::wouldRetry(Failure failure) const {
  // An overflow is the cluster saying no: retrying would only add load.
  if (failure == Failure::Overflow) return false;
  // Envoy counts any reset (and a per-try timeout) as a 5xx.
  if (retry_on_ & (RetryPolicy::k5xx | RetryPolicy::kGatewayError | RetryPolicy::kReset)) {
    return true;
  }
  if ((retry_on_ & RetryPolicy::kConnectFailure) && failure == Failure::ConnectFailure) {
    return true;
  }
  if ((retry_on_ & RetryPolicy::kRefusedStream) && failure == Failure::RefusedStream) return true;
  return false;
}

RetryState::Decision RetryState::decide(bool would_retry) {
  // The previous retry (if any) has had its outcome.
  release();
  auto& stats = cluster_.stats();
  if (!would_retry) {
    if (retries_taken_ > 0) stats.upstream_rq_retry_success.inc();
    return Decision::No;
  }
  if (retries_left_ == 0) {
    stats.upstream_rq_retry_limit_exceeded.inc();
    return Decision::LimitExceeded;
  }
  --retries_left_;
  upstream::ResourceManager& rm = resources_;
  if (!rm.canRetry()) {
    stats.upstream_rq_retry_overflow.inc();
    return Decision::Overflow;
  }
  rm.retries().inc();
  holding_retry_ = true;
  ++retries_taken_;
  stats.upstream_rq_retry.inc();
  stats.upstream_rq_retry_backoff_exponential.inc();
  return Decision::Retry;
}

void RetryState::release() {
  if (!holding_retry_) return;
  holding_retry_ = false;
  resources_.retries().dec();
}

}  // namespace sluice::router
