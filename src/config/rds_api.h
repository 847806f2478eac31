#pragma once

// RDS: a connection manager's route table from a subscription (`rds` with a config source and
// a route_config_name: a watched file, or the ADS stream). Each accepted version is compiled into an
// immutable route table that replaces the previous one whole; a request resolves its route
// against the table current when it starts, so the next request on an existing connection
// uses the new routes. A version without the named RouteConfiguration, or with a bad one, is
// refused whole and the last good table keeps serving.
//
// The swap costs the request path one atomic load: each thread keeps its own reference to
// the current table and refreshes it (under a mutex, once per thread per update) only when the
// version counter moved.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/init_target.h"
#include "config/subscription.h"
#include "envoy/config/route/v3/route.pb.h"
#include "event/dispatcher.h"
#include "http/route.h"
#include "router/config_impl.h"
#include "stats/stats.h"

namespace sluice::config {

class RdsRouteTable : public http::RouteTable {
 public:
  // The route from the current table; null (404, NR) before the first version.
  http::RouteConstSharedPtr route(const http::RequestHeaderMap& headers,
                                  uint64_t random) const override;
  // Main thread: the table requests starting from now use.
  void set(http::RouteTableConstSharedPtr table);

 private:
  struct Slot {
    uint64_t generation{0};
    http::RouteTableConstSharedPtr table;
  };
  std::atomic<uint64_t> generation_{0};
  mutable std::mutex mutex_;
  http::RouteTableConstSharedPtr current_;  // guarded by mutex_
  // One per stats thread slot (each worker and the main thread own one); slot 0, shared by
  // unregistered threads, always reads under the mutex.
  mutable Slot slots_[stats::ThreadSlot::kMaxSlots];
};

// One RDS subscription: a route_config_name from one config source.
class RdsApi {
 public:
  RdsApi(std::string name, SourceSpec source, router::PerFilterConfigCompiler compile,
         event::TimeSource& time)
      : name_(std::move(name)), source_(std::move(source)), compile_(std::move(compile)), time_(time),
        table_(std::make_shared<RdsRouteTable>()),
        init_target_(std::make_shared<init::Target>("route config '" + name_ + "'")) {}

  // Checks and applies one update; false with "resources[i]...: message" errors.
  bool onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors);

  const std::string& name() const { return name_; }
  const SourceSpec& source() const { return source_; }
  const std::shared_ptr<RdsRouteTable>& table() const { return table_; }
  bool loaded() const { return loaded_; }
  // Ready once the first version was offered (taken or not) or initial_fetch_timeout passed.
  const init::TargetSharedPtr& initTarget() const { return init_target_; }
  // For /config_dump.
  const envoy::config::route::v3::RouteConfiguration& proto() const { return proto_; }
  const std::string& versionInfo() const { return version_info_; }
  event::SystemTime lastUpdated() const { return last_updated_; }

  std::unique_ptr<Subscription> subscription;
  size_t handles{0};  // live handles RouteConfigProviders gave out for it (main thread)

 private:
  const std::string name_;
  const SourceSpec source_;
  router::PerFilterConfigCompiler compile_;
  event::TimeSource& time_;
  std::shared_ptr<RdsRouteTable> table_;
  init::TargetSharedPtr init_target_;
  bool loaded_{false};
  envoy::config::route::v3::RouteConfiguration proto_;
  std::string bytes_;
  std::string version_info_;
  event::SystemTime last_updated_;
};

// The proxy's RDS subscriptions (main thread), shared by every connection manager that names
// the same config source and route_config_name. A subscription ends (over ADS, its name is
// unsubscribed) once the last connection manager config that named it is gone, as Envoy's
// route config providers do.
class RouteConfigProviders {
 public:
  explicit RouteConfigProviders(SubscriptionFactory& factory)
      : factory_(factory), alive_(std::make_shared<RouteConfigProviders*>(this)) {}

  // The subscription's table, starting it (a file is read now) on first use. Null with
  // `error` if it cannot start (a file's directory cannot be watched). The table returned is
  // a handle: when its last copy goes (on any thread), the main thread is told, and the
  // subscription ends if no other handle is left. Worker threads must be joined before this
  // object and the main dispatcher go; handles outliving it let go of nothing.
  std::shared_ptr<RdsRouteTable> get(const SourceSpec& source, const std::string& name,
                                     const std::string& stat_prefix,
                                     router::PerFilterConfigCompiler compile, std::string& error);
  const std::map<std::pair<std::string, std::string>, std::unique_ptr<RdsApi>>& all() const {
    return apis_;
  }

 private:
  using Key = std::pair<std::string, std::string>;
  std::shared_ptr<RdsRouteTable> handle(const Key& key, RdsApi& api);
  void release(const Key& key);

  SubscriptionFactory& factory_;
  // By source (SourceSpec::key) and name.
  std::map<Key, std::unique_ptr<RdsApi>> apis_;
  std::shared_ptr<RouteConfigProviders*> alive_;  // handles hold it weakly
};

// The running proxy's providers (null in --mode validate, where an rds block is only checked).
RouteConfigProviders* routeConfigProviders();
void setRouteConfigProviders(RouteConfigProviders* providers);

}  // namespace sluice::config
