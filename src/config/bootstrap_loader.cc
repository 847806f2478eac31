#include "config/bootstrap_loader.h"

#include <fcntl.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <re2/re2.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "config/api_descriptors.h"
#include "config/supported_fields.h"
#include "config/validation.h"
#include "config/yaml_json.h"

namespace sluice::config {

namespace pb = google::protobuf;
using Json = nlohmann::ordered_json;

namespace {

bool readFile(const std::string& path, std::string& contents, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  contents.clear();
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      contents.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string withLabel(std::string_view label, const std::string& message) {
  return label.empty() ? message : std::string(label) + ": " + message;
}

std::string typeUrlOf(std::string_view full_name) {
  return std::string(kTypeUrlPrefix) + "/" + std::string(full_name);
}

bool isWellKnown(const pb::Descriptor* type) {
  return type->file()->package() == "google.protobuf";
}

std::string kindOf(const Json& v) {
  switch (v.type()) {
    case Json::value_t::object:
      return "a map";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::string:
      return "the string " + v.dump();
    case Json::value_t::boolean:
      return "the boolean " + v.dump();
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "the number " + v.dump();
    default:
      return "null";
  }
}

// Protobuf's JSON parser reports "(<path>): <what>", "(<path>) <field>: <what>" or
// "<field>: <what>", with proto field names; an error inside an Any has a path relative to
// the Any. `prefix` is the path of the message that was parsed. The result is
// "<full path>: <clearer what>".
std::string describeJsonError(const std::string& status_message, const std::string& prefix) {
  std::string path;
  std::string what = status_message;
  std::string inner;
  std::string field;
  std::string rest;
  static const RE2 with_field(R"(^\(([^)]*)\) ([^ :]+): (.*)$)");
  static const RE2 with_path(R"(^\(([^)]*)\): (.*)$)");
  static const RE2 bare_field(R"(^([A-Za-z0-9_.\[\]]+): (.*)$)");
  if (RE2::FullMatch(status_message, with_field, &inner, &field, &rest)) {
    path = joinPath(inner, field);
    what = rest;
  } else if (RE2::FullMatch(status_message, with_path, &inner, &rest)) {
    path = inner;
    what = rest;
  } else if (RE2::FullMatch(status_message, bare_field, &field, &rest)) {
    path = field;
    what = rest;
  }
  path = path.empty() ? prefix : joinPath(prefix, path);

  std::string value;
  std::string type;
  static const RE2 scalar_type(R"(^invalid value (.*) for type TYPE_([A-Z0-9]+)$)");
  static const RE2 message_type(R"(^invalid value (.*) for type type\.googleapis\.com/(.*)$)");
  if (what == "Cannot find field.") {
    what = "unknown field";
  } else if (what == "Proto field is not repeating, cannot start list.") {
    what = "expected a single value, not a list";
  } else if (RE2::FullMatch(what, scalar_type, &value, &type)) {
    for (auto& c : type) {
      c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
    }
    what = "invalid value " + value + " (expected " +
           (type == "string" ? "a string"
            : type == "bool" ? "a boolean"
                             : "a " + type) +
           ")";
  } else if (RE2::FullMatch(what, message_type, &value, &type)) {
    const pb::EnumDescriptor* enum_type = findApiEnumType(type);
    if (type == "google.protobuf.Duration") {
      what = "invalid duration (write seconds with an 's' suffix, like \"5s\" or \"0.25s\")";
    } else if (type == "google.protobuf.Timestamp") {
      what = "invalid timestamp (expected RFC 3339, like \"2024-01-01T00:00:00Z\")";
    } else if (enum_type != nullptr) {
      std::string names;
      for (int i = 0; i < enum_type->value_count(); ++i) {
        names += (i == 0 ? "" : ", ") + enum_type->value(i)->name();
      }
      what = "unknown value " + value + " for " + enum_type->name() + " (one of " + names + ")";
    } else {
      what = "invalid value " + value + " for " + type;
    }
  }
  return path.empty() ? what : path + ": " + what;
}

const pb::FieldDescriptor* findField(const pb::Descriptor* type, const std::string& key) {
  if (const pb::FieldDescriptor* f = type->FindFieldByName(key)) {
    return f;
  }
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    if (f->json_name() == key || f->camelcase_name() == key) {
      return f;
    }
  }
  return nullptr;
}

// Walks the JSON against the descriptors before protobuf's parser sees it, for what that
// parser reports poorly: unknown fields and values of the wrong kind, anywhere (it loses the
// path inside an Any), and errors inside an Any, which it reports relative to the Any: each
// Any's contents are converted on their own and the errors prefixed with the Any's path.
class JsonChecker {
 public:
  JsonChecker(std::vector<std::string>& errors, std::string_view label)
      : errors_(errors), label_(label) {}

  // Returns true when nothing was reported.
  bool checkMessage(const Json& value, const pb::Descriptor* type, const std::string& path) {
    if (type->full_name() == "google.protobuf.Any") {
      return checkAny(value, path);
    }
    if (isWellKnown(type)) {
      return true;  // Duration, Struct, wrappers, ...: protobuf's parser checks their forms
    }
    if (!value.is_object()) {
      return fail(path, "expected a map (" + type->full_name() + "), got " + kindOf(value));
    }
    bool ok = true;
    for (const auto& [key, item] : value.items()) {
      const pb::FieldDescriptor* f = findField(type, key);
      if (f == nullptr) {
        ok = fail(joinPath(path, key), "unknown field") && ok;
        continue;
      }
      if (item.is_null()) {
        continue;
      }
      ok = checkField(item, f, joinPath(path, f->name())) && ok;
    }
    return ok;
  }

 private:
  bool fail(const std::string& path, const std::string& message) {
    errors_.push_back(withLabel(label_, path.empty() ? message : path + ": " + message));
    return false;
  }

  bool checkField(const Json& value, const pb::FieldDescriptor* f, const std::string& path) {
    if (f->is_map()) {
      if (!value.is_object()) {
        return fail(path, "expected a map, got " + kindOf(value));
      }
      const pb::FieldDescriptor* value_field = f->message_type()->FindFieldByNumber(2);
      bool ok = true;
      for (const auto& [key, item] : value.items()) {
        if (!item.is_null()) {
          ok = checkValue(item, value_field, path + "[" + key + "]") && ok;
        }
      }
      return ok;
    }
    if (f->is_repeated() && value.is_array()) {
      bool ok = true;
      for (size_t i = 0; i < value.size(); ++i) {
        ok = checkValue(value[i], f, path + "[" + std::to_string(i) + "]") && ok;
      }
      return ok;
    }
    // (protobuf's parser takes a single value for a list of one.)
    return checkValue(value, f, f->is_repeated() ? path + "[0]" : path);
  }

  bool checkValue(const Json& value, const pb::FieldDescriptor* f, const std::string& path) {
    if (value.is_null()) {
      return true;
    }
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        return checkMessage(value, f->message_type(), path);
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (f->type() == pb::FieldDescriptor::TYPE_STRING && !value.is_string()) {
          const bool scalar = !value.is_object() && !value.is_array();
          return fail(path, "expected a string, got " + kindOf(value) +
                                (scalar ? " (quote it to make it a string)" : ""));
        }
        return true;
      default:
        if (value.is_object() || value.is_array()) {
          return fail(
              path, std::string("expected ") +
                        (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_BOOL   ? "a boolean"
                         : f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM ? "an enum value name"
                                                                              : "a number") +
                        ", got " + kindOf(value));
        }
        return true;
    }
  }

  bool checkAny(const Json& value, const std::string& path) {
    if (!value.is_object()) {
      return fail(path, "expected a map with \"@type\", got " + kindOf(value));
    }
    const auto type_it = value.find("@type");
    if (type_it == value.end()) {
      return fail(path,
                  "missing \"@type\" (the type URL of the contents, like "
                  "\"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\")");
    }
    if (!type_it->is_string()) {
      return fail(joinPath(path, "@type"), "expected a type URL string, got " + kindOf(*type_it));
    }
    const std::string url = type_it->get<std::string>();
    const pb::Descriptor* type = findApiMessageType(typeNameOfUrl(url));
    if (type == nullptr) {
      return fail(path, "unknown type " + url + " (not a message of the Envoy v3 API)");
    }
    if (isWellKnown(type)) {
      return true;
    }
    Json contents = value;
    contents.erase("@type");
    if (!checkMessage(contents, type, path)) {
      return false;
    }
    pb::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    std::string binary;
    const auto status = pb::util::JsonToBinaryString(
        &envoyApiTypeResolver(), typeUrlOf(type->full_name()), contents.dump(), &binary, options);
    if (!status.ok()) {
      errors_.push_back(withLabel(label_, describeJsonError(std::string(status.message()), path)));
      return false;
    }
    return true;
  }

  std::vector<std::string>& errors_;
  std::string_view label_;
};

// Converts JSON text to `out` (of type `type_name`) through the embedded API's type
// resolver, so that Anys of any type in the API parse.
bool jsonToMessage(const std::string& json, std::string_view type_name, pb::Message& out,
                   std::vector<std::string>& errors, std::string_view label) {
  Json parsed;
  try {
    parsed = Json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    errors.push_back(withLabel(label, std::string("json: ") + e.what()));
    return false;
  }
  if (parsed.is_null()) {
    errors.push_back(withLabel(label, "the document is empty"));
    return false;
  }
  const pb::Descriptor* type = findApiMessageType(type_name);
  if (type == nullptr) {
    errors.push_back(withLabel(label, "unknown type " + std::string(type_name)));
    return false;
  }
  if (!JsonChecker(errors, label).checkMessage(parsed, type, "")) {
    return false;
  }
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  std::string binary;
  const auto status = pb::util::JsonToBinaryString(&envoyApiTypeResolver(), typeUrlOf(type_name),
                                                   json, &binary, options);
  if (!status.ok()) {
    errors.push_back(withLabel(label, describeJsonError(std::string(status.message()), "")));
    return false;
  }
  out.Clear();
  if (!out.ParseFromString(binary)) {
    errors.push_back(
        withLabel(label, "the converted config does not parse as " + std::string(type_name)));
    return false;
  }
  return true;
}

enum class Format { Yaml, Json };

bool textToMessage(std::string_view text, Format format, std::string_view type_name,
                   pb::Message& out, std::vector<std::string>& errors, std::string_view label) {
  std::string json;
  std::string error;
  if (format == Format::Json) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      json = "null";  // reported like an empty YAML document
    } else if (!checkJsonSyntax(text, error)) {
      errors.push_back(withLabel(label, error));
      return false;
    } else {
      json = std::string(text);
    }
  } else if (!yamlToJson(text, json, error)) {
    errors.push_back(withLabel(label, error));
    return false;
  }
  return jsonToMessage(json, type_name, out, errors, label);
}

}  // namespace

bool loadBootstrap(const BootstrapSource& source, envoy::config::bootstrap::v3::Bootstrap& out,
                   std::vector<std::string>& errors) {
  const size_t before = errors.size();
  const std::string type_name = out.GetDescriptor()->full_name();
  out.Clear();
  if (source.config_path.empty() && source.config_yaml.empty()) {
    errors.push_back("no config: give a config file (-c) or --config-yaml");
    return false;
  }
  if (!source.config_path.empty()) {
    std::string contents;
    std::string error;
    if (!readFile(source.config_path, contents, error)) {
      errors.push_back(error);
      return false;
    }
    const Format format = endsWith(source.config_path, ".json") ? Format::Json : Format::Yaml;
    if (!textToMessage(contents, format, type_name, out, errors, source.config_path)) {
      return false;
    }
  }
  if (!source.config_yaml.empty()) {
    envoy::config::bootstrap::v3::Bootstrap overlay;
    if (!textToMessage(source.config_yaml, Format::Yaml, type_name, overlay, errors,
                       "--config-yaml")) {
      return false;
    }
    out.MergeFrom(overlay);
  }
  validateMessage(out, errors);
  checkSupported(out, errors);
  return errors.size() == before;
}

bool messageFromYaml(std::string_view yaml, std::string_view full_name, pb::Message& out,
                     std::vector<std::string>& errors) {
  const std::string_view type_name = typeNameOfUrl(full_name);
  if (findApiMessageType(type_name) == nullptr) {
    errors.push_back("unknown type " + std::string(full_name));
    return false;
  }
  if (out.GetDescriptor()->full_name() != type_name) {
    errors.push_back("cannot parse " + std::string(type_name) + " into a " +
                     out.GetDescriptor()->full_name());
    return false;
  }
  return textToMessage(yaml, Format::Yaml, type_name, out, errors, "");
}

}  // namespace sluice::config
