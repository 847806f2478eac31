#pragma once

// The arithmetic of Sluice's histograms: Envoy's default bucket bounds, which bucket a value
// falls in, and what can be read back from bucket counts (count, sum, Prometheus's cumulative
// buckets, and quantiles estimated by interpolating inside a bucket). Recording lives in
// stats.h (stats::Histogram); this header knows nothing of threads.

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace sluice::stats {

// What a histogram's values measure, as Envoy's Histogram::Unit. Only informative for now:
// every unit uses the same buckets.
enum class Unit { Unspecified, Bytes, Microseconds, Milliseconds, Percent };

// Envoy's default bucket upper bounds (envoy.config.metrics.v3.HistogramBucketSettings):
// a value v lands in the first bucket whose bound b has v <= b; values above the last bound
// land in an overflow bucket that only "+Inf" counts.
inline constexpr size_t kBucketCount = 19;
inline constexpr std::array<double, kBucketCount> kDefaultBuckets = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};
// Disjoint counts: one per bound plus the overflow bucket.
using BucketCounts = std::array<uint64_t, kBucketCount + 1>;

// The quantiles Envoy's /stats prints (P0, P25, ..., P100), as fractions.
inline constexpr std::array<double, 10> kSupportedQuantiles = {0,    0.25, 0.5,   0.75,  0.9,
                                                               0.95, 0.99, 0.995, 0.999, 1};

// Index of the bucket for `value`: in [0, kBucketCount], kBucketCount being the overflow.
size_t bucketIndex(uint64_t value);

// A read-only picture of a histogram at one moment: counts per bucket, sum, min and max.
class HistogramStatistics {
 public:
  // No samples.
  HistogramStatistics() = default;
  HistogramStatistics(const BucketCounts& counts, uint64_t sum, uint64_t min, uint64_t max);

  uint64_t sampleCount() const { return count_; }
  uint64_t sampleSum() const { return sum_; }
  // Smallest and largest recorded value; 0 when there are no samples.
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return count_ == 0 ? 0 : max_; }
  const BucketCounts& disjointBuckets() const { return counts_; }
  // Prometheus's view: for each bound, how many values are <= it.
  std::array<uint64_t, kBucketCount> cumulativeBuckets() const;

  // The value at quantile q (0 <= q <= 1), estimated by linear interpolation inside the
  // bucket that holds rank q * count, where the bucket is narrowed to [min, max]. P0 is the
  // minimum and P100 the maximum exactly. NaN when there are no samples.
  double quantile(double q) const;
  // quantile() at each of kSupportedQuantiles.
  std::vector<double> computedQuantiles() const;

 private:
  BucketCounts counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = std::numeric_limits<uint64_t>::max();
  uint64_t max_ = 0;
};

}  // namespace sluice::stats
