#include <gtest/gtest.h>

#include "http/header_map.h"

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
  for (const auto& e : h) keys.push_back(e.key);
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

}  // namespace
}  // namespace sluice::http
