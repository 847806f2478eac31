// `sluice proxy`: the data plane, with Envoy's command-line flags where they apply.

#include <memory>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "server/server.h"

namespace sluice::cli {

Run addProxyCommand(CLI::App& app, const std::string& command_line) {
  auto opts = std::make_shared<server::Options>();
  opts->concurrency = std::max(1u, std::thread::hardware_concurrency());
  opts->command_line = command_line;
  auto drain = std::make_shared<unsigned>(600);
  app.add_option("-c,--config-path", opts->config_path,
                 "Envoy v3 bootstrap config file (.yaml/.yml or .json)");
  app.add_option("--config-yaml", opts->config_yaml,
                 "Inline YAML merged over the config file (Envoy's semantics)");
  app.add_option("--concurrency", opts->concurrency, "Worker threads (default: the number of cores)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--mode", opts->mode,
                 "serve: run the proxy; validate: check the config, print what is wrong, exit 0 or 1")
      ->check(CLI::IsMember({"serve", "validate"}))
      ->capture_default_str();
  app.add_option("--service-cluster", opts->service_cluster, "Sets node.cluster");
  app.add_option("--service-node", opts->service_node, "Sets node.id");
  app.add_option("--drain-time-s", *drain,
                 "Seconds to drain connections on SIGTERM before exiting")
      ->capture_default_str();
  app.add_option("--admin-address-path", opts->admin_address_path,
                 "Write the admin listener's address (ip:port) to this file");
  return [opts, drain]() -> int {
    if (opts->config_path.empty() && opts->config_yaml.empty()) {
      std::fprintf(stderr, "error: one of -c/--config-path and --config-yaml is required\n");
      return 1;
    }
    opts->drain_time = std::chrono::seconds(*drain);
    return server::runProxy(*opts);
  };
}

}  // namespace sluice::cli
