#pragma once

// Clusters: the main thread owns their definitions and their host sets (static, or resolved
// by DNS and refreshed), and publishes each host set to every worker as an immutable
// snapshot. Each worker keeps its own view (ThreadLocalClusterManager): load balancer state
// and connection pools, touched by that worker only, without locks.
//
// Clusters from an API (CDS) come and go at run time. A new or changed one warms (first DNS
// answer, first health-check round) before workers see it; until then the old definition
// keeps serving. A worker's view of a replaced or removed cluster stays alive while requests
// hold it (shared ownership) and its pools drain.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/init_target.h"
#include "event/dispatcher.h"
#include "upstream/cluster_info.h"
#include "upstream/conn_pool.h"
#include "upstream/dns.h"
#include "upstream/health_checker.h"
#include "upstream/host.h"
#include "upstream/load_balancer.h"
#include "upstream/outlier_detection.h"

namespace sluice::stats {
class Store;
}

namespace sluice::upstream {

enum class DiscoveryType { Static, StrictDns, LogicalDns, Eds };
struct EdsConfig;      // upstream/eds.h
struct EdsAssignment;  // upstream/eds.h

struct EndpointConfig {
  network::AddressConstSharedPtr address;  // for STATIC
  std::string hostname;                    // for the DNS types
  uint32_t port{0};
  uint32_t weight{1};
  uint32_t priority{0};
  Locality locality;
  uint32_t locality_weight{0};  // the LocalityLbEndpoints' load_balancing_weight; 0: unset
  uint32_t health_flags{0};     // Host::FailedEdsHealth / DegradedEdsHealth, from health_status
};

// What an API (CDS) gave for a cluster, kept with it (active or warming) for /config_dump and
// to tell a change from a repeat. Opaque to the cluster manager.
struct ApiResource {
  virtual ~ApiResource() = default;
  std::string version_info;  // of the update that last changed it
  event::SystemTime last_updated;
  std::string bytes;  // deterministic serialization of the resource
};

struct ClusterConfig {
  ClusterInfoConstSharedPtr info;
  std::shared_ptr<const ApiResource> api;  // null for a bootstrap cluster
  DiscoveryType type{DiscoveryType::Static};
  std::vector<EndpointConfig> endpoints;
  std::chrono::milliseconds dns_refresh_rate{5000};
  DnsLookupFamily dns_lookup_family{DnsLookupFamily::Auto};
  // health_checks: a host fails active health checking while any of them fails it.
  std::vector<HealthCheckConfig> health_checks;
  std::optional<OutlierDetectionConfig> outlier_detection;
  std::shared_ptr<const EdsConfig> eds;  // for EDS: where its endpoints come from
  // What the cluster warms for before it resolves its hosts: its TLS secrets (SDS over ADS)
  // whose first version has not come yet.
  std::vector<init::TargetSharedPtr> init_targets;
};

// A worker's view of one cluster.
class ThreadLocalCluster {
 public:
  // `seed`: of the balancers' random choices (where round robin starts, ...); random if unset.
  ThreadLocalCluster(event::Dispatcher& dispatcher, ClusterInfoConstSharedPtr info,
                     std::optional<uint64_t> seed = std::nullopt);
  const ClusterInfo& info() const { return *info_; }
  const ClusterInfoConstSharedPtr& infoPtr() const { return info_; }
  // A host from the load balancer; null when none is healthy.
  HostSharedPtr chooseHost(LoadBalancerContext* context) {
    return lb_ ? lb_->chooseHost(context) : nullptr;
  }
  // The host's pool for a routing priority: each priority has its own pools (as Envoy's),
  // so requests of one never wait behind the other's connections. HTTP/2 when the cluster
  // speaks it, or with use_downstream_protocol when the request came over HTTP/2
  // (`downstream_http2`).
  ConnPool& connPool(const HostSharedPtr& host,
                     ResourcePriority priority = ResourcePriority::Default,
                     bool downstream_http2 = false);
  // `tables`: RING_HASH's / MAGLEV's, built for `hosts` on the main thread (null: built here).
  void updateHosts(PrioritySetConstSharedPtr hosts, HashLbTablesConstSharedPtr tables = nullptr);
  // The current balancer (tests).
  const LoadBalancer* loadBalancer() const { return lb_.get(); }
  void drainAll();
  // Replaced or removed: requests that still hold it finish, then it goes.
  bool retired() const { return retired_; }
  void retire() {
    retired_ = true;
    drainAll();
  }

 private:
  event::Dispatcher& dispatcher_;
  ClusterInfoConstSharedPtr info_;
  PrioritySetConstSharedPtr hosts_;
  LoadBalancerPtr lb_;
  uint64_t seed_;  // of the next balancer's random choices
  bool retired_{false};
  using PoolsByPriority = std::array<std::unordered_map<const Host*, ConnPoolPtr>,
                                     kNumResourcePriorities>;
  PoolsByPriority pools_;
  PoolsByPriority h1_pools_;  // use_downstream_protocol's HTTP/1 pools
};
using ThreadLocalClusterSharedPtr = std::shared_ptr<ThreadLocalCluster>;

class ThreadLocalClusterManager {
 public:
  explicit ThreadLocalClusterManager(event::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  // The calling worker's manager (set by the worker at start; null elsewhere).
  static ThreadLocalClusterManager* current();
  static void setCurrent(ThreadLocalClusterManager* tlcm);

  // Null when the worker has no such cluster. A request keeps what it got for its whole
  // life, even if the cluster is replaced or removed meanwhile.
  ThreadLocalClusterSharedPtr get(std::string_view name);
  // Same `info` object: new hosts for the cluster. A different one: the cluster was
  // replaced; the old view retires.
  void addOrUpdate(ClusterInfoConstSharedPtr info, PrioritySetConstSharedPtr hosts,
                   HashLbTablesConstSharedPtr tables = nullptr);
  void remove(const std::string& name);
  void drainAll();
  size_t size() const { return clusters_.size(); }
  // Tests: clusters created from now on seed their balancers with this, not at random.
  void setSeed(uint64_t seed) { seed_ = seed; }

 private:
  event::Dispatcher& dispatcher_;
  std::optional<uint64_t> seed_;
  // Looked up by string_view on every request: no key string is built.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, ThreadLocalClusterSharedPtr, NameHash, std::equal_to<>> clusters_;
};

class ClusterManager {
 public:
  // `store` holds the manager's own stats (cluster_manager.*); clusters have their own.
  ClusterManager(event::Dispatcher& main, DnsResolver& dns, stats::Store& store);
  ~ClusterManager();

  // A cluster of the bootstrap (static_resources): before start(); never removed.
  void addCluster(ClusterConfig config);
  // A cluster from an API (CDS), at any time. Before start() it joins the initial clusters;
  // after, it warms and then replaces the one of the same name (or is added). Refused (false,
  // `error`) for the name of a static cluster.
  bool addOrUpdateCluster(ClusterConfig config, std::string& error);
  // Start-up (start()'s on_initialized) also waits until releaseInit(): for an API's first
  // update (ADS). Clusters added while start-up waits are waited for until they warm.
  void holdInit();
  void releaseInit();
  // Removes an API cluster (and one warming under that name). False if there is none.
  bool removeCluster(const std::string& name);
  // The newest API resource of `name` (warming, else active), or null.
  std::shared_ptr<const ApiResource> apiResource(std::string_view name) const;
  // Names of the clusters added through the API (active or warming).
  std::vector<std::string> apiClusterNames() const;
  // Workers get every cluster's current hosts now and each update from then on. Call on the
  // main thread before the worker runs or from it via post().
  void registerWorker(event::Dispatcher& dispatcher, ThreadLocalClusterManager& tlcm);
  void unregisterWorkers();
  // Starts DNS resolution and health checks; `on_initialized` runs once every cluster has its
  // first hosts (resolved, or failed to resolve) and, with health checks, has checked each
  // of them once.
  void start(std::function<void()> on_initialized);

  struct ClusterView {
    ClusterInfoConstSharedPtr info;
    PrioritySetConstSharedPtr hosts;
    DiscoveryType type;
    bool added_via_api;
    std::shared_ptr<const ApiResource> api;
  };
  // A consistent copy, for admin output (main thread): the active clusters.
  std::vector<ClusterView> clusters() const;
  // The clusters still warming.
  std::vector<ClusterView> warmingClusters() const;
  bool has(std::string_view name) const;
  bool hasStaticCluster(std::string_view name) const;

 private:
  struct Cluster;
  using ClusterMap = std::map<std::string, std::shared_ptr<Cluster>, std::less<>>;
  std::shared_ptr<Cluster> makeCluster(ClusterConfig config, bool added_via_api);
  // Starts DNS and health checks; markInitialized() once it has its first hosts.
  void startCluster(const std::shared_ptr<Cluster>& cluster);
  // A warmed cluster replaces the active one of its name.
  void activate(std::shared_ptr<Cluster> cluster);
  void updateGauges();
  void leaveInitialSet(Cluster& cluster);
  void releaseHold(Cluster& cluster);
  // One of the things start-up waits for is done; the last one runs on_initialized.
  void initTargetDone();
  void publish(Cluster& cluster);
  // The cluster's ring or maglev table for its current hosts, built once per host set.
  HashLbTablesConstSharedPtr hashTables(Cluster& cluster);
  // A host's health changed: the same hosts, published again so workers rebuild balancers.
  void republish(Cluster& cluster);
  // Health checks and outlier detection follow the cluster's hosts (before publishing).
  void setHealthHosts(Cluster& cluster);
  void markInitialized(Cluster& cluster);
  void resolve(const std::shared_ptr<Cluster>& cluster);
  void onResolved(Cluster& cluster);
  // EDS (upstream/eds.cc): subscribes; each assignment replaces the host set.
  void startEds(const std::shared_ptr<Cluster>& cluster);
  void onEdsUpdate(Cluster& cluster, const EdsAssignment* assignment);
  // First hosts in (or none, for good): initialized once the first health checks are done.
  void initializeWithHosts(Cluster& cluster);
  std::weak_ptr<Cluster> weakOf(Cluster& cluster);

  event::Dispatcher& main_;
  DnsResolver& dns_;
  stats::Store& store_;
  bool started_{false};
  ClusterMap clusters_;  // active
  ClusterMap warming_;
  struct Worker {
    event::Dispatcher* dispatcher;
    ThreadLocalClusterManager* tlcm;
  };
  std::vector<Worker> workers_;
  std::function<void()> on_initialized_;  // set from start() until it has run
  size_t pending_init_{0};
};

}  // namespace sluice::upstream
