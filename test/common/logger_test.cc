#include <gtest/gtest.h>

#include "common/logger.h"

namespace sluice::logger {
namespace {

TEST(LoggerTest, LevelsParseAndPrint) {
  spdlog::level::level_enum l;
  ASSERT_TRUE(levelFromString("debug", l));
  EXPECT_EQ(l, spdlog::level::debug);
  ASSERT_TRUE(levelFromString("warning", l));
  EXPECT_EQ(l, spdlog::level::warn);
  EXPECT_EQ(levelName(spdlog::level::warn), "warning");
  EXPECT_FALSE(levelFromString("verbose", l));
}

TEST(LoggerTest, ComponentLevelsChangeAtRunTime) {
  setAllLevels(spdlog::level::info);
  EXPECT_TRUE(setLevel("upstream", spdlog::level::trace));
  EXPECT_EQ(get(Id::upstream).level(), spdlog::level::trace);
  EXPECT_EQ(get(Id::http).level(), spdlog::level::info);
  EXPECT_FALSE(setLevel("no_such_component", spdlog::level::trace));
  bool found = false;
  for (const auto& info : all()) {
    if (info.name == "upstream") {
      found = true;
      EXPECT_EQ(info.level, spdlog::level::trace);
    }
  }
  EXPECT_TRUE(found);
  setAllLevels(spdlog::level::warn);
  EXPECT_EQ(get(Id::upstream).level(), spdlog::level::warn);
}

}  // namespace
}  // namespace sluice::logger
