// EDS clusters: the cluster manager with a fake subscription (warming, updates that keep host
// state, removal, initial_fetch_timeout on the simulated clock, health checks of new and
// removed hosts), and the config side with a real file (a bad version refused by path).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "config/eds_api.h"
#include "config/proxy_config.h"
#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "network/address.h"
#include "stats/stats.h"
#include "upstream/cluster_manager.h"
#include "upstream/eds.h"

namespace sluice::upstream {
namespace {

using std::chrono::milliseconds;

// A listening socket on loopback, served by the test's dispatcher: answers every HTTP request
// with 200 until stop() (then connections are refused).
class HttpServer {
 public:
  explicit HttpServer(event::Dispatcher& d) : dispatcher_(d) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    listen_ = d.createFileEvent(
        fd_, [this](uint32_t) { onAccept(); }, event::FileTriggerType::Level,
        event::FileReadyType::Read);
  }
  ~HttpServer() {
    stop();
    for (auto& [fd, _] : conns_) ::close(fd);
  }
  void stop() {
    listen_.reset();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  uint16_t port{0};

 private:
  void onAccept() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    conns_[c] = dispatcher_.createFileEvent(
        c, [this, c](uint32_t) { onRead(c); }, event::FileTriggerType::Level,
        event::FileReadyType::Read);
  }
  void onRead(int c) {
    char buf[4096];
    const ssize_t n = ::read(c, buf, sizeof(buf));
    if (n <= 0) {
      conns_.erase(c);
      ::close(c);
      return;
    }
    const std::string ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    EXPECT_EQ(::write(c, ok.data(), ok.size()), ssize_t(ok.size()));
  }
  event::Dispatcher& dispatcher_;
  int fd_{-1};
  event::FileEventPtr listen_;
  std::map<int, event::FileEventPtr> conns_;
};

// Stands in for the config layer's subscription: the test delivers the updates.
struct FakeEds {
  EdsConfig::OnUpdate deliver;
  int subscriptions{0};
  std::shared_ptr<EdsConfig> config(milliseconds initial_fetch_timeout = milliseconds(15000)) {
    auto c = std::make_shared<EdsConfig>();
    c->service_name = "svc";
    c->initial_fetch_timeout = initial_fetch_timeout;
    c->subscribe = [this](event::Dispatcher&, EdsConfig::OnUpdate on_update) {
      ++subscriptions;
      deliver = std::move(on_update);
      return std::make_unique<EdsSubscription>();
    };
    return c;
  }
};

EndpointConfig endpoint(uint16_t port, uint32_t priority = 0, uint32_t weight = 1,
                        uint32_t health_flags = 0) {
  EndpointConfig e;
  e.address = network::parseIpAndPort("127.0.0.1:" + std::to_string(port), nullptr);
  e.port = port;
  e.priority = priority;
  e.weight = weight;
  e.health_flags = health_flags;
  return e;
}

class EdsTest : public ::testing::Test {
 protected:
  ClusterConfig edsCluster(const std::string& name, std::shared_ptr<EdsConfig> eds) {
    ClusterConfig c;
    c.info = std::make_shared<ClusterInfo>(name, store_);
    c.type = DiscoveryType::Eds;
    c.eds = std::move(eds);
    return c;
  }
  void runPosts() { main_.run(event::Dispatcher::RunType::NonBlock); }
  void advance(milliseconds d) { time_.advanceTimeAndRun(d, main_); }
  template <class P>
  bool runUntil(P pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      main_.run(event::Dispatcher::RunType::NonBlock);
    }
    return true;
  }
  // The ports the worker's balancer picks over many requests.
  std::set<uint32_t> picked(const std::string& cluster) {
    std::set<uint32_t> out;
    auto tlc = tlcm_.get(cluster);
    if (!tlc) return out;
    for (int i = 0; i < 50; ++i) {
      if (auto h = tlc->chooseHost(nullptr)) out.insert(h->address()->port());
    }
    return out;
  }
  HostSharedPtr hostOn(const std::string& cluster, uint16_t port) {
    for (const auto& v : cm_.clusters()) {
      if (v.info->name() != cluster) continue;
      for (const auto& p : v.hosts->priorities) {
        for (const auto& h : p.hosts) {
          if (h->address()->port() == port) return h;
        }
      }
    }
    return nullptr;
  }
  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }
  uint64_t gauge(const std::string& name) { return store_.gauge(name).value(); }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl main_{"main", time_};
  stats::Store store_;
  DnsResolver dns_;
  ClusterManager cm_{main_, dns_, store_};
  ThreadLocalClusterManager tlcm_{main_};
  FakeEds eds_;
};

TEST_F(EdsTest, AStaticEdsClusterWarmsUntilItsFirstAssignment) {
  cm_.addCluster(edsCluster("backend", eds_.config()));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EXPECT_EQ(eds_.subscriptions, 1);
  EXPECT_FALSE(initialized);  // no hosts yet: start-up waits
  ASSERT_TRUE(eds_.deliver);

  EdsAssignment a;
  a.endpoints = {endpoint(1001), endpoint(1002)};
  eds_.deliver(&a);
  EXPECT_TRUE(initialized);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001, 1002}));
  EXPECT_EQ(gauge("cluster.backend.membership_total"), 2u);
  EXPECT_EQ(gauge("cluster.backend.membership_healthy"), 2u);
  // The timer was disarmed: the timeout passing later changes nothing.
  advance(milliseconds(20000));
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001, 1002}));
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, AnUpdateKeepsHostsWithTheirStateAddsNewOnesAndDropsRemovedOnes) {
  cm_.addCluster(edsCluster("backend", eds_.config()));
  cm_.registerWorker(main_, tlcm_);
  cm_.start(nullptr);
  EdsAssignment a;
  a.endpoints = {endpoint(1001), endpoint(1002)};
  eds_.deliver(&a);
  runPosts();
  HostSharedPtr kept = hostOn("backend", 1002);
  ASSERT_NE(kept, nullptr);
  kept->stats().rq_total = 7;  // state that must survive
  auto worker_view = tlcm_.get("backend");

  EdsAssignment b;
  b.endpoints = {endpoint(1002, 0, 5), endpoint(1003)};
  eds_.deliver(&b);
  runPosts();
  EXPECT_EQ(hostOn("backend", 1002), kept);  // same Host: same stats, health, pools
  EXPECT_EQ(kept->stats().rq_total, 7u);
  EXPECT_EQ(kept->weight(), 5u);  // weight changed in place
  EXPECT_EQ(hostOn("backend", 1001), nullptr);
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1002, 1003}));
  EXPECT_EQ(tlcm_.get("backend"), worker_view);  // same cluster, new hosts: no new view
  EXPECT_EQ(counter("cluster.backend.membership_change"), 2u);
  EXPECT_EQ(gauge("cluster.backend.membership_total"), 2u);

  // The same assignment again changes nothing.
  eds_.deliver(&b);
  EXPECT_EQ(counter("cluster.backend.membership_change"), 2u);

  // Everything removed: no host.
  EdsAssignment none;
  eds_.deliver(&none);
  runPosts();
  EXPECT_TRUE(picked("backend").empty());
  EXPECT_EQ(gauge("cluster.backend.membership_total"), 0u);
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, PrioritiesHealthStatusLocalityWeightsAndOverprovisioning) {
  cm_.addCluster(edsCluster("backend", eds_.config()));
  cm_.registerWorker(main_, tlcm_);
  cm_.start(nullptr);
  EdsAssignment a;
  // Priority 0: one host of two fails by EDS (UNHEALTHY/DRAINING); priority 1 stands by.
  a.endpoints = {endpoint(1001), endpoint(1002, 0, 1, Host::FailedEdsHealth), endpoint(2001, 1)};
  eds_.deliver(&a);
  runPosts();
  // 50% healthy x 1.4 = 70% of the load on priority 0 (only 1001), the rest on priority 1.
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001, 2001}));
  EXPECT_EQ(gauge("cluster.backend.membership_healthy"), 2u);
  EXPECT_EQ(gauge("cluster.backend.membership_total"), 3u);

  // With overprovisioning_factor 200, 50% healthy is enough for priority 0 to take it all.
  EdsAssignment b = a;
  b.overprovisioning_factor = 200;
  eds_.deliver(&b);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001}));

  // The failed host comes back healthy: the same Host, its flag cleared.
  HostSharedPtr h = hostOn("backend", 1002);
  EdsAssignment c = b;
  c.endpoints[1].health_flags = 0;
  eds_.deliver(&c);
  runPosts();
  EXPECT_EQ(hostOn("backend", 1002), h);
  EXPECT_FALSE(h->healthFlags() & Host::FailedEdsHealth);
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001, 1002}));
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, InitialFetchTimeoutStartsTheClusterWithNoHosts) {
  cm_.addCluster(edsCluster("backend", eds_.config(milliseconds(15000))));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  advance(milliseconds(14999));
  EXPECT_FALSE(initialized);
  advance(milliseconds(1));
  EXPECT_TRUE(initialized);
  runPosts();
  EXPECT_TRUE(picked("backend").empty());
  // A late assignment still brings hosts.
  EdsAssignment a;
  a.endpoints = {endpoint(1001)};
  eds_.deliver(&a);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001}));
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, AnUpdateWithoutTheClustersAssignmentCountsEmptyAndKeepsTheHosts) {
  cm_.addCluster(edsCluster("backend", eds_.config()));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  eds_.deliver(nullptr);  // as Envoy: initialized, no hosts
  EXPECT_TRUE(initialized);
  EXPECT_EQ(counter("cluster.backend.update_empty"), 1u);
  EdsAssignment a;
  a.endpoints = {endpoint(1001)};
  eds_.deliver(&a);
  eds_.deliver(nullptr);
  runPosts();
  EXPECT_EQ(counter("cluster.backend.update_empty"), 2u);
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001}));
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, AnEdsClusterFromCdsWarmsBesideTheOneItReplaces) {
  cm_.registerWorker(main_, tlcm_);
  cm_.start(nullptr);
  std::string error;
  ASSERT_TRUE(cm_.addOrUpdateCluster(edsCluster("backend", eds_.config()), error)) << error;
  EXPECT_EQ(gauge("cluster_manager.warming_clusters"), 1u);
  runPosts();
  EXPECT_EQ(tlcm_.get("backend"), nullptr);
  EdsAssignment a;
  a.endpoints = {endpoint(1001)};
  eds_.deliver(&a);
  runPosts();
  EXPECT_EQ(gauge("cluster_manager.warming_clusters"), 0u);
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001}));

  // A new definition: it warms (its own subscription) while the old one serves.
  ASSERT_TRUE(cm_.addOrUpdateCluster(edsCluster("backend", eds_.config()), error)) << error;
  EXPECT_EQ(eds_.subscriptions, 2);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001}));
  EdsAssignment b;
  b.endpoints = {endpoint(1002)};
  eds_.deliver(&b);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1002}));
  EXPECT_TRUE(cm_.removeCluster("backend"));
  runPosts();
  EXPECT_EQ(tlcm_.get("backend"), nullptr);
  cm_.unregisterWorkers();
}

HealthCheckConfig httpCheck() {
  HealthCheckConfig c;
  c.path = "/healthz";
  c.interval = milliseconds(1000);
  c.no_traffic_interval = milliseconds(1000);
  c.reuse_connection = false;  // each check connects: a stopped server fails the next one
  return c;
}

TEST_F(EdsTest, NewHostsWaitForTheirFirstCheckAndAHealthyRemovedHostStaysUntilItFails) {
  HttpServer s1(main_), s2(main_);
  ClusterConfig c = edsCluster("backend", eds_.config());
  c.health_checks.push_back(httpCheck());
  cm_.addCluster(std::move(c));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EdsAssignment a;
  a.endpoints = {endpoint(s1.port)};
  eds_.deliver(&a);
  EXPECT_FALSE(initialized);  // until the first health check of its hosts
  ASSERT_TRUE(runUntil([&] { return initialized; }));
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s1.port}));

  // A new host starts failed and joins once its first check passes.
  EdsAssignment b;
  b.endpoints = {endpoint(s1.port), endpoint(s2.port)};
  eds_.deliver(&b);
  HostSharedPtr h2 = hostOn("backend", s2.port);
  ASSERT_NE(h2, nullptr);
  EXPECT_TRUE(h2->healthFlags() & Host::FailedActiveHealthCheck);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s1.port}));
  ASSERT_TRUE(runUntil([&] { return h2->healthy(); }));
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s1.port, s2.port}));

  // Removed while it passes its checks: it stays (pending removal) and keeps serving...
  EdsAssignment c2;
  c2.endpoints = {endpoint(s2.port)};
  eds_.deliver(&c2);
  HostSharedPtr h1 = hostOn("backend", s1.port);
  ASSERT_NE(h1, nullptr);
  EXPECT_TRUE(h1->healthFlags() & Host::PendingDynamicRemoval);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s1.port, s2.port}));
  // ...until it fails one.
  s1.stop();
  ASSERT_TRUE(runUntil([&] {
    advance(milliseconds(1000));
    return hostOn("backend", s1.port) == nullptr;
  }));
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s2.port}));
  EXPECT_EQ(gauge("cluster.backend.membership_total"), 1u);
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, IgnoreHealthOnHostRemovalDropsARemovedHostAtOnce) {
  HttpServer s1(main_), s2(main_);
  auto cfg = eds_.config();
  cfg->ignore_health_on_host_removal = true;
  ClusterConfig c = edsCluster("backend", cfg);
  c.health_checks.push_back(httpCheck());
  cm_.addCluster(std::move(c));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EdsAssignment a;
  a.endpoints = {endpoint(s1.port), endpoint(s2.port)};
  eds_.deliver(&a);
  ASSERT_TRUE(runUntil([&] { return initialized; }));
  EdsAssignment b;
  b.endpoints = {endpoint(s2.port)};
  eds_.deliver(&b);
  EXPECT_EQ(hostOn("backend", s1.port), nullptr);
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{s2.port}));
  cm_.unregisterWorkers();
}

TEST_F(EdsTest, AHostMovedToAnotherPriorityIsReplacedNotDuplicated) {
  HttpServer s1(main_);
  ClusterConfig c = edsCluster("backend", eds_.config());
  c.health_checks.push_back(httpCheck());
  cm_.addCluster(std::move(c));
  cm_.start(nullptr);
  EdsAssignment a;
  a.endpoints = {endpoint(s1.port)};
  eds_.deliver(&a);
  HostSharedPtr h = hostOn("backend", s1.port);
  ASSERT_TRUE(runUntil([&] { return h->healthy(); }));
  EdsAssignment b;
  b.endpoints = {endpoint(s1.port, 1)};
  eds_.deliver(&b);
  size_t n = 0;
  for (const auto& v : cm_.clusters()) {
    for (const auto& p : v.hosts->priorities) {
      for (const auto& host : p.hosts) {
        if (host->address()->port() == s1.port) {
          ++n;
          EXPECT_EQ(host->priority(), 1u);
          EXPECT_NE(host, h);
        }
      }
    }
  }
  EXPECT_EQ(n, 1u);
}

TEST_F(EdsTest, ARingHashClusterRebuildsItsSharedTablesOncePerHostChange) {
  ThreadLocalClusterManager other{main_};  // a second worker
  ClusterConfig c = edsCluster("ring", eds_.config());
  auto info = std::make_shared<ClusterInfo>("ring", store_);
  info->lb.policy = LbConfig::Policy::RingHash;
  c.info = info;
  cm_.addCluster(std::move(c));
  cm_.registerWorker(main_, tlcm_);
  cm_.registerWorker(main_, other);
  cm_.start(nullptr);
  auto tablesOf = [](ThreadLocalClusterManager& t) {
    auto* lb = dynamic_cast<const RingHashLoadBalancer*>(t.get("ring")->loadBalancer());
    return lb ? lb->tables().get() : nullptr;
  };
  const uint64_t builds = hashLbTableBuilds();
  EdsAssignment a;
  a.endpoints = {endpoint(2001), endpoint(2002)};
  eds_.deliver(&a);
  runPosts();
  EXPECT_EQ(hashLbTableBuilds(), builds + 1);
  ASSERT_NE(tablesOf(tlcm_), nullptr);
  EXPECT_EQ(tablesOf(tlcm_), tablesOf(other));
  const HashLbTables* first = tablesOf(tlcm_);
  eds_.deliver(&a);  // no change: no rebuild
  runPosts();
  EXPECT_EQ(hashLbTableBuilds(), builds + 1);
  a.endpoints.push_back(endpoint(2003));
  eds_.deliver(&a);
  runPosts();
  EXPECT_EQ(hashLbTableBuilds(), builds + 2);
  EXPECT_EQ(tablesOf(tlcm_), tablesOf(other));
  EXPECT_NE(tablesOf(tlcm_), first);
  EXPECT_EQ(tablesOf(tlcm_)->rings[0].size(), 1026u);  // three hosts
  cm_.unregisterWorkers();
}

// ---- The config side, with a real file.

class EdsFileTest : public EdsTest {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice_eds_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "eds.yaml").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Moves a new version into place (as Envoy's docs advise: a rename).
  void write(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  static std::string version(const std::string& v, const std::string& endpoints,
                             const std::string& extra = "") {
    return "version_info: '" + v + "'\nresources:\n" +
           "- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n"
           "  cluster_name: svc\n  endpoints:\n  - lb_endpoints:\n" + endpoints + extra;
  }
  static std::string lbEndpoint(const std::string& ip, uint16_t port) {
    return "    - endpoint: {address: {socket_address: {address: '" + ip +
           "', port_value: " + std::to_string(port) + "}}}\n";
  }
  bool buildCluster(const std::string& yaml_name, ClusterConfig& out,
                    std::vector<std::string>& errors) {
    envoy::config::cluster::v3::Cluster proto;
    proto.set_name(yaml_name);
    proto.set_type(envoy::config::cluster::v3::Cluster::EDS);
    auto* ecc = proto.mutable_eds_cluster_config();
    ecc->set_service_name("svc");
    ecc->mutable_eds_config()->mutable_path_config_source()->set_path(path_);
    ecc->mutable_eds_config()->mutable_initial_fetch_timeout()->set_seconds(2);
    return config::buildClusterConfig(proto, "static_resources.clusters[0]", secrets_, store_,
                                      out, errors);
  }
  std::filesystem::path dir_;
  std::string path_;
  config::SecretMap secrets_;
};

TEST_F(EdsFileTest, VersionsFromAFileApplyAndABadOneIsRefusedWithItsPath) {
  // Another cluster's assignment in the same file is not ours: ignored.
  write(version("1", lbEndpoint("127.0.0.1", 1001) + lbEndpoint("127.0.0.1", 1002),
                "- '@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n"
                "  cluster_name: other\n"));
  ClusterConfig c;
  std::vector<std::string> errors;
  ASSERT_TRUE(buildCluster("backend", c, errors)) << errors.front();
  ASSERT_NE(c.eds, nullptr);
  EXPECT_EQ(c.eds->service_name, "svc");
  EXPECT_EQ(c.eds->initial_fetch_timeout, milliseconds(2000));
  cm_.addCluster(std::move(c));
  cm_.registerWorker(main_, tlcm_);
  bool initialized = false;
  cm_.start([&] { initialized = true; });
  EXPECT_TRUE(initialized);  // the file is read when the subscription starts
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1001, 1002}));
  EXPECT_EQ(counter("cluster.backend.update_success"), 1u);

  write(version("2", lbEndpoint("127.0.0.1", 1003)));
  ASSERT_TRUE(runUntil([&] { return counter("cluster.backend.update_success") == 2; }));
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1003}));

  // Not an IP address: refused whole; the last hosts stay.
  write(version("3", lbEndpoint("not-an-ip", 1004)));
  ASSERT_TRUE(runUntil([&] { return counter("cluster.backend.update_rejected") == 1; }));
  runPosts();
  EXPECT_EQ(picked("backend"), (std::set<uint32_t>{1003}));
  EXPECT_EQ(counter("cluster.backend.update_attempt"), 3u);
  cm_.unregisterWorkers();
}

TEST_F(EdsFileTest, ABadAssignmentsErrorNamesTheField) {
  config::DiscoveryUpdate update;
  std::vector<std::string> errors;
  ASSERT_TRUE(config::decodeDiscoveryResponseText(
      version("1", lbEndpoint("127.0.0.1", 1001) + lbEndpoint("nope", 1002)),
      config::kClusterLoadAssignmentType, update, errors))
      << errors.front();
  std::optional<EdsAssignment> out;
  EXPECT_FALSE(config::edsAssignmentFromUpdate(update, "svc", out, errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind(
                "resources[0].endpoints[0].lb_endpoints[1].endpoint.address.socket_address: ", 0),
            0u)
      << errors[0];
  // Not our name: nothing to check, nothing found.
  errors.clear();
  out.reset();
  EXPECT_TRUE(config::edsAssignmentFromUpdate(update, "other", out, errors));
  EXPECT_FALSE(out.has_value());
}

TEST_F(EdsFileTest, AnEdsClusterNeedsAPathConfigSourceAndNoLoadAssignment) {
  auto refuse = [&](auto edit, const std::string& expected) {
    envoy::config::cluster::v3::Cluster proto;
    proto.set_name("backend");
    proto.set_type(envoy::config::cluster::v3::Cluster::EDS);
    edit(proto);
    ClusterConfig out;
    std::vector<std::string> errors;
    EXPECT_FALSE(config::buildClusterConfig(proto, "static_resources.clusters[0]", secrets_,
                                            store_, out, errors));
    ASSERT_FALSE(errors.empty());
    EXPECT_EQ(errors[0].rfind(expected, 0), 0u) << errors[0];
  };
  refuse([](auto&) {}, "static_resources.clusters[0].eds_cluster_config.eds_config: ");
  refuse([](auto& p) { p.mutable_eds_cluster_config()->mutable_eds_config()->mutable_ads(); },
         "static_resources.clusters[0].eds_cluster_config.eds_config.ads: ");
  refuse(
      [&](auto& p) {
        p.mutable_eds_cluster_config()->mutable_eds_config()->mutable_path_config_source()->set_path(
            path_);
        p.mutable_load_assignment()->set_cluster_name("backend");
      },
      "static_resources.clusters[0].load_assignment: ");
}

}  // namespace
}  // namespace sluice::upstream
