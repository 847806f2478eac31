#pragma once

// protoc-gen-validate (PGV) rules, enforced by reflection when a config is loaded.
//
// envoy-api annotates its fields with `(validate.rules)`, its oneofs with
// `(validate.required)` and some messages with `(validate.disabled)`. Envoy enforces them
// with generated validators; Sluice reads the same options from the descriptors and checks
// them while walking the message, so that the rules hold for every type in the embedded API
// (generated C++ or dynamic) without generating code.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
class FieldDescriptor;
}  // namespace google::protobuf

namespace sluice::config {

// Checks `msg` and everything under it (sub-messages, repeated elements, map entries, and
// the contents of every google.protobuf.Any, resolved in envoyApiPool()). Appends one
// "path: message" per violation, e.g.
//   "static_resources.clusters[0].connect_timeout: value must be greater than 0s"
// where the path is made of proto field names, [i] for list elements, [key] for map entries,
// and an Any's contents continue its field's path. `root_path` prefixes every path (for a
// message that is itself part of a larger config). Returns true if nothing was appended.
//
// As in PGV, scalar rules apply to proto3 scalars whether or not they are set (an empty
// `name` with min_len 1 is an error), fields of a oneof only when that member is set, and
// rules of a message field (required aside) only when it is set.
bool validateMessage(const google::protobuf::Message& msg, std::vector<std::string>& errors,
                     std::string_view root_path = "");

// --- Helpers shared by the walks over a config (validation, supported-field check). ---

// "a.b" from "a" and "b"; "b" when `base` is empty.
std::string joinPath(std::string_view base, std::string_view field);

// The text of a map key as it appears in a path: "[key]".
std::string mapKeyText(const google::protobuf::Message& entry);

// The message held by a google.protobuf.Any (generated or dynamic), as a dynamic message of
// its type in envoyApiPool(). Returns nullptr and sets `error` when the Any is empty, its type
// is not in the API, or its value does not parse as that type. `wire`, if given, gets the
// value's bytes.
std::unique_ptr<google::protobuf::Message> unpackAny(const google::protobuf::Message& any,
                                                     std::string& error,
                                                     std::string* wire = nullptr);

// A new, empty dynamic message of an API type (by full name); null if the API has no such type.
std::unique_ptr<google::protobuf::Message> newApiMessage(std::string_view full_name);

// The type URL of a google.protobuf.Any, and the full message name after its last '/'.
std::string anyTypeUrl(const google::protobuf::Message& any);
std::string_view typeNameOfUrl(std::string_view type_url);

}  // namespace sluice::config
