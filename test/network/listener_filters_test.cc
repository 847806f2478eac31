#include "network/listener_filters.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::network {
namespace {

ParseResult proxy(const std::string& bytes, ProxyProtocolHeader& h) {
  return parseProxyProtocol(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), h);
}

std::string v2(uint8_t ver_cmd, uint8_t fam, const std::string& body) {
  std::string s("\r\n\r\n\0\r\nQUIT\n", 12);
  s.push_back(static_cast<char>(ver_cmd));
  s.push_back(static_cast<char>(fam));
  s.push_back(static_cast<char>(body.size() >> 8));
  s.push_back(static_cast<char>(body.size() & 0xff));
  return s + body;
}

TEST(ProxyProtocolTest, V1Tcp4) {
  ProxyProtocolHeader h;
  const std::string line = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
  ASSERT_EQ(proxy(line + "GET / HTTP/1.1\r\n", h), ParseResult::Done);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.length, line.size());
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source->asString(), "192.0.2.1:56324");
  EXPECT_EQ(h.destination->asString(), "198.51.100.2:443");
}

TEST(ProxyProtocolTest, V1Tcp6AndUnknown) {
  ProxyProtocolHeader h;
  ASSERT_EQ(proxy("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", h), ParseResult::Done);
  EXPECT_EQ(h.source->asString(), "[2001:db8::1]:1");
  ASSERT_EQ(proxy("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", h), ParseResult::Done);
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.source, nullptr);
}

TEST(ProxyProtocolTest, V1PartialAndMalformed) {
  ProxyProtocolHeader h;
  EXPECT_EQ(proxy("PRO", h), ParseResult::NeedMoreData);
  EXPECT_EQ(proxy("PROXY TCP4 1.2.3.4", h), ParseResult::NeedMoreData);
  EXPECT_EQ(proxy("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", h), ParseResult::Error);
  EXPECT_EQ(proxy("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", h), ParseResult::Error);
  EXPECT_EQ(proxy("PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n", h), ParseResult::Error);
  EXPECT_EQ(proxy("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", h), ParseResult::Error);
  EXPECT_EQ(proxy("PROXY " + std::string(200, 'x'), h), ParseResult::Error);  // no CRLF in 107
  EXPECT_EQ(h.version, 1);
}

TEST(ProxyProtocolTest, NotAProxyHeader) {
  ProxyProtocolHeader h;
  EXPECT_EQ(proxy("GET / HTTP/1.1\r\n", h), ParseResult::NotFound);
  EXPECT_EQ(proxy(std::string("\x16\x03\x01", 3), h), ParseResult::NotFound);
}

TEST(ProxyProtocolTest, V2Ipv4WithTlvs) {
  ProxyProtocolHeader h;
  std::string body = {'\x0a', '\x00', '\x00', '\x01', '\x0a', '\x00', '\x00', '\x02',
                      '\x30', '\x39', '\x01', '\xbb'};
  body += std::string("\x04\x00\x01\x00", 4);  // a TLV, skipped
  const std::string header = v2(0x21, 0x11, body);
  EXPECT_EQ(proxy(header.substr(0, 10), h), ParseResult::NeedMoreData);
  EXPECT_EQ(proxy(header.substr(0, 20), h), ParseResult::NeedMoreData);
  ASSERT_EQ(proxy(header + "data", h), ParseResult::Done);
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.length, header.size());
  EXPECT_EQ(h.source->asString(), "10.0.0.1:12345");
  EXPECT_EQ(h.destination->asString(), "10.0.0.2:443");
}

TEST(ProxyProtocolTest, V2LocalIpv6AndErrors) {
  ProxyProtocolHeader h;
  ASSERT_EQ(proxy(v2(0x20, 0x00, ""), h), ParseResult::Done);
  EXPECT_TRUE(h.local);
  std::string body6(36, '\0');
  body6[15] = 1;   // ::1
  body6[31] = 2;   // ::2
  body6[33] = 80;  // port 80
  body6[35] = 81;
  ASSERT_EQ(proxy(v2(0x21, 0x21, body6), h), ParseResult::Done);
  EXPECT_EQ(h.source->asString(), "[::1]:80");
  EXPECT_EQ(h.destination->asString(), "[::2]:81");
  EXPECT_EQ(proxy(v2(0x11, 0x11, std::string(12, '\0')), h), ParseResult::Error);  // version 1
  EXPECT_EQ(proxy(v2(0x23, 0x11, std::string(12, '\0')), h), ParseResult::Error);  // command 3
  EXPECT_EQ(proxy(v2(0x21, 0x31, std::string(216, '\0')), h), ParseResult::Error);  // AF_UNIX
  EXPECT_EQ(proxy(v2(0x21, 0x11, std::string(8, '\0')), h), ParseResult::Error);  // too short
  EXPECT_EQ(h.version, 2);
}

ParseResult http(const std::string& bytes, std::string_view& p) {
  return detectHttpProtocol(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), p);
}

TEST(HttpInspectorTest, DetectsHttp1AndH2c) {
  std::string_view p;
  EXPECT_EQ(http("GET /a HTTP/1.1\r\nHost: x\r\n", p), ParseResult::Done);
  EXPECT_EQ(p, "http/1.1");
  EXPECT_EQ(http("POST / HTTP/1.0\r\n", p), ParseResult::Done);
  EXPECT_EQ(p, "http/1.0");
  EXPECT_EQ(http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", p), ParseResult::Done);
  EXPECT_EQ(p, "h2c");
  EXPECT_EQ(http("PRI * HTTP/2", p), ParseResult::NeedMoreData);
  EXPECT_EQ(http("GE", p), ParseResult::NeedMoreData);
  EXPECT_EQ(http("GET /long-path", p), ParseResult::NeedMoreData);
}

TEST(HttpInspectorTest, NotHttp) {
  std::string_view p;
  EXPECT_EQ(http(std::string("\x16\x03\x01\x00", 4), p), ParseResult::NotFound);
  EXPECT_EQ(http("hello world\n", p), ParseResult::NotFound);
  EXPECT_EQ(http("GET / HTTP/2.0\r\n", p), ParseResult::NotFound);
  EXPECT_EQ(http("SSH-2.0-OpenSSH\r\n", p), ParseResult::NotFound);
  EXPECT_TRUE(p.empty());
}

}  // namespace
}  // namespace sluice::network
