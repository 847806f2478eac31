#include "config/cds_api.h"

#include <set>

#include "common/logger.h"
#include "config/proxy_config.h"

namespace sluice::config {

bool CdsApi::onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors) {
  struct Built {
    upstream::ClusterConfig config;
    envoy::config::cluster::v3::Cluster proto;
    std::string bytes;
  };
  std::vector<Built> built;
  std::set<std::string> names;
  for (size_t i = 0; i < update.resources.size(); ++i) {
    const std::string path = "resources[" + std::to_string(i) + "]";
    envoy::config::cluster::v3::Cluster proto;
    if (!copyMessage(*update.resources[i], proto)) {
      errors.push_back(path + ": does not parse as a Cluster");
      return false;
    }
    if (!names.insert(proto.name()).second) {
      errors.push_back(path + ".name: duplicate cluster '" + proto.name() + "'");
      return false;
    }
    if (cm_.hasStaticCluster(proto.name())) {
      errors.push_back(path + ".name: cluster '" + proto.name() +
                       "' is a static cluster of the bootstrap; CDS cannot replace it");
      return false;
    }
    Built b;
    b.bytes = deterministicBytes(proto);
    auto known = cm_.apiResource(proto.name());
    // Unchanged: it was checked when it came; building it again would only make a second
    // ClusterInfo whose set-up writes the live cluster's gauges.
    if (known && known->bytes == b.bytes) continue;
    if (!buildClusterConfig(proto, path, secrets_, store_, b.config, errors)) return false;
    b.proto = std::move(proto);
    built.push_back(std::move(b));
  }
  // Everything checked: apply.
  const event::SystemTime now = time_.systemTime();
  for (auto& b : built) {
    auto applied = std::make_shared<Applied>();
    applied->version_info = update.version_info;
    applied->last_updated = now;
    applied->bytes = std::move(b.bytes);
    applied->proto = std::move(b.proto);
    b.config.api = std::move(applied);
    std::string error;
    if (!cm_.addOrUpdateCluster(std::move(b.config), error)) {
      // Checked above; only a static name could refuse it.
      SLUICE_LOG(err, config, "cds: {}", error);
    }
  }
  for (const auto& name : cm_.apiClusterNames()) {
    if (!names.count(name)) cm_.removeCluster(name);
  }
  version_ = update.version_info;
  SLUICE_LOG(info, config, "cds: version '{}' applied: {} cluster(s)", update.version_info,
             names.size());
  return true;
}

}  // namespace sluice::config
