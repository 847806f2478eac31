#include <map>

#include <gtest/gtest.h>

#include "upstream/load_balancer.h"

namespace sluice::upstream {
namespace {

HostSharedPtr host(uint32_t port, uint32_t weight = 1, uint32_t priority = 0) {
  std::string error;
  return std::make_shared<Host>("c", network::fromIp("127.0.0.1", port, &error), "", weight,
                                priority, Locality{});
}

PrioritySetConstSharedPtr set(std::vector<HostSharedPtr> hosts) {
  auto s = std::make_shared<PrioritySet>();
  for (auto& h : hosts) {
    if (s->priorities.size() <= h->priority()) s->priorities.resize(h->priority() + 1);
    s->priorities[h->priority()].hosts.push_back(h);
  }
  return s;
}

TEST(RoundRobinTest, EqualWeightsRotate) {
  auto a = host(1), b = host(2), c = host(3);
  RoundRobinLoadBalancer lb(set({a, b, c}));
  std::vector<HostSharedPtr> got;
  for (int i = 0; i < 6; ++i) got.push_back(lb.chooseHost(nullptr));
  EXPECT_EQ(got, (std::vector<HostSharedPtr>{a, b, c, a, b, c}));
}

TEST(RoundRobinTest, WeightsAreSmooth) {
  auto a = host(1, 5), b = host(2, 1), c = host(3, 1);
  RoundRobinLoadBalancer lb(set({a, b, c}));
  std::vector<HostSharedPtr> got;
  for (int i = 0; i < 7; ++i) got.push_back(lb.chooseHost(nullptr));
  // 5:1:1 interleaved (a a b a c a a), not five a's in a row.
  EXPECT_EQ(got, (std::vector<HostSharedPtr>{a, a, b, a, c, a, a}));
  std::map<Host*, int> counts;
  for (int i = 0; i < 7000; ++i) counts[lb.chooseHost(nullptr).get()]++;
  EXPECT_EQ(counts[a.get()], 5000);
  EXPECT_EQ(counts[b.get()], 1000);
  EXPECT_EQ(counts[c.get()], 1000);
}

TEST(RoundRobinTest, UnhealthyHostsAreSkipped) {
  auto a = host(1), b = host(2, 3);
  RoundRobinLoadBalancer lb(set({a, b}));
  b->setHealthFlag(Host::FailedActiveHealthCheck);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(lb.chooseHost(nullptr), a);
  a->setHealthFlag(Host::FailedOutlierCheck);
  EXPECT_EQ(lb.chooseHost(nullptr), nullptr);
  b->clearHealthFlag(Host::FailedActiveHealthCheck);
  EXPECT_EQ(lb.chooseHost(nullptr), b);
}

TEST(RoundRobinTest, LowerPriorityOnlyWhenTheHigherHasNoHealthyHost) {
  auto p0 = host(1, 1, 0), p1 = host(2, 1, 1);
  RoundRobinLoadBalancer lb(set({p0, p1}));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(lb.chooseHost(nullptr), p0);
  p0->setHealthFlag(Host::FailedActiveHealthCheck);
  EXPECT_EQ(lb.chooseHost(nullptr), p1);
}

TEST(RoundRobinTest, EmptySetHasNoHost) {
  RoundRobinLoadBalancer lb(std::make_shared<PrioritySet>());
  EXPECT_EQ(lb.chooseHost(nullptr), nullptr);
}

}  // namespace
}  // namespace sluice::upstream
