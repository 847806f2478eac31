#pragma once

// Circuit breakers: one ResourceManager per cluster per routing priority per process (its
// counts are atomics that every worker shares, as Envoy's). A route's `priority` (DEFAULT or
// HIGH) picks which one its requests count against, so HIGH traffic has its own limits. A
// resource is "open" (its cluster.<name>.circuit_breakers.<default|high>.*_open gauge is 1)
// while its count is at its limit; with track_remaining the remaining_* gauges say how much
// room is left.

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

namespace sluice::stats {
class Store;
class Gauge;
}  // namespace sluice::stats

namespace sluice::upstream {

// envoy.config.core.v3.RoutingPriority: the values index per-priority arrays.
enum class ResourcePriority : uint8_t { Default = 0, High = 1 };
constexpr size_t kNumResourcePriorities = 2;

class Resource {
 public:
  Resource() = default;
  void init(uint64_t max, stats::Gauge* open, stats::Gauge* remaining);
  // Whether one more fits. (A check then inc() may overshoot by the number of workers racing;
  // Envoy's breakers are as loose.)
  bool canCreate() const { return count() < max_; }
  void inc();
  void dec();
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  uint64_t max() const { return max_; }

 private:
  void update(uint64_t count);

  std::atomic<uint64_t> count_{0};
  uint64_t max_{1024};
  stats::Gauge* open_{nullptr};
  stats::Gauge* remaining_{nullptr};
};

struct CircuitBreakerThresholds {
  uint64_t max_connections{1024};
  uint64_t max_pending_requests{1024};
  uint64_t max_requests{1024};
  uint64_t max_retries{3};
  // retry_budget: when set it replaces max_retries.
  struct RetryBudget {
    double budget_percent{20.0};
    uint32_t min_retry_concurrency{3};
  };
  std::optional<RetryBudget> retry_budget;
  bool track_remaining{false};
};

class ResourceManager {
 public:
  // `stat_prefix` is "cluster.<name>.circuit_breakers.default." (or ".high.").
  ResourceManager(const CircuitBreakerThresholds& t, stats::Store& store,
                  const std::string& stat_prefix);

  Resource& connections() { return connections_; }
  Resource& pendingRequests() { return pending_requests_; }
  Resource& requests() { return requests_; }
  Resource& retries() { return retries_; }
  // Whether another retry may start now: under max_retries, or with a retry budget under
  // max(min_retry_concurrency, budget_percent% of the active and pending requests).
  bool canRetry() const;
  // The retry limit in force now (for the budget: from the current request counts).
  uint64_t retryLimit() const;

 private:
  Resource connections_;
  Resource pending_requests_;
  Resource requests_;
  Resource retries_;
  std::optional<CircuitBreakerThresholds::RetryBudget> budget_;
};

}  // namespace sluice::upstream
