#include "upstream/cluster_info.h"

#include "stats/stats.h"

namespace sluice::upstream {

ClusterStats ClusterStats::create(stats::Store& store, const std::string& cluster_name) {
  const std::string p = "cluster." + cluster_name + ".";
#define SLUICE_MAKE_COUNTER(name) store.counter(p + #name),
#define SLUICE_MAKE_GAUGE(name) store.gauge(p + #name),
  ClusterStats s{ALL_CLUSTER_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE)
                     store.histogram(p + "upstream_rq_time"),
                 store.histogram(p + "upstream_cx_length_ms"), {}};
  s.upstream_cx_bytes = {&s.upstream_cx_rx_bytes_total, &s.upstream_cx_tx_bytes_total,
                         &s.upstream_cx_rx_bytes_buffered, &s.upstream_cx_tx_bytes_buffered};
  return s;
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

ClusterInfo::ClusterInfo(std::string name, stats::Store& store)
    : name_(std::move(name)), store_(store), stats_(ClusterStats::create(store, name_)) {
  setCircuitBreakers(CircuitBreakerThresholds{}, ResourcePriority::Default);
  setCircuitBreakers(CircuitBreakerThresholds{}, ResourcePriority::High);
}

void ClusterInfo::setCircuitBreakers(const CircuitBreakerThresholds& thresholds,
                                     ResourcePriority priority) {
  const char* level = priority == ResourcePriority::High ? "high." : "default.";
  resource_managers_[static_cast<size_t>(priority)] = std::make_unique<ResourceManager>(
      thresholds, store_, "cluster." + name_ + ".circuit_breakers." + level);
}

stats::Counter& ClusterInfo::responseCodeCounter(uint32_t code) const {
  if (code >= code_counters_.size()) code = 0;
  stats::Counter* c = code_counters_[code].load(std::memory_order_acquire);
  if (c) return *c;
  std::lock_guard lock(code_counters_mutex_);
  c = &store_.counter("cluster." + name_ + ".upstream_rq_" + std::to_string(code));
  code_counters_[code].store(c, std::memory_order_release);
  return *c;
}

}  // namespace sluice::upstream
