#pragma once

// EDS clusters: their hosts come from a subscription to a ClusterLoadAssignment (by the
// cluster's service_name), not from the cluster's definition. The cluster manager owns the
// subscription with the cluster (made when the cluster starts, gone with it); the config
// layer makes it (config/eds_api.h) and hands over each assignment checked and turned into
// endpoints, so nothing here reads a proto.
//
// As Envoy: the cluster warms until its first assignment (or initial_fetch_timeout, then it
// starts with no hosts); each assignment replaces the host set; a host kept (same address,
// priority and locality) keeps its Host object, so its health-check, outlier and pool state
// survive; a new host starts failed under active health checking until its first check; a
// removed host that still passes active health checking stays (PendingDynamicRemoval) until
// it fails, unless ignore_health_on_host_removal.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event/dispatcher.h"
#include "upstream/cluster_manager.h"

namespace sluice::upstream {

// One ClusterLoadAssignment, checked: every endpoint has its address.
struct EdsAssignment {
  std::vector<EndpointConfig> endpoints;
  uint32_t overprovisioning_factor{0};  // policy.overprovisioning_factor; 0: not set
};

// A live subscription; destroying it ends it.
class EdsSubscription {
 public:
  virtual ~EdsSubscription() = default;
};
using EdsSubscriptionPtr = std::unique_ptr<EdsSubscription>;

struct EdsConfig {
  std::string service_name;  // eds_cluster_config.service_name, else the cluster's name
  // eds_config.initial_fetch_timeout (Envoy's default 15 s); 0: wait for ever.
  std::chrono::milliseconds initial_fetch_timeout{15000};
  bool ignore_health_on_host_removal{false};
  // An accepted update: the assignment, or null when it had none for service_name (Envoy's
  // update_empty: the hosts stay as they are).
  using OnUpdate = std::function<void(const EdsAssignment* assignment)>;
  // Subscribes on `main`; the first update may arrive before this returns.
  std::function<EdsSubscriptionPtr(event::Dispatcher& main, OnUpdate on_update)> subscribe;
};

}  // namespace sluice::upstream
