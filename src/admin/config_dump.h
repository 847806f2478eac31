#pragma once

// What /config_dump does to the dumps besides building them, as Envoy's does: sensitive fields
// redacted, and the ?resource= and ?mask= query parameters.

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace google::protobuf {
class Message;
}

namespace sluice::admin {

// Redacts in place every field marked (udpa.annotations.sensitive) and everything under one:
// strings and bytes become "[redacted]" (a DataSource's filename too), other values are
// cleared. Any fields are unpacked through the API's descriptor pool, redacted, and packed
// again, so a private key inside a typed_config is redacted as well.
void redactSensitive(google::protobuf::Message& message);

// Applies ?resource= and ?mask= to `configs` (the dumps, each with its "@type"):
// - resource=F: each element of the repeated field F of every dump that has one becomes an
//   entry of its own (its "@type" the element's message, "...ClustersConfigDump.DynamicCluster");
// - mask=a.b,c: keeps only those fields (comma-separated paths, dots for nesting) of each
//   dump, or of each resource when both are given; a path through a list applies to each
//   element. "@type" is always kept.
// Returns 200, or 400 / 404 with `error` (a resource that is no repeated field of any dump).
uint32_t filterConfigDump(nlohmann::json& configs,
                          const std::map<std::string, std::string, std::less<>>& query,
                          std::string& error);

}  // namespace sluice::admin
