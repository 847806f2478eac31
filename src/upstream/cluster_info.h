#pragma once

// What a cluster is, as configured: immutable, shared by all workers. Its stats are Envoy's
// cluster.<name>.* names.

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "http/http1/codec_impl.h"
#include "http/http2/codec_impl.h"
#include "network/raw_transport_socket.h"
#include "upstream/resource_manager.h"
#include "upstream/lb_config.h"

namespace sluice::stats {
class Store;
class Counter;
class Gauge;
class Histogram;
}  // namespace sluice::stats

namespace sluice::upstream {

#define ALL_CLUSTER_STATS(COUNTER, GAUGE)   \
  COUNTER(upstream_cx_total)                \
  GAUGE(upstream_cx_active)                 \
  COUNTER(upstream_cx_http1_total)          \
  COUNTER(upstream_cx_http2_total)          \
  COUNTER(upstream_cx_connect_fail)         \
  COUNTER(upstream_cx_connect_timeout)      \
  COUNTER(upstream_cx_connect_attempts_exceeded) \
  COUNTER(upstream_cx_destroy)              \
  COUNTER(upstream_cx_destroy_local)        \
  COUNTER(upstream_cx_destroy_remote)       \
  COUNTER(upstream_cx_destroy_with_active_rq) \
  COUNTER(upstream_cx_destroy_local_with_active_rq) \
  COUNTER(upstream_cx_destroy_remote_with_active_rq) \
  COUNTER(upstream_cx_rx_bytes_total)       \
  GAUGE(upstream_cx_rx_bytes_buffered)      \
  COUNTER(upstream_cx_tx_bytes_total)       \
  GAUGE(upstream_cx_tx_bytes_buffered)      \
  COUNTER(upstream_cx_idle_timeout)         \
  COUNTER(upstream_cx_max_requests)         \
  COUNTER(upstream_cx_none_healthy)         \
  COUNTER(upstream_cx_protocol_error)       \
  COUNTER(upstream_cx_close_notify)         \
  COUNTER(upstream_rq_total)                \
  GAUGE(upstream_rq_active)                 \
  COUNTER(upstream_rq_completed)            \
  COUNTER(upstream_rq_pending_total)        \
  GAUGE(upstream_rq_pending_active)         \
  COUNTER(upstream_rq_pending_failure_eject) \
  COUNTER(upstream_rq_cancelled)            \
  COUNTER(upstream_rq_timeout)              \
  COUNTER(upstream_rq_rx_reset)             \
  COUNTER(upstream_rq_tx_reset)             \
  COUNTER(upstream_rq_retry)                \
  COUNTER(upstream_rq_retry_success)        \
  COUNTER(upstream_rq_retry_overflow)       \
  COUNTER(upstream_rq_retry_limit_exceeded) \
  COUNTER(upstream_rq_retry_backoff_exponential) \
  COUNTER(upstream_rq_per_try_timeout)      \
  COUNTER(upstream_rq_per_try_idle_timeout) \
  COUNTER(upstream_rq_pending_overflow)     \
  COUNTER(upstream_cx_overflow)             \
  COUNTER(upstream_rq_1xx)                  \
  COUNTER(upstream_rq_2xx)                  \
  COUNTER(upstream_rq_3xx)                  \
  COUNTER(upstream_rq_4xx)                  \
  COUNTER(upstream_rq_5xx)                  \
  GAUGE(membership_total)                   \
  GAUGE(membership_healthy)                 \
  GAUGE(membership_degraded)                \
  COUNTER(membership_change)                \
  COUNTER(update_attempt)                   \
  COUNTER(update_success)                   \
  COUNTER(update_failure)                   \
  COUNTER(update_rejected)                  \
  COUNTER(update_empty)                     \
  COUNTER(lb_healthy_panic)

struct ClusterStats {
#define SLUICE_DECLARE_COUNTER(name) stats::Counter& name;
#define SLUICE_DECLARE_GAUGE(name) stats::Gauge& name;
  ALL_CLUSTER_STATS(SLUICE_DECLARE_COUNTER, SLUICE_DECLARE_GAUGE)
#undef SLUICE_DECLARE_COUNTER
#undef SLUICE_DECLARE_GAUGE
  stats::Histogram& upstream_rq_time;  // ms, request sent to response complete
  stats::Histogram& upstream_cx_length_ms;
  // The byte counts above as each upstream connection updates them.
  network::ConnectionStats upstream_cx_bytes;
  static ClusterStats create(stats::Store& store, const std::string& cluster_name);
};

class ClusterInfo {
 public:
  ClusterInfo(std::string name, stats::Store& store);

  const std::string& name() const { return name_; }
  ClusterStats& stats() const { return stats_; }
  stats::Store& store() const { return store_; }
  // cluster.<name>.upstream_rq_<code>, made on first use and then cached (no lock after).
  stats::Counter& responseCodeCounter(uint32_t code) const;
  // The circuit breakers of a routing priority, shared by every worker.
  ResourceManager& resourceManager(ResourcePriority priority = ResourcePriority::Default) const {
    return *resource_managers_[static_cast<size_t>(priority)];
  }
  // At load, before the cluster is shared. A priority not set keeps Envoy's defaults.
  void setCircuitBreakers(const CircuitBreakerThresholds& thresholds,
                          ResourcePriority priority = ResourcePriority::Default);

  std::chrono::milliseconds connect_timeout{5000};
  uint32_t per_connection_buffer_limit_bytes{1024 * 1024};
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};  // an idle upstream connection
  uint32_t max_requests_per_connection{0};                        // 0: unlimited
  http::http1::CodecSettings http1_settings;
  // Set: the cluster speaks HTTP/2 (h2c) to its hosts, through a multiplexed pool.
  std::optional<http::http2::CodecSettings> http2_settings;
  // use_downstream_protocol_config: HTTP/2 (with http2_settings) for a request that came
  // over HTTP/2, HTTP/1.1 for the others; a host has a pool of each kind.
  bool use_downstream_protocol{false};
  // auto_config: each connection offers ALPN h2,http/1.1 and speaks what the host picked
  // (HTTP/1.1 when it picked none); the pool remembers the host's choice (MixedConnPool).
  bool auto_http{false};
  LbConfig lb;
  // The cluster's transport_socket (TLS); null: plain TCP.
  network::TransportSocketFactoryConstSharedPtr transport_socket_factory;
  network::TransportSocketPtr createTransportSocket(
      const network::TransportSocketOptions* options = nullptr) const {
    if (!transport_socket_factory) return std::make_unique<network::RawTransportSocket>();
    return transport_socket_factory->createTransportSocket(options);
  }

 private:
  const std::string name_;
  stats::Store& store_;
  mutable ClusterStats stats_;
  std::array<std::unique_ptr<ResourceManager>, kNumResourcePriorities> resource_managers_;
  mutable std::array<std::atomic<stats::Counter*>, 600> code_counters_{};
  mutable std::mutex code_counters_mutex_;
};
using ClusterInfoConstSharedPtr = std::shared_ptr<const ClusterInfo>;

}  // namespace sluice::upstream
