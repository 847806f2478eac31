#include "upstream/outlier_detection.h"

#include <cmath>
#include <random>

#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::upstream {

OutlierDetectionStats OutlierDetectionStats::create(stats::Store& store,
                                                    const std::string& cluster_name) {
  const std::string p = "cluster." + cluster_name + ".outlier_detection.";
#define SLUICE_MAKE_COUNTER(name) store.counter(p + #name),
#define SLUICE_MAKE_GAUGE(name) store.gauge(p + #name),
  return OutlierDetectionStats{ALL_OUTLIER_DETECTION_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE)};
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

// ---- DetectorHostMonitor (any worker)

void DetectorHostMonitor::streak(std::atomic<uint32_t>& counter, uint32_t threshold,
                                 EjectionType type) {
  // Only the request that reaches the threshold posts; the main thread resets the counter.
  if (counter.fetch_add(1, std::memory_order_relaxed) + 1 != threshold) return;
  HostSharedPtr host = host_.lock();
  if (!host) return;  // going away
  main_.post([weak = detector_, host = std::move(host), type] {
    if (auto d = weak.lock()) d->onConsecutiveErrors(host, type);
  });
}

void DetectorHostMonitor::putHttpResponseCode(uint32_t code) {
  ext_total_.fetch_add(1, std::memory_order_relaxed);
  if (code < 500) {
    consecutive_5xx_.store(0, std::memory_order_relaxed);
    consecutive_gateway_.store(0, std::memory_order_relaxed);
    return;
  }
  ext_failed_.fetch_add(1, std::memory_order_relaxed);
  if (code == 502 || code == 503 || code == 504) {
    streak(consecutive_gateway_, config_->consecutive_gateway_failure,
           EjectionType::ConsecutiveGatewayFailure);
  } else {
    consecutive_gateway_.store(0, std::memory_order_relaxed);
  }
  streak(consecutive_5xx_, config_->consecutive_5xx, EjectionType::Consecutive5xx);
}

void DetectorHostMonitor::putResult(LocalOriginResult result) {
  if (!config_->split_external_local_origin_errors) {
    switch (result) {
      case LocalOriginResult::ConnectSuccess:
        return;  // the response will tell
      case LocalOriginResult::Timeout:
        putHttpResponseCode(504);
        return;
      case LocalOriginResult::ConnectFailed:
      case LocalOriginResult::Reset:
        putHttpResponseCode(503);
        return;
    }
  }
  local_total_.fetch_add(1, std::memory_order_relaxed);
  if (result == LocalOriginResult::ConnectSuccess) {
    consecutive_local_.store(0, std::memory_order_relaxed);
    return;
  }
  local_failed_.fetch_add(1, std::memory_order_relaxed);
  streak(consecutive_local_, config_->consecutive_local_origin_failure,
         EjectionType::ConsecutiveLocalOriginFailure);
}

// ---- OutlierDetector (main thread)

std::shared_ptr<OutlierDetector> OutlierDetector::create(const OutlierDetectionConfig& config,
                                                         event::Dispatcher& main,
                                                         stats::Store& store,
                                                         const std::string& cluster_name,
                                                         ChangeCb on_change, RandomFn random) {
  std::shared_ptr<OutlierDetector> d(new OutlierDetector(config, main, store, cluster_name,
                                                         std::move(on_change), std::move(random)));
  d->interval_timer_ = main.createTimer([raw = d.get()] { raw->onIntervalTimer(); });
  d->interval_timer_->enableTimer(config.interval);
  return d;
}

OutlierDetector::OutlierDetector(const OutlierDetectionConfig& config, event::Dispatcher& main,
                                 stats::Store& store, const std::string& cluster_name,
                                 ChangeCb on_change, RandomFn random)
    : config_(std::make_shared<const OutlierDetectionConfig>(config)),
      main_(main),
      stats_(OutlierDetectionStats::create(store, cluster_name)),
      on_change_(std::move(on_change)),
      random_(std::move(random)) {
  if (!random_) {
    random_ = [gen = std::make_shared<std::mt19937_64>(std::random_device{}())] {
      return (*gen)();
    };
  }
}

OutlierDetector::~OutlierDetector() {
  for (auto& [_, s] : hosts_) {
    if (s.ejected) stats_.ejections_active.dec();
  }
}

void OutlierDetector::setHosts(const PrioritySet& set) {
  std::unordered_map<const Host*, HostState> next;
  for (const auto& p : set.priorities) {
    for (const auto& h : p.hosts) {
      auto it = hosts_.find(h.get());
      if (it != hosts_.end()) {
        next.emplace(h.get(), std::move(it->second));
        hosts_.erase(it);
        continue;
      }
      HostState s;
      s.host = h;
      s.monitor = std::make_shared<DetectorHostMonitor>(weak_from_this(), config_, main_, h);
      h->setOutlierDetector(s.monitor);
      next.emplace(h.get(), std::move(s));
    }
  }
  for (auto& [_, s] : hosts_) {
    if (s.ejected) stats_.ejections_active.dec();  // a host that left is no longer ejected here
  }
  hosts_ = std::move(next);
}

uint32_t OutlierDetector::ejectionMultiplier(const Host& host) const {
  auto it = hosts_.find(&host);
  return it == hosts_.end() ? 0 : it->second.multiplier;
}

bool OutlierDetector::enforced(EjectionType type) {
  uint32_t pct = 0;
  switch (type) {
    case EjectionType::Consecutive5xx:
      pct = config_->enforcing_consecutive_5xx;
      break;
    case EjectionType::ConsecutiveGatewayFailure:
      pct = config_->enforcing_consecutive_gateway_failure;
      break;
    case EjectionType::ConsecutiveLocalOriginFailure:
      pct = config_->enforcing_consecutive_local_origin_failure;
      break;
    case EjectionType::SuccessRate:
      pct = config_->enforcing_success_rate;
      break;
    case EjectionType::LocalOriginSuccessRate:
      pct = config_->enforcing_local_origin_success_rate;
      break;
    case EjectionType::FailurePercentage:
      pct = config_->enforcing_failure_percentage;
      break;
    case EjectionType::LocalOriginFailurePercentage:
      pct = config_->enforcing_failure_percentage_local_origin;
      break;
  }
  return pct >= 100 || (pct > 0 && random_() % 100 < pct);
}

void OutlierDetector::eject(HostState& s, EjectionType type) {
  if (s.ejected) return;
  // As Envoy: an outlier is counted as detected whether or not it is then ejected (overflow
  // or enforcement may spare it).
  countEjection(type, false);
  const uint64_t active = stats_.ejections_active.value();
  const double percent =
      100.0 * static_cast<double>(active + 1) / static_cast<double>(hosts_.size());
  if (percent > config_->max_ejection_percent && !(config_->always_eject_one_host && active == 0)) {
    stats_.ejections_overflow.inc();
    return;
  }
  if (!enforced(type)) return;
  countEjection(type, true);
  stats_.ejections_enforced_total.inc();
  stats_.ejections_active.inc();
  s.ejected = true;
  s.ejected_at = main_.timeSource().monotonicTime();
  // Each ejection in a row lengthens the next, until base x multiplier reaches the maximum.
  if (config_->base_ejection_time * s.multiplier < config_->max_ejection_time) ++s.multiplier;
  s.host->setHealthFlag(Host::FailedOutlierCheck);
  SLUICE_LOG(debug, upstream, "outlier detection: ejected {} of cluster '{}'",
             s.host->address()->asString(), s.host->clusterName());
  if (on_change_) on_change_();
}

void OutlierDetector::countEjection(EjectionType type, bool enforced) {
  switch (type) {
#define SLUICE_EJECTION_STATS(T, name)            \
  case EjectionType::T:                           \
    if (enforced) {                               \
      stats_.ejections_enforced_##name.inc();     \
    } else {                                      \
      stats_.ejections_detected_##name.inc();     \
    }                                             \
    break;
    SLUICE_EJECTION_STATS(Consecutive5xx, consecutive_5xx)
    SLUICE_EJECTION_STATS(ConsecutiveGatewayFailure, consecutive_gateway_failure)
    SLUICE_EJECTION_STATS(ConsecutiveLocalOriginFailure, consecutive_local_origin_failure)
    SLUICE_EJECTION_STATS(SuccessRate, success_rate)
    SLUICE_EJECTION_STATS(LocalOriginSuccessRate, local_origin_success_rate)
    SLUICE_EJECTION_STATS(FailurePercentage, failure_percentage)
    SLUICE_EJECTION_STATS(LocalOriginFailurePercentage, failure_percentage_local_origin)
#undef SLUICE_EJECTION_STATS
  }
}

void OutlierDetector::uneject(HostState& s) {
  s.ejected = false;
  stats_.ejections_active.dec();
  // A host starts over: the streaks that led to its ejection are history.
  s.monitor->consecutive_5xx_.store(0, std::memory_order_relaxed);
  s.monitor->consecutive_gateway_.store(0, std::memory_order_relaxed);
  s.monitor->consecutive_local_.store(0, std::memory_order_relaxed);
  s.host->clearHealthFlag(Host::FailedOutlierCheck);
  SLUICE_LOG(debug, upstream, "outlier detection: {} of cluster '{}' back in service",
             s.host->address()->asString(), s.host->clusterName());
  if (on_change_) on_change_();
}

void OutlierDetector::onConsecutiveErrors(const HostSharedPtr& host, EjectionType type) {
  auto it = hosts_.find(host.get());
  if (it == hosts_.end() || it->second.host != host) return;  // the host left meanwhile
  HostState& s = it->second;
  auto& counter = type == EjectionType::Consecutive5xx ? s.monitor->consecutive_5xx_
                  : type == EjectionType::ConsecutiveGatewayFailure
                      ? s.monitor->consecutive_gateway_
                      : s.monitor->consecutive_local_;
  // Only the streak that fired starts over (as Envoy): a gateway-failure verdict leaves the
  // 5xx streak running, and the other way round.
  counter.store(0, std::memory_order_relaxed);
  eject(s, type);
}

void OutlierDetector::onActiveHealthCheckSuccess(const Host& host) {
  if (!config_->successful_active_health_check_uneject_host) return;
  auto it = hosts_.find(&host);
  if (it != hosts_.end() && it->second.ejected) uneject(it->second);
}

void OutlierDetector::evaluateRates(
    const std::vector<std::pair<HostState*, std::pair<uint64_t, uint64_t>>>& volumes, bool local) {
  const auto& c = *config_;
  // Success rate: hosts below mean - stdev_factor x stdev, among hosts with enough requests.
  std::vector<std::pair<HostState*, double>> rates;
  for (const auto& [s, v] : volumes) {
    if (v.first >= c.success_rate_request_volume && v.first > 0) {
      rates.emplace_back(
          s, 100.0 * static_cast<double>(v.first - v.second) / static_cast<double>(v.first));
    }
  }
  if (!rates.empty() && rates.size() >= c.success_rate_minimum_hosts) {
    double mean = 0;
    for (const auto& r : rates) mean += r.second;
    mean /= static_cast<double>(rates.size());
    double variance = 0;
    for (const auto& r : rates) variance += (r.second - mean) * (r.second - mean);
    variance /= static_cast<double>(rates.size());
    const double threshold = mean - (c.success_rate_stdev_factor / 1000.0) * std::sqrt(variance);
    for (const auto& [s, rate] : rates) {
      if (rate < threshold) {
        eject(*s, local ? EjectionType::LocalOriginSuccessRate : EjectionType::SuccessRate);
      }
    }
  }
  // Failure percentage: hosts at or above the threshold.
  std::vector<std::pair<HostState*, double>> failures;
  for (const auto& [s, v] : volumes) {
    if (v.first >= c.failure_percentage_request_volume && v.first > 0) {
      failures.emplace_back(s,
                            100.0 * static_cast<double>(v.second) / static_cast<double>(v.first));
    }
  }
  if (!failures.empty() && failures.size() >= c.failure_percentage_minimum_hosts) {
    for (const auto& [s, pct] : failures) {
      if (pct >= c.failure_percentage_threshold) {
        eject(*s,
              local ? EjectionType::LocalOriginFailurePercentage : EjectionType::FailurePercentage);
      }
    }
  }
}

void OutlierDetector::onIntervalTimer() {
  const auto now = main_.timeSource().monotonicTime();
  const auto& c = *config_;
  // Ejections that have served their time end; a host in service earns one step of its
  // multiplier back per interval (Envoy's code does so, whatever its docs suggest).
  for (auto& [_, s] : hosts_) {
    if (s.ejected) {
      const auto served = std::min(c.base_ejection_time * s.multiplier, c.max_ejection_time);
      if (now - s.ejected_at >= served) uneject(s);
    } else if (s.multiplier > 0) {
      --s.multiplier;
    }
  }
  std::vector<std::pair<HostState*, std::pair<uint64_t, uint64_t>>> ext, local;
  for (auto& [_, s] : hosts_) {
    auto& m = *s.monitor;
    const std::pair<uint64_t, uint64_t> e{m.ext_total_.exchange(0), m.ext_failed_.exchange(0)};
    const std::pair<uint64_t, uint64_t> l{m.local_total_.exchange(0), m.local_failed_.exchange(0)};
    // A host already ejected takes no part (as Envoy): neither judged again nor counted in
    // the others' mean.
    if (s.ejected) continue;
    ext.push_back({&s, e});
    local.push_back({&s, l});
  }
  evaluateRates(ext, false);
  if (c.split_external_local_origin_errors) evaluateRates(local, true);
  interval_timer_->enableTimer(c.interval);
}

}  // namespace sluice::upstream
