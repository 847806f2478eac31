#pragma once

// CDS: the clusters of a subscription (today a watched file; ADS later). Each update is the
// whole set (state of the world): clusters new or changed are added or replaced (they warm
// first), clusters gone from the set are removed, unchanged ones are left alone. An update
// with any bad cluster is refused whole and changes nothing.

#include <memory>
#include <string>
#include <vector>

#include "config/filesystem_subscription.h"
#include "config/tls_config.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "event/time.h"
#include "upstream/cluster_manager.h"

namespace sluice::stats {
class Store;
}

namespace sluice::config {

class CdsApi {
 public:
  // `secrets`: the bootstrap's static secrets, which CDS clusters' TLS contexts may name.
  CdsApi(upstream::ClusterManager& cm, const SecretMap& secrets, stats::Store& store,
         event::TimeSource& time)
      : cm_(cm), secrets_(secrets), store_(store), time_(time) {}

  // Checks and applies one update; false with "resources[i]...: message" errors.
  bool onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors);

  // What CDS gave for a cluster; the cluster manager keeps it with the cluster (active or
  // warming), so /config_dump shows each where it is.
  struct Applied : upstream::ApiResource {
    envoy::config::cluster::v3::Cluster proto;
  };
  // The version_info of the last accepted update.
  const std::string& version() const { return version_; }

 private:
  upstream::ClusterManager& cm_;
  const SecretMap& secrets_;
  stats::Store& store_;
  event::TimeSource& time_;
  std::string version_;
};

}  // namespace sluice::config
