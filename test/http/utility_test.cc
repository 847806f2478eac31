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


TEST(GrpcUtility, ContentType) {
  EXPECT_TRUE(isGrpcContentType("application/grpc"));
  EXPECT_TRUE(isGrpcContentType("application/grpc+proto"));
  EXPECT_TRUE(isGrpcContentType("application/grpc;charset=utf-8"));
  EXPECT_TRUE(isGrpcContentType("Application/GRPC"));
  EXPECT_FALSE(isGrpcContentType("application/grpc-web"));
  EXPECT_FALSE(isGrpcContentType("application/json"));
  EXPECT_FALSE(isGrpcContentType(""));
}

TEST(GrpcUtility, HttpToGrpcStatusAsEnvoyMapsIt) {
  EXPECT_EQ(httpToGrpcStatus(400), 13u);
  EXPECT_EQ(httpToGrpcStatus(401), 16u);
  EXPECT_EQ(httpToGrpcStatus(403), 7u);
  EXPECT_EQ(httpToGrpcStatus(404), 12u);
  for (uint32_t c : {429u, 502u, 503u, 504u}) EXPECT_EQ(httpToGrpcStatus(c), 14u) << c;
  EXPECT_EQ(httpToGrpcStatus(500), 2u);
  EXPECT_EQ(httpToGrpcStatus(200), 2u);
}

TEST(GrpcUtility, MessageIsPercentEncoded) {
  EXPECT_EQ(grpcMessageEncode("plain text ~!"), "plain text ~!");
  EXPECT_EQ(grpcMessageEncode("50% off\r\n"), "50%25 off%0D%0A");
  EXPECT_EQ(grpcMessageEncode("caf\xc3\xa9"), "caf%C3%A9");
}

TEST(GrpcUtility, TimeoutParsedAndFormatted) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parseGrpcTimeout("250m"), milliseconds(250));
  EXPECT_EQ(parseGrpcTimeout("2S"), milliseconds(2000));
  EXPECT_EQ(parseGrpcTimeout("3M"), milliseconds(180000));
  EXPECT_EQ(parseGrpcTimeout("1H"), milliseconds(3600000));
  EXPECT_EQ(parseGrpcTimeout("1500u"), milliseconds(2));  // rounded up
  EXPECT_EQ(parseGrpcTimeout("1n"), milliseconds(1));
  EXPECT_EQ(parseGrpcTimeout("99999999m"), milliseconds(99999999));
  EXPECT_EQ(parseGrpcTimeout("999999999m"), std::nullopt);  // 9 digits
  EXPECT_EQ(parseGrpcTimeout("m"), std::nullopt);
  EXPECT_EQ(parseGrpcTimeout("10x"), std::nullopt);
  EXPECT_EQ(parseGrpcTimeout("-1m"), std::nullopt);
  EXPECT_EQ(parseGrpcTimeout(""), std::nullopt);
  EXPECT_EQ(formatGrpcTimeout(milliseconds(250)), "250m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(0)), "0m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(99999999)), "99999999m");
  EXPECT_EQ(formatGrpcTimeout(milliseconds(100000000)), "100000S");
  const std::string big = formatGrpcTimeout(milliseconds(123456789012));
  EXPECT_EQ(big, "2057614M");  // 123456790 seconds is 9 digits: minutes, rounded up
  EXPECT_GE(*parseGrpcTimeout(big), milliseconds(123456789012));
}

}  // namespace
}  // namespace sluice::http
