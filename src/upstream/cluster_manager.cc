#include "upstream/cluster_manager.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <random>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/assert.h"
#include "common/logger.h"
#include "stats/stats.h"
#include "upstream/eds.h"
#include "upstream/http2_conn_pool.h"
#include "upstream/mixed_conn_pool.h"

namespace sluice::upstream {

namespace {
thread_local ThreadLocalClusterManager* tls_manager = nullptr;

// Each level's locality weights, from the endpoints that set one.
void setLocalityWeights(PrioritySet& set, const std::vector<EndpointConfig>& endpoints) {
  for (const auto& e : endpoints) {
    if (e.locality_weight == 0 || e.priority >= set.priorities.size()) continue;
    auto& weights = set.priorities[e.priority].locality_weights;
    bool known = false;
    for (const auto& [l, _] : weights) known |= l == e.locality;
    if (!known) weights.emplace_back(e.locality, e.locality_weight);
  }
}

void setMembershipStats(const ClusterInfo& info, const PrioritySet& set) {
  uint64_t total = 0, healthy = 0, degraded = 0;
  for (const auto& p : set.priorities) {
    for (const auto& h : p.hosts) {
      ++total;
      if (h->healthy()) ++healthy;
      if (h->healthFlags() & Host::DegradedEdsHealth) ++degraded;
    }
  }
  info.stats().membership_total.set(total);
  info.stats().membership_healthy.set(healthy);
  info.stats().membership_degraded.set(degraded);
}
}  // namespace

// ---- ThreadLocalCluster

ThreadLocalCluster::ThreadLocalCluster(event::Dispatcher& dispatcher, ClusterInfoConstSharedPtr info,
                                       std::optional<uint64_t> seed)
    : dispatcher_(dispatcher),
      info_(std::move(info)),
      seed_(seed ? *seed : std::random_device{}()) {}

ConnPool& ThreadLocalCluster::connPool(const HostSharedPtr& host, ResourcePriority priority,
                                       bool downstream_http2) {
  const bool http2 =
      info_->http2_settings && (!info_->use_downstream_protocol || downstream_http2);
  auto& pools = ((info_->use_downstream_protocol && !http2) ? h1_pools_
                                                           : pools_)[static_cast<size_t>(priority)];
  auto it = pools.find(host.get());
  if (it == pools.end()) {
    ConnPoolPtr pool;
    if (info_->auto_http) {
      pool = std::make_unique<MixedConnPool>(dispatcher_, host, info_, priority);
    } else if (http2) {
      pool = std::make_unique<Http2ConnPool>(dispatcher_, host, info_, priority);
    } else {
      pool = std::make_unique<Http1ConnPool>(dispatcher_, host, info_, priority);
    }
    it = pools.emplace(host.get(), std::move(pool)).first;
  }
  return *it->second;
}

void ThreadLocalCluster::updateHosts(PrioritySetConstSharedPtr hosts,
                                     HashLbTablesConstSharedPtr tables) {
  hosts_ = std::move(hosts);
  if (hosts_->overprovisioning_factor != 0) {
    LbConfig lb = info_->lb;  // EDS's policy overrides the cluster's
    lb.overprovisioning_factor = hosts_->overprovisioning_factor;
    lb_ = createLoadBalancer(hosts_, lb, &info_->stats().lb_healthy_panic, seed_++,
                             std::move(tables));
  } else {
    lb_ = createLoadBalancer(hosts_, info_->lb, &info_->stats().lb_healthy_panic, seed_++,
                             std::move(tables));
  }
  // Pools of hosts that left: drain them; drop them once idle.
  for (auto* by_priority : {&pools_, &h1_pools_}) {
    for (auto& pools : *by_priority) {
      for (auto it = pools.begin(); it != pools.end();) {
        bool present = false;
        for (const auto& p : hosts_->priorities) {
          for (const auto& h : p.hosts) present |= h.get() == it->first;
        }
        if (!present) {
          it->second->drainConnections();
          if (it->second->idle()) {
            it = pools.erase(it);
            continue;
          }
        }
        ++it;
      }
    }
  }
}

void ThreadLocalCluster::drainAll() {
  for (auto* by_priority : {&pools_, &h1_pools_}) {
    for (auto& pools : *by_priority) {
      for (auto& [_, pool] : pools) pool->drainConnections();
    }
  }
}

// ---- ThreadLocalClusterManager

ThreadLocalClusterManager* ThreadLocalClusterManager::current() { return tls_manager; }
void ThreadLocalClusterManager::setCurrent(ThreadLocalClusterManager* tlcm) { tls_manager = tlcm; }

ThreadLocalClusterSharedPtr ThreadLocalClusterManager::get(std::string_view name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : it->second;
}

void ThreadLocalClusterManager::addOrUpdate(ClusterInfoConstSharedPtr info,
                                            PrioritySetConstSharedPtr hosts,
                                            HashLbTablesConstSharedPtr tables) {
  auto& slot = clusters_[info->name()];
  if (slot && slot->infoPtr() != info) {
    // A new definition: requests on the old one finish on its pools, which drain.
    slot->retire();
    slot.reset();
  }
  if (!slot) slot = std::make_shared<ThreadLocalCluster>(dispatcher_, info, seed_);
  slot->updateHosts(std::move(hosts), std::move(tables));
}

void ThreadLocalClusterManager::remove(const std::string& name) {
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return;
  it->second->retire();
  clusters_.erase(it);
}

void ThreadLocalClusterManager::drainAll() {
  for (auto& [_, c] : clusters_) c->drainAll();
}

// ---- ClusterManager

struct ClusterManager::Cluster {
  ClusterConfig config;
  bool added_via_api{false};
  PrioritySetConstSharedPtr hosts;
  event::TimerPtr refresh_timer;
  size_t outstanding{0};  // DNS queries in flight
  std::vector<std::vector<network::AddressConstSharedPtr>> resolved;  // per endpoint
  bool initialized{false};
  bool warming{false};  // added after start(); activate() once initialized
  // Warming while start-up waits on an API (holdInit): start-up waits for it too.
  bool holds_init{false};
  std::vector<HealthCheckerPtr> health_checkers;
  OutlierDetectorSharedPtr outlier;
  // RING_HASH / MAGLEV: the tables of `tables_for` (the hosts they were built from).
  HashLbTablesConstSharedPtr tables;
  PrioritySetConstSharedPtr tables_for;
  // EDS: the subscription, and the initial_fetch_timeout's timer until the first update.
  EdsSubscriptionPtr eds_subscription;
  event::TimerPtr eds_init_timer;
  bool initializing{false};  // waiting for the first health-check round
  // Waiting for the TLS secrets it names (init targets), before anything else.
  std::shared_ptr<init::Watcher> secrets_init;
  bool secrets_waited{false};
  bool secrets_pending{false};  // a static cluster's health checks wait for them
  // `cb` once every checker has checked each host once.
  void onFirstHealthCheckRound(std::function<void()> cb) {
    auto left = std::make_shared<size_t>(health_checkers.size());
    auto done = std::make_shared<std::function<void()>>(std::move(cb));
    for (auto& hc : health_checkers) {
      hc->onFirstRound([left, done] {
        if (--*left == 0) (*done)();
      });
    }
  }
};

ClusterManager::ClusterManager(event::Dispatcher& main, DnsResolver& dns, stats::Store& store)
    : main_(main), dns_(dns), store_(store) {}

ClusterManager::~ClusterManager() {
  for (auto* map : {&clusters_, &warming_}) {
    for (auto& [_, c] : *map) {
      c->refresh_timer.reset();
      c->eds_init_timer.reset();
      c->eds_subscription.reset();
      c->health_checkers.clear();
      c->outlier.reset();
    }
  }
}

std::shared_ptr<ClusterManager::Cluster> ClusterManager::makeCluster(ClusterConfig config,
                                                                     bool added_via_api) {
  auto c = std::make_shared<Cluster>();
  c->config = std::move(config);
  c->added_via_api = added_via_api;
  c->hosts = std::make_shared<PrioritySet>();
  const std::string name = c->config.info->name();
  Cluster* raw = c.get();
  if (c->config.outlier_detection) {
    c->outlier = OutlierDetector::create(*c->config.outlier_detection, main_,
                                         c->config.info->store(), name,
                                         [this, raw] { republish(*raw); });
  }
  // The checkers of one cluster share their verdicts on its hosts.
  auto verdicts = std::make_shared<HealthVerdicts>();
  for (const auto& hc : c->config.health_checks) {
    c->health_checkers.push_back(std::make_unique<HealthChecker>(
        hc, c->config.info, main_,
        [this, raw](const HostSharedPtr& host, bool passed, bool changed) {
          if (changed) republish(*raw);
          if (passed && raw->outlier) raw->outlier->onActiveHealthCheckSuccess(*host);
        },
        nullptr, verdicts));
  }
  if (c->config.type == DiscoveryType::Static) {
    auto set = std::make_shared<PrioritySet>();
    for (const auto& e : c->config.endpoints) {
      if (set->priorities.size() <= e.priority) set->priorities.resize(e.priority + 1);
      set->priorities[e.priority].priority = e.priority;
      auto host = std::make_shared<Host>(name, e.address, e.address->asString(), e.weight,
                                         e.priority, e.locality);
      if (e.health_flags) host->setHealthFlag(static_cast<Host::HealthFlag>(e.health_flags));
      set->priorities[e.priority].hosts.push_back(std::move(host));
    }
    setLocalityWeights(*set, c->config.endpoints);
    c->hosts = set;
    // A cluster waiting for its TLS secrets (SDS over ADS) starts checking once they came:
    // checked through a context without them, every host would fail its first check.
    c->secrets_pending = std::any_of(c->config.init_targets.begin(), c->config.init_targets.end(),
                                     [](const auto& t) { return !t->ready(); });
    if (!c->secrets_pending) setHealthHosts(*c);
    // With health checks, a cluster is ready once each host has had its first check.
    c->initialized = c->health_checkers.empty() && !c->secrets_pending;
    setMembershipStats(*c->config.info, *set);
  }
  return c;
}

void ClusterManager::addCluster(ClusterConfig config) {
  SLUICE_ASSERT(!started_, "static clusters are added before start()");
  auto c = makeCluster(std::move(config), false);
  const std::string name = c->config.info->name();
  clusters_[name] = std::move(c);
  updateGauges();
}

bool ClusterManager::addOrUpdateCluster(ClusterConfig config, std::string& error) {
  const std::string name = config.info->name();
  auto active = clusters_.find(name);
  if (active != clusters_.end() && !active->second->added_via_api) {
    error = "cluster '" + name + "' is a static cluster and cannot be changed by the API";
    return false;
  }
  const bool existed = active != clusters_.end() || warming_.count(name);
  store_.counter(existed ? "cluster_manager.cluster_modified" : "cluster_manager.cluster_added").inc();
  auto c = makeCluster(std::move(config), true);
  if (!started_) {
    clusters_[name] = std::move(c);
    updateGauges();
    return true;
  }
  // Warm it beside the active one (a warming one of the same name is superseded).
  c->warming = true;
  if (on_initialized_) {
    // Start-up is still waiting (on an API's first update): it waits for this one too.
    c->holds_init = true;
    ++pending_init_;
  }
  auto superseded = warming_.find(name);
  if (superseded != warming_.end()) releaseHold(*superseded->second);
  warming_[name] = c;
  updateGauges();
  startCluster(c);
  return true;
}

void ClusterManager::leaveInitialSet(Cluster& cluster) {
  // An initial cluster still initializing, replaced or removed: the listeners no longer wait
  // for it (its DNS and health-check callbacks go with it).
  if (!started_ || cluster.initialized || cluster.warming) return;
  cluster.initialized = true;
  initTargetDone();
}

void ClusterManager::releaseHold(Cluster& cluster) {
  if (!std::exchange(cluster.holds_init, false)) return;
  initTargetDone();
}

void ClusterManager::initTargetDone() {
  if (--pending_init_ == 0 && on_initialized_) std::exchange(on_initialized_, nullptr)();
}

void ClusterManager::holdInit() {
  SLUICE_ASSERT(!started_, "holdInit() before start()");
  ++pending_init_;
}

void ClusterManager::releaseInit() { initTargetDone(); }

bool ClusterManager::removeCluster(const std::string& name) {
  bool removed = false;
  auto warming = warming_.find(name);
  if (warming != warming_.end()) {
    releaseHold(*warming->second);
    warming_.erase(warming);
    removed = true;
  }
  auto it = clusters_.find(name);
  if (it != clusters_.end() && it->second->added_via_api) {
    std::shared_ptr<Cluster> old = std::move(it->second);
    clusters_.erase(it);
    leaveInitialSet(*old);
    removed = true;
    for (auto& w : workers_) {
      w.dispatcher->post([tlcm = w.tlcm, name] { tlcm->remove(name); });
    }
  }
  if (removed) {
    store_.counter("cluster_manager.cluster_removed").inc();
    updateGauges();
  }
  return removed;
}

std::vector<std::string> ClusterManager::apiClusterNames() const {
  std::vector<std::string> out;
  for (const auto& [name, c] : clusters_) {
    if (c->added_via_api) out.push_back(name);
  }
  for (const auto& [name, _] : warming_) {
    if (!clusters_.count(name)) out.push_back(name);
  }
  return out;
}

// By value: the caller's pointer may be the warming map's entry, which this erases.
void ClusterManager::activate(std::shared_ptr<Cluster> cluster) {
  const std::string& name = cluster->config.info->name();
  auto it = warming_.find(name);
  if (it == warming_.end() || it->second != cluster) return;  // superseded or removed
  warming_.erase(it);
  cluster->warming = false;
  const bool held = std::exchange(cluster->holds_init, false);
  // The old definition (if any) goes now; workers retire their views of it when they get
  // the new one.
  std::shared_ptr<Cluster> old = std::exchange(clusters_[name], cluster);
  updateGauges();
  publish(*cluster);
  SLUICE_LOG(info, upstream, "cluster '{}' warmed and active", name);
  if (old) leaveInitialSet(*old);
  if (held) initTargetDone();
}

void ClusterManager::updateGauges() {
  store_.gauge("cluster_manager.active_clusters").set(clusters_.size());
  store_.gauge("cluster_manager.warming_clusters").set(warming_.size());
}

void ClusterManager::registerWorker(event::Dispatcher& dispatcher, ThreadLocalClusterManager& tlcm) {
  SLUICE_ASSERT(main_.isThreadSafe(), "registerWorker on the main thread");
  workers_.push_back({&dispatcher, &tlcm});
  for (auto& [_, c] : clusters_) tlcm.addOrUpdate(c->config.info, c->hosts, hashTables(*c));
}

HashLbTablesConstSharedPtr ClusterManager::hashTables(Cluster& cluster) {
  // Every host set published is a new snapshot (health changes too): one build per snapshot,
  // shared by every worker.
  if (cluster.tables_for != cluster.hosts) {
    cluster.tables_for = cluster.hosts;
    cluster.tables = createHashLbTables(cluster.hosts, cluster.config.info->lb);
  }
  return cluster.tables;
}

void ClusterManager::unregisterWorkers() { workers_.clear(); }

void ClusterManager::publish(Cluster& cluster) {
  setMembershipStats(*cluster.config.info, *cluster.hosts);
  if (cluster.warming) return;  // workers see it once it is active
  HashLbTablesConstSharedPtr tables = workers_.empty() ? nullptr : hashTables(cluster);
  for (auto& w : workers_) {
    w.dispatcher->post([tlcm = w.tlcm, info = cluster.config.info, hosts = cluster.hosts, tables] {
      tlcm->addOrUpdate(info, hosts, tables);
    });
  }
}

void ClusterManager::republish(Cluster& cluster) {
  cluster.hosts = std::make_shared<PrioritySet>(*cluster.hosts);
  publish(cluster);
  // A host EDS removed while it passed active health checking goes once it fails. Not here:
  // this runs inside the failing check's callback, whose session dropping it would destroy.
  bool pending = false;
  for (const auto& p : cluster.hosts->priorities) {
    for (const auto& h : p.hosts) {
      const uint32_t f = h->healthFlags();
      pending |= (f & Host::PendingDynamicRemoval) && (f & Host::FailedActiveHealthCheck);
    }
  }
  if (!pending) return;
  main_.post([this, weak = weakOf(cluster)] {
    auto c = weak.lock();
    if (!c) return;
    auto set = std::make_shared<PrioritySet>(*c->hosts);
    size_t dropped = 0;
    for (auto& p : set->priorities) {
      dropped += std::erase_if(p.hosts, [](const HostSharedPtr& h) {
        const uint32_t f = h->healthFlags();
        return (f & Host::PendingDynamicRemoval) && (f & Host::FailedActiveHealthCheck);
      });
    }
    if (dropped == 0) return;
    c->hosts = set;
    c->config.info->stats().membership_change.inc();
    setHealthHosts(*c);
    publish(*c);
  });
}

std::weak_ptr<ClusterManager::Cluster> ClusterManager::weakOf(Cluster& cluster) {
  for (auto* map : {&clusters_, &warming_}) {
    auto it = map->find(cluster.config.info->name());
    if (it != map->end() && it->second.get() == &cluster) return it->second;
  }
  return {};
}

void ClusterManager::setHealthHosts(Cluster& cluster) {
  if (cluster.outlier) cluster.outlier->setHosts(*cluster.hosts);
  for (auto& hc : cluster.health_checkers) hc->setHosts(*cluster.hosts);
}

void ClusterManager::markInitialized(Cluster& cluster) {
  if (cluster.initialized) return;
  cluster.initialized = true;
  if (cluster.warming) {
    auto it = warming_.find(cluster.config.info->name());
    if (it != warming_.end() && it->second.get() == &cluster) activate(it->second);
    return;
  }
  initTargetDone();
}

void ClusterManager::start(std::function<void()> on_initialized) {
  started_ = true;
  on_initialized_ = std::move(on_initialized);
  if (!on_initialized_) on_initialized_ = [] {};
  for (auto& [_, c] : clusters_) {
    if (!c->initialized) ++pending_init_;
  }
  if (pending_init_ == 0) {
    std::exchange(on_initialized_, nullptr)();
    return;
  }
  // Copies: a callback may change the map.
  std::vector<std::shared_ptr<Cluster>> initial;
  for (auto& [_, c] : clusters_) initial.push_back(c);
  for (auto& c : initial) startCluster(c);
}

void ClusterManager::startCluster(const std::shared_ptr<Cluster>& c) {
  // Its TLS secrets first (SDS over ADS, not come yet): it warms (or start-up waits) until they
  // come, then finds its hosts. A superseded or removed cluster takes its watcher with it.
  if (!c->secrets_waited) {
    c->secrets_waited = true;
    Cluster* raw = c.get();
    c->secrets_init = init::Watcher::create(c->config.init_targets, [this, raw] {
      if (auto c = weakOf(*raw).lock()) startCluster(c);
    });
    if (c->secrets_init) {
      SLUICE_LOG(info, upstream, "cluster '{}' warming: waits for {}", c->config.info->name(),
                 fmt::join(c->secrets_init->pending(), ", "));
      return;
    }
  }
  if (std::exchange(c->secrets_pending, false) && c->hosts) setHealthHosts(*c);
  if (c->config.type == DiscoveryType::Eds) {
    startEds(c);
  } else if (c->config.type != DiscoveryType::Static) {
    resolve(c);
  } else if (!c->initialized && c->health_checkers.empty()) {
    markInitialized(*c);  // it waited for its secrets only
  } else if (!c->initialized) {
    Cluster* raw = c.get();
    c->onFirstHealthCheckRound([this, raw] { markInitialized(*raw); });
  } else if (c->warming) {
    activate(c);
  }
}

void ClusterManager::resolve(const std::shared_ptr<Cluster>& cluster) {
  cluster->config.info->stats().update_attempt.inc();
  cluster->outstanding = cluster->config.endpoints.size();
  cluster->resolved.assign(cluster->config.endpoints.size(), {});
  std::weak_ptr<Cluster> weak = cluster;
  for (size_t i = 0; i < cluster->config.endpoints.size(); ++i) {
    const auto& e = cluster->config.endpoints[i];
    dns_.resolve(e.hostname, e.port, cluster->config.dns_lookup_family, main_,
                 [this, weak, i](std::vector<network::AddressConstSharedPtr> addrs,
                                 std::string error) {
                   auto c = weak.lock();
                   if (!c) return;
                   if (!error.empty()) {
                     SLUICE_LOG(warn, upstream, "cluster '{}': {}", c->config.info->name(), error);
                   }
                   c->resolved[i] = std::move(addrs);
                   if (--c->outstanding == 0) onResolved(*c);
                 });
  }
}

void ClusterManager::onResolved(Cluster& cluster) {
  const auto& cfg = cluster.config;
  const std::string& name = cfg.info->name();
  bool any = false;
  for (const auto& r : cluster.resolved) any |= !r.empty();
  if (!any) {
    cfg.info->stats().update_failure.inc();
  } else {
    cfg.info->stats().update_success.inc();
  }
  // Keep the Host objects of addresses that stayed, so their stats and pools survive.
  auto set = std::make_shared<PrioritySet>();
  bool changed = false;
  for (size_t i = 0; i < cfg.endpoints.size(); ++i) {
    const auto& e = cfg.endpoints[i];
    auto addrs = cluster.resolved[i];
    if (cfg.type == DiscoveryType::LogicalDns && addrs.size() > 1) addrs.resize(1);
    if (set->priorities.size() <= e.priority) set->priorities.resize(e.priority + 1);
    set->priorities[e.priority].priority = e.priority;
    for (const auto& a : addrs) {
      HostSharedPtr existing;
      for (const auto& p : cluster.hosts->priorities) {
        for (const auto& h : p.hosts) {
          if (*h->address() == *a && h->hostname() == e.hostname) existing = h;
        }
      }
      if (!existing) {
        changed = true;
        existing = std::make_shared<Host>(name, a, e.hostname, e.weight, e.priority, e.locality);
      }
      set->priorities[e.priority].hosts.push_back(existing);
    }
  }
  setLocalityWeights(*set, cfg.endpoints);
  if (set->totalHosts() != cluster.hosts->totalHosts()) changed = true;
  if (!any && cluster.hosts->totalHosts() > 0) {
    // A failed refresh keeps the hosts we had (Envoy does the same).
    changed = false;
  }
  if (changed) {
    cluster.hosts = set;
    cfg.info->stats().membership_change.inc();
    setHealthHosts(cluster);
    publish(cluster);
  } else if (!any) {
    cfg.info->stats().update_empty.inc();
  }
  initializeWithHosts(cluster);
  if (!cluster.refresh_timer) {
    std::weak_ptr<Cluster> weak = weakOf(cluster);
    cluster.refresh_timer = main_.createTimer([this, weak] {
      if (auto c = weak.lock()) resolve(c);
    });
  }
  cluster.refresh_timer->enableTimer(cfg.dns_refresh_rate);
}

void ClusterManager::initializeWithHosts(Cluster& cluster) {
  if (cluster.initialized || cluster.initializing) return;
  if (cluster.health_checkers.empty()) {
    markInitialized(cluster);
    return;
  }
  cluster.initializing = true;
  Cluster* raw = &cluster;
  cluster.onFirstHealthCheckRound([this, raw] { markInitialized(*raw); });
}

// ---- EDS

void ClusterManager::startEds(const std::shared_ptr<Cluster>& c) {
  const EdsConfig& eds = *c->config.eds;
  std::weak_ptr<Cluster> weak = c;
  if (eds.initial_fetch_timeout.count() > 0) {
    c->eds_init_timer = main_.createTimer([this, weak] {
      auto c = weak.lock();
      if (!c) return;
      SLUICE_LOG(warn, upstream,
                 "cluster '{}': no endpoints (EDS '{}') within initial_fetch_timeout; it starts "
                 "with none",
                 c->config.info->name(), c->config.eds->service_name);
      initializeWithHosts(*c);
    });
    // Armed first: the subscription may deliver its first update before it returns.
    c->eds_init_timer->enableTimer(eds.initial_fetch_timeout);
  }
  c->eds_subscription = eds.subscribe(main_, [this, weak](const EdsAssignment* assignment) {
    if (auto c = weak.lock()) onEdsUpdate(*c, assignment);
  });
}

void ClusterManager::onEdsUpdate(Cluster& cluster, const EdsAssignment* assignment) {
  const ClusterInfo& info = *cluster.config.info;
  if (cluster.eds_init_timer) cluster.eds_init_timer->disableTimer();
  if (!assignment) {
    // No assignment for this cluster in the update: as Envoy, the hosts stay and the cluster
    // counts as initialized.
    info.stats().update_empty.inc();
    initializeWithHosts(cluster);
    return;
  }
  // Kept hosts are found by address; a host whose priority or locality moved is a new one.
  // Keys are views of the addresses' own text (the old hosts and the assignment outlive the
  // maps): no string copied per host of a large assignment.
  size_t old_count = 0;
  for (const auto& p : cluster.hosts->priorities) old_count += p.hosts.size();
  std::unordered_map<std::string_view, const HostSharedPtr*> old_hosts;
  old_hosts.reserve(old_count);
  for (const auto& p : cluster.hosts->priorities) {
    for (const auto& h : p.hosts) old_hosts.emplace(h->address()->asString(), &h);
  }
  auto set = std::make_shared<PrioritySet>();
  set->overprovisioning_factor = assignment->overprovisioning_factor;
  std::unordered_set<const Host*> kept;
  std::unordered_set<std::string_view> addresses;
  kept.reserve(assignment->endpoints.size());
  addresses.reserve(assignment->endpoints.size());
  bool changed = false;
  for (const auto& e : assignment->endpoints) {
    if (set->priorities.size() <= e.priority) set->priorities.resize(e.priority + 1);
    set->priorities[e.priority].priority = e.priority;
    HostSharedPtr host;
    auto it = old_hosts.find(e.address->asString());
    if (it != old_hosts.end() && (*it->second)->priority() == e.priority &&
        (*it->second)->locality() == e.locality && !kept.count(it->second->get())) {
      host = *it->second;
      if (host->weight() != std::max(e.weight, 1u)) {
        host->setWeight(e.weight);
        changed = true;
      }
      host->clearHealthFlag(Host::PendingDynamicRemoval);
    } else {
      host = std::make_shared<Host>(info.name(), e.address, e.address->asString(), e.weight,
                                    e.priority, e.locality);
    }
    for (auto flag : {Host::FailedEdsHealth, Host::DegradedEdsHealth}) {
      const bool want = e.health_flags & flag;
      if (want == bool(host->healthFlags() & flag)) continue;
      want ? host->setHealthFlag(flag) : host->clearHealthFlag(flag);
      changed = true;
    }
    kept.insert(host.get());
    addresses.insert(e.address->asString());
    set->priorities[e.priority].hosts.push_back(std::move(host));
  }
  setLocalityWeights(*set, assignment->endpoints);
  // Hosts gone from the assignment. Under active health checking one that still passes stays
  // until it fails a check (Envoy's default), unless EDS also failed it or the cluster sets
  // ignore_health_on_host_removal.
  const bool stabilize =
      !cluster.health_checkers.empty() && !cluster.config.eds->ignore_health_on_host_removal;
  for (const auto& p : cluster.hosts->priorities) {
    for (const auto& h : p.hosts) {
      if (kept.count(h.get())) continue;
      const uint32_t f = h->healthFlags();
      // (An address that moved to another priority or locality is a new host: not both.)
      if (stabilize && !(f & (Host::FailedActiveHealthCheck | Host::FailedEdsHealth)) &&
          !addresses.count(h->address()->asString())) {
        h->setHealthFlag(Host::PendingDynamicRemoval);
        if (set->priorities.size() <= h->priority()) set->priorities.resize(h->priority() + 1);
        set->priorities[h->priority()].priority = h->priority();
        set->priorities[h->priority()].hosts.push_back(h);
      }
    }
  }
  // Changed: any level's hosts (or their order), locality weights or the factor.
  const auto& old = *cluster.hosts;
  changed |= set->priorities.size() != old.priorities.size() ||
             set->overprovisioning_factor != old.overprovisioning_factor;
  for (size_t i = 0; !changed && i < set->priorities.size(); ++i) {
    changed = set->priorities[i].hosts != old.priorities[i].hosts ||
              set->priorities[i].locality_weights != old.priorities[i].locality_weights;
  }
  if (changed) {
    cluster.hosts = set;
    info.stats().membership_change.inc();
    // New hosts start failed under active health checking (until their first check).
    setHealthHosts(cluster);
    publish(cluster);  // new host set: workers rebuild balancers, hash tables rebuilt once
  }
  SLUICE_LOG(debug, upstream, "cluster '{}': EDS assignment with {} endpoint(s){}", info.name(),
             assignment->endpoints.size(), changed ? "" : " (no change)");
  initializeWithHosts(cluster);
}

std::vector<ClusterManager::ClusterView> ClusterManager::clusters() const {
  std::vector<ClusterView> out;
  for (const auto& [_, c] : clusters_) {
    out.push_back({c->config.info, c->hosts, c->config.type, c->added_via_api, c->config.api});
  }
  return out;
}

std::vector<ClusterManager::ClusterView> ClusterManager::warmingClusters() const {
  std::vector<ClusterView> out;
  for (const auto& [_, c] : warming_) {
    out.push_back({c->config.info, c->hosts, c->config.type, true, c->config.api});
  }
  return out;
}

std::shared_ptr<const ApiResource> ClusterManager::apiResource(std::string_view name) const {
  for (const auto* map : {&warming_, &clusters_}) {
    auto it = map->find(name);
    if (it != map->end() && it->second->config.api) return it->second->config.api;
  }
  return nullptr;
}

bool ClusterManager::hasStaticCluster(std::string_view name) const {
  auto it = clusters_.find(name);
  return it != clusters_.end() && !it->second->added_via_api;
}

bool ClusterManager::has(std::string_view name) const { return clusters_.find(name) != clusters_.end(); }

}  // namespace sluice::upstream
