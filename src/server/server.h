#pragma once

// `sluice proxy`: the data plane process. Loads an Envoy v3 bootstrap, binds its listeners
// (one SO_REUSEPORT socket per worker), starts the workers and the admin interface, and
// drains gracefully on SIGTERM.

#include <chrono>
#include <string>

namespace sluice::server {

struct Options {
  std::string config_path;
  std::string config_yaml;
  unsigned concurrency{1};
  std::string mode{"serve"};  // serve | validate
  std::string service_cluster;
  std::string service_node;
  std::chrono::seconds drain_time{600};  // Envoy's default --drain-time-s
  std::string admin_address_path;        // write the admin address here once bound
  std::string command_line;              // for /server_info
};

// Runs until shutdown; returns the process exit code.
int runProxy(const Options& options);

}  // namespace sluice::server
