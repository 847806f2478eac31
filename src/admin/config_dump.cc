#include "admin/config_dump.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "config/api_descriptors.h"
#include "udpa/annotations/sensitive.pb.h"

namespace sluice::admin {

namespace pb = google::protobuf;

namespace {

constexpr std::string_view kRedacted = "[redacted]";

void redact(pb::Message& m, bool sensitive);

// An Any: its value is parsed as its type (from the API's pool), redacted, and packed again.
void redactAny(pb::Message& any, bool sensitive) {
  const pb::Descriptor* d = any.GetDescriptor();
  const pb::Reflection* r = any.GetReflection();
  const pb::FieldDescriptor* url_field = d->FindFieldByName("type_url");
  const pb::FieldDescriptor* value_field = d->FindFieldByName("value");
  if (!url_field || !value_field) return;
  const std::string url = r->GetString(any, url_field);
  const pb::Descriptor* type =
      config::findApiMessageType(url.substr(url.rfind('/') + 1));
  if (!type) {
    // Unknown content: nothing to look into, and under a sensitive field nothing to show.
    if (sensitive) r->SetString(&any, value_field, std::string(kRedacted));
    return;
  }
  pb::DynamicMessageFactory factory(&config::envoyApiPool());
  std::unique_ptr<pb::Message> inner(factory.GetPrototype(type)->New());
  if (!inner->ParseFromString(r->GetString(any, value_field))) return;
  redact(*inner, sensitive);
  r->SetString(&any, value_field, inner->SerializeAsString());
}

void redact(pb::Message& m, bool sensitive) {
  const pb::Descriptor* d = m.GetDescriptor();
  if (d->full_name() == "google.protobuf.Any") return redactAny(m, sensitive);
  const pb::Reflection* r = m.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const bool s = sensitive || f->options().GetExtension(udpa::annotations::sensitive);
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i) redact(*r->MutableRepeatedMessage(&m, f, i), s);
      } else {
        redact(*r->MutableMessage(&m, f), s);
      }
      continue;
    }
    if (!s) continue;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i) {
          r->SetRepeatedString(&m, f, i, std::string(kRedacted));
        }
      } else {
        r->SetString(&m, f, std::string(kRedacted));
      }
    } else {
      r->ClearField(&m, f);
    }
  }
}

using Path = std::vector<std::string>;

std::vector<Path> parseMask(std::string_view mask) {
  std::vector<Path> paths;
  size_t start = 0;
  while (start <= mask.size()) {
    size_t comma = mask.find(',', start);
    if (comma == std::string_view::npos) comma = mask.size();
    std::string_view p = mask.substr(start, comma - start);
    if (!p.empty()) {
      Path path;
      size_t s = 0;
      while (s <= p.size()) {
        size_t dot = p.find('.', s);
        if (dot == std::string_view::npos) dot = p.size();
        path.emplace_back(p.substr(s, dot - s));
        s = dot + 1;
      }
      paths.push_back(std::move(path));
    }
    start = comma + 1;
  }
  return paths;
}

// The part of `j` that `paths` select (each from index `depth` on). An object keeps the
// named fields; a list keeps, of each element, the same fields.
nlohmann::json trim(const nlohmann::json& j, const std::vector<const Path*>& paths, size_t depth) {
  if (j.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : j) out.push_back(trim(e, paths, depth));
    return out;
  }
  if (!j.is_object()) return j;
  nlohmann::json out = nlohmann::json::object();
  std::map<std::string, std::vector<const Path*>> by_field;
  for (const Path* p : paths) by_field[(*p)[depth]].push_back(p);
  for (const auto& [field, sub] : by_field) {
    auto it = j.find(field);
    if (it == j.end()) continue;
    bool whole = false;
    std::vector<const Path*> deeper;
    for (const Path* p : sub) {
      if (p->size() == depth + 1) whole = true;
      else deeper.push_back(p);
    }
    if (whole) {
      out[field] = *it;
    } else {
      nlohmann::json t = trim(*it, deeper, depth + 1);
      if (!(t.is_object() && t.empty())) out[field] = std::move(t);
    }
  }
  // An Any (a cluster, a listener, a secret in its dump entry) keeps its type, as Envoy's mask
  // trims inside the message and packs it again.
  if (!out.empty() && j.contains("@type")) out["@type"] = j["@type"];
  return out;
}

void applyMask(nlohmann::json& j, const std::vector<Path>& paths) {
  std::vector<const Path*> ptrs;
  for (const auto& p : paths) ptrs.push_back(&p);
  nlohmann::json out = trim(j, ptrs, 0);
  if (j.contains("@type")) out["@type"] = j["@type"];
  j = std::move(out);
}

}  // namespace

void redactSensitive(pb::Message& message) { redact(message, false); }

uint32_t filterConfigDump(nlohmann::json& configs,
                          const std::map<std::string, std::string, std::less<>>& query,
                          std::string& error) {
  const auto resource = query.find("resource");
  const auto mask = query.find("mask");
  std::vector<Path> paths;
  if (mask != query.end()) paths = parseMask(mask->second);
  if (resource == query.end()) {
    if (!paths.empty()) {
      for (auto& c : configs) applyMask(c, paths);
    }
    return 200;
  }
  constexpr std::string_view kPrefix = "type.googleapis.com/";
  nlohmann::json out = nlohmann::json::array();
  bool found = false;
  for (auto& c : configs) {
    const std::string type = c.value("@type", "");
    const pb::Descriptor* d =
        config::findApiMessageType(type.substr(type.rfind('/') + 1));
    const pb::FieldDescriptor* f = d ? d->FindFieldByName(resource->second) : nullptr;
    if (!f) continue;
    if (!f->is_repeated() || f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      error = "resource: " + resource->second + " is not a repeated field of " + d->full_name();
      return 400;
    }
    found = true;
    auto list = c.find(resource->second);
    if (list == c.end()) continue;
    for (auto& e : *list) {
      e["@type"] = std::string(kPrefix) + f->message_type()->full_name();
      if (!paths.empty()) applyMask(e, paths);
      out.push_back(std::move(e));
    }
  }
  if (!found) {
    error = "resource: " + resource->second + " is not a field of any config dump";
    return 404;
  }
  configs = std::move(out);
  return 200;
}

}  // namespace sluice::admin
