#pragma once

// google.protobuf.Duration as std::chrono, for the config translations (header only: the
// translations in the server, router and filter libraries each include it).

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <google/protobuf/duration.pb.h>

namespace sluice::config {

// Whole milliseconds, the rest of the nanoseconds dropped. A Duration spans at most 10,000
// years either way; seconds beyond that (only fields without validation rules are not
// range-checked, and an xDS server may send anything) are clamped to it, so the product
// cannot overflow. A timer armed with such a span waits forever (event/time.h).
inline std::chrono::milliseconds toMilliseconds(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds = 315576000000;
  const int64_t seconds = std::clamp<int64_t>(d.seconds(), -kMaxSeconds, kMaxSeconds);
  return std::chrono::milliseconds(seconds * 1000 + d.nanos() / 1000000);
}

}  // namespace sluice::config
