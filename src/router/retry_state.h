#pragma once

// The retry decisions of one request (Envoy's RetryState): which failures are retried under
// the route's retry policy and the request's x-envoy-retry-on, x-envoy-retry-grpc-on and x-envoy-max-retries, how many
// retries are left, the cluster's retry circuit breaker or budget, and the back-off between
// tries. Pure logic: the router owns the timers.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "http/header_map.h"
#include "router/config_impl.h"
#include "upstream/cluster_info.h"

namespace sluice::router {

// Fully jittered exponential back-off: the n-th back-off (from 0) is uniform in
// [0, min(max, base * 2^n)).
class BackOff {
 public:
  BackOff(std::chrono::milliseconds base, std::chrono::milliseconds max)
      : next_(base.count()), max_(max.count()) {}
  // `random`: any 64-bit random number.
  std::chrono::milliseconds next(uint64_t random);

 private:
  uint64_t next_;
  uint64_t max_;
};

class RetryState {
 public:
  enum class Failure { ConnectFailure, Reset, RefusedStream, Overflow, PerTryTimeout };
  enum class Decision { No, Retry, LimitExceeded, Overflow };

  // Null when neither the policy nor the request asks for retries. Reads the request's
  // retry headers (x-envoy-retry-on, x-envoy-max-retries, and x-envoy-retriable-status-codes
  // and x-envoy-retriable-header-names, which add to the policy's lists for the
  // retriable-status-codes and retriable-headers conditions); they go upstream unchanged.
  ~RetryState() { release(); }
  // `priority`: the route's, whose circuit breakers bound the retries.
  static std::unique_ptr<RetryState> create(
      const RetryPolicy* policy, const http::RequestHeaderMap& request,
      const upstream::ClusterInfo& cluster,
      upstream::ResourcePriority priority = upstream::ResourcePriority::Default);

  // Whether the policy retries this response / failure (ignoring what is left).
  bool wouldRetry(const http::ResponseHeaderMap& response) const;
  bool wouldRetry(Failure failure) const;
  // The outcome of the latest try: takes a retry if the policy would retry it, one is left
  // and the cluster allows it (counting the stats Envoy counts). As in Envoy, a retry holds
  // one of the cluster's retry resources (max_retries, retry_budget) from this decision
  // until the next decision on this request or release(): through its back-off and its
  // try. So one request holds at most one, however its tries race.
  Decision decide(bool would_retry);
  std::chrono::milliseconds backOff(uint64_t random) { return back_off_.next(random); }
  // Gives back the retry resource held, if any (the request is over, or the retry will
  // not happen).
  void release();
  bool holdingRetry() const { return holding_retry_; }

  const RetryPolicy& policy() const { return *policy_; }
  uint32_t retriesLeft() const { return retries_left_; }
  uint32_t retriesTaken() const { return retries_taken_; }

 private:
  RetryState(const RetryPolicy* policy, uint32_t retry_on, uint32_t num_retries,
             const upstream::ClusterInfo& cluster, upstream::ResourcePriority priority);
  // Whether retry_on names this response (before the overload check).
  bool retriableResponse(const http::ResponseHeaderMap& response) const;

  const RetryPolicy* policy_;  // the route's, or a default one
  uint32_t retry_on_;
  uint32_t retries_left_;
  uint32_t retries_taken_{0};
  const upstream::ClusterInfo& cluster_;
  upstream::ResourceManager& resources_;  // the route priority's circuit breakers
  BackOff back_off_;
  std::vector<uint32_t> request_codes_;         // from x-envoy-retriable-status-codes
  std::vector<std::string> request_header_names_;  // from x-envoy-retriable-header-names
  bool holding_retry_{false};  // one retries() count is ours
};

}  // namespace sluice::router
