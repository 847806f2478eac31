#include "config/eds_api.h"

#include "common/logger.h"
#include "config/filesystem_subscription.h"
#include "config/subscription.h"
#include "config/proxy_config.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"

namespace sluice::config {

namespace {

class SourceEdsSubscription;
// The live subscriptions, for /config_dump (main thread).
std::vector<SourceEdsSubscription*>& liveSubscriptions() {
  static auto* live = new std::vector<SourceEdsSubscription*>();
  return *live;
}

class SourceEdsSubscription : public upstream::EdsSubscription {
 public:
  // A file, or the ADS stream (a watch for `resource_name`).
  SourceEdsSubscription(event::Dispatcher& main, const SourceSpec& source,
                        std::string resource_name, stats::Store& store, std::string stat_prefix,
                        upstream::EdsConfig::OnUpdate on_update)
      : resource_name_(std::move(resource_name)), on_update_(std::move(on_update)) {
    Subscription::OnUpdate apply = [this, &main](DiscoveryUpdate& update,
                                                 std::vector<std::string>& errors) {
      std::optional<upstream::EdsAssignment> assignment;
      if (!edsAssignmentFromUpdate(update, resource_name_, assignment, errors)) {
        return false;  // logged by the subscription; the last hosts stay
      }
      if (assignment) keepForDump(update, main.timeSource().systemTime());
      on_update_(assignment ? &*assignment : nullptr);
      return true;
    };
    // The cluster manager keeps the initial fetch timeout itself (the cluster warms).
    if (SubscriptionFactory* factory = subscriptionFactory()) {
      sub_ = factory->create(source, kClusterLoadAssignmentType, resource_name_,
                             std::move(stat_prefix), std::move(apply));
    } else if (!source.ads) {  // no running proxy (unit tests): files still work
      sub_ = std::make_unique<FilesystemSubscription>(
          main, source.path, std::string(kClusterLoadAssignmentType), store,
          std::move(stat_prefix), std::move(apply));
    }
    liveSubscriptions().push_back(this);
  }
  ~SourceEdsSubscription() override { std::erase(liveSubscriptions(), this); }

  const std::string& resourceName() const { return resource_name_; }
  const std::optional<EdsDumpEntry>& dump() const { return dump_; }

  void start() {
    std::string error;
    if (!sub_) {
      SLUICE_LOG(err, config, "eds '{}': the ADS stream is not configured", resource_name_);
    } else if (!sub_->start(error)) {
      // The cluster waits for initial_fetch_timeout, then serves with no hosts.
      SLUICE_LOG(err, config, "eds '{}': {}", resource_name_, error);
    }
  }

 private:
  void keepForDump(const DiscoveryUpdate& update, event::SystemTime now) {
    for (size_t i = 0; i < update.resources.size(); ++i) {
      auto la = std::make_shared<envoy::config::endpoint::v3::ClusterLoadAssignment>();
      if (copyResource(update, i, *la) && la->cluster_name() == resource_name_) {
        dump_ = EdsDumpEntry{update.version_info, now, std::move(la)};
        return;
      }
    }
  }

  const std::string resource_name_;
  upstream::EdsConfig::OnUpdate on_update_;
  std::optional<EdsDumpEntry> dump_;
  std::unique_ptr<Subscription> sub_;
};

}  // namespace

std::map<std::string, EdsDumpEntry> edsConfigDump() {
  std::map<std::string, EdsDumpEntry> out;
  for (const auto* sub : liveSubscriptions()) {
    if (!sub->dump()) continue;
    auto& slot = out[sub->resourceName()];
    // Two subscriptions to one name (a cluster warming beside the one it replaces): the newer.
    if (!slot.assignment || sub->dump()->last_updated >= slot.last_updated) slot = *sub->dump();
  }
  return out;
}

bool edsAssignmentFromUpdate(const DiscoveryUpdate& update, const std::string& resource_name,
                             std::optional<upstream::EdsAssignment>& out,
                             std::vector<std::string>& errors) {
  for (size_t i = 0; i < update.resources.size(); ++i) {
    const std::string path = "resources[" + std::to_string(i) + "]";
    envoy::config::endpoint::v3::ClusterLoadAssignment la;
    if (!copyResource(update, i, la)) {
      errors.push_back(path + ": does not parse as a ClusterLoadAssignment");
      return false;
    }
    if (la.cluster_name() != resource_name) continue;  // another subscriber's
    if (out) {
      errors.push_back(path + ".cluster_name: a second assignment for '" + resource_name + "'");
      return false;
    }
    upstream::EdsAssignment a;
    if (!buildEndpoints(la, path, true, a.endpoints, errors)) return false;
    if (la.policy().has_overprovisioning_factor()) {
      a.overprovisioning_factor = la.policy().overprovisioning_factor().value();
      if (a.overprovisioning_factor == 0) {
        errors.push_back(path + ".policy.overprovisioning_factor: must be greater than 0");
        return false;
      }
    }
    out = std::move(a);
  }
  return true;
}

upstream::EdsSubscriptionPtr subscribeEds(const SourceSpec& source,
                                          const std::string& resource_name,
                                          upstream::EdsConfig::OnUpdate on_update,
                                          event::Dispatcher& main, stats::Store& store,
                                          const std::string& stat_prefix) {
  auto sub = std::make_unique<SourceEdsSubscription>(main, source, resource_name, store,
                                                     stat_prefix, std::move(on_update));
  sub->start();
  return sub;
}

bool buildEdsClusterConfig(const envoy::config::cluster::v3::Cluster& proto,
                           const std::string& path, stats::Store& store,
                           upstream::ClusterConfig& out, std::vector<std::string>& errors) {
  const std::string ep = path + ".eds_cluster_config";
  if (!proto.has_eds_cluster_config() || !proto.eds_cluster_config().has_eds_config()) {
    errors.push_back(ep + ".eds_config: required for a cluster of type EDS");
    return false;
  }
  const auto& source = proto.eds_cluster_config().eds_config();
  SourceSpec spec;
  if (!parseConfigSource(source, ep + ".eds_config", spec, errors)) return false;
  auto eds = std::make_shared<upstream::EdsConfig>();
  eds->service_name = proto.eds_cluster_config().service_name().empty()
                          ? proto.name()
                          : proto.eds_cluster_config().service_name();
  if (source.has_initial_fetch_timeout()) eds->initial_fetch_timeout = spec.initial_fetch_timeout;
  eds->ignore_health_on_host_removal = proto.ignore_health_on_host_removal();
  eds->subscribe = [spec, name = eds->service_name, &store,
                    prefix = "cluster." + proto.name() + "."](
                       event::Dispatcher& main, upstream::EdsConfig::OnUpdate on_update) {
    return subscribeEds(spec, name, std::move(on_update), main, store, prefix);
  };
  out.eds = std::move(eds);
  return true;
}

}  // namespace sluice::config
