#pragma once

// Load balancers pick a host for a request. One instance per cluster per worker, rebuilt
// when the cluster publishes a new PrioritySet; picking takes no lock.
//
// Health: a host's health flags are atomics that the main thread (health checks) and the
// workers (outlier detection) change. Each change also makes the cluster republish its
// PrioritySet (the same hosts, a new snapshot), so a balancer may precompute what depends on
// health (healthy lists, priority loads, panic) when it is built; until the new snapshot
// arrives it must still not pick a host whose healthy() has become false.

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include "upstream/host.h"
#include "upstream/lb_config.h"

namespace sluice::network {
class Connection;
}
namespace sluice::stats {
class Counter;
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

// What every balancer shares: priority levels and their load, panic, localities.
//
// Priority load (Envoy's): a level's health is min(100, healthy% x overprovisioning_factor
// / 100); levels take load in order, each up to its health, the rest spilling to the next;
// when the total is under 100 the loads are scaled up to sum to 100. A level is in panic
// when that total is under 100 and its healthy% is under healthy_panic_threshold: it then
// balances over all its hosts, healthy or not (counted in lb_healthy_panic). With no
// healthy host anywhere, level 0 takes everything, in panic.
//
// Each level is split into subsets: one of all its hosts (or, in panic, all of them), or,
// with locality-weighted balancing, one per locality, picked by load_balancing_weight x
// the locality's availability, smoothly. The policy picks a host within a subset.
// The hosts' health as a balancer read it when built: [level][host] = healthy.
using HealthSnapshot = std::vector<std::vector<char>>;
HealthSnapshot readHealth(const PrioritySet& set);

class LoadBalancerBase : public LoadBalancer {
 public:
  HostSharedPtr chooseHost(LoadBalancerContext* context) final;

  // For tests: the load of each level in percent, and whether it is in panic.
  const std::vector<uint32_t>& priorityLoads() const { return loads_; }
  bool inPanic(size_t level) const { return levels_[level].panic; }

 protected:
  // `panic_counter` may be null; `seed` seeds this balancer's random choices. `health`: the
  // hosts' health to build from (null: read now); the same snapshot gives the same subsets.
  LoadBalancerBase(PrioritySetConstSharedPtr set, const LbConfig& config,
                   stats::Counter* panic_counter, uint64_t seed, bool use_localities,
                   const HealthSnapshot* health = nullptr);

  struct Subset {
    size_t id;         // 0.. across all levels: index for the policy's own state
    HostVector hosts;  // the candidates: healthy ones, or all in panic
    int64_t weight{1};
    int64_t current{0};  // smooth weighted round robin over subsets
  };
  // A host of `subset` (`hash` when the request has one); null when none is usable. Only a
  // host whose healthy() holds may be returned unless `panic`. `attempt`: how many picks of
  // this request a retry host predicate rejected (the hashing policies move off their point).
  virtual HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                             uint32_t attempt) = 0;

  const std::vector<Subset*>& subsets() const { return all_subsets_; }
  uint64_t random() { return rng_(); }
  std::mt19937_64& rngRef() { return rng_; }
  const LbConfig& config() const { return config_; }

 private:
  struct Level {
    std::vector<Subset> subsets;
    bool panic{false};
  };
  Subset* pickSubset(Level& level);

  PrioritySetConstSharedPtr set_;
  const LbConfig config_;
  stats::Counter* panic_counter_;
  std::mt19937_64 rng_;
  std::vector<Level> levels_;
  std::vector<uint32_t> loads_;
  std::vector<Subset*> all_subsets_;
};

// Weighted round robin, smooth: hosts with weights 5, 1, 1 are picked a a b a c a a rather
// than a a a a a b c.
class RoundRobinLoadBalancer : public LoadBalancerBase {
 public:
  RoundRobinLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config = {},
                         stats::Counter* panic_counter = nullptr, uint64_t seed = 0);

 private:
  struct State {
    std::vector<int64_t> current;
    bool weighted{false};
    size_t next{0};
  };
  HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                     uint32_t attempt) override;
  std::vector<State> state_;
};

// Envoy's LEAST_REQUEST. Equal weights: the fewest active requests among choice_count hosts
// sampled at random. Unequal weights: a weighted random pick with the weights
// weight / (active + 1)^active_request_bias (computed per pick: O(hosts)).
class LeastRequestLoadBalancer : public LoadBalancerBase {
 public:
  LeastRequestLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                           stats::Counter* panic_counter, uint64_t seed);

 private:
  HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                     uint32_t attempt) override;
  std::vector<bool> weighted_;
  std::vector<std::vector<double>> scratch_;  // per subset: the weighted pick's weights
};

// RANDOM: uniform over the candidates; weights are ignored, as in Envoy.
class RandomLoadBalancer : public LoadBalancerBase {
 public:
  RandomLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                     stats::Counter* panic_counter, uint64_t seed);

 private:
  HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                     uint32_t attempt) override;
};

// What RING_HASH and MAGLEV build from a host set: each subset's ring or table, and the
// health snapshot the subsets came from (a balancer given it makes the same subsets).
// Built once per host-set change on the main thread and shared, immutable, by the workers'
// balancers (createHashLbTables), so a big ring is not rebuilt by every worker.
struct HashLbTables {
  HealthSnapshot health;
  // RING_HASH, per subset: (point, index into the subset's hosts), sorted by point.
  std::vector<std::vector<std::pair<uint64_t, uint32_t>>> rings;
  // MAGLEV, per subset: slot -> index into the subset's hosts.
  std::vector<std::vector<uint32_t>> maglev;
};
using HashLbTablesConstSharedPtr = std::shared_ptr<const HashLbTables>;
// For RING_HASH and MAGLEV, the tables of `set` (null for the other policies).
HashLbTablesConstSharedPtr createHashLbTables(const PrioritySetConstSharedPtr& set,
                                              const LbConfig& config);
// How many rings and maglev tables this process has built (tests).
uint64_t hashLbTableBuilds();

// RING_HASH (ketama-style): each host owns points on a ring of 64-bit hashes (xxHash64 of
// "<address>_<i>"), as many as its share of the ring size; a request's hash goes to the
// first point at or after it. Without a hash: a random point.
class RingHashLoadBalancer : public LoadBalancerBase {
 public:
  // `tables`: built already (createHashLbTables) for this set; null: built here.
  RingHashLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                       stats::Counter* panic_counter, uint64_t seed,
                       HashLbTablesConstSharedPtr tables = nullptr);
  // For tests: the number of points of subset `i`'s ring.
  size_t ringSize(size_t i) const { return tables_->rings[i].size(); }
  const HashLbTablesConstSharedPtr& tables() const { return tables_; }

 private:
  RingHashLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                       stats::Counter* panic_counter, uint64_t seed,
                       HashLbTablesConstSharedPtr given, std::shared_ptr<HashLbTables> fresh);
  HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                     uint32_t attempt) override;
  HashLbTablesConstSharedPtr tables_;
};

// MAGLEV: a lookup table of a prime size, filled by each host in turn along its own
// permutation of the slots (offset and skip from its address' hashes), weighted; a
// request's hash indexes it.
class MaglevLoadBalancer : public LoadBalancerBase {
 public:
  MaglevLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                     stats::Counter* panic_counter, uint64_t seed,
                     HashLbTablesConstSharedPtr tables = nullptr);
  const HashLbTablesConstSharedPtr& tables() const { return tables_; }

 private:
  MaglevLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                     stats::Counter* panic_counter, uint64_t seed,
                     HashLbTablesConstSharedPtr given, std::shared_ptr<HashLbTables> fresh);
  HostSharedPtr pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                     uint32_t attempt) override;
  HashLbTablesConstSharedPtr tables_;
};

// The balancer that `config.policy` names.
// `tables`: RING_HASH's and MAGLEV's, built for `set` on the main thread (null: built here).
LoadBalancerPtr createLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                   stats::Counter* panic_counter, uint64_t seed,
                                   HashLbTablesConstSharedPtr tables = nullptr);

// xxHash64 (seed 0 unless given): the hash Envoy uses for hash policies and rings.
uint64_t xxHash64(std::string_view data, uint64_t seed = 0);
bool isPrime(uint64_t n);

}  // namespace sluice::upstream
