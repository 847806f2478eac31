#include "config/filesystem_subscription.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::config {

FilesystemSubscription::FilesystemSubscription(event::Dispatcher& dispatcher, std::string path,
                                               std::string type, stats::Store& store,
                                               std::string stat_prefix, OnUpdate on_update,
                                               std::function<void()> on_initialized)
    : dispatcher_(dispatcher),
      path_(std::move(path)),
      type_(std::move(type)),
      store_(store),
      prefix_(std::move(stat_prefix)),
      on_update_(std::move(on_update)),
      on_initialized_(std::move(on_initialized)),
      watcher_(dispatcher) {}

bool FilesystemSubscription::start(std::string& error) {
  if (!watcher_.addWatch(path_, [this] { refresh(); }, error)) return false;
  refresh();
  if (auto cb = std::exchange(on_initialized_, nullptr)) cb();
  return true;
}

void FilesystemSubscription::refresh() {
  store_.counter(prefix_ + "update_attempt").inc();
  std::ifstream in(path_, std::ios::binary);
  std::stringstream text;
  if (!in || !(text << in.rdbuf())) {
    store_.counter(prefix_ + "update_failure").inc();
    SLUICE_LOG(warn, config, "{}: cannot read the file", path_);
    return;
  }
  DiscoveryUpdate update;
  std::vector<std::string> errors;
  if (!decodeDiscoveryResponseText(text.str(), type_, update, errors) ||
      !on_update_(update, errors)) {
    store_.counter(prefix_ + "update_rejected").inc();
    for (const auto& e : errors) {
      SLUICE_LOG(warn, config, "{}: update rejected: {}", path_, e);
    }
    return;
  }
  version_ = update.version_info;
  store_.counter(prefix_ + "update_success").inc();
  store_.gauge(prefix_ + "version").set(std::hash<std::string>{}(version_));
  store_.gauge(prefix_ + "update_time")
      .set(std::chrono::duration_cast<std::chrono::milliseconds>(
               dispatcher_.timeSource().systemTime().time_since_epoch())
               .count());
}

}  // namespace sluice::config
