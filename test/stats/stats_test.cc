#include "stats/stats.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "stats/histogram.h"

namespace sluice::stats {
namespace {

// Runs fn on a fresh thread and waits for it.
template <class Fn>
void onThread(Fn fn) {
  std::thread t(fn);
  t.join();
}

TEST(CounterTest, IncValueResetName) {
  Store store;
  Counter& c = store.counter("cluster.a.upstream_rq_total");
  EXPECT_EQ(c.name(), "cluster.a.upstream_rq_total");
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  c.inc(4);
  EXPECT_EQ(c.value(), 5u);
  EXPECT_EQ(&store.counter("cluster.a.upstream_rq_total"), &c);
  c.reset();
  EXPECT_EQ(c.value(), 0u);
  c.inc(2);
  EXPECT_EQ(c.value(), 2u);
}

TEST(CounterTest, RegisteredAndUnregisteredThreadsAddUp) {
  Store store;
  Counter& c = store.counter("c");
  c.inc(1);  // the test's main thread: possibly unregistered (shared slot)
  onThread([&] {
    ASSERT_TRUE(ThreadSlot::registerCurrentThread());
    EXPECT_NE(ThreadSlot::current(), ThreadSlot::kSharedSlot);
    EXPECT_TRUE(ThreadSlot::registerCurrentThread());  // idempotent
    c.inc(10);
  });
  onThread([&] {
    EXPECT_EQ(ThreadSlot::current(), ThreadSlot::kSharedSlot);
    c.inc(100);
  });
  EXPECT_EQ(c.value(), 111u);
}

// The acceptance test: 8 workers x 100k increments, each on its own slot.
TEST(CounterTest, EightThreadsSumExactly) {
  Store store;
  Counter& c = store.counter("http.ingress.downstream_rq_total");
  Counter& other = store.counter("http.ingress.downstream_rq_2xx");
  constexpr int kThreads = 8;
  constexpr uint64_t kIncrements = 100000;
  std::atomic<bool> done{false};
  // A reader running alongside sees a value that never goes down.
  std::thread reader([&] {
    uint64_t last = 0;
    while (!done.load()) {
      const uint64_t now = c.value();
      EXPECT_GE(now, last);
      last = now;
    }
  });
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&] {
      ASSERT_TRUE(ThreadSlot::registerCurrentThread());
      for (uint64_t n = 0; n < kIncrements; ++n) {
        c.inc();
        other.inc(2);
      }
    });
  }
  for (auto& w : workers) w.join();
  done = true;
  reader.join();
  EXPECT_EQ(c.value(), kThreads * kIncrements);
  EXPECT_EQ(other.value(), 2 * kThreads * kIncrements);
}

TEST(CounterTest, SharedSlotThreadsSumExactly) {
  Store store;
  Counter& c = store.counter("c");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int n = 0; n < 50000; ++n) c.inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 200000u);
}

TEST(CounterTest, SlotGivenBackAtThreadExitKeepsItsCounts) {
  Store store;
  Counter& c = store.counter("c");
  uint32_t first_slot = 0;
  onThread([&] {
    ThreadSlot::registerCurrentThread();
    first_slot = ThreadSlot::current();
    c.inc(7);
  });
  uint32_t second_slot = 0;
  onThread([&] {
    ThreadSlot::registerCurrentThread();
    second_slot = ThreadSlot::current();
    c.inc(3);
  });
  EXPECT_NE(first_slot, ThreadSlot::kSharedSlot);
  EXPECT_NE(second_slot, ThreadSlot::kSharedSlot);
  EXPECT_EQ(c.value(), 10u);
  onThread([&] {
    ThreadSlot::registerCurrentThread();
    const uint32_t slot = ThreadSlot::current();
    ThreadSlot::unregisterCurrentThread();
    EXPECT_EQ(ThreadSlot::current(), ThreadSlot::kSharedSlot);
    c.inc(5);  // now on the shared slot
    ThreadSlot::registerCurrentThread();
    EXPECT_EQ(ThreadSlot::current(), slot);  // the slot it just gave back
    c.inc(1);
  });
  EXPECT_EQ(c.value(), 16u);
  EXPECT_LE(ThreadSlot::highWater(), ThreadSlot::kMaxSlots);
}

TEST(CounterTest, ResetWhileIncrementingLosesNothingAfterIt) {
  Store store;
  Counter& c = store.counter("c");
  std::atomic<bool> reset_done{false};
  std::atomic<uint64_t> after_reset{0};
  std::thread worker([&] {
    ThreadSlot::registerCurrentThread();
    for (int n = 0; n < 200000; ++n) {
      const bool was_reset = reset_done.load(std::memory_order_acquire);
      c.inc();
      if (was_reset) after_reset.fetch_add(1, std::memory_order_relaxed);
    }
  });
  c.reset();
  reset_done.store(true, std::memory_order_release);
  worker.join();
  // Increments that began after the reset are all counted; some before it may be too.
  EXPECT_GE(c.value(), after_reset.load());
  EXPECT_LE(c.value(), 200000u);
}

TEST(CounterTest, ManyCountersAcrossChunks) {
  Store store;
  constexpr int kCount = 3 * detail::CounterCells::kChunkSize + 17;
  std::vector<Counter*> counters;
  for (int i = 0; i < kCount; ++i) counters.push_back(&store.counter("c." + std::to_string(i)));
  onThread([&] {
    ThreadSlot::registerCurrentThread();
    for (int i = 0; i < kCount; ++i) counters[i]->inc(static_cast<uint64_t>(i));
  });
  for (int i = 0; i < kCount; ++i) counters[i]->inc();
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(counters[i]->value(), static_cast<uint64_t>(i) + 1) << i;
  }
}

TEST(GaugeTest, SetIncDec) {
  Store store;
  Gauge& g = store.gauge("cluster.a.upstream_cx_active");
  EXPECT_EQ(g.name(), "cluster.a.upstream_cx_active");
  g.set(10);
  g.inc();
  g.inc(4);
  g.dec(3);
  EXPECT_EQ(g.value(), 12u);
  EXPECT_EQ(&store.gauge("cluster.a.upstream_cx_active"), &g);
}

TEST(GaugeTest, ConcurrentIncDecBalance) {
  Store store;
  Gauge& g = store.gauge("g");
  g.set(1000);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (i % 2 == 0) ThreadSlot::registerCurrentThread();
      for (int n = 0; n < 20000; ++n) {
        g.inc();
        g.dec();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(g.value(), 1000u);
}

TEST(HistogramMathTest, BucketIndex) {
  EXPECT_EQ(bucketIndex(0), 0u);  // <= 0.5
  EXPECT_EQ(bucketIndex(1), 1u);  // <= 1
  EXPECT_EQ(bucketIndex(2), 2u);  // <= 5
  EXPECT_EQ(bucketIndex(5), 2u);
  EXPECT_EQ(bucketIndex(6), 3u);  // <= 10
  EXPECT_EQ(bucketIndex(3600000), kBucketCount - 1);
  EXPECT_EQ(bucketIndex(3600001), kBucketCount);  // overflow
  EXPECT_EQ(bucketIndex(UINT64_MAX), kBucketCount);
}

TEST(HistogramMathTest, EmptyStatistics) {
  HistogramStatistics empty;
  EXPECT_EQ(empty.sampleCount(), 0u);
  EXPECT_EQ(empty.sampleSum(), 0u);
  EXPECT_TRUE(std::isnan(empty.quantile(0.5)));
  for (double v : empty.computedQuantiles()) EXPECT_TRUE(std::isnan(v));
}

TEST(HistogramTest, OneToHundred) {
  Store store;
  Histogram& h = store.histogram("http.ingress.downstream_rq_time");
  EXPECT_EQ(h.unit(), Unit::Milliseconds);
  EXPECT_FALSE(h.used());
  for (uint64_t v = 1; v <= 100; ++v) h.recordValue(v);
  EXPECT_TRUE(h.used());
  const HistogramStatistics s = h.cumulativeStatistics();
  EXPECT_EQ(s.sampleCount(), 100u);
  EXPECT_EQ(s.sampleSum(), 5050u);
  EXPECT_EQ(s.min(), 1u);
  EXPECT_EQ(s.max(), 100u);
  const auto cumulative = s.cumulativeBuckets();
  // le: 0.5 1 5 10 25 50 100 250 ...
  EXPECT_EQ(cumulative[0], 0u);
  EXPECT_EQ(cumulative[1], 1u);
  EXPECT_EQ(cumulative[2], 5u);
  EXPECT_EQ(cumulative[3], 10u);
  EXPECT_EQ(cumulative[4], 25u);
  EXPECT_EQ(cumulative[5], 50u);
  EXPECT_EQ(cumulative[6], 100u);
  EXPECT_EQ(cumulative[kBucketCount - 1], 100u);
  // Uniform values make interpolation exact.
  const std::vector<double> q = s.computedQuantiles();
  const std::vector<double> want = {1, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100};
  ASSERT_EQ(q.size(), want.size());
  for (size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(q[i], want[i], 1e-9) << i;
}

TEST(HistogramTest, SingleValueAndOverflow) {
  Store store;
  Histogram& one = store.histogram("one", Unit::Bytes);
  EXPECT_EQ(one.unit(), Unit::Bytes);
  EXPECT_EQ(store.histogram("one", Unit::Milliseconds).unit(), Unit::Bytes);  // kept
  one.recordValue(7);
  for (double v : one.cumulativeStatistics().computedQuantiles()) EXPECT_DOUBLE_EQ(v, 7);

  Histogram& big = store.histogram("big");
  big.recordValue(5000000);
  big.recordValue(0);
  const HistogramStatistics s = big.cumulativeStatistics();
  EXPECT_EQ(s.sampleCount(), 2u);
  EXPECT_EQ(s.cumulativeBuckets()[0], 1u);
  EXPECT_EQ(s.cumulativeBuckets()[kBucketCount - 1], 1u);  // the big one is only in +Inf
  EXPECT_EQ(s.disjointBuckets()[kBucketCount], 1u);
  EXPECT_DOUBLE_EQ(s.quantile(0), 0);
  EXPECT_DOUBLE_EQ(s.quantile(1), 5000000);
  // Rank 1.5 of 2 falls half-way into the overflow bucket [3600000, 5000000].
  EXPECT_DOUBLE_EQ(s.quantile(0.75), 4300000);
}

TEST(HistogramTest, InterpolatesInsideBucket) {
  Store store;
  Histogram& h = store.histogram("h");
  // Four values in (10, 25], min 12 and max 20: the bucket narrows to [12, 20].
  for (uint64_t v : {12, 14, 18, 20}) h.recordValue(v);
  const HistogramStatistics s = h.cumulativeStatistics();
  EXPECT_DOUBLE_EQ(s.quantile(0.5), 16);   // 12 + 8 * 2/4
  EXPECT_DOUBLE_EQ(s.quantile(0.25), 14);  // 12 + 8 * 1/4
}

TEST(HistogramTest, ThreadsRecordWithoutLoss) {
  Store store;
  Histogram& h = store.histogram("h");
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (i != 3) ThreadSlot::registerCurrentThread();  // one stays on the shared slot
      for (uint64_t n = 0; n < 10000; ++n) h.recordValue(n % 100);
    });
  }
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) (void)h.cumulativeStatistics();
  });
  for (auto& t : threads) t.join();
  stop = true;
  reader.join();
  const HistogramStatistics s = h.cumulativeStatistics();
  EXPECT_EQ(s.sampleCount(), 40000u);
  EXPECT_EQ(s.sampleSum(), 4u * 100 * (99 * 100 / 2));
  EXPECT_EQ(s.min(), 0u);
  EXPECT_EQ(s.max(), 99u);
}

TEST(StoreTest, ForEachInNameOrderAndFind) {
  Store store;
  store.counter("b").inc(2);
  store.counter("a").inc(1);
  store.gauge("z").set(3);
  store.histogram("h2");
  store.histogram("h1");
  std::vector<std::string> names;
  store.forEachCounter([&](const Counter& c) { names.push_back(c.name()); });
  store.forEachGauge([&](const Gauge& g) { names.push_back(g.name()); });
  store.forEachHistogram([&](const Histogram& h) { names.push_back(h.name()); });
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "z", "h1", "h2"}));
  ASSERT_NE(store.findCounter("b"), nullptr);
  EXPECT_EQ(store.findCounter("b")->value(), 2u);
  EXPECT_EQ(store.findCounter("nope"), nullptr);
  EXPECT_NE(store.findGauge("z"), nullptr);
  EXPECT_NE(store.findHistogram("h1"), nullptr);
  EXPECT_EQ(store.findHistogram("a"), nullptr);
}

TEST(StoreTest, VisitorMayCreateStats) {
  Store store;
  store.counter("a");
  store.forEachCounter([&](const Counter& c) { store.counter(c.name() + ".child").inc(); });
  EXPECT_EQ(store.counter("a.child").value(), 1u);
}

TEST(StoreTest, ResetCountersKeepsGaugesAndHistograms) {
  Store store;
  store.counter("a").inc(5);
  onThread([&] {
    ThreadSlot::registerCurrentThread();
    store.counter("b").inc(7);
  });
  store.gauge("g").set(9);
  store.histogram("h").recordValue(3);
  store.resetCounters();
  EXPECT_EQ(store.counter("a").value(), 0u);
  EXPECT_EQ(store.counter("b").value(), 0u);
  EXPECT_EQ(store.gauge("g").value(), 9u);
  EXPECT_EQ(store.histogram("h").cumulativeStatistics().sampleCount(), 1u);
  store.counter("b").inc();
  EXPECT_EQ(store.counter("b").value(), 1u);
}

TEST(StoreTest, StoresAreIndependent) {
  Store one;
  Store two;
  one.counter("c").inc(3);
  two.counter("c").inc(4);
  EXPECT_EQ(one.counter("c").value(), 3u);
  EXPECT_EQ(two.counter("c").value(), 4u);
}

}  // namespace
}  // namespace sluice::stats
