#include "upstream/load_balancer.h"

namespace sluice::upstream {

RoundRobinLoadBalancer::RoundRobinLoadBalancer(PrioritySetConstSharedPtr set)
    : set_(std::move(set)) {
  for (const auto& hs : set_->priorities) {
    Level level;
    for (const auto& h : hs.hosts) {
      level.entries.push_back({h, static_cast<int64_t>(h->weight())});
      if (h->weight() != hs.hosts.front()->weight()) level.weighted = true;
    }
    levels_.push_back(std::move(level));
  }
}

HostSharedPtr RoundRobinLoadBalancer::chooseHost(LoadBalancerContext*) {
  for (auto& level : levels_) {
    if (HostSharedPtr h = pick(level)) return h;
  }
  return nullptr;
}

HostSharedPtr RoundRobinLoadBalancer::pick(Level& level) {
  const size_t n = level.entries.size();
  if (n == 0) return nullptr;
  if (!level.weighted) {
    for (size_t tries = 0; tries < n; ++tries) {
      Entry& e = level.entries[level.next];
      level.next = (level.next + 1) % n;
      if (e.host->healthy()) return e.host;
    }
    return nullptr;
  }
  // Smooth weighted round robin over the healthy hosts.
  int64_t total = 0;
  Entry* best = nullptr;
  for (auto& e : level.entries) {
    if (!e.host->healthy()) continue;
    e.current += e.weight;
    total += e.weight;
    if (!best || e.current > best->current) best = &e;
  }
  if (!best) return nullptr;
  best->current -= total;
  return best->host;
}

}  // namespace sluice::upstream
