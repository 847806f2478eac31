#pragma once

// Named counters, gauges and histograms with Envoy's stat names.
//
// A Store hands out references that stay valid for its lifetime; creating (or looking up) a
// stat by name takes a lock, so code keeps the reference and never looks up by name on the
// request path. Using a stat takes no lock:
//
// - Counters are per thread and summed when read. A thread that updates stats calls
//   ThreadSlot::registerCurrentThread() once (the main thread and each worker at start); it
//   then owns one slot, and Counter::inc() is a relaxed load and store of a uint64 that only
//   this thread writes (no lock prefix, no cache line shared with another thread). Threads
//   that never registered share slot 0, where inc() is an atomic add.
// - Histograms record the same way: per-slot bucket counts, sum, min and max.
// - Gauges are one shared atomic each: they are set, raised and lowered from any thread and
//   read as an absolute value, which per-thread parts cannot give for set(). Gauges change far
//   less often than counters (connection open/close, not every byte).
//
// Readers (admin, stats flush) load each cell atomically: a read racing increments may miss
// the ones in flight, and never sees a torn value.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "stats/histogram.h"

namespace sluice::stats {

// The calling thread's slot in every Store's per-thread arrays.
class ThreadSlot {
 public:
  // Slot 0 is shared by the threads that did not register (atomic adds there).
  static constexpr uint32_t kSharedSlot = 0;
  static constexpr uint32_t kMaxSlots = 128;

  // Gives the calling thread a slot of its own; a no-op if it has one. Returns false if every
  // slot is taken (the thread then stays on the shared slot, which is correct but slower).
  // The slot is given back when the thread exits; values recorded in it are kept, and a
  // later thread that gets the slot adds to them.
  static bool registerCurrentThread();
  // Gives the slot back before the thread exits.
  static void unregisterCurrentThread();
  // The calling thread's slot: kSharedSlot unless it registered.
  static uint32_t current() { return current_; }
  // One past the highest slot ever handed out: readers sum the slots below it.
  static uint32_t highWater() { return high_water_.load(std::memory_order_acquire); }

 private:
  struct Holder;  // thread_local; gives the slot back at thread exit
  static Holder& holder();
  static void release(uint32_t slot);

  static inline thread_local uint32_t current_ = kSharedSlot;
  static inline std::atomic<uint32_t> high_water_{1};
};

namespace detail {

// Per-slot arrays of uint64 cells, one cell per counter index, in chunks that never move.
// A slot's chunk is allocated on its first use by that slot and lives as long as the Store.
class CounterCells {
 public:
  static constexpr uint32_t kChunkSize = 4096;
  static constexpr uint32_t kMaxChunks = 1024;
  static constexpr uint32_t kMaxCounters = kChunkSize * kMaxChunks;

  CounterCells() = default;
  ~CounterCells();
  CounterCells(const CounterCells&) = delete;
  CounterCells& operator=(const CounterCells&) = delete;

  // The cell of counter `index` in `slot`, made on first use.
  std::atomic<uint64_t>& cell(uint32_t slot, uint32_t index) {
    if (Table* table = tables_[slot].load(std::memory_order_acquire)) {
      if (Chunk* chunk = table->chunks[index / kChunkSize].load(std::memory_order_acquire)) {
        return chunk->cells[index % kChunkSize];
      }
    }
    return makeCell(slot, index);
  }
  // The sum of counter `index` over all slots.
  uint64_t sum(uint32_t index) const;

 private:
  // Cache-line aligned so that no two slots' cells share a line.
  struct alignas(64) Chunk {
    std::atomic<uint64_t> cells[kChunkSize]{};
  };
  struct alignas(64) Table {
    std::atomic<Chunk*> chunks[kMaxChunks]{};
  };
  std::atomic<uint64_t>& makeCell(uint32_t slot, uint32_t index);

  std::atomic<Table*> tables_[ThreadSlot::kMaxSlots]{};
};

}  // namespace detail

// A monotonically increasing count (Envoy's Counter). inc() never takes a lock.
class Counter {
 public:
  void inc(uint64_t n = 1) {
    const uint32_t slot = ThreadSlot::current();
    std::atomic<uint64_t>& cell = cells_.cell(slot, index_);
    if (slot == ThreadSlot::kSharedSlot) {
      cell.fetch_add(n, std::memory_order_relaxed);
    } else {
      // Only this thread writes this cell: load and store, no read-modify-write.
      cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
  }
  // The sum over all threads since the last reset().
  uint64_t value() const;
  // Makes value() read zero from now on (the per-thread cells are not written: the reset
  // remembers the total at this moment instead, so no increment is ever lost).
  void reset();
  const std::string& name() const { return name_; }

 private:
  friend class Store;
  Counter(std::string name, detail::CounterCells& cells, uint32_t index)
      : name_(std::move(name)), cells_(cells), index_(index) {}

  const std::string name_;
  detail::CounterCells& cells_;
  const uint32_t index_;
  std::atomic<uint64_t> baseline_{0};
};

// A value that goes up and down (Envoy's Gauge): one shared atomic, see the file comment.
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

// A distribution of values in Envoy's default buckets (Envoy's Histogram). recordValue()
// never takes a lock; cumulativeStatistics() sums every thread's buckets.
class Histogram {
 public:
  using Unit = stats::Unit;
  ~Histogram();

  void recordValue(uint64_t value);
  // Everything recorded since the histogram was made.
  HistogramStatistics cumulativeStatistics() const;
  // Whether any value was ever recorded.
  bool used() const { return cumulativeStatistics().sampleCount() != 0; }
  const std::string& name() const { return name_; }
  Unit unit() const { return unit_; }

 private:
  friend class Store;
  Histogram(std::string name, Unit unit) : name_(std::move(name)), unit_(unit) {}

  struct alignas(64) Cells {
    std::atomic<uint64_t> buckets[kBucketCount + 1]{};
    std::atomic<uint64_t> sum{0};
    std::atomic<uint64_t> min{UINT64_MAX};
    std::atomic<uint64_t> max{0};
  };
  Cells& makeCells(uint32_t slot);

  const std::string name_;
  const Unit unit_;
  std::atomic<Cells*> slots_[ThreadSlot::kMaxSlots]{};
};

class Store {
 public:
  Store() = default;
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Returns the stat with this name, creating it empty. A histogram keeps the unit it was
  // created with.
  Counter& counter(std::string_view name);
  Gauge& gauge(std::string_view name);
  Histogram& histogram(std::string_view name, Unit unit = Unit::Milliseconds);

  // The stat with this name, or nullptr; never creates one.
  const Counter* findCounter(std::string_view name) const;
  const Gauge* findGauge(std::string_view name) const;
  const Histogram* findHistogram(std::string_view name) const;

  // Visits every stat in name order. The callback runs without the Store's lock (it may
  // create stats; those made during the visit may or may not be visited).
  void forEachCounter(const std::function<void(const Counter&)>& fn) const;
  void forEachGauge(const std::function<void(const Gauge&)>& fn) const;
  void forEachHistogram(const std::function<void(const Histogram&)>& fn) const;

  // Resets every counter to zero (admin's /reset_counters). Gauges and histograms are kept,
  // as in Envoy.
  void resetCounters();

 private:
  mutable std::mutex mutex_;
  detail::CounterCells counter_cells_;
  uint32_t next_counter_index_ = 0;
  std::map<std::string, std::unique_ptr<Counter>, std::less<>> counters_;
  std::map<std::string, std::unique_ptr<Gauge>, std::less<>> gauges_;
  std::map<std::string, std::unique_ptr<Histogram>, std::less<>> histograms_;
};

}  // namespace sluice::stats
