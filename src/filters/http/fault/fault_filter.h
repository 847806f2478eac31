#pragma once

// envoy.filters.http.fault (envoy.extensions.filters.http.fault.v3.HTTPFault): injects delays,
// aborts (HTTP or gRPC status) and a response body rate limit into a fraction of requests,
// fixed by config or asked for by request headers (x-envoy-fault-*), for requests that match
// `headers` and `downstream_nodes`, up to max_active_faults at a time. A route or virtual host
// may replace the whole config through typed_per_filter_config. A delay is a timer on the
// stream's dispatcher; the stream going away cancels it.
//
// Stats (Envoy's): http.<stat_prefix>.fault.{delays_injected, aborts_injected,
// response_rl_injected, faults_overflow} and the gauge active_faults; with an
// x-envoy-downstream-service-cluster header, also http.<stat_prefix>.fault.<cluster>.
// {delays_injected, aborts_injected} unless disable_downstream_cluster_stats.

#include "filters/http/factory.h"

namespace sluice::filters {

const HttpFilterFactory& faultFilterFactory();

}  // namespace sluice::filters
