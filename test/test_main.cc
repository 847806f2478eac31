#include <csignal>
#include <cstdlib>

#include <gtest/gtest.h>

#include "common/logger.h"

// Test binaries log at warning unless SLUICE_TEST_LOG_LEVEL says otherwise, and never die
// of SIGPIPE (a peer that went away is an error value, not a signal).
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  spdlog::level::level_enum level = spdlog::level::warn;
  if (const char* env = std::getenv("SLUICE_TEST_LOG_LEVEL")) {
    sluice::logger::levelFromString(env, level);
  }
  sluice::logger::setAllLevels(level);
  return RUN_ALL_TESTS();
}
