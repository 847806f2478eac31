#pragma once

// google.protobuf.Duration as std::chrono, for the config translations (header only: the
// translations in the server, router and filter libraries each include it).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

#include <google/protobuf/duration.pb.h>

namespace sluice::config {

// The most seconds a google.protobuf.Duration may hold either way: 10,000 years.
inline constexpr int64_t kMaxDurationSeconds = 315576000000;

// Whole milliseconds, the rest of the nanoseconds dropped. A Duration spans at most 10,000
// years either way; seconds beyond that (fields without validation rules are not
// range-checked) are clamped to it, so the product cannot overflow. A timer armed with more
// than about 292 years never fires; with a negative span, at once (event/time.h).
inline std::chrono::milliseconds toMilliseconds(const google::protobuf::Duration& d) {
  const int64_t seconds =
      std::clamp<int64_t>(d.seconds(), -kMaxDurationSeconds, kMaxDurationSeconds);
  return std::chrono::milliseconds(seconds * 1000 + d.nanos() / 1000000);
}

// Nanoseconds, saturating at their range (about 292 years either way).
inline std::chrono::nanoseconds toNanoseconds(const google::protobuf::Duration& d) {
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000000000;
  if (d.seconds() >= kMaxSeconds) return std::chrono::nanoseconds::max();
  if (d.seconds() <= -kMaxSeconds) return std::chrono::nanoseconds::min();
  return std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos());
}

}  // namespace sluice::config
