#pragma once

// Small HTTP helpers shared by the connection manager and the router.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http/header_map.h"

namespace sluice::http {

// RFC 3986 normalisation of a request path (the part before '?'): decodes percent-encoded
// unreserved characters and removes "." and ".." segments; with merge_slashes, runs of '/'
// become one. The query is kept as is. False when the path does not start with '/'.
bool normalizePath(std::string& path, bool merge_slashes);
// Only merges slashes.
void mergeSlashes(std::string& path);

// A version-4 UUID ("8-4-4-4-12" hex), from a per-thread generator.
std::string randomUuid();
// A fast per-thread random number.
uint64_t randomU64();

// The reason phrase of a status code ("OK", "Not Found", ...; "Unknown").
std::string_view statusReason(uint32_t code);

// The client address to trust from x-forwarded-for, Envoy style: with xff_num_trusted_hops = N,
// the (N+1)th address from the right. Empty when there are too few.
std::string_view trustedXffAddress(std::string_view xff, uint32_t num_trusted_hops);

// True for headers that concern one connection only (connection, keep-alive,
// proxy-connection, transfer-encoding, upgrade, te), which a proxy does not forward.
bool isHopByHopHeader(std::string_view name);

// True when the comma-separated header value contains `token` (case-insensitive).
bool headerHasToken(std::string_view value, std::string_view token);

// gRPC: a request is gRPC when its content-type is application/grpc, alone or followed by
// '+' or ';' (application/grpc+proto).
bool isGrpcContentType(std::string_view content_type);
// The gRPC status an HTTP status stands for (gRPC's http-grpc-status-mapping, as Envoy's
// Grpc::Utility::httpToGrpcStatus): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
// 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN.
uint32_t httpToGrpcStatus(uint32_t http_status);
// A grpc-message value: bytes outside ' '..'~' and '%' percent-encoded (gRPC's rule).
std::string grpcMessageEncode(std::string_view message);

// The grpc-timeout header ("<1-8 digits><H|M|S|m|u|n>") in milliseconds, rounded up;
// nullopt when absent or malformed.
std::optional<std::chrono::milliseconds> parseGrpcTimeout(std::string_view value);
// A grpc-timeout value for `timeout` ("250m", or in a larger unit past 8 digits).
std::string formatGrpcTimeout(std::chrono::milliseconds timeout);

}  // namespace sluice::http
