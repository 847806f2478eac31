#include <set>

#include <gtest/gtest.h>

#include "http/utility.h"

namespace sluice::http {
namespace {

std::string normalized(std::string p, bool merge = false) {
  EXPECT_TRUE(normalizePath(p, merge));
  return p;
}

TEST(UtilityTest, NormalizePathRemovesDotSegmentsAndDecodesUnreserved) {
  EXPECT_EQ(normalized("/a/./b/../c"), "/a/c");
  EXPECT_EQ(normalized("/../../x"), "/x");
  EXPECT_EQ(normalized("/a/b/.."), "/a/");
  EXPECT_EQ(normalized("/%61%62c"), "/abc");
  EXPECT_EQ(normalized("/a%2fb"), "/a%2Fb");  // reserved stays encoded, upper-cased
  EXPECT_EQ(normalized("/a/../b?x=/../y"), "/b?x=/../y");  // the query is left alone
  EXPECT_EQ(normalized("/a//b///c", true), "/a/b/c");
  std::string rel = "a/b";
  EXPECT_FALSE(normalizePath(rel, false));
}

TEST(UtilityTest, MergeSlashesLeavesTheQuery) {
  std::string p = "//a//b?c=//d";
  mergeSlashes(p);
  EXPECT_EQ(p, "/a/b?c=//d");
}

TEST(UtilityTest, TrustedXffAddress) {
  EXPECT_EQ(trustedXffAddress("1.1.1.1, 2.2.2.2, 3.3.3.3", 0), "3.3.3.3");
  EXPECT_EQ(trustedXffAddress("1.1.1.1, 2.2.2.2, 3.3.3.3", 1), "2.2.2.2");
  EXPECT_EQ(trustedXffAddress("1.1.1.1, 2.2.2.2, 3.3.3.3", 2), "1.1.1.1");
  EXPECT_EQ(trustedXffAddress("1.1.1.1", 1), "");
  EXPECT_EQ(trustedXffAddress("", 0), "");
}

TEST(UtilityTest, UuidsAreVersion4AndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string u = randomUuid();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[14], '4');
    EXPECT_TRUE(u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b') << u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(UtilityTest, HeaderTokens) {
  EXPECT_TRUE(headerHasToken("keep-alive, Upgrade", "upgrade"));
  EXPECT_FALSE(headerHasToken("keep-alive-ish", "keep-alive"));
  EXPECT_TRUE(isHopByHopHeader("transfer-encoding"));
  EXPECT_FALSE(isHopByHopHeader("content-length"));
}

}  // namespace
}  // namespace sluice::http
