#pragma once

// Named counters and gauges with Envoy's stat names. A Store hands out references that stay
// valid for its lifetime; creating a stat takes a lock, using one is a relaxed atomic.
// (The per-worker, lock-free request-path store and histograms come with the proxy.)

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace sluice::stats {

class Counter {
 public:
  explicit Counter(std::string name) : name_(std::move(name)) {}
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }
  void reset() { value_.store(0, std::memory_order_relaxed); }
  const std::string& name() const { return name_; }

 private:
  const std::string name_;
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  explicit Gauge(std::string name) : name_(std::move(name)) {}
  void set(uint64_t v) { value_.store(v, std::memory_order_relaxed); }
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void dec(uint64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }
  const std::string& name() const { return name_; }

 private:
  const std::string name_;
  std::atomic<uint64_t> value_{0};
};

class Store {
 public:
  // Returns the stat with this name, creating it at zero.
  Counter& counter(std::string_view name);
  Gauge& gauge(std::string_view name);
  // Visits every stat in name order.
  void forEachCounter(const std::function<void(const Counter&)>& fn) const;
  void forEachGauge(const std::function<void(const Gauge&)>& fn) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Counter>, std::less<>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>, std::less<>> gauges_;
};

}  // namespace sluice::stats
