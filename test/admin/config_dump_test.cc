// /config_dump's redaction of sensitive fields and its ?resource= / ?mask= parameters, on
// protos and JSON built here (the served dump is driven end to end by
// test/integration/sds_file_test.py).

#include "admin/config_dump.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/bootstrap_loader.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace sluice::admin {
namespace {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;

TEST(RedactTest, PrivateKeyAndPasswordAreRedactedTheChainIsNot) {
  tls_v3::Secret s;
  s.set_name("edge");
  auto* c = s.mutable_tls_certificate();
  c->mutable_certificate_chain()->set_filename("/etc/certs/edge.pem");
  c->mutable_private_key()->set_filename("/etc/certs/edge.key");
  c->mutable_password()->set_inline_bytes("hunter2");
  redactSensitive(s);
  EXPECT_EQ(s.name(), "edge");
  EXPECT_EQ(c->certificate_chain().filename(), "/etc/certs/edge.pem");
  EXPECT_EQ(c->private_key().filename(), "[redacted]");
  EXPECT_EQ(c->password().inline_bytes(), "[redacted]");

  tls_v3::Secret inline_key;
  inline_key.mutable_tls_certificate()->mutable_private_key()->set_inline_string(
      "-----BEGIN PRIVATE KEY-----");
  redactSensitive(inline_key);
  EXPECT_EQ(inline_key.tls_certificate().private_key().inline_string(), "[redacted]");
}

TEST(RedactTest, KeysInsideATypedConfigAreRedacted) {
  const std::string yaml =
      "static_resources:\n"
      "  clusters:\n"
      "  - name: c\n"
      "    transport_socket:\n"
      "      name: envoy.transport_sockets.tls\n"
      "      typed_config:\n"
      "        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n"
      "        sni: upstream.test\n"
      "        common_tls_context:\n"
      "          tls_certificates:\n"
      "          - certificate_chain: {inline_string: CHAIN}\n"
      "            private_key: {inline_string: SECRET-KEY}\n";
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  std::vector<std::string> errors;
  ASSERT_TRUE(config::loadBootstrap({"", yaml}, bootstrap, errors)) << errors[0];
  redactSensitive(bootstrap);
  tls_v3::UpstreamTlsContext ctx;
  ASSERT_TRUE(bootstrap.static_resources().clusters(0).transport_socket().typed_config().UnpackTo(&ctx));
  EXPECT_EQ(ctx.sni(), "upstream.test");
  EXPECT_EQ(ctx.common_tls_context().tls_certificates(0).certificate_chain().inline_string(), "CHAIN");
  EXPECT_EQ(ctx.common_tls_context().tls_certificates(0).private_key().inline_string(), "[redacted]");
}

nlohmann::json sampleDump() {
  return nlohmann::json::parse(R"([
    {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
     "version_info": "7",
     "static_clusters": [{"cluster": {"name": "a", "connect_timeout": "1s"}, "last_updated": "t"}]},
    {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
     "dynamic_active_secrets": [
       {"name": "s1", "version_info": "1", "last_updated": "t", "secret": {"name": "s1"}},
       {"name": "s2", "version_info": "2", "last_updated": "t", "secret": {"name": "s2"}}]}
  ])");
}

TEST(FilterConfigDumpTest, ResourceListsTheElementsWithTheirType) {
  nlohmann::json configs = sampleDump();
  std::string error;
  ASSERT_EQ(filterConfigDump(configs, {{"resource", "dynamic_active_secrets"}}, error), 200u)
      << error;
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_EQ(configs[0]["@type"],
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret");
  EXPECT_EQ(configs[0]["name"], "s1");
  EXPECT_EQ(configs[1]["version_info"], "2");
  // A field that exists in the dump type but holds nothing gives an empty list.
  configs = sampleDump();
  ASSERT_EQ(filterConfigDump(configs, {{"resource", "dynamic_warming_secrets"}}, error), 200u);
  EXPECT_TRUE(configs.empty());
}

TEST(FilterConfigDumpTest, MaskKeepsTheNamedFieldsOfEachDumpOrResource) {
  nlohmann::json configs = sampleDump();
  std::string error;
  ASSERT_EQ(filterConfigDump(configs, {{"resource", "dynamic_active_secrets"},
                                       {"mask", "name,secret.name"}}, error), 200u);
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_EQ(configs[1], nlohmann::json::parse(
      R"({"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump.DynamicSecret",
          "name": "s2", "secret": {"name": "s2"}})"));
  // Without resource: applied to each dump; a path through a list applies to its elements.
  configs = sampleDump();
  ASSERT_EQ(filterConfigDump(configs, {{"mask", "static_clusters.cluster.name,version_info"}},
                             error), 200u);
  EXPECT_EQ(configs[0], nlohmann::json::parse(
      R"({"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": "7",
          "static_clusters": [{"cluster": {"name": "a"}}]})"));
  EXPECT_EQ(configs[1], nlohmann::json::parse(
      R"({"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"})"));
}

TEST(FilterConfigDumpTest, UnknownOrScalarResourceIsAnError) {
  nlohmann::json configs = sampleDump();
  std::string error;
  EXPECT_EQ(filterConfigDump(configs, {{"resource", "nope"}}, error), 404u);
  EXPECT_NE(error.find("nope"), std::string::npos);
  EXPECT_EQ(filterConfigDump(configs, {{"resource", "version_info"}}, error), 400u);
  EXPECT_NE(error.find("not a repeated field"), std::string::npos) << error;
  EXPECT_EQ(configs, sampleDump());  // untouched on an error
}

}  // namespace
}  // namespace sluice::admin
