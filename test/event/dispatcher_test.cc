#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/file_event.h"
#include "event/real_time_system.h"
#include "event/simulated_time_system.h"

namespace sluice::event {
namespace {

class DispatcherTest : public ::testing::Test {
 protected:
  RealTimeSystem time_;
  DispatcherImpl dispatcher_{"test", time_};
};

TEST_F(DispatcherTest, PostRunsOnTheLoopInOrder) {
  std::vector<int> order;
  dispatcher_.post([&] { order.push_back(1); });
  dispatcher_.post([&] { order.push_back(2); });
  dispatcher_.post([&] { order.push_back(3); });
  EXPECT_TRUE(order.empty());
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST_F(DispatcherTest, PostFromManyThreadsLosesNothingAndKeepsPerThreadOrder) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<int>> seen(kThreads);
  std::atomic<int> total{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        dispatcher_.post([&, t, i] {
          seen[t].push_back(i);
          if (++total == kThreads * kPerThread) dispatcher_.exit();
        });
      }
    });
  }
  dispatcher_.run(Dispatcher::RunType::RunUntilExit);
  for (auto& th : threads) th.join();
  ASSERT_EQ(total.load(), kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(seen[t][i], i) << "thread " << t;
  }
}

TEST_F(DispatcherTest, BlockedLoopWakesForPostFromAnotherThread) {
  std::atomic<bool> ran{false};
  std::thread loop([&] { dispatcher_.run(Dispatcher::RunType::RunUntilExit); });
  // The loop is (or soon will be) asleep in epoll_wait with nothing to do: only the post
  // wakes it, and the posted callback ends the run.
  dispatcher_.post([&] {
    EXPECT_TRUE(dispatcher_.isThreadSafe());
    ran = true;
    dispatcher_.exit();
  });
  loop.join();
  EXPECT_TRUE(ran);
  EXPECT_FALSE(dispatcher_.isThreadSafe());  // the loop belongs to the other thread now
}

// A dispatcher run by one thread and then by another: the first thread's posts and exit()
// reach the loop now running elsewhere (through the wake-up, never the base directly).
TEST_F(DispatcherTest, PostAndExitReachALoopThatMovedToAnotherThread) {
  dispatcher_.run(Dispatcher::RunType::NonBlock);  // this thread ran it first
  std::atomic<int> ran{0};
  std::thread loop([&] { dispatcher_.run(Dispatcher::RunType::RunUntilExit); });
  for (int i = 0; i < 100; ++i) dispatcher_.post([&] { ++ran; });
  dispatcher_.exit();
  loop.join();
  EXPECT_EQ(ran.load(), 100);
}

// Posts from the loop's own callbacks and from other threads, mixed: none is lost.
TEST_F(DispatcherTest, PostsFromTheLoopAndFromOtherThreadsMixed) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<int> total{0};
  std::function<void()> chain = [&] {
    if (++total == 2 * kThreads * kPerThread) dispatcher_.exit();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        // Each remote post makes the loop post once more from its own thread.
        dispatcher_.post([&] {
          dispatcher_.post(chain);
          chain();
        });
      }
    });
  }
  dispatcher_.run(Dispatcher::RunType::RunUntilExit);
  for (auto& th : threads) th.join();
  EXPECT_EQ(total.load(), 2 * kThreads * kPerThread);
}

TEST_F(DispatcherTest, PostedCallbackCanPost) {
  std::vector<int> order;
  dispatcher_.post([&] {
    order.push_back(1);
    dispatcher_.post([&] {
      order.push_back(3);
      dispatcher_.exit();
    });
    order.push_back(2);
  });
  dispatcher_.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

class Tracked : public DeferredDeletable {
 public:
  Tracked(std::vector<int>& log, int id, std::function<void()> on_delete = nullptr)
      : log_(log), id_(id), on_delete_(std::move(on_delete)) {}
  ~Tracked() override {
    log_.push_back(id_);
    if (on_delete_) on_delete_();
  }
  void deleteIsPending() override { pending_ = true; }
  bool pending_{false};

 private:
  std::vector<int>& log_;
  int id_;
  std::function<void()> on_delete_;
};

TEST_F(DispatcherTest, DeferredDeleteWaitsForTheCallbackAndKeepsFifoOrder) {
  std::vector<int> deleted;
  dispatcher_.post([&] {
    auto a = std::make_unique<Tracked>(deleted, 1);
    Tracked* raw = a.get();
    dispatcher_.deferredDelete(std::move(a));
    dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 2));
    dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 3));
    // Still alive while this callback runs.
    EXPECT_TRUE(raw->pending_);
    EXPECT_TRUE(deleted.empty());
  });
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(deleted, (std::vector<int>{1, 2, 3}));
}

TEST_F(DispatcherTest, DeferredDeleteFromADestructorIsHandled) {
  std::vector<int> deleted;
  dispatcher_.post([&] {
    dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 1, [&] {
      // Deferring while the list is being drained: lands in the next pass.
      dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 3));
    }));
    dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 2));
  });
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(deleted, (std::vector<int>{1, 2, 3}));
}

TEST_F(DispatcherTest, ReentrantClearIsANoOp) {
  std::vector<int> deleted;
  dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 1, [&] {
    dispatcher_.clearDeferredDeleteList();  // must not recurse into the list being drained
  }));
  dispatcher_.deferredDelete(std::make_unique<Tracked>(deleted, 2));
  dispatcher_.clearDeferredDeleteList();
  EXPECT_EQ(deleted, (std::vector<int>{1, 2}));
}

TEST(DispatcherLifetimeTest, DestructorDeletesWhatIsStillDeferred) {
  RealTimeSystem time;
  std::vector<int> deleted;
  {
    DispatcherImpl d("test", time);
    d.deferredDelete(std::make_unique<Tracked>(deleted, 7));
  }
  EXPECT_EQ(deleted, (std::vector<int>{7}));
}

TEST_F(DispatcherTest, ExitFromInsideACallback) {
  int runs = 0;
  TimerPtr t = dispatcher_.createTimer([&] {
    ++runs;
    dispatcher_.exit();
  });
  t->enableTimer(std::chrono::milliseconds(0));
  dispatcher_.run(Dispatcher::RunType::RunUntilExit);  // would never return without exit()
  EXPECT_EQ(runs, 1);
}

TEST_F(DispatcherTest, BlockReturnsWhenNothingIsPending) {
  dispatcher_.run(Dispatcher::RunType::Block);
  SUCCEED();
}

// Block runs what is pending (a post, a timer, what they arm) and returns once nothing is:
// the loop's own wake-up event (always added) does not keep it going.
TEST_F(DispatcherTest, BlockRunsWhatIsPendingThenReturns) {
  std::vector<std::string> order;
  TimerPtr second = dispatcher_.createTimer([&] { order.push_back("second timer"); });
  TimerPtr first = dispatcher_.createTimer([&] {
    order.push_back("first timer");
    second->enableTimer(std::chrono::milliseconds(1));
  });
  dispatcher_.post([&] {
    order.push_back("post");
    first->enableTimer(std::chrono::milliseconds(1));
  });
  dispatcher_.run(Dispatcher::RunType::Block);
  EXPECT_EQ(order, (std::vector<std::string>{"post", "first timer", "second timer"}));
}

// exit() from another thread ends a loop asleep with nothing to do (the base has no lock: the
// exit reaches the loop as a post).
TEST_F(DispatcherTest, ExitFromAnotherThreadEndsABlockedLoop) {
  std::atomic<bool> running{false};
  dispatcher_.post([&] { running = true; });
  std::thread loop([&] { dispatcher_.run(Dispatcher::RunType::RunUntilExit); });
  while (!running) std::this_thread::yield();
  dispatcher_.exit();
  loop.join();
  EXPECT_TRUE(running);
}

// A non-blocking socketpair for file event tests.
struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds));
    a = fds[0];
    b = fds[1];
  }
  ~SocketPair() {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
  }
  int a{-1};
  int b{-1};
};

TEST_F(DispatcherTest, LevelTriggerReportsReadinessUntilDrained) {
  SocketPair sp;
  int calls = 0;
  auto ev = dispatcher_.createFileEvent(
      sp.a, [&](uint32_t events) {
        EXPECT_TRUE(events & FileReadyType::Read);
        ++calls;
      },
      FileTriggerType::Level, FileReadyType::Read);
  ASSERT_EQ(1, write(sp.b, "x", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  // Not drained: level trigger reports it on every iteration.
  EXPECT_EQ(calls, 3);
  char c;
  ASSERT_EQ(1, read(sp.a, &c, 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(calls, 3);
}

TEST_F(DispatcherTest, EdgeTriggerReportsEachNewReadinessOnce) {
  SocketPair sp;
  int calls = 0;
  auto ev = dispatcher_.createFileEvent(
      sp.a, [&](uint32_t) { ++calls; }, FileTriggerType::Edge, FileReadyType::Read);
  ASSERT_EQ(1, write(sp.b, "x", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(calls, 1);  // not drained, but no new edge
  ASSERT_EQ(1, write(sp.b, "y", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(calls, 2);  // new data is a new edge
}

TEST_F(DispatcherTest, WriteAndClosedEvents) {
  SocketPair sp;
  uint32_t seen = 0;
  auto ev = dispatcher_.createFileEvent(
      sp.a, [&](uint32_t events) { seen |= events; }, FileTriggerType::Edge,
      FileReadyType::Read | FileReadyType::Write | FileReadyType::Closed);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_TRUE(seen & FileReadyType::Write);
  EXPECT_FALSE(seen & FileReadyType::Closed);
  seen = 0;
  ::shutdown(sp.b, SHUT_WR);  // the peer half-closes
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_TRUE(seen & FileReadyType::Closed);
  EXPECT_TRUE(seen & FileReadyType::Read);
}

TEST_F(DispatcherTest, ActivateInjectsEventsAndSetEnabledChangesInterest) {
  SocketPair sp;
  std::vector<uint32_t> calls;
  auto ev = dispatcher_.createFileEvent(
      sp.a, [&](uint32_t events) { calls.push_back(events); }, FileTriggerType::Level, 0);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_TRUE(calls.empty());  // no interest, nothing reported
  ev->activate(FileReadyType::Read);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], FileReadyType::Read);  // exactly what was injected
  calls.clear();
  ev->setEnabled(FileReadyType::Write);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], FileReadyType::Write);
}

// A second activation while the first waits in the loop's queue adds its flags to it (one
// callback with both); an activation from inside the callback queues a new one.
TEST_F(DispatcherTest, ActivationsBeforeTheLoopRunsAreOneCallbackWithTheirFlags) {
  SocketPair sp;
  std::vector<uint32_t> calls;
  FileEventPtr ev;
  bool again = false;
  ev = dispatcher_.createFileEvent(
      sp.a,
      [&](uint32_t events) {
        calls.push_back(events);
        if (again) {
          again = false;
          ev->activate(FileReadyType::Write);
        }
      },
      FileTriggerType::Level, 0);
  ev->activate(FileReadyType::Read);
  ev->activate(FileReadyType::Write);
  ev->activate(FileReadyType::Write);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], FileReadyType::Read | FileReadyType::Write);

  again = true;
  ev->activate(FileReadyType::Read);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[1], FileReadyType::Read);
  EXPECT_EQ(calls[2], FileReadyType::Write);
}

// activateSoon() from inside a file event's callback: the queued owners run as soon as that
// callback returns (before any other ready event), once each with their flags merged, also
// when queued by a queued one; a reset cancels; from outside a callback it is activate().
TEST_F(DispatcherTest, ActivateSoonRunsRightAfterTheCurrentCallback) {
  SocketPair sa, se, sb, sc, sd;
  std::vector<std::string> log;
  struct Owner {
    void onEvent(uint32_t events) { on(events); }
    std::function<void(uint32_t)> on;
  };
  Owner a, b, c, d, e;
  EmbeddedFileEvent ea, eb, ec, ed, ee;
  const auto flags = [](uint32_t events) {
    return std::string(events & FileReadyType::Read ? "R" : "") +
           (events & FileReadyType::Write ? "W" : "");
  };
  a.on = [&](uint32_t) {
    log.push_back("a");
    char buf[8];
    ASSERT_EQ(1, read(sa.a, buf, sizeof(buf)));
    eb.activateSoon(FileReadyType::Write);
    ec.activateSoon(FileReadyType::Write);
    eb.activateSoon(FileReadyType::Read);
    ec.reset();  // cancelled before it ran
  };
  b.on = [&](uint32_t events) {
    log.push_back("b" + flags(events));
    ed.activateSoon(FileReadyType::Write);  // queued by a queued one: runs in the same go
  };
  c.on = [&](uint32_t) { log.push_back("c"); };
  d.on = [&](uint32_t events) { log.push_back("d" + flags(events)); };
  e.on = [&](uint32_t) {
    log.push_back("e");
    char buf[8];
    ASSERT_EQ(1, read(se.a, buf, sizeof(buf)));
  };
  ea.initialize<Owner, &Owner::onEvent>(dispatcher_, sa.a, a, FileTriggerType::Level,
                                        FileReadyType::Read);
  ee.initialize<Owner, &Owner::onEvent>(dispatcher_, se.a, e, FileTriggerType::Level,
                                        FileReadyType::Read);
  eb.initialize<Owner, &Owner::onEvent>(dispatcher_, sb.a, b, FileTriggerType::Level, 0);
  ec.initialize<Owner, &Owner::onEvent>(dispatcher_, sc.a, c, FileTriggerType::Level, 0);
  ed.initialize<Owner, &Owner::onEvent>(dispatcher_, sd.a, d, FileTriggerType::Level, 0);
  // a and e are ready in the same pass; whichever libevent runs first, b and d come right
  // after a.
  ASSERT_EQ(1, write(sa.b, "x", 1));
  ASSERT_EQ(1, write(se.b, "y", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(log.size(), 4u);
  const auto at = std::find(log.begin(), log.end(), "a") - log.begin();
  ASSERT_LE(at, 1);
  EXPECT_EQ(log[at + 1], "bRW");
  EXPECT_EQ(log[at + 2], "dW");
  EXPECT_EQ(log[at == 0 ? 3 : 0], "e");

  // From outside any callback: the loop's next pass runs it.
  log.clear();
  eb.activateSoon(FileReadyType::Write);
  EXPECT_TRUE(log.empty());
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(log, (std::vector<std::string>{"bW", "dW"}));
}

TEST_F(DispatcherTest, DestroyingAFileEventInsideItsCallbackIsSafe) {
  SocketPair sp;
  FileEventPtr ev;
  int calls = 0;
  ev = dispatcher_.createFileEvent(
      sp.a, [&](uint32_t) {
        ++calls;
        ev.reset();
      },
      FileTriggerType::Level, FileReadyType::Write);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(ev, nullptr);
}

// The form a connection embeds: libevent's event in place, calling a member of its owner.
TEST_F(DispatcherTest, EmbeddedFileEventKeepsItsTriggerAcrossSetEnabledAndStopsOnReset) {
  SocketPair sp;
  struct Seen {
    void onEvent(uint32_t events) { calls.push_back(events); }
    std::vector<uint32_t> calls;
  } seen;
  EmbeddedFileEvent ev;
  EXPECT_FALSE(ev.initialized());
  ev.activate(FileReadyType::Read);  // nothing: not initialized
  ev.initialize<Seen, &Seen::onEvent>(dispatcher_, sp.a, seen, FileTriggerType::Edge,
                                      FileReadyType::Read);
  EXPECT_TRUE(ev.initialized());
  ASSERT_EQ(1, write(sp.b, "x", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(seen.calls.size(), 1u);  // edge: once, though not drained
  EXPECT_EQ(seen.calls[0], FileReadyType::Read);

  // New interest, same fd, trigger and callback: still edge-triggered, still the owner's.
  ev.setEnabled(FileReadyType::Read | FileReadyType::Write);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(seen.calls.size(), 2u);
  EXPECT_TRUE(seen.calls[1] & FileReadyType::Write);

  // Activated, then reset before the loop runs: the callback never comes.
  ev.activate(FileReadyType::Write);
  ev.reset();
  EXPECT_FALSE(ev.initialized());
  ASSERT_EQ(1, write(sp.b, "y", 1));
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(seen.calls.size(), 2u);
  ev.setEnabled(FileReadyType::Read);  // nothing: reset
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(seen.calls.size(), 2u);

  // Initialized again after a reset: a working event.
  ev.initialize<Seen, &Seen::onEvent>(dispatcher_, sp.a, seen, FileTriggerType::Level,
                                      FileReadyType::Read);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(seen.calls.size(), 3u);  // "y" is still unread
  EXPECT_EQ(seen.calls[2], FileReadyType::Read);
}

TEST_F(DispatcherTest, EmbeddedFileEventMayResetItselfInsideItsCallback) {
  SocketPair sp;
  struct Owner {
    void onEvent(uint32_t) {
      ++calls;
      ev.reset();
    }
    EmbeddedFileEvent ev;
    int calls{0};
  } owner;
  owner.ev.initialize<Owner, &Owner::onEvent>(dispatcher_, sp.a, owner, FileTriggerType::Level,
                                              FileReadyType::Write);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  dispatcher_.run(Dispatcher::RunType::NonBlock);
  EXPECT_EQ(owner.calls, 1);
  EXPECT_FALSE(owner.ev.initialized());
}

TEST_F(DispatcherTest, EachFileEventSeesItsOwnDispatchersTimeRefreshed) {
  // Two events ready in one pass of a loop run from inside another dispatcher's callback: the
  // first moves the (simulated) clock, and the second sees its loop's time refreshed.
  SimulatedTimeSystem time;
  DispatcherImpl inner("inner", time);
  SocketPair one;
  SocketPair two;
  struct Owner {
    void onEvent(uint32_t) {
      seen.push_back(dispatcher->approximateMonotonicTime());
      if (seen.size() == 1) time->advanceTimeAsync(std::chrono::seconds(5));
      ++calls;
    }
    Dispatcher* dispatcher;
    SimulatedTimeSystem* time;
    std::vector<MonotonicTime>& seen;
    int calls{0};
  };
  std::vector<MonotonicTime> seen;
  Owner a{&inner, &time, seen};
  Owner b{&inner, &time, seen};
  EmbeddedFileEvent ev_a;
  EmbeddedFileEvent ev_b;
  ev_a.initialize<Owner, &Owner::onEvent>(inner, one.a, a, FileTriggerType::Edge,
                                          FileReadyType::Write);
  ev_b.initialize<Owner, &Owner::onEvent>(inner, two.a, b, FileTriggerType::Edge,
                                          FileReadyType::Write);
  bool ran = false;
  dispatcher_.post([&] {
    inner.run(Dispatcher::RunType::NonBlock);
    ran = true;
  });
  while (!ran) dispatcher_.run(Dispatcher::RunType::NonBlock);
  ASSERT_EQ(a.calls + b.calls, 2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1] - seen[0], std::chrono::seconds(5));
}

TEST_F(DispatcherTest, SignalRunsItsCallbackOnTheLoop) {
  int got = 0;
  auto sig = dispatcher_.listenForSignal(SIGUSR1, [&] {
    ++got;
    dispatcher_.exit();
  });
  ::raise(SIGUSR1);
  dispatcher_.run(Dispatcher::RunType::RunUntilExit);
  EXPECT_EQ(got, 1);
}

}  // namespace
}  // namespace sluice::event
