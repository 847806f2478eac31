// The TLS inspector's ClientHello parser, on hellos made by OpenSSL itself.

#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tls/client_hello.h"

namespace sluice::tls {
namespace {

// The bytes an OpenSSL client sends first, with this SNI and ALPN list.
std::vector<uint8_t> clientHello(const char* sni, const std::vector<std::string>& alpn) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  if (sni) SSL_set_tlsext_host_name(ssl, sni);
  std::string wire;
  for (const auto& p : alpn) wire += static_cast<char>(p.size()) + p;
  if (!wire.empty()) {
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(wire.data()), wire.size());
  }
  EXPECT_EQ(SSL_do_handshake(ssl), -1);  // wants the server's reply
  char* data = nullptr;
  const long n = BIO_get_mem_data(wbio, &data);
  std::vector<uint8_t> out(data, data + n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

TEST(ClientHelloTest, SniAndAlpn) {
  auto hello = clientHello("api.example.com", {"h2", "http/1.1"});
  ClientHelloInfo info;
  ASSERT_EQ(parseClientHello(hello.data(), hello.size(), info), ClientHelloResult::Done);
  EXPECT_TRUE(info.is_tls);
  EXPECT_EQ(info.server_name, "api.example.com");
  EXPECT_EQ(info.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(ClientHelloTest, WithoutSni) {
  auto hello = clientHello(nullptr, {});
  ClientHelloInfo info;
  ASSERT_EQ(parseClientHello(hello.data(), hello.size(), info), ClientHelloResult::Done);
  EXPECT_TRUE(info.is_tls);
  EXPECT_EQ(info.server_name, "");
  EXPECT_TRUE(info.alpn.empty());
}

TEST(ClientHelloTest, EveryPrefixNeedsMoreData) {
  auto hello = clientHello("a.test", {"h2"});
  ClientHelloInfo info;
  for (size_t n = 0; n < hello.size(); ++n) {
    ASSERT_EQ(parseClientHello(hello.data(), n, info), ClientHelloResult::NeedMoreData) << n;
  }
}

TEST(ClientHelloTest, PlainHttpIsNotTls) {
  const std::string req = "GET / HTTP/1.1\r\n";
  ClientHelloInfo info;
  ASSERT_EQ(parseClientHello(reinterpret_cast<const uint8_t*>(req.data()), req.size(), info),
            ClientHelloResult::Done);
  EXPECT_FALSE(info.is_tls);
}

TEST(ClientHelloTest, CorruptLengthsDoNotReadPastTheEnd) {
  auto hello = clientHello("a.test", {"h2"});
  // Flip every byte after the record header in turn: never a crash (ASan checks the reads).
  for (size_t i = 5; i < hello.size(); ++i) {
    auto bad = hello;
    bad[i] ^= 0xff;
    ClientHelloInfo info;
    parseClientHello(bad.data(), bad.size(), info);
  }
  SUCCEED();
}

}  // namespace
}  // namespace sluice::tls
