// Init targets and watchers: what warming listeners and clusters wait for.

#include "common/init_target.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace sluice::init {
namespace {

TEST(InitTargetTest, AWatcherRunsOnceWhenItsLastTargetIsReady) {
  auto a = std::make_shared<Target>("a");
  auto b = std::make_shared<Target>("b");
  int done = 0;
  // The same target twice counts once.
  auto w = Watcher::create({a, b, a}, [&] { ++done; });
  ASSERT_NE(w, nullptr);
  auto pending = w->pending();
  std::sort(pending.begin(), pending.end());
  EXPECT_EQ(pending, (std::vector<std::string>{"a", "b"}));
  a->setReady();
  a->setReady();  // once only
  EXPECT_EQ(done, 0);
  EXPECT_EQ(w->pending(), std::vector<std::string>{"b"});
  EXPECT_FALSE(w->done());
  b->setReady();
  EXPECT_EQ(done, 1);
  EXPECT_TRUE(w->done());
  EXPECT_TRUE(w->pending().empty());
}

TEST(InitTargetTest, NoWatcherWhenEverythingIsReadyAndNoCallbackAfterItIsDropped) {
  auto a = std::make_shared<Target>("a");
  a->setReady();
  int done = 0;
  EXPECT_EQ(Watcher::create({a}, [&] { ++done; }), nullptr);
  EXPECT_EQ(Watcher::create({}, [&] { ++done; }), nullptr);
  EXPECT_EQ(done, 0);

  auto b = std::make_shared<Target>("b");
  auto w = Watcher::create({a, b}, [&] { ++done; });
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->pending(), std::vector<std::string>{"b"});
  w.reset();  // the warming listener was replaced
  b->setReady();
  EXPECT_EQ(done, 0);
}

TEST(InitTargetTest, TheInnermostScopeCollectsWhatIsNotReady) {
  auto a = std::make_shared<Target>("a");
  auto b = std::make_shared<Target>("b");
  auto ready = std::make_shared<Target>("ready");
  ready->setReady();
  Scope::add(a);  // no scope: nothing happens
  Scope outer;
  Scope::add(a);
  {
    Scope inner;
    Scope::add(b);
    Scope::add(ready);
    EXPECT_EQ(inner.take(), std::vector<TargetSharedPtr>{b});
  }
  EXPECT_EQ(outer.take(), std::vector<TargetSharedPtr>{a});
}

}  // namespace
}  // namespace sluice::init
