#pragma once

// An xDS subscription to a file (a ConfigSource's path_config_source): the file holds a
// DiscoveryResponse in YAML or JSON, and a new version is moved into place with a rename (or
// written in place). Each version is decoded and checked whole, then offered to the
// consumer, which applies all of it or none; a refused or unreadable version is logged with
// the path of the bad field and the last good config keeps serving.
//
// Stats (Envoy's, under `stat_prefix`, e.g. "cluster_manager.cds."): update_attempt,
// update_success, update_rejected (decoded but refused), update_failure (unreadable),
// version (a hash of the accepted version_info), update_time (ms since the epoch).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/subscription.h"
#include "config/xds_resources.h"
#include "event/dispatcher.h"
#include "event/file_watcher.h"

namespace sluice::stats {
class Store;
}

namespace sluice::config {

class FilesystemSubscription : public Subscription {
 public:

  FilesystemSubscription(event::Dispatcher& dispatcher, std::string path, std::string type,
                         stats::Store& store, std::string stat_prefix, OnUpdate on_update,
                         std::function<void()> on_initialized = {});

  // Reads the file now (the consumer sees its first version before this returns) and then
  // on every change. False with `error` if the file's directory cannot be watched.
  // `on_initialized` runs after that first read, whatever it gave.
  bool start(std::string& error) override;
  const std::string& path() const { return path_; }
  // The version_info of the last accepted update ("" before one).
  const std::string& version() const override { return version_; }

 private:
  void refresh();

  event::Dispatcher& dispatcher_;
  const std::string path_;
  const std::string type_;
  stats::Store& store_;
  const std::string prefix_;
  OnUpdate on_update_;
  std::function<void()> on_initialized_;
  event::FileWatcher watcher_;
  std::string version_;
};

}  // namespace sluice::config
