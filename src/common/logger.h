#pragma once

// Per-component loggers on spdlog, in the style of Envoy's: every component has a named
// logger, all share one sink (stderr) and one pattern, and each level can be changed at run
// time (the admin endpoint /logging does that). Use the macros, which skip formatting when
// the level is off:
//
//   SLUICE_LOG(debug, connection, "[C{}] closing", id);

#include <string>
#include <string_view>
#include <vector>

#include <spdlog/logger.h>

namespace sluice::logger {

// X-macro: every component logger. Add one here and it exists everywhere.
#define SLUICE_ALL_LOGGERS(X) \
  X(admin)                    \
  X(config)                   \
  X(connection)               \
  X(conn_handler)             \
  X(dns)                      \
  X(event)                    \
  X(http)                     \
  X(main)                     \
  X(pilot)                    \
  X(router)                   \
  X(upstream)                 \
  X(watchdog)

enum class Id {
#define SLUICE_LOGGER_ID(name) name,
  SLUICE_ALL_LOGGERS(SLUICE_LOGGER_ID)
#undef SLUICE_LOGGER_ID
      Count
};

// The logger of a component. Valid for the whole process.
spdlog::logger& get(Id id);

// Parses "trace", "debug", "info", "warning"/"warn", "error", "critical", "off".
bool levelFromString(std::string_view text, spdlog::level::level_enum& out);
std::string_view levelName(spdlog::level::level_enum level);

// Sets the level of every component logger.
void setAllLevels(spdlog::level::level_enum level);
// Sets one component's level; false when no logger has that name.
bool setLevel(std::string_view component, spdlog::level::level_enum level);

struct LoggerInfo {
  std::string name;
  spdlog::level::level_enum level;
};
std::vector<LoggerInfo> all();

}  // namespace sluice::logger

#define SLUICE_LOG(LEVEL, COMPONENT, ...)                                               \
  do {                                                                                  \
    auto& sluice_logger_ = ::sluice::logger::get(::sluice::logger::Id::COMPONENT);     \
    if (sluice_logger_.should_log(::spdlog::level::LEVEL)) [[unlikely]] {               \
      sluice_logger_.log(::spdlog::level::LEVEL, __VA_ARGS__);                          \
    }                                                                                   \
  } while (false)
