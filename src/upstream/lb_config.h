#pragma once

// A cluster's load balancing settings, as configured (lb_policy, its *_lb_config, the
// common_lb_config and the load assignment's policy). Envoy's defaults.

#include <cstdint>

namespace sluice::upstream {

struct LbConfig {
  enum class Policy { RoundRobin, LeastRequest, Random, RingHash, Maglev };
  Policy policy{Policy::RoundRobin};
  // LEAST_REQUEST: hosts sampled per pick (equal weights); the exponent of active requests
  // in the effective weight weight / (active + 1)^bias (unequal weights).
  uint32_t choice_count{2};
  double active_request_bias{1.0};
  // RING_HASH.
  uint64_t minimum_ring_size{1024};
  uint64_t maximum_ring_size{8 * 1024 * 1024};
  // MAGLEV: prime.
  uint64_t maglev_table_size{65537};
  // ClusterLoadAssignment.policy.overprovisioning_factor, in percent.
  uint32_t overprovisioning_factor{140};
  // common_lb_config.healthy_panic_threshold, percent; 0 disables panic.
  double healthy_panic_threshold{50.0};
  // common_lb_config.locality_weighted_lb_config.
  bool locality_weighted{false};
};

}  // namespace sluice::upstream
