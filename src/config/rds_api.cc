#include "config/rds_api.h"

#include "common/logger.h"

namespace sluice::config {

namespace {
RouteConfigProviders* g_providers = nullptr;
}  // namespace

RouteConfigProviders* routeConfigProviders() { return g_providers; }
void setRouteConfigProviders(RouteConfigProviders* providers) { g_providers = providers; }

http::RouteConstSharedPtr RdsRouteTable::route(const http::RequestHeaderMap& headers,
                                               uint64_t random) const {
  const uint32_t slot = stats::ThreadSlot::current();
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  if (slot == stats::ThreadSlot::kSharedSlot) {
    http::RouteTableConstSharedPtr table;
    {
      std::lock_guard lock(mutex_);
      table = current_;
    }
    return table ? table->route(headers, random) : nullptr;
  }
  Slot& s = slots_[slot];
  if (s.generation != generation) {
    std::lock_guard lock(mutex_);
    s.table = current_;
    s.generation = generation;
  }
  return s.table ? s.table->route(headers, random) : nullptr;
}

void RdsRouteTable::set(http::RouteTableConstSharedPtr table) {
  {
    std::lock_guard lock(mutex_);
    current_ = std::move(table);
  }
  generation_.fetch_add(1, std::memory_order_release);
}

bool RdsApi::onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors) {
  int found = -1;
  envoy::config::route::v3::RouteConfiguration proto;
  for (size_t i = 0; i < update.resources.size(); ++i) {
    envoy::config::route::v3::RouteConfiguration rc;
    const std::string path = "resources[" + std::to_string(i) + "]";
    if (!copyResource(update, i, rc)) {
      errors.push_back(path + ": does not parse as a RouteConfiguration");
      return false;
    }
    if (rc.name() != name_) continue;  // another subscription's
    if (found >= 0) {
      errors.push_back(path + ".name: duplicate route configuration '" + name_ + "'");
      return false;
    }
    found = static_cast<int>(i);
    proto = std::move(rc);
  }
  if (found < 0) {
    errors.push_back("resources: no RouteConfiguration named '" + name_ + "'");
    return false;
  }
  std::string bytes = deterministicBytes(proto);
  if (loaded_ && bytes == bytes_) {
    version_info_ = update.version_info;
    return true;  // unchanged: the table in use stays
  }
  std::string error;
  auto table = router::RouteTableImpl::create(proto, &error, compile_);
  if (!table) {
    errors.push_back("resources[" + std::to_string(found) + "]." + error);
    return false;
  }
  table_->set(std::move(table));
  loaded_ = true;
  proto_ = std::move(proto);
  bytes_ = std::move(bytes);
  version_info_ = update.version_info;
  last_updated_ = time_.systemTime();
  SLUICE_LOG(info, config, "rds: route config '{}' version '{}' applied", name_,
             update.version_info);
  return true;
}

std::shared_ptr<RdsRouteTable> RouteConfigProviders::get(const SourceSpec& source,
                                                         const std::string& name,
                                                         const std::string& stat_prefix,
                                                         router::PerFilterConfigCompiler compile,
                                                         std::string& error) {
  Key key(source.key(), name);
  auto it = apis_.find(key);
  if (it != apis_.end()) {
    init::Scope::add(it->second->initTarget());
    return handle(key, *it->second);
  }
  auto& time = factory_.dispatcher().timeSource();
  auto api = std::make_unique<RdsApi>(name, source, std::move(compile), time);
  RdsApi* raw = api.get();
  api->subscription = factory_.startNamed(
      source, kRouteConfigurationType, name, "http." + stat_prefix + ".rds." + name + ".",
      [raw](DiscoveryUpdate& u, std::vector<std::string>& errors) {
        return raw->onConfigUpdate(u, errors);
      },
      raw->initTarget(), error);
  if (!api->subscription) return nullptr;
  if (!raw->loaded() && !source.ads) {
    SLUICE_LOG(warn, config,
               "rds: route config '{}' not loaded from {}; requests get 404 until it is", name,
               source.path);
  }
  // A listener naming the table warms until its first version is offered (over ADS; a
  // file's is read above).
  init::Scope::add(raw->initTarget());
  apis_.emplace(key, std::move(api));
  return handle(key, *raw);
}

std::shared_ptr<RdsRouteTable> RouteConfigProviders::handle(const Key& key, RdsApi& api) {
  ++api.handles;
  std::weak_ptr<RouteConfigProviders*> alive = alive_;
  event::Dispatcher* main = &factory_.dispatcher();
  std::shared_ptr<RdsRouteTable> table = api.table();
  RdsRouteTable* raw = table.get();
  return std::shared_ptr<RdsRouteTable>(
      raw, [table = std::move(table), alive = std::move(alive), main, key](RdsRouteTable*) {
        if (alive.expired()) return;
        main->post([alive, key] {
          if (auto self = alive.lock()) (*self)->release(key);
        });
      });
}

void RouteConfigProviders::release(const Key& key) {
  auto api = apis_.find(key);
  if (api == apis_.end() || --api->second->handles > 0) return;
  SLUICE_LOG(info, config, "rds: route config '{}' is no longer used; unsubscribed",
             key.second);
  apis_.erase(api);
}

}  // namespace sluice::config
