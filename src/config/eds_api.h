#pragma once

// EDS from the config side: an EDS cluster's eds_cluster_config checked at load, and the
// subscription that feeds the cluster manager checked ClusterLoadAssignments (upstream/eds.h).
// Today the config source is a watched file (path_config_source: a DiscoveryResponse of
// ClusterLoadAssignment resources); resources for other names in it are ignored, as Envoy
// subscribes by name.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/subscription.h"
#include "config/xds_resources.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "event/dispatcher.h"
#include "upstream/eds.h"

namespace sluice::stats {
class Store;
}

namespace sluice::config {

// Fills out.eds for a cluster of type EDS (eds_cluster_config: eds_config, service_name);
// `path` is the cluster's. False with errors.
bool buildEdsClusterConfig(const envoy::config::cluster::v3::Cluster& proto,
                           const std::string& path, stats::Store& store,
                           upstream::ClusterConfig& out, std::vector<std::string>& errors);

// The one place an EDS subscription is made: to `resource_name` of `source`, calling
// `on_update` with each accepted assignment. Its stats (update_attempt, update_success,
// update_rejected, ...) go under `stat_prefix` ("cluster.<name>.", as Envoy's).
upstream::EdsSubscriptionPtr subscribeEds(const SourceSpec& source,
                                          const std::string& resource_name,
                                          upstream::EdsConfig::OnUpdate on_update,
                                          event::Dispatcher& main, stats::Store& store,
                                          const std::string& stat_prefix);

// The assignment for `resource_name` in a checked update: false with "resources[i]...:"
// errors if it is bad; `out` stays empty if the update has none for that name.
bool edsAssignmentFromUpdate(const DiscoveryUpdate& update, const std::string& resource_name,
                             std::optional<upstream::EdsAssignment>& out,
                             std::vector<std::string>& errors);

// /config_dump?include_eds: the last assignment each live EDS subscription accepted, one per
// resource name (main thread).
struct EdsDumpEntry {
  std::string version_info;
  event::SystemTime last_updated;
  std::shared_ptr<const envoy::config::endpoint::v3::ClusterLoadAssignment> assignment;
};
std::map<std::string, EdsDumpEntry> edsConfigDump();

}  // namespace sluice::config
