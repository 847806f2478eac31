#pragma once

// YAML to JSON with Envoy's scalar typing, so that a YAML config reads the same as it does
// in Envoy. A plain (unquoted) scalar becomes a JSON boolean, null, integer or float when it
// looks like one (YAML 1.2 core schema: true/false, null/~, 123, 0x1f, 0o17, 1.5e3, .inf,
// .nan) and a JSON string otherwise; a quoted scalar is always a string. Anchors, aliases and
// merge keys (`<<: *base`, `<<: [*a, *b]`) are resolved; keys set in the map itself win
// over merged ones, and earlier merged maps win over later ones.

#include <string>
#include <string_view>

namespace sluice::config {

// Converts one YAML document to compact JSON text. Returns false and sets `error` to
// "yaml: line L, column C: message" (1-based) on a syntax error, a duplicate key, a
// non-scalar key, more than one document, or nesting deeper than 256 levels. An empty
// document converts to "null".
bool yamlToJson(std::string_view yaml, std::string& json, std::string& error);

// Checks that `json` is well-formed JSON text. Returns false and sets `error` to
// "json: line L, column C: message" otherwise. (Protobuf's JSON parser reports syntax
// errors without a position; this runs first to give one.)
bool checkJsonSyntax(std::string_view json, std::string& error);

}  // namespace sluice::config
