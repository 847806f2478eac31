#pragma once

// Builds the TLS transport socket factories of listener filter chains and clusters from
// Envoy's `transport_socket` (envoy.transport_sockets.tls with DownstreamTlsContext or
// UpstreamTlsContext), resolving `static_resources.secrets` by name, and secrets named with
// an `sds_config` through the SecretManager (config/sds_api.h): a context built from one
// follows its rotations. Certificates and keys are read and checked at load: a bad one
// refuses the config with the field's path.

#include <map>
#include <string>
#include <vector>

#include "envoy/config/core/v3/base.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "network/transport_socket.h"

namespace sluice::stats {
class Store;
}

namespace sluice::config {

struct SecretMaterial;

using SecretMap =
    std::map<std::string, const envoy::extensions::transport_sockets::tls::v3::Secret*>;

// Indexes static_resources.secrets by name; false with errors on a duplicate or nameless one.
bool indexSecrets(
    const google::protobuf::RepeatedPtrField<envoy::extensions::transport_sockets::tls::v3::Secret>&
        secrets,
    SecretMap& out, std::vector<std::string>& errors);

// Reads a secret's tls_certificate or validation_context (and the files they name) and checks
// it as a TLS context would load it (the certificate parses, the key matches it); false with
// errors under `path` ("resources[0].tls_certificate.private_key: ...").
bool resolveSecret(const envoy::extensions::transport_sockets::tls::v3::Secret& secret,
                   const std::string& path, SecretMaterial& out, std::vector<std::string>& errors);

// `path` is the transport_socket's path. A cluster's TLS counters go under stat_prefix +
// "ssl." (stat_prefix "cluster.x."); a listener's (server) get theirs from initializeStats()
// once it is bound, and stat_prefix is unused. Null with errors when the config is refused;
// a raw_buffer transport socket gives a plain TCP factory.
network::TransportSocketFactoryConstSharedPtr buildTransportSocketFactory(
    const envoy::config::core::v3::TransportSocket& proto, bool server, const SecretMap& secrets,
    stats::Store& store, const std::string& stat_prefix, const std::string& path,
    std::vector<std::string>& errors);

}  // namespace sluice::config
