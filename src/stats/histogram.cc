#include "stats/histogram.h"

#include <algorithm>
#include <cmath>

namespace sluice::stats {

namespace {

// Values are integers, so "v <= bound" is "v <= floor(bound)".
constexpr std::array<uint64_t, kBucketCount> integerBounds() {
  std::array<uint64_t, kBucketCount> out{};
  for (size_t i = 0; i < kBucketCount; ++i) out[i] = static_cast<uint64_t>(kDefaultBuckets[i]);
  return out;
}
constexpr std::array<uint64_t, kBucketCount> kIntegerBounds = integerBounds();

}  // namespace

size_t bucketIndex(uint64_t value) {
  return static_cast<size_t>(std::lower_bound(kIntegerBounds.begin(), kIntegerBounds.end(), value) -
                             kIntegerBounds.begin());
}

HistogramStatistics::HistogramStatistics(const BucketCounts& counts, uint64_t sum, uint64_t min,
                                         uint64_t max)
    : counts_(counts), sum_(sum), min_(min), max_(max) {
  for (uint64_t c : counts_) count_ += c;
  if (count_ != 0 && min_ > max_) min_ = max_;  // a torn read while values were recorded
}

std::array<uint64_t, kBucketCount> HistogramStatistics::cumulativeBuckets() const {
  std::array<uint64_t, kBucketCount> out{};
  uint64_t running = 0;
  for (size_t i = 0; i < kBucketCount; ++i) {
    running += counts_[i];
    out[i] = running;
  }
  return out;
}

double HistogramStatistics::quantile(double q) const {
  if (count_ == 0) return std::nan("");
  q = std::clamp(q, 0.0, 1.0);
  const double lowest = static_cast<double>(min_);
  const double highest = static_cast<double>(max_);
  if (q == 0) return lowest;
  if (q == 1) return highest;
  const double rank = q * static_cast<double>(count_);
  uint64_t before = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    const uint64_t here = counts_[i];
    if (here == 0) continue;
    if (static_cast<double>(before + here) >= rank) {
      double lo = i == 0 ? 0.0 : kDefaultBuckets[i - 1];
      double hi = i < kBucketCount ? kDefaultBuckets[i] : highest;
      lo = std::max(lo, lowest);
      hi = std::min(hi, highest);
      if (hi < lo) hi = lo;
      const double fraction = (rank - static_cast<double>(before)) / static_cast<double>(here);
      return lo + (hi - lo) * fraction;
    }
    before += here;
  }
  return highest;
}

std::vector<double> HistogramStatistics::computedQuantiles() const {
  std::vector<double> out;
  out.reserve(kSupportedQuantiles.size());
  for (double q : kSupportedQuantiles) out.push_back(quantile(q));
  return out;
}

}  // namespace sluice::stats
