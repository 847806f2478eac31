#include "upstream/resource_manager.h"

#include <algorithm>
#include <cmath>

#include "stats/stats.h"

namespace sluice::upstream {

void Resource::init(uint64_t max, stats::Gauge* open, stats::Gauge* remaining) {
  max_ = max;
  open_ = open;
  remaining_ = remaining;
  update(count());
}

// The *_open gauge changes only when the count crosses the limit, so a request that does
// not touch the limit does not write the shared gauge (the remaining_* gauges, asked for
// with track_remaining, move with every request).
void Resource::inc() {
  const uint64_t count = count_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (open_ && count == max_) open_->set(1);
  if (remaining_) update(count);
}

void Resource::dec() {
  const uint64_t count = count_.fetch_sub(1, std::memory_order_relaxed) - 1;
  if (open_ && count + 1 == max_) open_->set(0);
  if (remaining_) update(count);
}

void Resource::update(uint64_t count) {
  if (open_) open_->set(count >= max_ ? 1 : 0);
  if (remaining_) remaining_->set(count >= max_ ? 0 : max_ - count);
}

ResourceManager::ResourceManager(const CircuitBreakerThresholds& t, stats::Store& store,
                                 const std::string& p)
    : budget_(t.retry_budget) {
  auto remaining = [&](const char* name) {
    return t.track_remaining ? &store.gauge(p + name) : nullptr;
  };
  connections_.init(t.max_connections, &store.gauge(p + "cx_open"), remaining("remaining_cx"));
  pending_requests_.init(t.max_pending_requests, &store.gauge(p + "rq_pending_open"),
                         remaining("remaining_pending"));
  requests_.init(t.max_requests, &store.gauge(p + "rq_open"), remaining("remaining_rq"));
  // With a budget the retry limit moves with the load; its gauges follow max_retries only
  // without one.
  retries_.init(budget_ ? UINT64_MAX : t.max_retries, &store.gauge(p + "rq_retry_open"),
                budget_ ? nullptr : remaining("remaining_retries"));
}

uint64_t ResourceManager::retryLimit() const {
  if (!budget_) return retries_.max();
  const double load = static_cast<double>(requests_.count() + pending_requests_.count());
  const auto allowed = static_cast<uint64_t>(std::floor(load * budget_->budget_percent / 100.0));
  return std::max<uint64_t>(budget_->min_retry_concurrency, allowed);
}

bool ResourceManager::canRetry() const { return retries_.count() < retryLimit(); }

}  // namespace sluice::upstream
