#include <gtest/gtest.h>

#include "http/header_map.h"

#include <string>
#include <vector>

namespace sluice::http {
namespace {

TEST(HeaderMapTest, PseudoHeadersStayFirstAndDuplicatesAreKept) {
  HeaderMap h;
  h.add("user-agent", "curl");
  h.add(":path", "/a");
  h.add("accept", "1");
  h.add(":method", "GET");
  h.add("accept", "2");
  std::vector<std::string> keys;
  for (const auto& e : h) keys.emplace_back(e.key);
  EXPECT_EQ(keys, (std::vector<std::string>{":path", ":method", "user-agent", "accept", "accept"}));
  EXPECT_EQ(h.count("accept"), 2u);
  EXPECT_EQ(h.getValue("accept"), "1");
  EXPECT_EQ(h.path(), "/a");
  EXPECT_EQ(h.method(), "GET");
  EXPECT_EQ(h.getValue("missing"), "");
}

TEST(HeaderMapTest, SetReplacesAllAndRemoveCounts) {
  HeaderMap h{{"a", "1"}, {"b", "2"}, {"a", "3"}};
  EXPECT_EQ(h.byteSize(), 6u);
  h.set("a", "xyz");
  EXPECT_EQ(h.count("a"), 1u);
  EXPECT_EQ(h.getValue("a"), "xyz");
  EXPECT_EQ(h.byteSize(), 6u);  // a+xyz, b+2
  h.append("b", "4");
  EXPECT_EQ(h.getValue("b"), "2,4");
  EXPECT_EQ(h.remove("a"), 1u);
  EXPECT_EQ(h.remove("a"), 0u);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_EQ(h.byteSize(), 4u);
}

TEST(HeaderMapTest, StatusParses) {
  HeaderMap h{{":status", "404"}};
  EXPECT_EQ(h.status(), 404u);
  h.set(":status", "4x4");
  EXPECT_EQ(h.status(), 0u);
}

TEST(HeaderMapTest, GrowsPastItsInlineEntriesAndBytes) {
  HeaderMap h;
  std::vector<std::string> values;
  for (size_t i = 0; i < 3 * HeaderMap::kInlineEntries; ++i) {
    values.push_back(std::string(100 + i, static_cast<char>('a' + i % 26)));
    h.add("x-header-" + std::to_string(i), values.back());
  }
  h.add(":path", "/p");
  ASSERT_EQ(h.size(), 3 * HeaderMap::kInlineEntries + 1);
  EXPECT_EQ(h.begin()->key, ":path");
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(h.getValue("x-header-" + std::to_string(i)), values[i]) << i;
  }
  const HeaderMap copy = h;
  EXPECT_TRUE(copy == h);
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.byteSize(), 0u);
  h.add("a", "1");
  EXPECT_EQ(h.getValue("a"), "1");
  EXPECT_EQ(copy.getValue("x-header-0"), values[0]);
}

TEST(HeaderMapTest, ViewsOutliveChangesToTheirEntry) {
  HeaderMap h{{"a", "first-value-longer-than-sso"}, {"b", "x"}};
  const std::string_view old = h.getValue("a");
  h.set("a", h.getValue("a"));  // a value from the map itself
  h.append("a", "more");
  h.append("b", "");
  h.remove("a");
  EXPECT_EQ(old, "first-value-longer-than-sso");
  EXPECT_EQ(h.getValue("b"), "x,");
  EXPECT_EQ(h.byteSize(), 3u);
  h.set("c", "");
  ASSERT_NE(h.get("c"), nullptr);
  EXPECT_EQ(*h.get("c"), "");
  HeaderMap moved = std::move(h);
  EXPECT_EQ(moved.getValue("b"), "x,");
  EXPECT_EQ(moved.size(), 2u);
}

}  // namespace
}  // namespace sluice::http
