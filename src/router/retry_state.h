#pragma once

// The retry decisions of one request (Envoy's RetryState): which failures are retried under
// the route's retry policy and the request's x-envoy-retry-on / x-envoy-max-retries, how many
// retries are left, the cluster's retry circuit breaker or budget, and the back-off between
// tries. Pure logic: the router owns the timers.

#include <chrono>
#include <cstdint>
#include <memory>

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
  // retry headers (x-envoy-retry-on, x-envoy-max-retries), which go upstream unchanged.
  ~RetryState() { retryStarted(); }
  static std::unique_ptr<RetryState> create(const RetryPolicy* policy,
                                            const http::RequestHeaderMap& request,
                                            const upstream::ClusterInfo& cluster);

  // Whether the policy retries this response / failure (ignoring what is left).
  bool wouldRetry(const http::ResponseHeaderMap& response) const;
  bool wouldRetry(Failure failure) const;
  // A failure the policy would retry: takes a retry if one is left and the cluster allows
  // it (counting the stats Envoy counts). On Retry the caller waits backOff() and calls
  // retryStarted() when the back-off ends (or abandoned() if the request ends first).
  Decision decide(bool would_retry);
  std::chrono::milliseconds backOff(uint64_t random) { return back_off_.next(random); }
  void retryStarted();
  // The back-off ended without a retry (the request went away).
  void abandoned() { retryStarted(); }

  const RetryPolicy& policy() const { return *policy_; }
  uint32_t retriesLeft() const { return retries_left_; }
  uint32_t retriesTaken() const { return retries_taken_; }

 private:
  RetryState(const RetryPolicy* policy, uint32_t retry_on, uint32_t num_retries,
             const upstream::ClusterInfo& cluster);

  const RetryPolicy* policy_;  // the route's, or a default one
  uint32_t retry_on_;
  uint32_t retries_left_;
  uint32_t retries_taken_{0};
  const upstream::ClusterInfo& cluster_;
  BackOff back_off_;
  bool holding_retry_{false};  // a retry resource is held during the back-off
};

}  // namespace sluice::router
