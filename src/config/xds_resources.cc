#include "config/xds_resources.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>

#include "config/bootstrap_loader.h"
#include "config/supported_fields.h"
#include "config/validation.h"

namespace sluice::config {

namespace pb = google::protobuf;

DiscoveryUpdate::DiscoveryUpdate() = default;
DiscoveryUpdate::~DiscoveryUpdate() = default;
DiscoveryUpdate::DiscoveryUpdate(DiscoveryUpdate&&) noexcept = default;

namespace {
constexpr std::string_view kDiscoveryResponse = "envoy.service.discovery.v3.DiscoveryResponse";
}

bool decodeDiscoveryResponse(const pb::Message& response, std::string_view type,
                             DiscoveryUpdate& out, std::vector<std::string>& errors) {
  const pb::Descriptor* d = response.GetDescriptor();
  const pb::Reflection* r = response.GetReflection();
  const pb::FieldDescriptor* version = d->FindFieldByName("version_info");
  const pb::FieldDescriptor* resources = d->FindFieldByName("resources");
  const pb::FieldDescriptor* type_url = d->FindFieldByName("type_url");
  if (d->full_name() != kDiscoveryResponse || !version || !resources || !type_url) {
    errors.push_back("not a " + std::string(kDiscoveryResponse));
    return false;
  }
  const size_t before = errors.size();
  out.version_info = r->GetString(response, version);
  const std::string response_type = r->GetString(response, type_url);
  if (!response_type.empty() && typeNameOfUrl(response_type) != type) {
    errors.push_back("type_url: " + response_type + " is not the subscribed type " +
                     std::string(type));
    return false;
  }
  const int n = r->FieldSize(response, resources);
  for (int i = 0; i < n; ++i) {
    const std::string path = "resources[" + std::to_string(i) + "]";
    const pb::Message& any = r->GetRepeatedMessage(response, resources, i);
    const std::string url = anyTypeUrl(any);
    if (typeNameOfUrl(url) != type) {
      errors.push_back(path + ": type " + (url.empty() ? std::string("(none)") : url) +
                       " is not the subscribed type " + std::string(type));
      continue;
    }
    std::string error;
    auto wire = std::make_shared<std::string>();
    std::unique_ptr<pb::Message> msg = unpackAny(any, error, wire.get());
    if (!msg) {
      errors.push_back(path + ": " + error);
      continue;
    }
    if (!validateMessage(*msg, errors, path)) continue;
    if (!checkSupported(*msg, errors, path)) continue;
    out.resources.push_back(std::move(msg));
    out.wire.push_back(std::move(wire));
  }
  return errors.size() == before;
}

bool decodeDiscoveryResponseText(std::string_view text, std::string_view type,
                                 DiscoveryUpdate& out, std::vector<std::string>& errors) {
  std::unique_ptr<pb::Message> response = newApiMessage(kDiscoveryResponse);
  if (!response) {
    errors.push_back("the embedded API lacks " + std::string(kDiscoveryResponse));
    return false;
  }
  if (!messageFromYaml(text, kDiscoveryResponse, *response, errors)) return false;
  return decodeDiscoveryResponse(*response, type, out, errors);
}

// Partial: the API is proto3 (no required fields), and the full forms walk every field of a
// dynamic message by reflection to check that none is missing.
bool copyMessage(const pb::Message& from, pb::Message& to) {
  if (from.GetDescriptor()->full_name() != to.GetDescriptor()->full_name()) return false;
  return to.ParsePartialFromString(from.SerializePartialAsString());
}

bool copyResource(const DiscoveryUpdate& update, size_t i, pb::Message& to) {
  const pb::Message& from = *update.resources[i];
  if (i >= update.wire.size() || !update.wire[i]) return copyMessage(from, to);
  if (from.GetDescriptor()->full_name() != to.GetDescriptor()->full_name()) return false;
  return to.ParsePartialFromString(*update.wire[i]);
}

std::string deterministicBytes(const pb::Message& msg) {
  std::string out;
  {
    pb::io::StringOutputStream sos(&out);
    pb::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    msg.SerializeToCodedStream(&cos);
  }
  return out;
}

}  // namespace sluice::config
