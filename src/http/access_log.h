#pragma once

// An access log that the connection manager calls once per finished stream.

#include <memory>

#include "http/header_map.h"
#include "http/stream_info.h"

namespace sluice::http {

class AccessLog {
 public:
  virtual ~AccessLog() = default;
  virtual void log(const RequestHeaderMap* request_headers,
                   const ResponseHeaderMap* response_headers,
                   const ResponseTrailerMap* response_trailers, const StreamInfo& info) = 0;
};
using AccessLogSharedPtr = std::shared_ptr<AccessLog>;

}  // namespace sluice::http
