// The `sluice` command: one binary, with a subcommand for each job.

#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "common/logger.h"
#include "common/version.h"

namespace {

// Applies --log-level and --component-log-level ("upstream:debug,connection:trace").
bool applyLogLevels(const std::string& level, const std::string& components) {
  spdlog::level::level_enum l;
  if (!sluice::logger::levelFromString(level, l)) {
    fmt::print(stderr, "error: unknown log level '{}' (trace, debug, info, warning, error, "
                       "critical, off)\n", level);
    return false;
  }
  sluice::logger::setAllLevels(l);
  size_t pos = 0;
  while (pos < components.size()) {
    size_t end = components.find(',', pos);
    if (end == std::string::npos) end = components.size();
    const std::string item = components.substr(pos, end - pos);
    pos = end + 1;
    const size_t colon = item.find(':');
    spdlog::level::level_enum cl;
    if (colon == std::string::npos ||
        !sluice::logger::levelFromString(item.substr(colon + 1), cl) ||
        !sluice::logger::setLevel(item.substr(0, colon), cl)) {
      fmt::print(stderr, "error: bad --component-log-level item '{}' (want component:level; "
                         "components:", item);
      for (const auto& info : sluice::logger::all()) fmt::print(stderr, " {}", info.name);
      fmt::print(stderr, ")\n");
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Sluice: a service mesh. The data plane speaks Envoy's v3 API; the control "
               "plane reads Istio's.",
               "sluice"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("sluice {} (commit {})", sluice::version(),
                                                sluice::buildCommit()));
  std::string log_level = "info";
  std::string component_levels;
  app.add_option("-l,--log-level", log_level,
                 "Log level of every component: trace, debug, info, warning, error, critical, off")
      ->capture_default_str();
  app.add_option("--component-log-level", component_levels,
                 "Per-component levels, e.g. upstream:debug,connection:trace");
  app.footer("Run 'sluice <command> --help' for a command's options.");

  std::string command_line;
  for (int i = 0; i < argc; ++i) command_line += (i ? " " : "") + std::string(argv[i]);
  sluice::cli::Run run;
  CLI::App* proxy = app.add_subcommand(
      "proxy", "Run the data-plane proxy from an Envoy v3 bootstrap config (-c FILE)");
  proxy->fallthrough();
  sluice::cli::Run proxy_run = sluice::cli::addProxyCommand(*proxy, command_line);
  CLI::App* echo = app.add_subcommand("echo", "Run a TCP echo server (a demo of the event loop "
                                              "and network core)");
  echo->fallthrough();
  sluice::cli::Run echo_run = sluice::cli::addEchoCommand(*echo);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!applyLogLevels(log_level, component_levels)) return 1;
  if (echo->parsed()) run = echo_run;
  if (proxy->parsed()) run = proxy_run;
  return run();
}
