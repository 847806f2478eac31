#pragma once

// Where an xDS resource comes from: a ConfigSource, read into a SourceSpec, and a Subscription
// made from it by the SubscriptionFactory, whatever the source is: a watched file
// (path_config_source) or the ADS stream (`ads: {}`). The consumer (CDS, LDS, RDS, EDS, SDS)
// sees the same thing either way: whole, checked updates offered to its callback, which
// applies all of one or none of it.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/init_target.h"
#include "config/xds_resources.h"

namespace envoy::config::core::v3 {
class ConfigSource;
}
namespace sluice::event {
class Dispatcher;
}
namespace sluice::stats {
class Store;
}

namespace sluice::config {

class GrpcMux;

// A ConfigSource as the proxy uses it.
struct SourceSpec {
  std::string path;  // path_config_source.path (or the legacy path); empty with ads
  bool ads{false};
  // initial_fetch_timeout (Envoy's default 15 s; 0: wait forever). Files are read at once.
  std::chrono::milliseconds initial_fetch_timeout{15000};
  // Subscriptions to the same source share their state (e.g. one RDS table per source+name).
  std::string key() const { return ads ? std::string("ads") : path; }
};

// Reads a ConfigSource; false with errors naming `path`. `ads` needs the bootstrap's
// dynamic_resources.ads_config (adsConfigured()).
bool parseConfigSource(const envoy::config::core::v3::ConfigSource& cs, const std::string& path,
                       SourceSpec& out, std::vector<std::string>& errors);

// Whether the bootstrap being loaded has dynamic_resources.ads_config (set while it loads).
bool adsConfigured();
void setAdsConfigured(bool configured);

class Subscription {
 public:
  // Applies an update; false (with "path: message" errors) refuses it, changing nothing.
  using OnUpdate = std::function<bool(DiscoveryUpdate& update, std::vector<std::string>& errors)>;
  virtual ~Subscription() = default;
  // Starts fetching. A file is read now (its first version is applied before this returns);
  // over ADS the resources are asked for on the stream. False with `error` if it can't start.
  virtual bool start(std::string& error) = 0;
  // The version_info last accepted ("" before one).
  virtual const std::string& version() const = 0;
};

// Main thread. Makes subscriptions of either kind.
class SubscriptionFactory {
 public:
  SubscriptionFactory(event::Dispatcher& main, stats::Store& store) : main_(main), store_(store) {}
  // The ADS stream, once the bootstrap has one (before any `ads` subscription is made).
  void setAds(std::shared_ptr<GrpcMux> ads) { ads_ = std::move(ads); }
  const std::shared_ptr<GrpcMux>& ads() const { return ads_; }
  event::Dispatcher& dispatcher() const { return main_; }

  // Resources of `type` (a full message name): every one (`resource_name` empty: CDS, LDS),
  // or the one named (RDS, EDS, SDS). Stats go under `stat_prefix` ("cluster_manager.cds.").
  // `on_initialized` (may be empty) runs once: after the first update offered (accepted or
  // not), or when the source's initial_fetch_timeout passes without one.
  std::unique_ptr<Subscription> create(const SourceSpec& source, std::string_view type,
                                       std::string resource_name, std::string stat_prefix,
                                       Subscription::OnUpdate on_update,
                                       std::function<void()> on_initialized = {});
  // create() for one named resource that a listener or cluster may warm for, started: `target`
  // becomes ready with on_initialized. Null with `error` when there is no ADS stream for an
  // `ads` source, or when it cannot start (a file's directory cannot be watched).
  std::unique_ptr<Subscription> startNamed(const SourceSpec& source, std::string_view type,
                                           std::string resource_name, std::string stat_prefix,
                                           Subscription::OnUpdate on_update,
                                           init::TargetSharedPtr target, std::string& error);

 private:
  event::Dispatcher& main_;
  stats::Store& store_;
  std::shared_ptr<GrpcMux> ads_;
};

// The running proxy's factory (main thread; null in --mode validate), for the consumers made
// deep inside the config (EDS clusters, SDS secrets).
SubscriptionFactory* subscriptionFactory();
void setSubscriptionFactory(SubscriptionFactory* factory);

}  // namespace sluice::config
