#include "admin/config_dump.h"

#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace sluice::admin {

namespace {

// The message type of each repeated field a dump has, under the dump's own type.
const std::map<std::string, std::string>& elementTypes() {
  static const auto* types = new std::map<std::string, std::string>{
      {"static_clusters", "StaticCluster"},
      {"dynamic_active_clusters", "DynamicCluster"},
      {"dynamic_warming_clusters", "DynamicCluster"},
      {"static_listeners", "StaticListener"},
      {"dynamic_listeners", "DynamicListener"},
      {"static_route_configs", "StaticRouteConfig"},
      {"dynamic_route_configs", "DynamicRouteConfig"},
      {"static_endpoint_configs", "StaticEndpointConfig"},
      {"dynamic_endpoint_configs", "DynamicEndpointConfig"},
      {"static_secrets", "StaticSecret"},
      {"dynamic_active_secrets", "DynamicSecret"},
      {"dynamic_warming_secrets", "DynamicSecret"},
  };
  return *types;
}

// A FieldMask as a tree: each path's first field, then the rest below it. An empty subtree
// keeps the whole field.
struct MaskNode {
  std::map<std::string, MaskNode> children;
};

MaskNode parseMask(const std::string& mask) {
  MaskNode root;
  std::stringstream paths(mask);
  std::string path;
  while (std::getline(paths, path, ',')) {
    if (path.empty()) continue;
    MaskNode* node = &root;
    std::stringstream fields(path);
    std::string field;
    while (std::getline(fields, field, '.')) node = &node->children[field];
  }
  return root;
}

// Keeps only what `mask` names of `value` (an object, or each object of an array).
void trim(nlohmann::json& value, const MaskNode& mask) {
  if (mask.children.empty()) return;
  if (value.is_array()) {
    for (auto& e : value) trim(e, mask);
    return;
  }
  if (!value.is_object()) return;
  nlohmann::json out = nlohmann::json::object();
  if (value.contains("@type")) out["@type"] = value["@type"];
  for (const auto& [field, below] : mask.children) {
    auto it = value.find(field);
    if (it == value.end()) continue;
    out[field] = std::move(*it);
    trim(out[field], below);
  }
  value = std::move(out);
}

}  // namespace

bool applyConfigDumpQuery(nlohmann::json& configs, const std::string* resource,
                          const std::string* mask, std::string& error) {
  if (resource) {
    nlohmann::json elements = nlohmann::json::array();
    bool found = false;
    auto type = elementTypes().find(*resource);
    for (auto& dump : configs) {
      auto it = dump.find(*resource);
      if (it == dump.end() || !it->is_array()) continue;
      found = true;
      const std::string element_type =
          dump.value("@type", std::string()) + "." +
          (type != elementTypes().end() ? type->second : std::string());
      for (auto& e : *it) {
        nlohmann::json typed = {{"@type", element_type}};
        typed.update(e);
        elements.push_back(std::move(typed));
      }
    }
    // A field every dump of its kind has, empty here (no CDS, say): no elements.
    if (!found && type == elementTypes().end()) {
      error = "resource '" + *resource + "' is not a repeated field of any config dump";
      return false;
    }
    configs = std::move(elements);
  }
  if (mask) {
    const MaskNode tree = parseMask(*mask);
    for (auto& c : configs) trim(c, tree);
  }
  return true;
}

}  // namespace sluice::admin
