#pragma once

// The listeners of the proxy (main thread): the bootstrap's static ones and those LDS gives.
// An LDS update is the whole set (state of the world) and is applied all or nothing: every
// listener is built and every new socket bound before anything changes.
//
// - A new listener binds its sockets and is posted to the workers.
// - A changed listener whose address (and reuse_port) is unchanged keeps its sockets: the
//   workers swap the config new connections take, so no connection is refused during the
//   swap; connections of the old config drain (their next response closes them) and those
//   left after --drain-time-s are closed.
// - A changed listener on a new address binds new sockets; the old listener is removed.
// - A removed listener stops accepting at once and its connections drain the same way.
// - A new or changed listener whose route tables (RDS) or secrets (SDS over ADS) have not
//   come yet warms first (Envoy's warming): its sockets are bound, but the workers take it
//   only once they came (or their initial_fetch_timeout passed); until then the version it
//   replaces keeps serving. A newer version, or a removal, replaces a warming one at once.
//   Start-up (whenWarmed) waits for the static listeners' and the first LDS version's.
//
// Workers hear of changes by Dispatcher::post only; the request path takes no lock.
// Stats: listener_manager.listener_added|listener_modified|listener_removed,
// listener_manager.total_listeners_active|warming|draining.

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config/proxy_config.h"
#include "config/xds_resources.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "event/dispatcher.h"
#include "server/worker.h"

namespace sluice::access_log {
class FileSinkManager;
}
namespace sluice::stats {
class Store;
}

namespace sluice::server {

class ListenerManager {
 public:
  // `cluster_names`: the clusters routes may name now (static, CDS active and warming).
  ListenerManager(event::Dispatcher& main, stats::Store& store, access_log::FileSinkManager& sinks,
                  const config::SecretMap& secrets, unsigned concurrency,
                  std::chrono::milliseconds drain_time,
                  std::function<std::set<std::string>()> cluster_names);
  ~ListenerManager();

  // A bootstrap listener: binds it now. False with `error`.
  bool addStaticListener(config::ListenerConfig config,
                         const envoy::config::listener::v3::Listener& proto, std::string& error);

  // LDS: checks and applies one update; false with "resources[i]...: message" errors.
  bool onConfigUpdate(config::DiscoveryUpdate& update, std::vector<std::string>& errors);

  // `cb` once no listener is warming (now, if none is); start-up waits on it.
  void whenWarmed(std::function<void()> cb);

  // From now on the workers serve the listeners (the current ones are posted to them).
  void startWorkers(std::vector<Worker*> workers);
  // Stops accepting everywhere (SIGTERM, /drain_listeners); with `drain`, connections are
  // asked to finish. The sockets close once every worker stopped watching them.
  void stopListeners(bool drain);

  struct Listener {
    std::string name;
    uint64_t tag{0};
    bool is_static{false};
    ListenerConfigConstSharedPtr config;
    std::shared_ptr<ListenSockets> sockets;
    envoy::config::listener::v3::Listener proto;
    std::string bytes;  // deterministic, to tell a change from a repeat
    std::string version_info;
    event::SystemTime last_updated;
    // While warming: what it waits for (null once warm). `reuses_sockets`: it takes over the
    // sockets of the active listener of its name (same address) rather than its own; those
    // of a listener the same update removed are in `sockets`.
    std::shared_ptr<init::Watcher> init;
    bool reuses_sockets{false};
  };
  // In the order they came; static ones first.
  const std::vector<Listener>& active() const { return active_; }
  // New versions waiting for their route tables or secrets.
  const std::vector<Listener>& warming() const { return warming_; }
  // Old versions of changed or removed listeners, until their drain time is over.
  std::vector<const Listener*> draining() const;
  // The version_info of the last accepted LDS update.
  const std::string& version() const { return version_; }

 private:
  struct Draining;
  bool bind(const config::ListenerConfig& config, ListenSockets& out, std::string& error);
  void initializeStats(const config::ListenerConfig& config, const network::Address& bound);
  Listener* find(const std::string& name);
  // Puts a built (and bound, unless it reuses sockets) listener in service.
  void activate(Listener l);
  void onWarmed(const std::string& name, const init::Watcher* watcher);
  void dropWarming(const std::string& name);
  void checkWarmed();
  void startDraining(Listener old, bool removed);
  void updateGauges();

  event::Dispatcher& main_;
  stats::Store& store_;
  access_log::FileSinkManager& sinks_;
  const config::SecretMap& secrets_;
  const unsigned concurrency_;
  const std::chrono::milliseconds drain_time_;
  std::function<std::set<std::string>()> cluster_names_;
  std::vector<Listener> active_;
  std::vector<Listener> warming_;
  std::vector<std::shared_ptr<init::Watcher>> static_init_;  // static listeners warming
  std::vector<std::function<void()>> on_warmed_;
  std::vector<std::unique_ptr<Draining>> draining_;
  std::vector<Worker*> workers_;
  bool workers_started_{false};
  bool stopped_{false};
  uint64_t next_tag_{1};
  std::string version_;
};

}  // namespace sluice::server
