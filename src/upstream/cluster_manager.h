#pragma once

// Clusters: the main thread owns their definitions and their host sets (static, or resolved
// by DNS and refreshed), and publishes each host set to every worker as an immutable
// snapshot. Each worker keeps its own view (ThreadLocalClusterManager): load balancer state
// and connection pools, touched by that worker only, without locks.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "event/dispatcher.h"
#include "upstream/cluster_info.h"
#include "upstream/conn_pool.h"
#include "upstream/dns.h"
#include "upstream/health_checker.h"
#include "upstream/host.h"
#include "upstream/load_balancer.h"
#include "upstream/outlier_detection.h"

namespace sluice::upstream {

enum class DiscoveryType { Static, StrictDns, LogicalDns };

struct EndpointConfig {
  network::AddressConstSharedPtr address;  // for STATIC
  std::string hostname;                    // for the DNS types
  uint32_t port{0};
  uint32_t weight{1};
  uint32_t priority{0};
  Locality locality;
  uint32_t locality_weight{0};  // the LocalityLbEndpoints' load_balancing_weight; 0: unset
};

struct ClusterConfig {
  ClusterInfoConstSharedPtr info;
  DiscoveryType type{DiscoveryType::Static};
  std::vector<EndpointConfig> endpoints;
  std::chrono::milliseconds dns_refresh_rate{5000};
  DnsLookupFamily dns_lookup_family{DnsLookupFamily::Auto};
  std::optional<HealthCheckConfig> health_check;
  std::optional<OutlierDetectionConfig> outlier_detection;
};

// A worker's view of one cluster.
class ThreadLocalCluster {
 public:
  ThreadLocalCluster(event::Dispatcher& dispatcher, ClusterInfoConstSharedPtr info);
  const ClusterInfo& info() const { return *info_; }
  const ClusterInfoConstSharedPtr& infoPtr() const { return info_; }
  // A host from the load balancer; null when none is healthy.
  HostSharedPtr chooseHost(LoadBalancerContext* context) {
    return lb_ ? lb_->chooseHost(context) : nullptr;
  }
  ConnPool& connPool(const HostSharedPtr& host);
  void updateHosts(PrioritySetConstSharedPtr hosts);
  void drainAll();

 private:
  event::Dispatcher& dispatcher_;
  ClusterInfoConstSharedPtr info_;
  PrioritySetConstSharedPtr hosts_;
  LoadBalancerPtr lb_;
  uint64_t seed_;  // of the next balancer's random choices
  std::unordered_map<const Host*, ConnPoolPtr> pools_;
};

class ThreadLocalClusterManager {
 public:
  explicit ThreadLocalClusterManager(event::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  // The calling worker's manager (set by the worker at start; null elsewhere).
  static ThreadLocalClusterManager* current();
  static void setCurrent(ThreadLocalClusterManager* tlcm);

  ThreadLocalCluster* get(std::string_view name);
  void addOrUpdate(ClusterInfoConstSharedPtr info, PrioritySetConstSharedPtr hosts);
  void drainAll();

 private:
  event::Dispatcher& dispatcher_;
  std::unordered_map<std::string, std::unique_ptr<ThreadLocalCluster>> clusters_;
};

class ClusterManager {
 public:
  ClusterManager(event::Dispatcher& main, DnsResolver& dns);
  ~ClusterManager();

  // Before start().
  void addCluster(ClusterConfig config);
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
  };
  // A consistent copy, for admin output (main thread).
  std::vector<ClusterView> clusters() const;
  bool has(std::string_view name) const;

 private:
  struct Cluster;
  void publish(Cluster& cluster);
  // A host's health changed: the same hosts, published again so workers rebuild balancers.
  void republish(Cluster& cluster);
  // Health checks and outlier detection follow the cluster's hosts (before publishing).
  void setHealthHosts(Cluster& cluster);
  void markInitialized(Cluster& cluster);
  void resolve(Cluster& cluster);
  void onResolved(Cluster& cluster);

  event::Dispatcher& main_;
  DnsResolver& dns_;
  std::map<std::string, std::shared_ptr<Cluster>, std::less<>> clusters_;
  struct Worker {
    event::Dispatcher* dispatcher;
    ThreadLocalClusterManager* tlcm;
  };
  std::vector<Worker> workers_;
  std::function<void()> on_initialized_;
  size_t pending_init_{0};
};

}  // namespace sluice::upstream
