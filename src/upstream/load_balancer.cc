#include "upstream/load_balancer.h"

#include <algorithm>
#include <cmath>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "stats/stats.h"

namespace sluice::upstream {

uint64_t xxHash64(std::string_view data, uint64_t seed) {
  return XXH64(data.data(), data.size(), seed);
}

bool isPrime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

// ---- LoadBalancerBase

HealthSnapshot readHealth(const PrioritySet& set) {
  HealthSnapshot up(set.priorities.size());
  for (size_t i = 0; i < set.priorities.size(); ++i) {
    for (const auto& h : set.priorities[i].hosts) up[i].push_back(h->healthy());
  }
  return up;
}

LoadBalancerBase::LoadBalancerBase(PrioritySetConstSharedPtr set, const LbConfig& config,
                                   stats::Counter* panic_counter, uint64_t seed,
                                   bool use_localities, const HealthSnapshot* snapshot)
    : set_(std::move(set)), config_(config), panic_counter_(panic_counter), rng_(seed) {
  const size_t n = set_->priorities.size();
  // The hosts' health, read once: the main thread may change it while this is built, and
  // the loads, panic and candidates below must agree with each other.
  HealthSnapshot read;
  if (!snapshot) read = readHealth(*set_);
  const HealthSnapshot& up = snapshot ? *snapshot : read;
  auto healthyCount = [&up](size_t i) {
    return static_cast<size_t>(std::count(up[i].begin(), up[i].end(), char{1}));
  };
  std::vector<uint32_t> health(n, 0);
  uint32_t total_health = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& hosts = set_->priorities[i].hosts;
    const size_t healthy = healthyCount(i);
    if (!hosts.empty()) {
      health[i] = static_cast<uint32_t>(std::min<uint64_t>(
          100, uint64_t{config_.overprovisioning_factor} * healthy / hosts.size()));
    }
    total_health += health[i];
  }
  const uint32_t normalized = std::min<uint32_t>(100, total_health);

  levels_.resize(n);
  bool all_panic = true, any_hosts = false;
  for (size_t i = 0; i < n; ++i) {
    const auto& hosts = set_->priorities[i].hosts;
    if (hosts.empty()) continue;
    any_hosts = true;
    const size_t healthy = healthyCount(i);
    // Panic only when the levels together lack capacity (normalized health under 100).
    levels_[i].panic = normalized < 100 && config_.healthy_panic_threshold > 0 &&
                       100.0 * healthy / hosts.size() < config_.healthy_panic_threshold;
    all_panic &= levels_[i].panic;
  }

  loads_.assign(n, 0);
  if (any_hosts && all_panic) {
    // Every level in panic: load in proportion to each level's hosts.
    const size_t total = set_->totalHosts();
    uint32_t given = 0;
    for (size_t i = 0; i < n; ++i) {
      loads_[i] = static_cast<uint32_t>(100 * set_->priorities[i].hosts.size() / total);
      given += loads_[i];
    }
    for (size_t i = 0; i < n && given < 100; ++i) {
      if (!set_->priorities[i].hosts.empty()) {
        loads_[i] += 100 - given;
        given = 100;
      }
    }
  } else if (normalized > 0) {
    uint32_t remaining = 100;
    for (size_t i = 0; i < n; ++i) {
      loads_[i] = std::min(remaining, health[i] * 100 / normalized);
      remaining -= loads_[i];
    }
    // Rounding: the rest to the first level with health.
    for (size_t i = 0; i < n && remaining > 0; ++i) {
      if (health[i] > 0) {
        loads_[i] += remaining;
        remaining = 0;
      }
    }
  }

  // Subsets: the candidates of each level, by locality when asked.
  for (size_t i = 0; i < n; ++i) {
    const HostSet& hs = set_->priorities[i];
    Level& level = levels_[i];
    HostVector candidates;
    for (size_t j = 0; j < hs.hosts.size(); ++j) {
      if (level.panic || up[i][j]) candidates.push_back(hs.hosts[j]);
    }
    if (use_localities && config_.locality_weighted) {
      for (const auto& [locality, weight] : hs.locality_weights) {
        Subset s{0, {}, 0, 0};
        size_t total = 0, healthy = 0;
        for (size_t j = 0; j < hs.hosts.size(); ++j) {
          if (!(hs.hosts[j]->locality() == locality)) continue;
          ++total;
          healthy += up[i][j] ? 1 : 0;
        }
        for (const auto& h : candidates) {
          if (h->locality() == locality) s.hosts.push_back(h);
        }
        if (s.hosts.empty() || total == 0) continue;
        // A locality's share: its weight times its availability (overprovisioned, capped),
        // or its plain weight in panic.
        const double availability =
            level.panic ? 1.0
                        : std::min(1.0, config_.overprovisioning_factor / 100.0 * healthy / total);
        s.weight = static_cast<int64_t>(std::llround(weight * availability * 1000.0));
        if (s.weight > 0) level.subsets.push_back(std::move(s));
      }
    }
    // Without locality weighting, or when no locality of the level has a weight (or any
    // available host): the level's candidates as one.
    if (level.subsets.empty() && !candidates.empty()) {
      level.subsets.push_back(Subset{0, std::move(candidates), 1, 0});
    }
  }
  for (auto& level : levels_) {
    for (auto& s : level.subsets) {
      s.id = all_subsets_.size();
      all_subsets_.push_back(&s);
    }
  }
}

LoadBalancerBase::Subset* LoadBalancerBase::pickSubset(Level& level) {
  if (level.subsets.empty()) return nullptr;
  if (level.subsets.size() == 1) return &level.subsets[0];
  // Smooth weighted round robin over the localities.
  int64_t total = 0;
  Subset* best = nullptr;
  for (auto& s : level.subsets) {
    s.current += s.weight;
    total += s.weight;
    if (!best || s.current > best->current) best = &s;
  }
  best->current -= total;
  return best;
}

HostSharedPtr LoadBalancerBase::chooseHost(LoadBalancerContext* context) {
  if (levels_.empty()) return nullptr;
  // Only the hashing policies use the request's hash: computing it costs (and a cookie
  // hash_policy with a ttl would even set a cookie) for nothing on the others.
  const bool hashing =
      config_.policy == LbConfig::Policy::RingHash || config_.policy == LbConfig::Policy::Maglev;
  const std::optional<uint64_t> hash =
      context && hashing ? context->computeHashKey() : std::nullopt;
  // The level: by load, with the request's hash when it has one (so a key keeps its level).
  // One level (the usual case) costs no random number.
  size_t chosen = 0;
  if (loads_.size() > 1) {
    const uint32_t point = static_cast<uint32_t>((hash ? *hash : random()) % 100);
    uint32_t cumulative = 0;
    for (size_t i = 0; i < loads_.size(); ++i) {
      cumulative += loads_[i];
      if (point < cumulative) {
        chosen = i;
        break;
      }
    }
  }
  const uint32_t attempts = context ? context->hostSelectionRetryCount() : 0;
  for (uint32_t attempt = 0;; ++attempt) {
    HostSharedPtr host;
    Level& level = levels_[chosen];
    if (Subset* s = pickSubset(level)) host = pick(*s, level.panic, hash, attempt);
    if (!host) {
      // The snapshot is stale (hosts turned unhealthy since): the first level with a
      // healthy host that the policy gives.
      for (auto& l : levels_) {
        for (auto& s : l.subsets) {
          if ((host = pick(s, false, hash, attempt))) break;
        }
        if (host) break;
      }
      if (!host) return nullptr;
    } else if (level.panic && panic_counter_) {
      panic_counter_->inc();
    }
    if (attempt == attempts || !context->shouldSelectAnotherHost(*host)) return host;
  }
}

// ---- RoundRobinLoadBalancer

RoundRobinLoadBalancer::RoundRobinLoadBalancer(PrioritySetConstSharedPtr set,
                                               const LbConfig& config,
                                               stats::Counter* panic_counter, uint64_t seed)
    : LoadBalancerBase(std::move(set), config, panic_counter, seed, true) {
  for (const Subset* s : subsets()) {
    State st;
    st.current.assign(s->hosts.size(), 0);
    for (const auto& h : s->hosts) st.weighted |= h->weight() != s->hosts.front()->weight();
    // Each build (and each worker: they have their own seeds) starts at its own host, so
    // that rebuilds do not all send their first requests to hosts[0]. Weighted: the smooth
    // sequence advanced by as many picks (as Envoy advances its weighted scheduler), so the
    // heaviest host does not take every build's first request.
    const size_t skip = s->hosts.empty() ? 0 : seed % s->hosts.size();
    if (!st.weighted) {
      st.next = skip;
    } else {
      int64_t total = 0;
      for (const auto& h : s->hosts) total += h->weight();
      for (size_t k = 0; k < skip; ++k) {
        size_t best = 0;
        for (size_t i = 0; i < s->hosts.size(); ++i) {
          st.current[i] += s->hosts[i]->weight();
          if (st.current[i] > st.current[best]) best = i;
        }
        st.current[best] -= total;
      }
    }
    state_.push_back(std::move(st));
  }
}

HostSharedPtr RoundRobinLoadBalancer::pick(Subset& subset, bool panic, std::optional<uint64_t>,
                                           uint32_t) {
  State& st = state_[subset.id];
  const size_t n = subset.hosts.size();
  if (!st.weighted) {
    for (size_t tries = 0; tries < n; ++tries) {
      const HostSharedPtr& h = subset.hosts[st.next];
      st.next = (st.next + 1) % n;
      if (panic || h->healthy()) return h;
    }
    return nullptr;
  }
  // Smooth weighted round robin.
  int64_t total = 0;
  size_t best = n;
  for (size_t i = 0; i < n; ++i) {
    if (!panic && !subset.hosts[i]->healthy()) continue;
    st.current[i] += subset.hosts[i]->weight();
    total += subset.hosts[i]->weight();
    if (best == n || st.current[i] > st.current[best]) best = i;
  }
  if (best == n) return nullptr;
  st.current[best] -= total;
  return subset.hosts[best];
}

// ---- LeastRequestLoadBalancer

LeastRequestLoadBalancer::LeastRequestLoadBalancer(PrioritySetConstSharedPtr set,
                                                   const LbConfig& config,
                                                   stats::Counter* panic_counter, uint64_t seed)
    : LoadBalancerBase(std::move(set), config, panic_counter, seed, true) {
  for (const Subset* s : subsets()) {
    bool weighted = false;
    for (const auto& h : s->hosts) weighted |= h->weight() != s->hosts.front()->weight();
    weighted_.push_back(weighted);
    scratch_.emplace_back().reserve(weighted ? s->hosts.size() : 0);
  }
}

HostSharedPtr LeastRequestLoadBalancer::pick(Subset& subset, bool panic, std::optional<uint64_t>,
                                             uint32_t) {
  const auto& hosts = subset.hosts;
  const size_t n = hosts.size();
  auto usable = [panic](const Host& h) { return panic || h.healthy(); };
  if (!weighted_[subset.id]) {
    const Host* best = nullptr;
    size_t best_i = 0;
    for (uint32_t c = 0; c < config().choice_count; ++c) {
      const size_t i = random() % n;
      if (!usable(*hosts[i])) continue;
      if (!best || hosts[i]->stats().rq_active < best->stats().rq_active) {
        best = hosts[i].get();
        best_i = i;
      }
    }
    if (best) return hosts[best_i];
    // Every sample had turned unhealthy: the first usable one.
    for (const auto& h : hosts) {
      if (usable(*h)) return h;
    }
    return nullptr;
  }
  // Weighted: weight / (active + 1)^bias, into this subset's scratch (no allocation per pick).
  const double bias = config().active_request_bias;
  std::vector<double>& weights = scratch_[subset.id];
  weights.assign(n, 0.0);
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!usable(*hosts[i])) continue;
    const double active = static_cast<double>(hosts[i]->stats().rq_active.load());
    weights[i] = bias == 0 ? hosts[i]->weight() : hosts[i]->weight() / std::pow(active + 1.0, bias);
    total += weights[i];
  }
  if (total <= 0) return nullptr;
  double point = std::uniform_real_distribution<double>(0, total)(rngRef());
  for (size_t i = 0; i < n; ++i) {
    if (weights[i] <= 0) continue;
    if (point < weights[i]) return hosts[i];
    point -= weights[i];
  }
  for (size_t i = n; i-- > 0;) {
    if (weights[i] > 0) return hosts[i];
  }
  return nullptr;
}

// ---- RandomLoadBalancer

RandomLoadBalancer::RandomLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                       stats::Counter* panic_counter, uint64_t seed)
    : LoadBalancerBase(std::move(set), config, panic_counter, seed, true) {}

HostSharedPtr RandomLoadBalancer::pick(Subset& subset, bool panic, std::optional<uint64_t>,
                                       uint32_t) {
  const size_t n = subset.hosts.size();
  const size_t start = random() % n;
  for (size_t k = 0; k < n; ++k) {
    const HostSharedPtr& h = subset.hosts[(start + k) % n];
    if (panic || h->healthy()) return h;
  }
  return nullptr;
}

// ---- RingHashLoadBalancer and MaglevLoadBalancer

namespace {
std::atomic<uint64_t> hash_table_builds{0};
}  // namespace

uint64_t hashLbTableBuilds() { return hash_table_builds.load(std::memory_order_relaxed); }

HashLbTablesConstSharedPtr createHashLbTables(const PrioritySetConstSharedPtr& set,
                                              const LbConfig& config) {
  // A balancer built here (nobody picks with it) leaves its tables behind.
  switch (config.policy) {
    case LbConfig::Policy::RingHash:
      return RingHashLoadBalancer(set, config, nullptr, 0).tables();
    case LbConfig::Policy::Maglev:
      return MaglevLoadBalancer(set, config, nullptr, 0).tables();
    default:
      return nullptr;
  }
}

namespace {
// A fresh HashLbTables with the hosts' health read now, unless `given` has been built.
std::shared_ptr<HashLbTables> freshTables(const HashLbTablesConstSharedPtr& given,
                                          const PrioritySet& set) {
  if (given) return nullptr;
  auto t = std::make_shared<HashLbTables>();
  t->health = readHealth(set);
  return t;
}
}  // namespace

RingHashLoadBalancer::RingHashLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                           stats::Counter* panic_counter, uint64_t seed,
                                           HashLbTablesConstSharedPtr tables)
    : RingHashLoadBalancer(set, config, panic_counter, seed, tables, freshTables(tables, *set)) {}

RingHashLoadBalancer::RingHashLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                           stats::Counter* panic_counter, uint64_t seed,
                                           HashLbTablesConstSharedPtr given,
                                           std::shared_ptr<HashLbTables> fresh)
    : LoadBalancerBase(std::move(set), config, panic_counter, seed, false,
                       given ? &given->health : &fresh->health) {
  if (given) {
    tables_ = std::move(given);
    return;
  }
  hash_table_builds.fetch_add(1, std::memory_order_relaxed);
  for (const Subset* s : subsets()) {
    auto& ring = fresh->rings.emplace_back();
    uint64_t total_weight = 0;
    uint32_t min_weight = UINT32_MAX;
    for (const auto& h : s->hosts) {
      total_weight += h->weight();
      min_weight = std::min(min_weight, h->weight());
    }
    // Enough points that the lightest host has at least one, and the ring at least
    // minimum_ring_size, at most maximum_ring_size.
    const double min_share = static_cast<double>(min_weight) / total_weight;
    const double scale = std::min(std::ceil(min_share * config.minimum_ring_size) / min_share,
                                  static_cast<double>(config.maximum_ring_size));
    ring.reserve(static_cast<size_t>(scale) + s->hosts.size());
    double current = 0;
    uint64_t placed = 0;
    for (uint32_t j = 0; j < s->hosts.size(); ++j) {
      const auto& h = s->hosts[j];
      const std::string name = h->address()->asString();
      current += scale * h->weight() / total_weight;
      const uint64_t target = static_cast<uint64_t>(std::floor(current));
      for (uint64_t i = 0; placed < target; ++i, ++placed) {
        ring.emplace_back(xxHash64(name + "_" + std::to_string(i)), j);
      }
    }
    std::sort(ring.begin(), ring.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  tables_ = std::move(fresh);
}

HostSharedPtr RingHashLoadBalancer::pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                                         uint32_t attempt) {
  const auto& ring = tables_->rings[subset.id];
  if (ring.empty()) return nullptr;
  const uint64_t h = hash ? *hash : random();
  auto it = std::lower_bound(ring.begin(), ring.end(), h,
                             [](const auto& e, uint64_t v) { return e.first < v; });
  size_t i = it == ring.end() ? 0 : static_cast<size_t>(it - ring.begin());
  // A retry host predicate rejected the last pick: the point `attempt` further on (Envoy's
  // way; it may land on the same host again, and the predicate asks again).
  i = (i + attempt) % ring.size();
  // A host that turned unhealthy since the ring was built: the next point's.
  for (size_t k = 0; k < ring.size(); ++k) {
    const HostSharedPtr& host = subset.hosts[ring[(i + k) % ring.size()].second];
    if (panic || host->healthy()) return host;
  }
  return nullptr;
}

MaglevLoadBalancer::MaglevLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                       stats::Counter* panic_counter, uint64_t seed,
                                       HashLbTablesConstSharedPtr tables)
    : MaglevLoadBalancer(set, config, panic_counter, seed, tables, freshTables(tables, *set)) {}

MaglevLoadBalancer::MaglevLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                       stats::Counter* panic_counter, uint64_t seed,
                                       HashLbTablesConstSharedPtr given,
                                       std::shared_ptr<HashLbTables> fresh)
    : LoadBalancerBase(std::move(set), config, panic_counter, seed, false,
                       given ? &given->health : &fresh->health) {
  if (given) {
    tables_ = std::move(given);
    return;
  }
  hash_table_builds.fetch_add(1, std::memory_order_relaxed);
  const uint64_t m = config.maglev_table_size;
  for (const Subset* s : subsets()) {
    auto& table = fresh->maglev.emplace_back();
    const size_t n = s->hosts.size();
    if (n == 0) continue;
    struct Perm {
      uint64_t offset, skip, next{0};
      double target{0};
    };
    std::vector<Perm> perms;
    uint32_t max_weight = 0;
    for (const auto& h : s->hosts) {
      const std::string name = h->address()->asString();
      perms.push_back({xxHash64(name, 0) % m, xxHash64(name, 1) % (m - 1) + 1});
      max_weight = std::max(max_weight, h->weight());
    }
    table.assign(m, UINT32_MAX);
    uint64_t filled = 0;
    // Rounds: each host earns its weight; a full max_weight buys it its next free slot, so
    // slots go in proportion to weight.
    while (filled < m) {
      for (size_t i = 0; i < n && filled < m; ++i) {
        Perm& p = perms[i];
        p.target += static_cast<double>(s->hosts[i]->weight()) / max_weight;
        while (p.target >= 1.0 && filled < m) {
          p.target -= 1.0;
          uint64_t slot;
          do {
            slot = (p.offset + p.skip * p.next) % m;
            ++p.next;
          } while (table[slot] != UINT32_MAX);
          table[slot] = static_cast<uint32_t>(i);
          ++filled;
        }
      }
    }
  }
  tables_ = std::move(fresh);
}

HostSharedPtr MaglevLoadBalancer::pick(Subset& subset, bool panic, std::optional<uint64_t> hash,
                                       uint32_t attempt) {
  const auto& table = tables_->maglev[subset.id];
  if (table.empty()) return nullptr;
  uint64_t h = hash ? *hash : random();
  // A retry host predicate rejected the last pick: the hash mixed with the attempt (Envoy's
  // way), another slot.
  if (attempt > 0) h = xxHash64(std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), attempt);
  // A host that turned unhealthy since the table was built: rehash a few times, then any.
  for (int k = 0; k < 8; ++k) {
    const HostSharedPtr& host = subset.hosts[table[h % table.size()]];
    if (panic || host->healthy()) return host;
    h = xxHash64(std::string_view(reinterpret_cast<const char*>(&h), sizeof(h)), k + 1);
  }
  for (const auto& host : subset.hosts) {
    if (host->healthy()) return host;
  }
  return nullptr;
}

LoadBalancerPtr createLoadBalancer(PrioritySetConstSharedPtr set, const LbConfig& config,
                                   stats::Counter* panic_counter, uint64_t seed,
                                   HashLbTablesConstSharedPtr tables) {
  switch (config.policy) {
    case LbConfig::Policy::LeastRequest:
      return std::make_unique<LeastRequestLoadBalancer>(std::move(set), config, panic_counter,
                                                        seed);
    case LbConfig::Policy::Random:
      return std::make_unique<RandomLoadBalancer>(std::move(set), config, panic_counter, seed);
    case LbConfig::Policy::RingHash:
      return std::make_unique<RingHashLoadBalancer>(std::move(set), config, panic_counter, seed,
                                                    std::move(tables));
    case LbConfig::Policy::Maglev:
      return std::make_unique<MaglevLoadBalancer>(std::move(set), config, panic_counter, seed,
                                                  std::move(tables));
    case LbConfig::Policy::RoundRobin:
      break;
  }
  return std::make_unique<RoundRobinLoadBalancer>(std::move(set), config, panic_counter, seed);
}

}  // namespace sluice::upstream
