// The cluster manager's API clusters (CDS): added, replaced and removed at run time, seen by
// a worker's view only once warm, and a replaced view kept alive for whoever still holds it.

#include <gtest/gtest.h>

#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "network/address.h"
#include "stats/stats.h"
#include "upstream/cluster_manager.h"

namespace sluice::upstream {
namespace {

class ClusterManagerTest : public ::testing::Test {
 protected:
  ClusterConfig staticCluster(const std::string& name, uint32_t port) {
    ClusterConfig c;
    c.info = std::make_shared<ClusterInfo>(name, store_);
    EndpointConfig e;
    e.address = network::parseIpAndPort("127.0.0.1:" + std::to_string(port), nullptr);
    e.port = port;
    c.endpoints.push_back(e);
    return c;
  }
  // Runs what the manager posted to the "worker" (here the same dispatcher).
  void runPosts() { main_.run(event::Dispatcher::RunType::NonBlock); }
  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl main_{"main", time_};
  stats::Store store_;
  DnsResolver dns_;
  ClusterManager cm_{main_, dns_, store_};
  ThreadLocalClusterManager tlcm_{main_};
};

TEST_F(ClusterManagerTest, ApiClustersComeAndGoAndStaticOnesStay) {
  cm_.addCluster(staticCluster("fixed", 1000));
  std::string error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(staticCluster("early", 1001), error)) << error;
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EXPECT_TRUE(initialized);
  EXPECT_NE(tlcm_.get("fixed"), nullptr);
  EXPECT_NE(tlcm_.get("early"), nullptr);

  ASSERT_TRUE(cm_.addOrUpdateCluster(staticCluster("late", 1002), error)) << error;
  EXPECT_EQ(tlcm_.get("late"), nullptr);  // posted, not yet run on the worker
  runPosts();
  ThreadLocalClusterSharedPtr held = tlcm_.get("late");
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->chooseHost(nullptr)->address()->asString(), "127.0.0.1:1002");

  // Replaced: the worker gets a new view; the old one retires but lives while held.
  ASSERT_TRUE(cm_.addOrUpdateCluster(staticCluster("late", 1003), error)) << error;
  runPosts();
  ThreadLocalClusterSharedPtr now = tlcm_.get("late");
  ASSERT_NE(now, nullptr);
  EXPECT_NE(now, held);
  EXPECT_TRUE(held->retired());
  EXPECT_FALSE(now->retired());
  EXPECT_EQ(now->chooseHost(nullptr)->address()->asString(), "127.0.0.1:1003");
  EXPECT_EQ(held->info().name(), "late");  // still usable by the request that holds it

  EXPECT_TRUE(cm_.removeCluster("late"));
  runPosts();
  EXPECT_EQ(tlcm_.get("late"), nullptr);
  EXPECT_TRUE(now->retired());
  EXPECT_FALSE(cm_.removeCluster("late"));

  // The bootstrap's clusters are not the API's to change.
  EXPECT_FALSE(cm_.removeCluster("fixed"));
  EXPECT_FALSE(cm_.addOrUpdateCluster(staticCluster("fixed", 1004), error));
  EXPECT_NE(error.find("static cluster"), std::string::npos) << error;
  runPosts();
  EXPECT_EQ(tlcm_.get("fixed")->chooseHost(nullptr)->address()->asString(), "127.0.0.1:1000");

  EXPECT_EQ(counter("cluster_manager.cluster_added"), 2u);
  EXPECT_EQ(counter("cluster_manager.cluster_modified"), 1u);
  EXPECT_EQ(counter("cluster_manager.cluster_removed"), 1u);
  EXPECT_EQ(store_.gauge("cluster_manager.active_clusters").value(), 2u);
  EXPECT_EQ(cm_.apiClusterNames(), std::vector<std::string>{"early"});
  cm_.unregisterWorkers();
}

TEST_F(ClusterManagerTest, AnInitialClusterRemovedBeforeItsFirstAnswerNoLongerHoldsStartUp) {
  // A DNS cluster from the first CDS version: the listeners wait for its first answer. If
  // the next version removes it first, they must not wait for ever.
  ClusterConfig dns_cluster = staticCluster("early", 1001);
  dns_cluster.type = DiscoveryType::StrictDns;
  dns_cluster.endpoints[0].address = nullptr;
  dns_cluster.endpoints[0].hostname = "localhost";
  std::string error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(std::move(dns_cluster), error)) << error;
  cm_.addCluster(staticCluster("fixed", 1000));
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EXPECT_FALSE(initialized);  // the DNS answer is posted to the loop, not yet run
  EXPECT_TRUE(cm_.removeCluster("early"));
  EXPECT_TRUE(initialized);
  // Its answer, when it comes, goes nowhere.
  runPosts();
  EXPECT_FALSE(cm_.has("early"));
}

TEST_F(ClusterManagerTest, StartUpWaitsForAHeldApiAndTheClustersItBrings) {
  // ADS: the listeners wait for the first CDS version and for its clusters to warm.
  cm_.addCluster(staticCluster("xds", 1000));
  cm_.holdInit();
  int initialized = 0;
  cm_.start([&] {
    ++initialized;
    main_.exit();
  });
  EXPECT_EQ(initialized, 0);  // the static cluster is ready; the API is not

  // The first version brings a DNS cluster (warming until its answer) and a static one.
  ClusterConfig dns_cluster = staticCluster("dns", 1001);
  dns_cluster.type = DiscoveryType::StrictDns;
  dns_cluster.endpoints[0].address = nullptr;
  dns_cluster.endpoints[0].hostname = "localhost";
  std::string error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(std::move(dns_cluster), error)) << error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(staticCluster("plain", 1002), error)) << error;
  cm_.releaseInit();
  EXPECT_EQ(initialized, 0);  // "dns" still warms
  main_.run(event::Dispatcher::RunType::RunUntilExit);  // until its answer warms it
  EXPECT_EQ(initialized, 1);
  EXPECT_TRUE(cm_.has("dns"));

  // Later versions warm as before and never run the callback again.
  ASSERT_TRUE(cm_.addOrUpdateCluster(staticCluster("later", 1003), error)) << error;
  runPosts();
  EXPECT_EQ(initialized, 1);
  EXPECT_TRUE(cm_.has("later"));
}

TEST_F(ClusterManagerTest, AHeldClusterSupersededOrRemovedWhileWarmingReleasesStartUp) {
  cm_.holdInit();
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  auto dns = [this](uint32_t port) {
    ClusterConfig c = staticCluster("dns", port);
    c.type = DiscoveryType::StrictDns;
    c.endpoints[0].address = nullptr;
    c.endpoints[0].hostname = "localhost";
    return c;
  };
  std::string error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(dns(1001), error)) << error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(dns(1002), error)) << error;  // supersedes the first
  cm_.releaseInit();
  EXPECT_FALSE(initialized);
  EXPECT_TRUE(cm_.removeCluster("dns"));  // the warming one goes: nothing is left to wait for
  EXPECT_TRUE(initialized);
  runPosts();
  EXPECT_FALSE(cm_.has("dns"));
}

// RING_HASH: the ring is built once per host-set change on the main thread, and every
// worker's balancer shares that one.
TEST_F(ClusterManagerTest, HashRingsAreBuiltOnceAndSharedByTheWorkers) {
  ThreadLocalClusterManager other{main_};  // a second worker
  cm_.registerWorker(main_, tlcm_);
  cm_.registerWorker(main_, other);
  cm_.start([] {});
  auto ringCluster = [&](std::vector<uint32_t> ports) {
    ClusterConfig c = staticCluster("ring", ports[0]);
    for (size_t i = 1; i < ports.size(); ++i) {
      EndpointConfig e = c.endpoints[0];
      e.address = network::parseIpAndPort("127.0.0.1:" + std::to_string(ports[i]), nullptr);
      e.port = ports[i];
      c.endpoints.push_back(e);
    }
    auto info = std::make_shared<ClusterInfo>("ring", store_);
    info->lb.policy = LbConfig::Policy::RingHash;
    c.info = info;
    return c;
  };
  auto tablesOf = [](ThreadLocalClusterManager& t) {
    auto* lb = dynamic_cast<const RingHashLoadBalancer*>(t.get("ring")->loadBalancer());
    return lb ? lb->tables().get() : nullptr;
  };
  std::string error;
  const uint64_t builds = hashLbTableBuilds();
  ASSERT_TRUE(cm_.addOrUpdateCluster(ringCluster({2001, 2002}), error)) << error;
  runPosts();
  EXPECT_EQ(hashLbTableBuilds(), builds + 1);
  ASSERT_NE(tablesOf(tlcm_), nullptr);
  EXPECT_EQ(tablesOf(tlcm_), tablesOf(other));
  const HashLbTables* first = tablesOf(tlcm_);

  ASSERT_TRUE(cm_.addOrUpdateCluster(ringCluster({2001, 2002, 2003}), error)) << error;
  runPosts();
  EXPECT_EQ(hashLbTableBuilds(), builds + 2);
  EXPECT_EQ(tablesOf(tlcm_), tablesOf(other));
  EXPECT_NE(tablesOf(tlcm_), first);
  EXPECT_EQ(tablesOf(tlcm_)->rings[0].size(), 1026u);  // three hosts: 342 points each
  cm_.unregisterWorkers();
}

}  // namespace
}  // namespace sluice::upstream
