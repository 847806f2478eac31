#pragma once

// The query parameters of /config_dump, as Envoy's admin documents them, applied to the
// dump's `configs` (the list of BootstrapConfigDump, ClustersConfigDump, ... as JSON):
// - `resource=<field>`: only the elements of that repeated field of one of the dumps (e.g.
//   dynamic_active_clusters), each typed as its own message (ClustersConfigDump.DynamicCluster);
// - `mask=<path>[,<path>...]`: a FieldMask, applied to each dump (or, with `resource`, to each
//   element): only the named fields (and `@type`) stay; a path goes through repeated fields
//   into each of their elements.

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace sluice::admin {

// False with `error` when `resource` names no repeated field of any dump (Envoy answers 404).
bool applyConfigDumpQuery(nlohmann::json& configs, const std::string* resource,
                          const std::string* mask, std::string& error);

}  // namespace sluice::admin
