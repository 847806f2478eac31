#pragma once

// Upstream hosts and the immutable sets of them that a cluster publishes. A host is shared by
// every worker; its health flags and counters are atomics. A PrioritySet is a snapshot:
// membership changes make a new one, posted to the workers whole.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "network/address.h"

namespace sluice::upstream {

class DetectorHostMonitor;  // upstream/outlier_detection.h

struct Locality {
  std::string region;
  std::string zone;
  std::string sub_zone;
  bool operator==(const Locality&) const = default;
};

// Per-host counters, shown by /clusters.
#define ALL_HOST_STATS(X) \
  X(cx_total)             \
  X(cx_active)            \
  X(cx_connect_fail)      \
  X(rq_total)             \
  X(rq_active)            \
  X(rq_success)           \
  X(rq_error)             \
  X(rq_timeout)

class Host {
 public:
  enum HealthFlag : uint32_t {
    FailedActiveHealthCheck = 1 << 0,
    FailedOutlierCheck = 1 << 1,
    FailedEdsHealth = 1 << 2,
    DegradedEdsHealth = 1 << 3,
    PendingDynamicRemoval = 1 << 4,
  };

  Host(std::string cluster_name, network::AddressConstSharedPtr address, std::string hostname,
       uint32_t weight, uint32_t priority, Locality locality)
      : cluster_name_(std::move(cluster_name)),
        address_(std::move(address)),
        hostname_(std::move(hostname)),
        weight_(weight == 0 ? 1 : weight),
        priority_(priority),
        locality_(std::move(locality)) {}

  const std::string& clusterName() const { return cluster_name_; }
  const network::AddressConstSharedPtr& address() const { return address_; }
  const std::string& hostname() const { return hostname_; }
  uint32_t weight() const { return weight_.load(std::memory_order_relaxed); }
  // EDS changes a kept host's weight in place (main thread; the balancers see it when the
  // new host set that comes with the change is published).
  void setWeight(uint32_t weight) { weight_.store(weight == 0 ? 1 : weight, std::memory_order_relaxed); }
  uint32_t priority() const { return priority_; }
  const Locality& locality() const { return locality_; }

  uint32_t healthFlags() const { return health_flags_.load(std::memory_order_relaxed); }
  void setHealthFlag(HealthFlag f) { health_flags_.fetch_or(f, std::memory_order_relaxed); }
  void clearHealthFlag(HealthFlag f) { health_flags_.fetch_and(~f, std::memory_order_relaxed); }
  // PendingDynamicRemoval alone does not make a host unhealthy (Envoy's: a host that EDS
  // removed while it still passes active health checking keeps serving until it fails).
  bool healthy() const { return (healthFlags() & ~(DegradedEdsHealth | PendingDynamicRemoval)) == 0; }

  struct Stats {
#define SLUICE_HOST_STAT(name) std::atomic<uint64_t> name{0};
    ALL_HOST_STATS(SLUICE_HOST_STAT)
#undef SLUICE_HOST_STAT
  };
  Stats& stats() const { return stats_; }

  // Where the router reports each request's result for outlier detection; null when the
  // cluster has none (then reporting costs one branch). Set on the main thread before the
  // host is first published, never changed afterwards.
  DetectorHostMonitor* outlierDetector() const { return outlier_.get(); }
  void setOutlierDetector(std::shared_ptr<DetectorHostMonitor> m) { outlier_ = std::move(m); }

 private:
  const std::string cluster_name_;
  const network::AddressConstSharedPtr address_;
  const std::string hostname_;
  std::atomic<uint32_t> weight_;
  const uint32_t priority_;
  const Locality locality_;
  std::atomic<uint32_t> health_flags_{0};
  mutable Stats stats_;
  std::shared_ptr<DetectorHostMonitor> outlier_;
};
using HostSharedPtr = std::shared_ptr<Host>;
using HostVector = std::vector<HostSharedPtr>;

// The hosts of one priority level.
struct HostSet {
  uint32_t priority{0};
  HostVector hosts;
  // The load_balancing_weight of each locality of this level that has one (for
  // locality-weighted balancing).
  std::vector<std::pair<Locality, uint32_t>> locality_weights;
};

// Every host of a cluster, by priority (index = priority). Immutable once published.
struct PrioritySet {
  std::vector<HostSet> priorities;
  // EDS: the assignment's policy.overprovisioning_factor; 0: the cluster's (LbConfig).
  uint32_t overprovisioning_factor{0};
  size_t totalHosts() const {
    size_t n = 0;
    for (const auto& p : priorities) n += p.hosts.size();
    return n;
  }
};
using PrioritySetConstSharedPtr = std::shared_ptr<const PrioritySet>;

}  // namespace sluice::upstream
