#include "common/object_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/small_vector.h"

namespace sluice {
namespace {

struct Widget : public Pooled<Widget> {
  explicit Widget(int v) : value(v) {}
  virtual ~Widget() = default;
  int value;
  char pad[100];
};

// A derived class of another size does not take the base's blocks.
struct BigWidget : public Widget {
  explicit BigWidget(int v) : Widget(v) {}
  char more[300];
};

struct Plain {
  explicit Plain(std::string s) : text(std::move(s)) {}
  std::string text;
};

using WidgetList = detail::FreeListFor<Widget>;

#ifndef SLUICE_POOL_DISABLED
TEST(ObjectPoolTest, FreedBlockIsReusedLastFreedFirst) {
  auto* a = new Widget(1);
  auto* b = new Widget(2);
  const size_t before = WidgetList::cached();
  delete a;
  delete b;
  EXPECT_EQ(WidgetList::cached(), before + 2);
  auto* c = new Widget(3);
  auto* d = new Widget(4);
  EXPECT_EQ(static_cast<void*>(c), static_cast<void*>(b));
  EXPECT_EQ(static_cast<void*>(d), static_cast<void*>(a));
  EXPECT_EQ(c->value, 3);
  EXPECT_EQ(WidgetList::cached(), before);
  delete c;
  delete d;
}

TEST(ObjectPoolTest, DerivedOfAnotherSizeUsesTheGlobalAllocator) {
  const size_t before = WidgetList::cached();
  std::unique_ptr<Widget> w = std::make_unique<BigWidget>(5);
  w.reset();  // through the base's virtual destructor: the derived size reaches delete
  EXPECT_EQ(WidgetList::cached(), before);
}

TEST(ObjectPoolTest, KeepsAtMostItsLimit) {
  std::vector<Widget*> many;
  for (size_t i = 0; i < WidgetList::kMaxCached + 10; ++i) many.push_back(new Widget(0));
  for (Widget* w : many) delete w;
  EXPECT_EQ(WidgetList::cached(), WidgetList::kMaxCached);
}

TEST(ObjectPoolTest, SharedPtrWithPoolAllocatorReusesItsBlock) {
  PoolAllocator<Plain> alloc;
  auto p = std::allocate_shared<Plain>(alloc, "one");
  const void* block = p.get();
  p.reset();
  auto q = std::allocate_shared<Plain>(alloc, "two");
  EXPECT_EQ(static_cast<const void*>(q.get()), block);
  EXPECT_EQ(q->text, "two");
}
#endif

// A block freed on another thread joins that thread's list; the thread's exit frees it.
TEST(ObjectPoolTest, FreedOnAnotherThread) {
  auto* w = new Widget(7);
  std::thread t([w] {
    delete w;
#ifndef SLUICE_POOL_DISABLED
    EXPECT_EQ(WidgetList::cached(), 1u);
    auto* again = new Widget(8);
    EXPECT_EQ(static_cast<void*>(again), static_cast<void*>(w));
    delete again;
#endif
  });
  t.join();
}

TEST(SmallVectorTest, InlineThenHeapKeepsOrderAndOwnership) {
  SmallVector<std::unique_ptr<int>, 2> v;
  for (int i = 0; i < 5; ++i) v.push_back(std::make_unique<int>(i));
  ASSERT_EQ(v.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(*v[i], i);
  v.erase(v.begin() + 1);
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(*v[0], 0);
  EXPECT_EQ(*v[1], 2);
  EXPECT_EQ(*v.back(), 4);
  v.pop_back();
  int sum = 0;
  for (auto it = v.rbegin(); it != v.rend(); ++it) sum += **it;
  EXPECT_EQ(sum, 0 + 2 + 3);
  v.clear();
  EXPECT_TRUE(v.empty());
}

TEST(SmallVectorTest, EraseRemoveIdiom) {
  SmallVector<int*, 2> v;
  int a = 0, b = 0;
  v.push_back(&a);
  v.push_back(&b);
  v.push_back(&a);
  v.erase(std::remove(v.begin(), v.end(), &a), v.end());
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0], &b);
}

}  // namespace
}  // namespace sluice
