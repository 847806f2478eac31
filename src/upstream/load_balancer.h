#pragma once

// Load balancers pick a host for a request. One instance per cluster per worker, rebuilt
// when the cluster publishes a new PrioritySet; picking takes no lock.
//
// Health: a host's health flags are atomics that the main thread (health checks) and the
// workers (outlier detection) change. Each change also makes the cluster republish its
// PrioritySet (the same hosts, a new snapshot), so a balancer may precompute what depends on
// health (healthy lists, priority loads, panic) when it is built; until the new snapshot
// arrives it must still not pick a host whose healthy() has become false.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "upstream/host.h"

namespace sluice::network {
class Connection;
}

namespace sluice::upstream {

// What a request tells the load balancer (the router implements it). Every method has a
// neutral default, so a caller with nothing to say passes null or a default instance.
class LoadBalancerContext {
 public:
  virtual ~LoadBalancerContext() = default;
  // The request's hash (route hash_policy), for RING_HASH and MAGLEV; none: pick at random.
  virtual std::optional<uint64_t> computeHashKey() { return std::nullopt; }
  // The downstream connection, when there is one.
  virtual const network::Connection* downstreamConnection() const { return nullptr; }
  // Retry host predicates (previous_hosts): true asks the balancer to pick again, up to
  // hostSelectionRetryCount() more times.
  virtual bool shouldSelectAnotherHost(const Host&) { return false; }
  virtual uint32_t hostSelectionRetryCount() const { return 0; }
};

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // A healthy host of the highest-priority level that has one; null when none is healthy.
  // `context` may be null.
  virtual HostSharedPtr chooseHost(LoadBalancerContext* context) = 0;
};
using LoadBalancerPtr = std::unique_ptr<LoadBalancer>;

// Weighted round robin, smooth: hosts with weights 5, 1, 1 are picked a a b a c a a rather
// than a a a a a b c.
class RoundRobinLoadBalancer : public LoadBalancer {
 public:
  explicit RoundRobinLoadBalancer(PrioritySetConstSharedPtr set);
  HostSharedPtr chooseHost(LoadBalancerContext* context) override;

 private:
  struct Entry {
    HostSharedPtr host;
    int64_t weight;
    int64_t current{0};
  };
  struct Level {
    std::vector<Entry> entries;
    bool weighted{false};
    size_t next{0};
  };
  HostSharedPtr pick(Level& level);

  PrioritySetConstSharedPtr set_;
  std::vector<Level> levels_;
};

}  // namespace sluice::upstream
