#pragma once

// The subset of Envoy's v3 API that Sluice's proxy implements, as data, and the check that
// refuses a config using anything outside it. A config that uses a field, an enum value or
// an extension that Sluice does not implement is refused at load with the field's full
// path, never silently ignored:
//
//   static_resources.clusters[0].health_checks: health_checks is not supported
//   static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]:
//       envoy.filters.http.lua is not supported
//
// docs/envoy-compat.md carries supportedFieldsMarkdown() verbatim (a test checks it).

#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sluice::config {

// In SupportedMessage::fields: every field of the message is implemented.
inline constexpr std::string_view kAllFields = "*";

// A message of the API (by full name) and the fields of it that Sluice implements (proto
// field names). A message reached through a supported field must have an entry; an entry
// with no fields accepts only the empty message.
struct SupportedMessage {
  std::string_view message;
  std::vector<std::string_view> fields;
};

// A supported field that accepts only some values: enum value names, or strings (compared
// ignoring ASCII case when `ignore_case`).
struct SupportedValues {
  std::string_view message;
  std::string_view field;
  std::vector<std::string_view> values;
  bool ignore_case{false};
};

// An extension Sluice implements: its canonical name, the full name of its config message,
// and the google.protobuf.Any field ("message.field") that may hold it. For a map of Anys
// (typed_extension_protocol_options) the map key is the extension's name. `config_optional`:
// the extension may be named without a typed_config (the router).
struct SupportedExtension {
  std::string_view name;
  std::string_view type;
  std::string_view slot;
  bool config_optional{false};
};

// A refused field that has a supported replacement, named in the error message.
struct FieldHint {
  std::string_view message;
  std::string_view field;
  std::string_view hint;
};

const std::vector<SupportedMessage>& supportedMessages();
const std::vector<SupportedValues>& supportedValues();
const std::vector<SupportedExtension>& supportedExtensions();
const std::vector<FieldHint>& fieldHints();

// Walks every set field of `msg` (into sub-messages, list elements, map values and the
// contents of Anys) and appends "path: message" for each field, value or extension outside
// the subset, and for an HTTP connection manager whose last HTTP filter is not the router.
// `root_path` prefixes the paths. Returns true if nothing was appended.
bool checkSupported(const google::protobuf::Message& msg, std::vector<std::string>& errors,
                    std::string_view root_path = "");

// The tables above as Markdown (messages and fields, restricted values, extensions, hints).
std::string supportedFieldsMarkdown();

}  // namespace sluice::config
