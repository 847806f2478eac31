#include "config/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sluice::config {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 256;

// A conversion error at a node; turned into "yaml: line L, column C: message".
struct YamlError {
  YAML::Mark mark;
  std::string message;
};

std::string formatError(const YAML::Mark& mark, const std::string& message) {
  if (mark.is_null()) {
    return "yaml: " + message;
  }
  return "yaml: line " + std::to_string(mark.line + 1) + ", column " +
         std::to_string(mark.column + 1) + ": " + message;
}

// The spellings of booleans that yaml-cpp (and so Envoy) accepts.
bool parseBool(const std::string& s, bool& value) {
  static const char* const kTrue[] = {"y", "yes", "true", "on"};
  static const char* const kFalse[] = {"n", "no", "false", "off"};
  auto matches = [&s](const char* word) {
    const std::string lower = word;
    std::string upper = lower;
    std::string capital = lower;
    for (auto& c : upper) {
      c = static_cast<char>(c - 'a' + 'A');
    }
    capital[0] = upper[0];
    return s == lower || s == upper || s == capital;
  };
  for (const char* word : kTrue) {
    if (matches(word)) {
      value = true;
      return true;
    }
  }
  for (const char* word : kFalse) {
    if (matches(word)) {
      value = false;
      return true;
    }
  }
  return false;
}

bool isNull(const std::string& s) {
  return s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool allOf(std::string_view s, int (*pred)(int)) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!pred(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

int isOctalDigit(int c) {
  return c >= '0' && c <= '7';
}

// Decimal ([-+]?[0-9]+), hexadecimal (0x...) or octal (0o...) integers.
bool parseInteger(const std::string& s, Json& out) {
  std::string_view digits = s;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
    if (base == 16 ? !allOf(digits, isxdigit) : !allOf(digits, isOctalDigit)) {
      return false;
    }
  } else if (!allOf(digits, isdigit)) {
    return false;
  }
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc::result_out_of_range) {
    // Too large for any integer: kept as text, which protobuf's JSON parser reads as a
    // number for a float field and reports as out of range for an integer one.
    out = s;
    return true;
  }
  if (ec != std::errc() || ptr != digits.data() + digits.size()) {
    return false;
  }
  if (!negative) {
    out = magnitude;
  } else if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
    out = static_cast<int64_t>(0 - magnitude);
  } else {
    out = -static_cast<double>(magnitude);
  }
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, -.inf, .nan (any case variant
// that YAML 1.2 allows). Infinity and NaN become the strings protobuf's JSON parser reads.
bool parseFloat(const std::string& s, Json& out) {
  for (const char* inf : {".inf", ".Inf", ".INF"}) {
    if (s == inf || s == std::string("+") + inf) {
      out = "Infinity";
      return true;
    }
    if (s == std::string("-") + inf) {
      out = "-Infinity";
      return true;
    }
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    out = "NaN";
    return true;
  }
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    ++i;
  }
  size_t int_digits = 0;
  while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) {
    ++i;
    ++int_digits;
  }
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      ++frac_digits;
    }
  }
  if (int_digits == 0 && frac_digits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    size_t exp_digits = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      ++exp_digits;
    }
    if (exp_digits == 0) {
      return false;
    }
  }
  if (i != s.size()) {
    return false;
  }
  errno = 0;
  const double value = std::strtod(s.c_str(), nullptr);
  if (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL)) {
    out = value > 0 ? "Infinity" : "-Infinity";
    return true;
  }
  out = value;
  return true;
}

constexpr std::string_view kYamlTag = "tag:yaml.org,2002:";

Json convertScalar(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  const std::string& tag = node.Tag();
  // "!" is a quoted scalar (or the non-specific tag): always a string.
  if (tag == "!" || tag == std::string(kYamlTag) + "str") {
    return Json(text);
  }
  const bool plain = tag == "?" || tag.empty();
  Json value;
  if ((plain || tag == std::string(kYamlTag) + "null") && isNull(text)) {
    return Json(nullptr);
  }
  bool b = false;
  if ((plain || tag == std::string(kYamlTag) + "bool") && parseBool(text, b)) {
    return Json(b);
  }
  if ((plain || tag == std::string(kYamlTag) + "int") && parseInteger(text, value)) {
    return value;
  }
  if ((plain || tag == std::string(kYamlTag) + "float") && parseFloat(text, value)) {
    return value;
  }
  if (!plain && tag.rfind(kYamlTag, 0) == 0 && tag != std::string(kYamlTag) + "binary") {
    throw YamlError{node.Mark(), "'" + text + "' is not a valid " + tag.substr(kYamlTag.size())};
  }
  return Json(text);
}

bool isMergeKey(const YAML::Node& key) {
  return key.IsScalar() && key.Tag() == "?" && key.Scalar() == "<<";
}

Json convert(const YAML::Node& node, int depth);

// Adds the keys of `source` (a converted map) that `target` lacks.
void mergeMissing(Json& target, const Json& source) {
  for (const auto& [key, value] : source.items()) {
    if (!target.contains(key)) {
      target[key] = value;
    }
  }
}

Json convertMap(const YAML::Node& node, int depth) {
  Json object = Json::object();
  std::vector<YAML::Node> merge_values;
  for (const auto& pair : node) {
    // Copies: the iterator's pair is a temporary.
    const YAML::Node key = pair.first;
    const YAML::Node value = pair.second;
    if (isMergeKey(key)) {
      merge_values.push_back(value);
      continue;
    }
    if (!key.IsScalar()) {
      throw YamlError{key.Mark(), "map keys must be scalars"};
    }
    const std::string& name = key.Scalar();
    if (object.contains(name)) {
      throw YamlError{key.Mark(), "duplicate key '" + name + "'"};
    }
    object[name] = convert(value, depth + 1);
  }
  // Merge keys: a map, or a sequence of maps of which earlier ones take precedence.
  for (const YAML::Node& merge : merge_values) {
    if (merge.IsMap()) {
      mergeMissing(object, convert(merge, depth + 1));
    } else if (merge.IsSequence()) {
      for (const YAML::Node& item : merge) {
        if (!item.IsMap()) {
          throw YamlError{item.Mark(), "a merge key ('<<') takes a map or a sequence of maps"};
        }
        mergeMissing(object, convert(item, depth + 1));
      }
    } else {
      throw YamlError{merge.Mark(), "a merge key ('<<') takes a map or a sequence of maps"};
    }
  }
  return object;
}

Json convert(const YAML::Node& node, int depth) {
  if (depth > kMaxDepth) {
    throw YamlError{node.Mark(), "nested deeper than " + std::to_string(kMaxDepth) + " levels"};
  }
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Json(nullptr);
    case YAML::NodeType::Scalar:
      return convertScalar(node);
    case YAML::NodeType::Sequence: {
      Json array = Json::array();
      for (const YAML::Node& item : node) {
        array.push_back(convert(item, depth + 1));
      }
      return array;
    }
    case YAML::NodeType::Map:
      return convertMap(node, depth);
  }
  return Json(nullptr);
}

}  // namespace

bool yamlToJson(std::string_view yaml, std::string& json, std::string& error) {
  try {
    const std::vector<YAML::Node> documents = YAML::LoadAll(std::string(yaml));
    if (documents.size() > 1) {
      error = formatError(documents[1].Mark(),
                          "expected one document, found " + std::to_string(documents.size()));
      return false;
    }
    const Json value = documents.empty() ? Json(nullptr) : convert(documents[0], 0);
    json = value.dump();
    return true;
  } catch (const YamlError& e) {
    error = formatError(e.mark, e.message);
  } catch (const YAML::Exception& e) {
    error = formatError(e.mark, e.msg);
  } catch (const nlohmann::json::exception& e) {
    // dump() refuses strings that are not UTF-8.
    error = std::string("yaml: ") + (e.id == 316 ? "invalid UTF-8 in a string" : e.what());
  }
  return false;
}

bool checkJsonSyntax(std::string_view json, std::string& error) {
  try {
    const Json parsed = Json::parse(json);
    (void)parsed;
    return true;
  } catch (const nlohmann::json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
    std::string what = e.what();
    const std::string marker = "parse error at ";
    const auto at = what.find(marker);
    error = "json: " + (at == std::string::npos ? what : what.substr(at + marker.size()));
  } catch (const nlohmann::json::exception& e) {
    error = std::string("json: ") + e.what();
  }
  return false;
}

}  // namespace sluice::config
