#include "stats/stats.h"

namespace sluice::stats {

namespace {
template <class T, class Map>
T& findOrCreate(Map& map, std::string_view name) {
  auto it = map.find(name);
  if (it == map.end()) {
    it = map.emplace(std::string(name), std::make_unique<T>(std::string(name))).first;
  }
  return *it->second;
}
}  // namespace

Counter& Store::counter(std::string_view name) {
  std::lock_guard lock(mutex_);
  return findOrCreate<Counter>(counters_, name);
}

Gauge& Store::gauge(std::string_view name) {
  std::lock_guard lock(mutex_);
  return findOrCreate<Gauge>(gauges_, name);
}

void Store::forEachCounter(const std::function<void(const Counter&)>& fn) const {
  std::lock_guard lock(mutex_);
  for (const auto& [_, c] : counters_) fn(*c);
}

void Store::forEachGauge(const std::function<void(const Gauge&)>& fn) const {
  std::lock_guard lock(mutex_);
  for (const auto& [_, g] : gauges_) fn(*g);
}

}  // namespace sluice::stats
