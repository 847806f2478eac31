#pragma once

// What is known about one HTTP stream as it is proxied: times, sizes, response code and
// flags, the route and upstream chosen. Filled by the connection manager and the filters;
// read by access logs and stats.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "event/time.h"
#include "http/codec.h"
#include "network/address.h"
#include "network/connection.h"

namespace sluice::http {

// Envoy's response flags, as bits; their short names are Envoy's (access log %RESPONSE_FLAGS%).
enum ResponseFlag : uint32_t {
  FailedLocalHealthCheck = 1 << 0,       // LH
  NoHealthyUpstream = 1 << 1,            // UH
  UpstreamRequestTimeout = 1 << 2,       // UT
  LocalReset = 1 << 3,                   // LR
  UpstreamRemoteReset = 1 << 4,          // UR
  UpstreamConnectionFailure = 1 << 5,    // UF
  UpstreamConnectionTermination = 1 << 6,  // UC
  UpstreamOverflow = 1 << 7,             // UO
  NoRouteFound = 1 << 8,                 // NR
  DelayInjected = 1 << 9,                // DI
  FaultInjected = 1 << 10,               // FI
  RateLimited = 1 << 11,                 // RL
  UpstreamRetryLimitExceeded = 1 << 12,  // URX
  StreamIdleTimeout = 1 << 13,           // SI
  DownstreamConnectionTermination = 1 << 14,  // DC
  DownstreamProtocolError = 1 << 15,     // DPE
  UpstreamProtocolError = 1 << 16,       // UPE
  NoClusterFound = 1 << 17,              // NC
  DurationTimeout = 1 << 18,             // DT
  UpstreamMaxStreamDurationReached = 1 << 19,  // UMSDR
  DownstreamRemoteReset = 1 << 20,       // DR
};
// "UH,UF" style, in Envoy's order; "-" when none.
std::string responseFlagsString(uint32_t flags);

struct StreamInfo {
  explicit StreamInfo(event::TimeSource& time)
      : start_time(time.systemTime()), start_monotonic(time.monotonicTime()) {}
  StreamInfo(event::SystemTime start, event::MonotonicTime start_mono)
      : start_time(start), start_monotonic(start_mono) {}

  event::SystemTime start_time;
  event::MonotonicTime start_monotonic;
  std::optional<std::chrono::nanoseconds> last_downstream_rx_byte;
  std::optional<std::chrono::nanoseconds> first_upstream_tx_byte;
  std::optional<std::chrono::nanoseconds> last_upstream_tx_byte;
  std::optional<std::chrono::nanoseconds> first_upstream_rx_byte;
  std::optional<std::chrono::nanoseconds> last_upstream_rx_byte;
  std::optional<std::chrono::nanoseconds> first_downstream_tx_byte;
  std::optional<std::chrono::nanoseconds> last_downstream_tx_byte;
  std::optional<std::chrono::nanoseconds> request_complete;  // whole exchange done

  std::optional<uint32_t> response_code;
  std::string response_code_details;
  uint32_t response_flags{0};
  std::optional<Protocol> protocol;
  uint64_t bytes_received{0};  // request body bytes from downstream
  uint64_t bytes_sent{0};      // response body bytes to downstream

  std::string route_name;
  std::string upstream_cluster;
  network::AddressConstSharedPtr upstream_host;
  network::AddressConstSharedPtr upstream_local_address;
  std::string upstream_transport_failure_reason;
  network::AddressConstSharedPtr downstream_local_address;
  network::AddressConstSharedPtr downstream_remote_address;
  network::AddressConstSharedPtr downstream_direct_remote_address;
  uint64_t connection_id{0};
  network::SslConnectionInfoConstSharedPtr downstream_ssl;  // null: not TLS
  std::string request_id;
  uint32_t attempt_count{0};

  void setResponseFlag(ResponseFlag f) { response_flags |= f; }
  bool hasResponseFlag(ResponseFlag f) const { return (response_flags & f) != 0; }
  std::optional<std::chrono::nanoseconds> duration() const { return request_complete; }
};

}  // namespace sluice::http
