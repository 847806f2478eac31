#include <string_view>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "common/page_present.h"
#include "common/resident_pages.h"
#include "config/api_descriptors.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"

extern "C" const char sluice_envoy_api_descriptors[];
extern "C" const char sluice_envoy_api_descriptors_end[];

namespace sluice::config {
namespace {

using test::pagePresent;

TEST(ApiDescriptorsTest, TheWholeV3ApiIsEmbedded) {
  const auto& pool = envoyApiPool();
  EXPECT_GT(envoyApiFileCount(), 340);
  // Types that have generated C++ and types that exist only as descriptors.
  for (const char* name : {
           "envoy.config.bootstrap.v3.Bootstrap",
           "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "envoy.extensions.filters.http.router.v3.Router",
           "envoy.extensions.filters.http.lua.v3.Lua",
           "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
           "envoy.service.discovery.v3.DiscoveryRequest",
       }) {
    EXPECT_NE(findApiMessageType(name), nullptr) << name;
    EXPECT_NE(pool.FindMessageTypeByName(name), nullptr) << name << " (loaded)";
  }
}

// A type with generated C++ is the generated classes' own descriptor (built once, shared with
// their reflection); a type without is built from the embedded set, on top of those.
TEST(ApiDescriptorsTest, GeneratedTypesAreNotBuiltTwice) {
  EXPECT_EQ(findApiMessageType("envoy.config.bootstrap.v3.Bootstrap"),
            envoy::config::bootstrap::v3::Bootstrap::descriptor());
  const auto* lua = findApiMessageType("envoy.extensions.filters.http.lua.v3.Lua");
  ASSERT_NE(lua, nullptr);
  EXPECT_EQ(lua->file()->pool(), &envoyApiPool());
  EXPECT_EQ(google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
                "envoy.extensions.filters.http.lua.v3.Lua"),
            nullptr);
  // Its imports with C++ are the generated ones.
  const auto* source = lua->FindFieldByName("default_source_code");
  ASSERT_NE(source, nullptr);
  EXPECT_EQ(source->message_type()->file()->pool(),
            google::protobuf::DescriptorPool::generated_pool());
  EXPECT_EQ(findApiMessageType("envoy.config.cluster.v3.NoSuchMessage"), nullptr);
}

// The pool reads files from a database that indexes only each file's top-level symbols:
// nested types, enum values, fields, services and extensions must resolve through them.
TEST(ApiDescriptorsTest, NestedSymbolsServicesAndExtensionsResolve) {
  const auto& pool = envoyApiPool();
  for (const char* symbol : {
           "envoy.config.route.v3.RouteAction.HashPolicy.Header",
           "envoy.config.cluster.v3.Cluster.LbPolicy",
           "envoy.config.cluster.v3.Cluster.ROUND_ROBIN",
           "envoy.config.cluster.v3.Cluster.connect_timeout",
           "envoy.service.discovery.v3.AggregatedDiscoveryService",
           "envoy.extensions.filters.http.lua.v3.Lua.default_source_code",
           "validate.rules",
       }) {
    EXPECT_TRUE(loadApiSymbol(symbol)) << symbol;
  }
  EXPECT_FALSE(loadApiSymbol("envoy.config.cluster.v3.NoSuchMessage"));
  EXPECT_NE(pool.FindFieldByName("envoy.extensions.filters.http.lua.v3.Lua.default_source_code"),
            nullptr);
  EXPECT_NE(pool.FindMessageTypeByName("envoy.config.route.v3.RouteAction.HashPolicy.Header"),
            nullptr);
  EXPECT_NE(pool.FindEnumTypeByName("envoy.config.cluster.v3.Cluster.LbPolicy"), nullptr);
  EXPECT_NE(pool.FindEnumValueByName("envoy.config.cluster.v3.Cluster.ROUND_ROBIN"), nullptr);
  EXPECT_NE(pool.FindFieldByName("envoy.config.cluster.v3.Cluster.connect_timeout"), nullptr);
  EXPECT_NE(pool.FindServiceByName(
                "envoy.service.discovery.v3.AggregatedDiscoveryService"),
            nullptr);
  EXPECT_NE(pool.FindExtensionByName("validate.rules"), nullptr);
  EXPECT_NE(pool.FindFileByName("envoy/config/core/v3/address.proto"), nullptr);
  EXPECT_EQ(pool.FindMessageTypeByName("envoy.config.cluster.v3.NoSuchMessage"), nullptr);
  EXPECT_EQ(pool.FindFileByName("envoy/no/such.proto"), nullptr);
  // By number.
  const auto* field_options = pool.FindMessageTypeByName("google.protobuf.FieldOptions");
  ASSERT_NE(field_options, nullptr);
  const auto* rules = pool.FindExtensionByNumber(field_options, 1071);
  ASSERT_NE(rules, nullptr);
  EXPECT_EQ(rules->full_name(), "validate.rules");
}

TEST(ApiDescriptorsTest, ValidateProtoHasTheAddedIgnoreEmptyField) {
  const auto* rules = findApiMessageType("validate.StringRules");
  ASSERT_NE(rules, nullptr);
  EXPECT_NE(rules->FindFieldByName("ignore_empty"), nullptr);
}

TEST(ApiDescriptorsTest, JsonWithAnyTypedConfigParsesIntoTheGeneratedBootstrap) {
  // An HTTP connection manager (no C++ class generated for it) inside an Any: the resolver
  // over the embedded pool turns the JSON into wire format, and the generated Bootstrap
  // class reads that.
  const std::string json = R"({
    "node": {"id": "n1", "cluster": "c1"},
    "staticResources": {"listeners": [{
      "name": "l0",
      "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 10000}},
      "filterChains": [{"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typedConfig": {
          "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
          "statPrefix": "ingress_http"
        }}]}]
    }]}
  })";
  std::string binary;
  auto status = google::protobuf::util::JsonToBinaryString(
      &envoyApiTypeResolver(), "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap", json,
      &binary);
  ASSERT_TRUE(status.ok()) << status.ToString();
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  ASSERT_TRUE(bootstrap.ParseFromString(binary));
  EXPECT_EQ(bootstrap.node().id(), "n1");
  ASSERT_EQ(bootstrap.static_resources().listeners_size(), 1);
  const auto& listener = bootstrap.static_resources().listeners(0);
  EXPECT_EQ(listener.address().socket_address().port_value(), 10000u);
  EXPECT_EQ(listener.filter_chains(0).filters(0).typed_config().type_url(),
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager");
}

TEST(ApiDescriptorsTest, UnknownFieldIsAnErrorThatNamesIt) {
  std::string binary;
  auto status = google::protobuf::util::JsonToBinaryString(
      &envoyApiTypeResolver(), "type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap",
      R"({"staticResourcez": {}})", &binary);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(std::string(status.message()).find("staticResourcez"), std::string::npos)
      << status.ToString();
}

// Start-up reads the whole embedded set (the index walk); the server's release of read-only
// file pages after start-up unmaps those pages, and what the pool reads afterwards is the
// same bytes, mapped again from the page cache.
TEST(ApiDescriptorsTest, ReleasedDescriptorPagesReadBackTheSame) {
  ASSERT_NE(findApiMessageType("envoy.config.bootstrap.v3.Bootstrap"), nullptr);
  const std::string_view set(sluice_envoy_api_descriptors,
                             sluice_envoy_api_descriptors_end - sluice_envoy_api_descriptors);
  const size_t hash = std::hash<std::string_view>()(set);
  const char* middle = set.data() + set.size() / 2;
  EXPECT_TRUE(pagePresent(middle));

  EXPECT_GT(releaseReadOnlyFilePages(), set.size() - 2 * 4096);
  EXPECT_FALSE(pagePresent(middle));

  // A file no earlier lookup built, found through the released index and parsed from the
  // released bytes; the generated classes' descriptors still build too.
  const auto* transcoder = findApiMessageType(
      "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder");
  ASSERT_NE(transcoder, nullptr);
  EXPECT_NE(transcoder->FindFieldByName("proto_descriptor"), nullptr);
  EXPECT_EQ(envoy::config::bootstrap::v3::Bootstrap::descriptor()->full_name(),
            "envoy.config.bootstrap.v3.Bootstrap");
  EXPECT_EQ(std::hash<std::string_view>()(set), hash);
}

}  // namespace
}  // namespace sluice::config
