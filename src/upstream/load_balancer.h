#pragma once

// Load balancers pick a host for a request. One instance per cluster per worker, rebuilt
// when the cluster publishes a new PrioritySet; picking takes no lock.

#include <cstdint>
#include <memory>
#include <vector>

#include "upstream/host.h"

namespace sluice::upstream {

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // A healthy host of the highest-priority level that has one; null when none is healthy.
  virtual HostSharedPtr chooseHost() = 0;
};
using LoadBalancerPtr = std::unique_ptr<LoadBalancer>;

// Weighted round robin, smooth: hosts with weights 5, 1, 1 are picked a a b a c a a rather
// than a a a a a b c.
class RoundRobinLoadBalancer : public LoadBalancer {
 public:
  explicit RoundRobinLoadBalancer(PrioritySetConstSharedPtr set);
  HostSharedPtr chooseHost() override;

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
