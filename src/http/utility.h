#pragma once

// Small HTTP helpers shared by the connection manager and the router.

#include <cstdint>
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

}  // namespace sluice::http
