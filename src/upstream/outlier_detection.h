#pragma once

// Outlier detection (passive health checking), as Envoy's cluster.outlier_detection: workers
// report each request's result for its host into that host's monitor (atomics, no lock);
// the detector runs on the main thread, ejects hosts (Host::FailedOutlierCheck) and brings
// them back after their ejection time. A streak of consecutive errors is posted to the main
// thread as it happens; success rate and failure percentage are evaluated on the interval.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>

#include "event/dispatcher.h"
#include "upstream/host.h"

namespace sluice::stats {
class Store;
class Counter;
class Gauge;
}  // namespace sluice::stats

namespace sluice::upstream {

// Envoy's defaults (envoy.config.cluster.v3.OutlierDetection).
struct OutlierDetectionConfig {
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds base_ejection_time{30000};
  std::chrono::milliseconds max_ejection_time{300000};
  uint32_t max_ejection_percent{10};
  bool always_eject_one_host{false};
  uint32_t consecutive_5xx{5};
  uint32_t enforcing_consecutive_5xx{100};
  uint32_t consecutive_gateway_failure{5};
  uint32_t enforcing_consecutive_gateway_failure{0};
  bool split_external_local_origin_errors{false};
  uint32_t consecutive_local_origin_failure{5};
  uint32_t enforcing_consecutive_local_origin_failure{100};
  uint32_t enforcing_success_rate{100};
  uint32_t enforcing_local_origin_success_rate{100};
  uint32_t success_rate_minimum_hosts{5};
  uint32_t success_rate_request_volume{100};
  uint32_t success_rate_stdev_factor{1900};  // thousandths
  uint32_t failure_percentage_threshold{85};
  uint32_t enforcing_failure_percentage{0};
  uint32_t enforcing_failure_percentage_local_origin{0};
  uint32_t failure_percentage_minimum_hosts{5};
  uint32_t failure_percentage_request_volume{50};
  bool successful_active_health_check_uneject_host{true};
};

#define ALL_OUTLIER_DETECTION_STATS(COUNTER, GAUGE)            \
  GAUGE(ejections_active)                                      \
  COUNTER(ejections_overflow)                                  \
  COUNTER(ejections_enforced_total)                            \
  COUNTER(ejections_enforced_consecutive_5xx)                  \
  COUNTER(ejections_detected_consecutive_5xx)                  \
  COUNTER(ejections_enforced_success_rate)                     \
  COUNTER(ejections_detected_success_rate)                     \
  COUNTER(ejections_enforced_consecutive_gateway_failure)      \
  COUNTER(ejections_detected_consecutive_gateway_failure)      \
  COUNTER(ejections_enforced_consecutive_local_origin_failure) \
  COUNTER(ejections_detected_consecutive_local_origin_failure) \
  COUNTER(ejections_enforced_local_origin_success_rate)        \
  COUNTER(ejections_detected_local_origin_success_rate)        \
  COUNTER(ejections_enforced_failure_percentage)               \
  COUNTER(ejections_detected_failure_percentage)               \
  COUNTER(ejections_enforced_failure_percentage_local_origin)  \
  COUNTER(ejections_detected_failure_percentage_local_origin)

struct OutlierDetectionStats {
#define SLUICE_DECLARE_COUNTER(name) stats::Counter& name;
#define SLUICE_DECLARE_GAUGE(name) stats::Gauge& name;
  ALL_OUTLIER_DETECTION_STATS(SLUICE_DECLARE_COUNTER, SLUICE_DECLARE_GAUGE)
#undef SLUICE_DECLARE_COUNTER
#undef SLUICE_DECLARE_GAUGE
  // cluster.<name>.outlier_detection.*
  static OutlierDetectionStats create(stats::Store& store, const std::string& cluster_name);
};

enum class EjectionType {
  Consecutive5xx,
  ConsecutiveGatewayFailure,
  ConsecutiveLocalOriginFailure,
  SuccessRate,
  LocalOriginSuccessRate,
  FailurePercentage,
  LocalOriginFailurePercentage,
};

// A request that failed (or succeeded in connecting) before any HTTP response.
enum class LocalOriginResult { ConnectFailed, ConnectSuccess, Timeout, Reset };

class OutlierDetector;

// One host's counters. Written by any worker, read and reset by the main thread.
class DetectorHostMonitor {
 public:
  DetectorHostMonitor(std::weak_ptr<OutlierDetector> detector,
                      std::shared_ptr<const OutlierDetectionConfig> config, event::Dispatcher& main,
                      std::weak_ptr<Host> host)
      : detector_(std::move(detector)), config_(std::move(config)), main_(main),
        host_(std::move(host)) {}

  // An HTTP response from the host.
  void putHttpResponseCode(uint32_t code);
  // A result of local origin. Without split_external_local_origin_errors it counts as the
  // HTTP code Envoy maps it to (503 for connect failure and reset, 504 for timeout).
  void putResult(LocalOriginResult result);

 private:
  friend class OutlierDetector;
  void streak(std::atomic<uint32_t>& counter, uint32_t threshold, EjectionType type);

  const std::weak_ptr<OutlierDetector> detector_;
  const std::shared_ptr<const OutlierDetectionConfig> config_;  // the host may outlive the detector
  event::Dispatcher& main_;
  // Weak: the host owns this monitor. A verdict posts the host itself (a strong reference),
  // so that the main thread can never take another host at a reused address for it.
  const std::weak_ptr<Host> host_;
  std::atomic<uint32_t> consecutive_5xx_{0};
  std::atomic<uint32_t> consecutive_gateway_{0};
  std::atomic<uint32_t> consecutive_local_{0};
  // This interval's volume: external (HTTP) and local origin.
  std::atomic<uint64_t> ext_total_{0};
  std::atomic<uint64_t> ext_failed_{0};
  std::atomic<uint64_t> local_total_{0};
  std::atomic<uint64_t> local_failed_{0};
};

// The main thread's side: owns the monitors' verdicts and the ejection state.
class OutlierDetector : public std::enable_shared_from_this<OutlierDetector> {
 public:
  using ChangeCb = std::function<void()>;  // a host was ejected or brought back
  using RandomFn = std::function<uint64_t()>;

  static std::shared_ptr<OutlierDetector> create(const OutlierDetectionConfig& config,
                                                 event::Dispatcher& main, stats::Store& store,
                                                 const std::string& cluster_name,
                                                 ChangeCb on_change, RandomFn random = nullptr);
  ~OutlierDetector();

  // Gives new hosts a monitor and forgets the ones that left. Main thread; call before the
  // set is published.
  void setHosts(const PrioritySet& set);
  // An active health check passed: an ejected host comes back
  // (successful_active_health_check_uneject_host).
  void onActiveHealthCheckSuccess(const Host& host);

  const OutlierDetectionStats& stats() const { return stats_; }
  const OutlierDetectionConfig& config() const { return *config_; }
  // Ejections of this host so far that still weigh on its ejection time (tests).
  uint32_t ejectionMultiplier(const Host& host) const;

  // Main thread; public for the monitors' posts.
  void onConsecutiveErrors(const HostSharedPtr& host, EjectionType type);

 private:
  OutlierDetector(const OutlierDetectionConfig& config, event::Dispatcher& main,
                  stats::Store& store, const std::string& cluster_name, ChangeCb on_change,
                  RandomFn random);
  struct HostState {
    HostSharedPtr host;
    std::shared_ptr<DetectorHostMonitor> monitor;
    bool ejected{false};
    uint32_t multiplier{0};  // Envoy's ejection time backoff
    event::MonotonicTime ejected_at{};
  };
  void onIntervalTimer();
  void eject(HostState& s, EjectionType type);
  void uneject(HostState& s);
  bool enforced(EjectionType type);
  // ejections_detected_* (or, with `enforced`, ejections_enforced_*) of `type`.
  void countEjection(EjectionType type, bool enforced);
  // Success rate and failure percentage over (total, failed) pairs of this interval.
  void evaluateRates(
      const std::vector<std::pair<HostState*, std::pair<uint64_t, uint64_t>>>& volumes, bool local);

  const std::shared_ptr<const OutlierDetectionConfig> config_;
  event::Dispatcher& main_;
  OutlierDetectionStats stats_;
  ChangeCb on_change_;
  RandomFn random_;
  event::TimerPtr interval_timer_;
  std::unordered_map<const Host*, HostState> hosts_;
};
using OutlierDetectorSharedPtr = std::shared_ptr<OutlierDetector>;

}  // namespace sluice::upstream
