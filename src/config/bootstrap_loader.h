#pragma once

// Loading Envoy v3 config: the bootstrap a proxy starts from (`-c FILE` and
// `--config-yaml TEXT`, as Envoy takes them), and any message of the embedded API from
// YAML or JSON text.

#include <string>
#include <string_view>
#include <vector>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sluice::config {

// Where a bootstrap comes from, as Envoy's -c and --config-yaml. Either may be empty, not
// both.
struct BootstrapSource {
  std::string config_path;  // .yaml/.yml: YAML; .json: JSON; anything else: YAML
  std::string config_yaml;  // YAML (or JSON) text merged over the file
};

// Reads the file and the inline YAML, converts each to a Bootstrap (JSON field names in
// snake_case or lowerCamelCase; unknown fields are errors), merges the inline one over the
// file with protobuf MergeFrom semantics (scalars replace, lists append, messages merge),
// then enforces the protoc-gen-validate rules (validateMessage) and the supported subset
// (checkSupported). Returns false and appends to `errors` on any problem; errors found while
// reading one source start with that source ("<path>: " or "--config-yaml: "), e.g.
//   "bootstrap.yaml: yaml: line 3, column 7: end of map not found"
//   "static_resources.clusters[0].connect_timeout: value must be greater than 0s"
bool loadBootstrap(const BootstrapSource& source, envoy::config::bootstrap::v3::Bootstrap& out,
                   std::vector<std::string>& errors);

// Parses YAML (or JSON) text into `out`, a message of type `full_name` (a full message name
// like "envoy.config.cluster.v3.Cluster" or a type URL) in the embedded Envoy API; `out` may
// be the generated class or a dynamic message of that type. Only parses: callers run
// validateMessage and checkSupported as they need. Returns false and appends "path: message"
// errors on failure.
bool messageFromYaml(std::string_view yaml, std::string_view full_name,
                     google::protobuf::Message& out, std::vector<std::string>& errors);

}  // namespace sluice::config
