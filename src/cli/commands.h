#pragma once

// The subcommands of `sluice`. Each registers its options on the parsed command line and
// returns the function that runs it (the process exit code).

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace sluice::cli {

using Run = std::function<int()>;

// `sluice echo`: a TCP echo server on the Dispatcher and the network core (a demo and a
// smoke test of the foundation).
Run addEchoCommand(CLI::App& app);

// `sluice proxy`: the data plane (Envoy v3 bootstrap). `command_line` is shown by
// /server_info.
Run addProxyCommand(CLI::App& app, const std::string& command_line);

}  // namespace sluice::cli
