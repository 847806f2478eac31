#include "stats/stats.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace sluice::stats {

// ---- ThreadSlot ------------------------------------------------------------------------------

namespace {

struct SlotRegistry {
  std::mutex mutex;
  std::vector<uint32_t> free_slots;  // given back by threads that exited
  uint32_t next = 1;                 // slot 0 is the shared one
};

// Never destroyed: threads may give their slot back during static destruction.
SlotRegistry& registry() {
  static SlotRegistry* r = new SlotRegistry;
  return *r;
}

// a += b for a cell only this thread writes.
inline void ownedAdd(std::atomic<uint64_t>& a, uint64_t b) {
  a.store(a.load(std::memory_order_relaxed) + b, std::memory_order_relaxed);
}

inline void atomicMin(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

inline void atomicMax(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// Publishes a freshly made object in `where`, or returns the one another thread published
// first (only the shared slot can race here; a slot's own thread is alone).
template <class T>
T* publish(std::atomic<T*>& where) {
  T* fresh = new T();
  T* expected = nullptr;
  if (where.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
    return fresh;
  }
  delete fresh;
  return expected;
}

}  // namespace

struct ThreadSlot::Holder {
  uint32_t slot = kSharedSlot;
  ~Holder() {
    if (slot != kSharedSlot) {
      current_ = kSharedSlot;
      release(slot);
    }
  }
};

ThreadSlot::Holder& ThreadSlot::holder() {
  thread_local Holder h;
  return h;
}

bool ThreadSlot::registerCurrentThread() {
  if (current_ != kSharedSlot) return true;
  uint32_t slot = kSharedSlot;
  {
    SlotRegistry& r = registry();
    std::lock_guard lock(r.mutex);
    if (!r.free_slots.empty()) {
      slot = r.free_slots.back();
      r.free_slots.pop_back();
    } else if (r.next < kMaxSlots) {
      slot = r.next++;
      high_water_.store(r.next, std::memory_order_release);
    }
  }
  if (slot == kSharedSlot) return false;
  holder().slot = slot;
  current_ = slot;
  return true;
}

void ThreadSlot::unregisterCurrentThread() {
  const uint32_t slot = current_;
  if (slot == kSharedSlot) return;
  current_ = kSharedSlot;
  holder().slot = kSharedSlot;
  release(slot);
}

void ThreadSlot::release(uint32_t slot) {
  SlotRegistry& r = registry();
  std::lock_guard lock(r.mutex);
  r.free_slots.push_back(slot);
}

// ---- CounterCells ----------------------------------------------------------------------------

namespace detail {

CounterCells::~CounterCells() {
  for (auto& t : tables_) {
    Table* table = t.load(std::memory_order_acquire);
    if (table == nullptr) continue;
    for (auto& c : table->chunks) delete c.load(std::memory_order_acquire);
    delete table;
  }
}

std::atomic<uint64_t>& CounterCells::makeCell(uint32_t slot, uint32_t index) {
  Table* table = tables_[slot].load(std::memory_order_acquire);
  if (table == nullptr) table = publish(tables_[slot]);
  std::atomic<Chunk*>& where = table->chunks[index / kChunkSize];
  Chunk* chunk = where.load(std::memory_order_acquire);
  if (chunk == nullptr) chunk = publish(where);
  return chunk->cells[index % kChunkSize];
}

uint64_t CounterCells::sum(uint32_t index) const {
  const uint32_t slots = ThreadSlot::highWater();
  uint64_t total = 0;
  for (uint32_t s = 0; s < slots; ++s) {
    const Table* table = tables_[s].load(std::memory_order_acquire);
    if (table == nullptr) continue;
    const Chunk* chunk = table->chunks[index / kChunkSize].load(std::memory_order_acquire);
    if (chunk == nullptr) continue;
    total += chunk->cells[index % kChunkSize].load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace detail

// ---- Counter ---------------------------------------------------------------------------------

uint64_t Counter::value() const {
  // The baseline first: a reset() that we see was computed from cell values that our loads
  // below see too (or later ones), so the difference never goes negative.
  const uint64_t base = baseline_.load(std::memory_order_acquire);
  const uint64_t total = cells_.sum(index_);
  return total >= base ? total - base : 0;
}

void Counter::reset() {
  const uint64_t total = cells_.sum(index_);
  uint64_t cur = baseline_.load(std::memory_order_relaxed);
  while (total > cur && !baseline_.compare_exchange_weak(cur, total, std::memory_order_release,
                                                         std::memory_order_relaxed)) {
  }
}

// ---- Histogram -------------------------------------------------------------------------------

Histogram::~Histogram() {
  for (auto& s : slots_) delete s.load(std::memory_order_acquire);
}

Histogram::Cells& Histogram::makeCells(uint32_t slot) {
  return *publish(slots_[slot]);
}

void Histogram::recordValue(uint64_t value) {
  const uint32_t slot = ThreadSlot::current();
  Cells* cells = slots_[slot].load(std::memory_order_acquire);
  if (cells == nullptr) cells = &makeCells(slot);
  std::atomic<uint64_t>& bucket = cells->buckets[bucketIndex(value)];
  if (slot == ThreadSlot::kSharedSlot) {
    bucket.fetch_add(1, std::memory_order_relaxed);
    cells->sum.fetch_add(value, std::memory_order_relaxed);
    atomicMin(cells->min, value);
    atomicMax(cells->max, value);
    return;
  }
  ownedAdd(bucket, 1);
  ownedAdd(cells->sum, value);
  if (value < cells->min.load(std::memory_order_relaxed)) {
    cells->min.store(value, std::memory_order_relaxed);
  }
  if (value > cells->max.load(std::memory_order_relaxed)) {
    cells->max.store(value, std::memory_order_relaxed);
  }
}

HistogramStatistics Histogram::cumulativeStatistics() const {
  BucketCounts counts{};
  uint64_t sum = 0;
  uint64_t min = UINT64_MAX;
  uint64_t max = 0;
  const uint32_t slots = ThreadSlot::highWater();
  for (uint32_t s = 0; s < slots; ++s) {
    const Cells* cells = slots_[s].load(std::memory_order_acquire);
    if (cells == nullptr) continue;
    for (size_t b = 0; b < counts.size(); ++b) {
      counts[b] += cells->buckets[b].load(std::memory_order_relaxed);
    }
    sum += cells->sum.load(std::memory_order_relaxed);
    min = std::min(min, cells->min.load(std::memory_order_relaxed));
    max = std::max(max, cells->max.load(std::memory_order_relaxed));
  }
  return HistogramStatistics(counts, sum, min, max);
}

// ---- Store -----------------------------------------------------------------------------------

Store::~Store() = default;

Counter& Store::counter(std::string_view name) {
  std::lock_guard lock(mutex_);
  auto it = counters_.find(name);
  if (it != counters_.end()) return *it->second;
  if (next_counter_index_ >= detail::CounterCells::kMaxCounters) {
    std::fprintf(stderr, "sluice: more than %u counters in one stats store\n",
                 detail::CounterCells::kMaxCounters);
    std::abort();
  }
  std::unique_ptr<Counter> c(new Counter(std::string(name), counter_cells_, next_counter_index_++));
  return *counters_.emplace(std::string(name), std::move(c)).first->second;
}

Gauge& Store::gauge(std::string_view name) {
  std::lock_guard lock(mutex_);
  auto it = gauges_.find(name);
  if (it == gauges_.end()) {
    it = gauges_.emplace(std::string(name), std::make_unique<Gauge>(std::string(name))).first;
  }
  return *it->second;
}

Histogram& Store::histogram(std::string_view name, Unit unit) {
  std::lock_guard lock(mutex_);
  auto it = histograms_.find(name);
  if (it == histograms_.end()) {
    std::unique_ptr<Histogram> h(new Histogram(std::string(name), unit));
    it = histograms_.emplace(std::string(name), std::move(h)).first;
  }
  return *it->second;
}

namespace {

template <class T, class Map>
const T* findIn(std::mutex& mutex, const Map& map, std::string_view name) {
  std::lock_guard lock(mutex);
  auto it = map.find(name);
  return it == map.end() ? nullptr : it->second.get();
}

// Copies the pointers under the lock, then visits without it (stats are never removed).
template <class T, class Map>
void visit(std::mutex& mutex, const Map& map, const std::function<void(const T&)>& fn) {
  std::vector<const T*> all;
  {
    std::lock_guard lock(mutex);
    all.reserve(map.size());
    for (const auto& [_, stat] : map) all.push_back(stat.get());
  }
  for (const T* stat : all) fn(*stat);
}

}  // namespace

const Counter* Store::findCounter(std::string_view name) const {
  return findIn<Counter>(mutex_, counters_, name);
}

const Gauge* Store::findGauge(std::string_view name) const {
  return findIn<Gauge>(mutex_, gauges_, name);
}

const Histogram* Store::findHistogram(std::string_view name) const {
  return findIn<Histogram>(mutex_, histograms_, name);
}

void Store::forEachCounter(const std::function<void(const Counter&)>& fn) const {
  visit<Counter>(mutex_, counters_, fn);
}

void Store::forEachGauge(const std::function<void(const Gauge&)>& fn) const {
  visit<Gauge>(mutex_, gauges_, fn);
}

void Store::forEachHistogram(const std::function<void(const Histogram&)>& fn) const {
  visit<Histogram>(mutex_, histograms_, fn);
}

void Store::resetCounters() {
  std::lock_guard lock(mutex_);
  for (auto& [_, c] : counters_) c->reset();
}

}  // namespace sluice::stats
