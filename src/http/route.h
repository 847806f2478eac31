#pragma once

// What the connection manager and filters know of routing: an opaque route chosen for a
// request, from a route table that is an immutable snapshot. The router (src/router)
// implements both; nothing in src/http looks inside.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "http/header_map.h"

namespace sluice::http {

// A filter's config for one route or virtual host (typed_per_filter_config), compiled once
// per route table by that filter's factory; immutable, shared by workers. Filters downcast
// it to their own type.
class RouteSpecificFilterConfig {
 public:
  virtual ~RouteSpecificFilterConfig() = default;
};
using RouteSpecificFilterConfigConstSharedPtr = std::shared_ptr<const RouteSpecificFilterConfig>;

// A route's RouteAction.max_stream_duration. A route that has one sets the stream's
// deadline (Envoy's "new timeouts": the route timeout no longer applies): the route's
// max_stream_duration (else the connection manager's), or for a request with grpc-timeout
// and grpc_timeout_header_max, the grpc-timeout capped and less the offset.
struct StreamDurationPolicy {
  std::optional<std::chrono::milliseconds> max_stream_duration;
  std::optional<std::chrono::milliseconds> grpc_timeout_header_max;
  std::optional<std::chrono::milliseconds> grpc_timeout_header_offset;
};

class Route {
 public:
  virtual ~Route() = default;
  virtual std::string_view name() const = 0;
  // The typed_per_filter_config entry keyed `filter_name`, most specific first (the route's,
  // else its virtual host's), or null. Lives as long as the route.
  virtual const RouteSpecificFilterConfig* perFilterConfig(std::string_view filter_name) const {
    (void)filter_name;
    return nullptr;
  }
  // Null unless the route has max_stream_duration. Lives as long as the route.
  virtual const StreamDurationPolicy* streamDurationPolicy() const { return nullptr; }
};
using RouteConstSharedPtr = std::shared_ptr<const Route>;

class RouteTable {
 public:
  virtual ~RouteTable() = default;
  // The route for these request headers, or null (404, flag NR). `random` picks among
  // weighted choices.
  virtual RouteConstSharedPtr route(const RequestHeaderMap& headers, uint64_t random) const = 0;
};
using RouteTableConstSharedPtr = std::shared_ptr<const RouteTable>;

}  // namespace sluice::http
