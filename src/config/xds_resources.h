#pragma once

// The resources of a discovery response (xDS), checked as strictly as a bootstrap: each is of
// the type the subscription asked for, satisfies the API's validation rules, and uses only
// the supported subset. Errors name the resource's path, e.g.
//   "resources[1].connect_timeout: value must be greater than 0s"
// which is what a NACK's error_detail and a rejected file's log line carry.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace sluice::config {

inline constexpr std::string_view kClusterType = "envoy.config.cluster.v3.Cluster";
inline constexpr std::string_view kListenerType = "envoy.config.listener.v3.Listener";
inline constexpr std::string_view kRouteConfigurationType =
    "envoy.config.route.v3.RouteConfiguration";
inline constexpr std::string_view kClusterLoadAssignmentType =
    "envoy.config.endpoint.v3.ClusterLoadAssignment";
inline constexpr std::string_view kSecretType = "envoy.extensions.transport_sockets.tls.v3.Secret";

// dynamic_resources.ads_config: where the ADS stream goes (config/grpc_mux.h).
struct AdsConfig {
  std::string cluster_name;  // grpc_services[0].envoy_grpc.cluster_name
  std::string node;          // the bootstrap's envoy.config.core.v3.Node, serialized
  bool set_node_on_first_message_only{false};
  bool delta{false};  // api_type DELTA_GRPC: incremental xDS
};

struct DiscoveryUpdate {
  DiscoveryUpdate();
  ~DiscoveryUpdate();
  DiscoveryUpdate(DiscoveryUpdate&&) noexcept;
  std::string version_info;
  // Dynamic messages (of the embedded API) of the subscription's type, in response order;
  // shared and read-only: the ADS mux hands one response's resources to every watch.
  std::vector<std::shared_ptr<const google::protobuf::Message>> resources;
  // Each resource's wire bytes as received (the Any's value), where known: empty, or as long
  // as `resources` (an entry may be null). copyResource() parses a generated class from them
  // instead of serializing the dynamic message again (most of the cost of a large update).
  std::vector<std::shared_ptr<const std::string>> wire;
};

// Decodes an envoy.service.discovery.v3.DiscoveryResponse message (dynamic or generated) whose
// resources must be of `type` (a full message name). False with errors otherwise.
bool decodeDiscoveryResponse(const google::protobuf::Message& response, std::string_view type,
                             DiscoveryUpdate& out, std::vector<std::string>& errors);

// The same from the text of a file (YAML or JSON), as Envoy's path config sources hold it.
bool decodeDiscoveryResponseText(std::string_view text, std::string_view type,
                                 DiscoveryUpdate& out, std::vector<std::string>& errors);

// Copies a message into another of the same full name (a checked dynamic message into the
// generated class the code reads). False if the bytes do not parse.
bool copyMessage(const google::protobuf::Message& from, google::protobuf::Message& to);

// copyMessage of update.resources[i], from its wire bytes when the update has them.
bool copyResource(const DiscoveryUpdate& update, size_t i, google::protobuf::Message& to);

// The message's bytes with map entries in a fixed order: equal configs give equal strings.
std::string deterministicBytes(const google::protobuf::Message& msg);

}  // namespace sluice::config
