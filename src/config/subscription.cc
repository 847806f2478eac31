#include "config/subscription.h"

#include "config/filesystem_subscription.h"
#include "config/grpc_mux.h"
#include "config/proto_duration.h"
#include "envoy/config/core/v3/config_source.pb.h"

namespace sluice::config {

namespace {
bool g_ads_configured = false;
SubscriptionFactory* g_factory = nullptr;
}  // namespace

SubscriptionFactory* subscriptionFactory() { return g_factory; }
void setSubscriptionFactory(SubscriptionFactory* factory) { g_factory = factory; }

bool adsConfigured() { return g_ads_configured; }
void setAdsConfigured(bool configured) { g_ads_configured = configured; }

bool parseConfigSource(const envoy::config::core::v3::ConfigSource& cs, const std::string& path,
                       SourceSpec& out, std::vector<std::string>& errors) {
  if (cs.has_initial_fetch_timeout()) {
    out.initial_fetch_timeout = toMilliseconds(cs.initial_fetch_timeout());
  }
  if (cs.has_ads()) {
    if (!adsConfigured()) {
      errors.push_back(path + ".ads: needs dynamic_resources.ads_config");
      return false;
    }
    out.ads = true;
    return true;
  }
  out.path = cs.has_path_config_source() ? cs.path_config_source().path() : cs.path();
  if (!out.path.empty()) return true;
  errors.push_back(path + ": a path_config_source with a path, or ads, is required (the config "
                          "sources supported)");
  return false;
}

std::unique_ptr<Subscription> SubscriptionFactory::create(const SourceSpec& source,
                                                          std::string_view type,
                                                          std::string resource_name,
                                                          std::string stat_prefix,
                                                          Subscription::OnUpdate on_update,
                                                          std::function<void()> on_initialized) {
  if (source.ads) {
    if (!ads_) return nullptr;
    std::vector<std::string> names;
    if (!resource_name.empty()) names.push_back(std::move(resource_name));
    return ads_->subscribe(type, std::move(names), std::move(stat_prefix), std::move(on_update),
                           source.initial_fetch_timeout, std::move(on_initialized));
  }
  // A file holds what it holds: the consumer picks its resource by name.
  return std::make_unique<FilesystemSubscription>(main_, source.path, std::string(type), store_,
                                                  std::move(stat_prefix), std::move(on_update),
                                                  std::move(on_initialized));
}

std::unique_ptr<Subscription> SubscriptionFactory::startNamed(
    const SourceSpec& source, std::string_view type, std::string resource_name,
    std::string stat_prefix, Subscription::OnUpdate on_update, init::TargetSharedPtr target,
    std::string& error) {
  auto sub = create(source, type, std::move(resource_name), std::move(stat_prefix),
                    std::move(on_update), [target] { target->setReady(); });
  if (!sub) {
    error = "ads: the ADS stream is not configured";
    return nullptr;
  }
  if (!sub->start(error)) return nullptr;
  return sub;
}

}  // namespace sluice::config
