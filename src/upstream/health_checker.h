#pragma once

// Active health checking, as Envoy's cluster.health_checks: the main thread checks every host
// of a cluster on its own connections (an HTTP GET, TCP bytes sent and expected back, or a
// gRPC grpc.health.v1.Health/Check over HTTP/2) and
// sets or clears Host::FailedActiveHealthCheck. A host starts failed and passes on its first
// successful check; after that it takes healthy_threshold passes to come back and
// unhealthy_threshold failures to go (an HTTP status outside expected_statuses fails it at
// once).
//
// A cluster may have several health checks (Envoy's health_checks is a list). Each keeps its
// own verdict on each host; a host fails active health checking while any of them fails it
// (HealthVerdicts), so it comes back only once every checker passes it.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "event/dispatcher.h"
#include "http/header_map.h"
#include "http/stream_info.h"
#include "upstream/cluster_info.h"
#include "upstream/host.h"

namespace sluice::upstream {

struct HealthCheckConfig {
  enum class Type { Http, Tcp, Grpc };
  Type type{Type::Http};
  std::chrono::milliseconds timeout{1000};
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds interval_jitter{0};
  uint32_t interval_jitter_percent{0};
  uint32_t unhealthy_threshold{1};
  uint32_t healthy_threshold{1};
  std::chrono::milliseconds no_traffic_interval{60000};
  // Zero: not set, Envoy's defaults apply (unhealthy_interval and healthy_edge_interval:
  // interval; unhealthy_edge_interval: unhealthy_interval).
  std::chrono::milliseconds unhealthy_interval{0};
  std::chrono::milliseconds unhealthy_edge_interval{0};
  std::chrono::milliseconds healthy_edge_interval{0};
  bool reuse_connection{true};
  bool always_log_health_check_failures{false};
  // HTTP
  std::string path;
  std::string host;                                              // empty: the cluster's name
  std::vector<std::pair<uint32_t, uint32_t>> expected_statuses;  // [start, end); empty: 200
  std::vector<std::pair<std::string, std::string>> request_headers_to_add;
  // gRPC: the service asked about (empty: the server as a whole); the :authority (empty:
  // the cluster's name).
  std::string service_name;
  std::string authority;
  // gRPC: initial_metadata, applied to each Check request's headers after the standard ones
  // (the config compiles it, with append actions and value formatters); empty: none.
  std::function<void(http::HeaderMap& headers, const http::StreamInfo& info)> grpc_initial_metadata;
  // TCP: bytes to send, and blocks to find in order in what comes back.
  std::string send;
  std::vector<std::string> receive;
};

#define ALL_HEALTH_CHECKER_STATS(COUNTER, GAUGE) \
  COUNTER(attempt)                               \
  COUNTER(success)                               \
  COUNTER(failure)                               \
  COUNTER(passive_failure)                       \
  COUNTER(network_failure)                       \
  COUNTER(verify_cluster)                        \
  GAUGE(healthy)

struct HealthCheckerStats {
#define SLUICE_DECLARE_COUNTER(name) stats::Counter& name;
#define SLUICE_DECLARE_GAUGE(name) stats::Gauge& name;
  ALL_HEALTH_CHECKER_STATS(SLUICE_DECLARE_COUNTER, SLUICE_DECLARE_GAUGE)
#undef SLUICE_DECLARE_COUNTER
#undef SLUICE_DECLARE_GAUGE
  // cluster.<name>.health_check.*
  static HealthCheckerStats create(stats::Store& store, const std::string& cluster_name);
};

// The verdicts of a cluster's health checkers on each host (main thread). The host's
// FailedActiveHealthCheck flag is set while at least one checker fails it.
class HealthVerdicts {
 public:
  // A checker's verdict on `host` went from `was_failed` to `failed`. Returns whether the
  // host's flag changed.
  bool update(Host& host, bool was_failed, bool failed);

 private:
  std::unordered_map<const Host*, uint32_t> failing_;  // how many checkers fail the host
};

class HealthChecker {
 public:
  // A check of `host` ended; `changed`: its FailedActiveHealthCheck flag changed (with
  // several checkers: the combined flag).
  using ResultCb = std::function<void(const HostSharedPtr& host, bool passed, bool changed)>;
  using RandomFn = std::function<uint64_t()>;

  // `verdicts`: shared by the cluster's checkers when it has several; null: its own.
  HealthChecker(HealthCheckConfig config, ClusterInfoConstSharedPtr cluster,
                event::Dispatcher& main, ResultCb on_result, RandomFn random = nullptr,
                std::shared_ptr<HealthVerdicts> verdicts = nullptr);
  ~HealthChecker();

  // Starts checking new hosts (marked failed until their first check passes) and stops
  // checking hosts that left. Main thread; call before the set is published.
  void setHosts(const PrioritySet& set);
  // `cb` runs once, when every host known so far has had its first check.
  void onFirstRound(std::function<void()> cb);

  const HealthCheckerStats& stats() const { return stats_; }
  const HealthCheckConfig& config() const { return config_; }
  // The wait before the next check (exposed for tests), as Envoy's: by the last check's
  // result (`failed_check`), at the edge interval while that result has not yet changed the
  // host's state but counts toward changing it (`pending`, a threshold not reached yet).
  std::chrono::milliseconds nextInterval(bool failed_check, bool pending);

 private:
  class Session;
  friend class Session;
  // Applies one check's result to its host; returns the wait before the next check.
  std::chrono::milliseconds onCheckDone(Session& session, bool passed, bool network, bool& changed);
  void updateHealthyGauge();

  const HealthCheckConfig config_;
  const ClusterInfoConstSharedPtr cluster_;
  event::Dispatcher& main_;
  HealthCheckerStats stats_;
  ResultCb on_result_;
  RandomFn random_;
  const std::shared_ptr<HealthVerdicts> verdicts_;
  std::unordered_map<const Host*, std::unique_ptr<Session>> sessions_;
  size_t first_round_pending_{0};
  std::function<void()> on_first_round_;
};
using HealthCheckerPtr = std::unique_ptr<HealthChecker>;

}  // namespace sluice::upstream
