#pragma once

// envoy.filters.http.local_ratelimit (envoy.extensions.filters.http.local_ratelimit.v3.
// LocalRateLimit): a token bucket per config, shared by every worker (atomic tokens, refilled
// by time: tokens_per_fill every fill_interval, up to max_tokens; it starts full). For the
// enabled fraction of requests (filter_enabled) a token is taken; without one, the enforced
// fraction (filter_enforced) gets a local reply (`status`, 429 by default, with
// x-envoy-ratelimited and response_headers_to_add, flag RL) and the rest go on with
// request_headers_to_add_when_not_enforced. A route or virtual host may have its own config
// (and bucket) through typed_per_filter_config.
//
// Stats (Envoy's): <stat_prefix>.http_local_rate_limit.{enabled, enforced, rate_limited, ok}.

#include "filters/http/factory.h"

namespace sluice::filters {

const HttpFilterFactory& localRateLimitFilterFactory();

}  // namespace sluice::filters
