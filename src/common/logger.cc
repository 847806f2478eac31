#include "common/logger.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <spdlog/sinks/stdout_sinks.h>

#include "common/assert.h"

namespace sluice {

void assertFailed(const char* cond, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "assert failure: %s at %s:%d: %s\n", cond, file, line, msg);
  std::fflush(stderr);
  std::abort();
}

namespace logger {
namespace {

constexpr std::array<const char*, static_cast<size_t>(Id::Count)> kNames = {
#define SLUICE_LOGGER_NAME(name) #name,
    SLUICE_ALL_LOGGERS(SLUICE_LOGGER_NAME)
#undef SLUICE_LOGGER_NAME
};

struct Registry {
  Registry() {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    for (size_t i = 0; i < loggers.size(); ++i) {
      loggers[i] = std::make_unique<spdlog::logger>(kNames[i], sink);
      loggers[i]->set_pattern("[%Y-%m-%d %T.%e][%t][%l][%n] %v");
      loggers[i]->set_level(spdlog::level::info);
      loggers[i]->flush_on(spdlog::level::warn);
    }
  }
  std::array<std::unique_ptr<spdlog::logger>, static_cast<size_t>(Id::Count)> loggers;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: loggers outlive every thread
  return *r;
}

}  // namespace

spdlog::logger& get(Id id) { return *registry().loggers[static_cast<size_t>(id)]; }

bool levelFromString(std::string_view text, spdlog::level::level_enum& out) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warning", spdlog::level::warn},
      {"warn", spdlog::level::warn},         {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
  };
  for (const auto& [name, level] : kLevels) {
    if (text == name) {
      out = level;
      return true;
    }
  }
  return false;
}

std::string_view levelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warning";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

void setAllLevels(spdlog::level::level_enum level) {
  for (auto& l : registry().loggers) l->set_level(level);
}

bool setLevel(std::string_view component, spdlog::level::level_enum level) {
  for (auto& l : registry().loggers) {
    if (l->name() == component) {
      l->set_level(level);
      return true;
    }
  }
  return false;
}

std::vector<LoggerInfo> all() {
  std::vector<LoggerInfo> out;
  for (auto& l : registry().loggers) out.push_back({l->name(), l->level()});
  return out;
}

}  // namespace logger
}  // namespace sluice
