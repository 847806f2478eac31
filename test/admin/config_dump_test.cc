// /config_dump's `resource` and `mask` query parameters on a dump's configs.

#include "admin/config_dump.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace sluice::admin {
namespace {

nlohmann::json dump() {
  return nlohmann::json::parse(R"([
    {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
     "bootstrap": {"node": {"id": "n1", "cluster": "c"}, "admin": {}},
     "last_updated": "t0"},
    {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
     "version_info": "v1",
     "static_clusters": [{"cluster": {"name": "s"}, "last_updated": "t0"}],
     "dynamic_active_clusters": [
       {"version_info": "v1", "cluster": {"name": "a", "type": "EDS"}, "last_updated": "t1"},
       {"version_info": "v1", "cluster": {"name": "b", "type": "STATIC"}, "last_updated": "t1"}]},
    {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
     "static_listeners": []}
  ])");
}

TEST(ConfigDumpTest, ResourceGivesTheElementsOfOneRepeatedField) {
  auto configs = dump();
  std::string error;
  const std::string resource = "dynamic_active_clusters";
  ASSERT_TRUE(applyConfigDumpQuery(configs, &resource, nullptr, error));
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_EQ(configs[0]["@type"],
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster");
  EXPECT_EQ(configs[1]["cluster"]["name"], "b");
  EXPECT_EQ(configs[1]["version_info"], "v1");
}

TEST(ConfigDumpTest, MaskKeepsTheNamedFieldsOfEachDumpOrElement) {
  auto configs = dump();
  std::string error;
  const std::string mask = "bootstrap.node.id,version_info";
  ASSERT_TRUE(applyConfigDumpQuery(configs, nullptr, &mask, error));
  EXPECT_EQ(configs[0], nlohmann::json::parse(R"({
    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
    "bootstrap": {"node": {"id": "n1"}}})"));
  EXPECT_EQ(configs[1], nlohmann::json::parse(R"({
    "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "version_info": "v1"})"));

  configs = dump();
  const std::string resource = "dynamic_active_clusters";
  const std::string element_mask = "cluster.name";
  ASSERT_TRUE(applyConfigDumpQuery(configs, &resource, &element_mask, error));
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_EQ(configs[0], nlohmann::json::parse(R"({
    "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
    "cluster": {"name": "a"}})"));
}

TEST(ConfigDumpTest, AnUnknownResourceIsRefusedAndAKnownEmptyOneIsEmpty) {
  auto configs = dump();
  std::string error;
  const std::string bad = "bootstrap";
  EXPECT_FALSE(applyConfigDumpQuery(configs, &bad, nullptr, error));
  EXPECT_EQ(error, "resource 'bootstrap' is not a repeated field of any config dump");
  const std::string empty = "dynamic_route_configs";  // no RoutesConfigDump here
  ASSERT_TRUE(applyConfigDumpQuery(configs, &empty, nullptr, error));
  EXPECT_TRUE(configs.empty());
}

}  // namespace
}  // namespace sluice::admin
