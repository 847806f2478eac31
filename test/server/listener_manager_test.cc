// The listener manager's LDS updates, on the simulated clock: all-or-nothing per update, a
// changed listener on the same address keeps its sockets, drains for --drain-time-s.
// A listener whose route tables have not come warms first. (Workers are left out: the
// end-to-end test drives them; the connection handler they run is tested alone, on the main
// dispatcher.)

#include "server/listener_manager.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "access_log/file_sink.h"
#include "config/grpc_mux.h"
#include "config/rds_api.h"
#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "network/io_socket.h"
#include "server/worker.h"
#include "stats/stats.h"
#include "upstream/cluster_manager.h"

namespace sluice::server {
namespace {

// A listener whose connection manager has `routes` (a route_config or rds block, indented
// for the connection manager's fields).
std::string listenerWithRoutes(const std::string& name, int port, const std::string& extra,
                               const std::string& routes) {
  return "- '@type': type.googleapis.com/envoy.config.listener.v3.Listener\n"
         "  name: " + name + "\n"
         "  address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(port) +
         "}}\n" + extra +
         "  filter_chains:\n"
         "  - filters:\n"
         "    - name: envoy.filters.network.http_connection_manager\n"
         "      typed_config:\n"
         "        '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n"
         "        stat_prefix: ingress\n" + routes +
         "        http_filters:\n"
         "        - name: envoy.filters.http.router\n"
         "          typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n";
}

std::string listenerYaml(const std::string& name, const std::string& cluster, int port = 0,
                         const std::string& extra = "") {
  return listenerWithRoutes(
      name, port, extra,
      "        route_config:\n"
      "          virtual_hosts:\n"
      "          - {name: all, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: " +
          cluster + "}}]}\n");
}

class ListenerManagerTest : public testing::Test {
 protected:
  ListenerManagerTest() {
    lm_.startWorkers({});
  }

  bool apply(const std::string& version, const std::string& resources,
             std::vector<std::string>* errors_out = nullptr) {
    config::DiscoveryUpdate update;
    std::vector<std::string> errors;
    const std::string text = "version_info: " + version + "\nresources:\n" + resources;
    bool ok = config::decodeDiscoveryResponseText(text, config::kListenerType, update, errors) &&
              lm_.onConfigUpdate(update, errors);
    if (errors_out) *errors_out = errors;
    return ok;
  }
  // A bootstrap listener, as the server adds it.
  testing::AssertionResult addStatic(const std::string& yaml) {
    config::DiscoveryUpdate first;
    std::vector<std::string> errors;
    envoy::config::listener::v3::Listener proto;
    config::ListenerConfig lc;
    std::string error;
    if (!config::decodeDiscoveryResponseText("resources:\n" + yaml, config::kListenerType, first,
                                             errors) ||
        !config::copyMessage(*first.resources[0], proto) ||
        !config::buildListenerConfig(proto, "l", secrets_, {"a"}, store_, sinks_, lc, errors) ||
        !lm_.addStaticListener(std::move(lc), proto, error)) {
      return testing::AssertionFailure() << error << (errors.empty() ? "" : errors[0]);
    }
    return testing::AssertionSuccess();
  }
  uint64_t counter(const std::string& name) { return store_.counter(name).value(); }
  int64_t gauge(const std::string& name) { return store_.gauge(name).value(); }
  const ListenerManager::Listener* active(const std::string& name) {
    for (const auto& l : lm_.active()) {
      if (l.name == name) return &l;
    }
    return nullptr;
  }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl main_{"main", time_};
  stats::Store store_;
  access_log::FileSinkManager sinks_;
  config::SecretMap secrets_;
  ListenerManager lm_{main_, store_, sinks_, secrets_, 2, std::chrono::seconds(10),
                      [] { return std::set<std::string>{"a", "b"}; }};
};

// The connection handler keeps its connections on an intrusive list: connections closed in
// any order (the middle, the newest, the oldest) leave it, and the count other threads read
// follows; a drain walks it, closeConnections() empties it.
TEST_F(ListenerManagerTest, TheConnectionHandlerTracksConnectionsClosedInAnyOrder) {
  config::DiscoveryUpdate update;
  std::vector<std::string> errors;
  envoy::config::listener::v3::Listener proto;
  config::ListenerConfig lc;
  ASSERT_TRUE(config::decodeDiscoveryResponseText("resources:\n" + listenerYaml("h", "a"),
                                                  config::kListenerType, update, errors));
  ASSERT_TRUE(config::copyMessage(*update.resources[0], proto));
  ASSERT_TRUE(config::buildListenerConfig(proto, "h", secrets_, {"a"}, store_, sinks_, lc, errors))
      << (errors.empty() ? "" : errors[0]);
  std::string error;
  auto any = network::fromIp("127.0.0.1", 0, &error);
  network::SocketFd listen = network::createListenSocket(*any, false, 16, &error);
  ASSERT_TRUE(listen.isOpen()) << error;
  auto bound = network::localAddress(listen.fd());
  std::atomic<size_t> count{0};
  {
    ConnectionHandler handler(main_, store_, &count);
    handler.addListener(lc, listen, bound);
    auto runUntil = [&](size_t n) {
      for (int i = 0; i < 100000 && handler.numConnections() != n; ++i) {
        main_.run(event::Dispatcher::RunType::NonBlock);
      }
      main_.clearDeferredDeleteList();
      return handler.numConnections() == n && count.load() == n;
    };
    std::vector<int> clients;
    for (int i = 0; i < 4; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::connect(fd, bound->sockAddr(), bound->sockAddrLen()), 0);
      clients.push_back(fd);
      ASSERT_TRUE(runUntil(clients.size()));
    }
    ::close(clients[1]);  // in the middle of the list
    ASSERT_TRUE(runUntil(3));
    ::close(clients[3]);  // the newest: the head
    ASSERT_TRUE(runUntil(2));
    ::close(clients[0]);  // the oldest: the tail
    ASSERT_TRUE(runUntil(1));
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(::connect(fd, bound->sockAddr(), bound->sockAddrLen()), 0);
    ASSERT_TRUE(runUntil(2));
    // A walk of the list reaches each connection left, once: a drain closes every idle one.
    const uint64_t drained = counter("http.ingress.downstream_cx_drain_close");
    handler.drainConnections();
    EXPECT_EQ(counter("http.ingress.downstream_cx_drain_close"), drained + 2);
    handler.closeConnections();
    EXPECT_EQ(handler.numConnections(), 0u);
    EXPECT_EQ(count.load(), 0u);
    main_.clearDeferredDeleteList();
    ::close(clients[2]);
    ::close(fd);
  }
}

TEST_F(ListenerManagerTest, AddsChangesInPlaceAndDrainsForTheDrainTime) {
  ASSERT_TRUE(apply("v1", listenerYaml("l0", "a")));
  const auto* l = active("l0");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->sockets->sockets.size(), 2u);  // reuse_port: one per worker
  const auto sockets = l->sockets;
  const auto tag = l->tag;
  EXPECT_EQ(counter("listener_manager.listener_added"), 1u);
  EXPECT_EQ(gauge("listener_manager.total_listeners_active"), 1);

  // The same version again changes nothing.
  ASSERT_TRUE(apply("v1b", listenerYaml("l0", "a")));
  EXPECT_EQ(counter("listener_manager.listener_modified"), 0u);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 0);

  ASSERT_TRUE(apply("v2", listenerYaml("l0", "b")));
  l = active("l0");
  EXPECT_EQ(counter("listener_manager.listener_modified"), 1u);
  EXPECT_EQ(l->sockets, sockets) << "same address: the listen sockets are kept";
  EXPECT_EQ(l->tag, tag);
  EXPECT_EQ(l->version_info, "v2");
  EXPECT_EQ(lm_.version(), "v2");
  ASSERT_EQ(lm_.draining().size(), 1u);
  EXPECT_EQ(lm_.draining()[0]->version_info, "v1");
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 1);

  time_.advanceTimeAndRun(std::chrono::milliseconds(9999), main_);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 1);
  time_.advanceTimeAndRun(std::chrono::milliseconds(1), main_);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 0);
  EXPECT_TRUE(lm_.draining().empty());
}

TEST_F(ListenerManagerTest, NewAddressBindsNewSocketsAndRemovalDrains) {
  ASSERT_TRUE(apply("v1", listenerYaml("l0", "a") + listenerYaml("l1", "a")));
  const auto old_sockets = active("l0")->sockets;
  ASSERT_TRUE(apply("v2", listenerYaml("l0", "a", 0, "  per_connection_buffer_limit_bytes: 1024\n") +
                              listenerYaml("l1", "a")));
  // Port 0 both times: the same address, kept.
  EXPECT_EQ(active("l0")->sockets, old_sockets);
  network::SocketFd probe = network::createListenSocket(
      *network::fromIp("127.0.0.1", 0, nullptr), false, 1, nullptr);
  const uint32_t free_port = network::localAddress(probe.fd())->port();
  probe.close();
  ASSERT_TRUE(apply("v3", listenerYaml("l0", "a", free_port) + listenerYaml("l1", "a")));
  EXPECT_NE(active("l0")->sockets, old_sockets);
  EXPECT_EQ(active("l0")->sockets->bound->port(), free_port);
  ASSERT_TRUE(apply("v4", listenerYaml("l0", "a", free_port)));
  EXPECT_EQ(active("l1"), nullptr);
  EXPECT_EQ(counter("listener_manager.listener_removed"), 1u);
  EXPECT_EQ(gauge("listener_manager.total_listeners_active"), 1);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 3);
  time_.advanceTimeAndRun(std::chrono::seconds(10), main_);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 0);
}

TEST_F(ListenerManagerTest, ANewListenerTakesOverTheSocketsOfOneRemovedInTheSameUpdate) {
  network::SocketFd probe = network::createListenSocket(
      *network::fromIp("127.0.0.1", 0, nullptr), false, 1, nullptr);
  const int port = static_cast<int>(network::localAddress(probe.fd())->port());
  probe.close();
  ASSERT_TRUE(apply("v1", listenerYaml("old", "a", port)));
  const auto sockets = active("old")->sockets;
  // Binding anew would fail: the removed listener's sockets are still open.
  std::vector<std::string> errors;
  ASSERT_TRUE(apply("v2", listenerYaml("new", "b", port), &errors))
      << (errors.empty() ? "" : errors.back());
  EXPECT_EQ(active("old"), nullptr);
  ASSERT_NE(active("new"), nullptr);
  EXPECT_EQ(active("new")->sockets, sockets);
  EXPECT_NE(active("new")->tag, 0u);
  EXPECT_EQ(counter("listener_manager.listener_removed"), 1u);
  EXPECT_EQ(counter("listener_manager.listener_added"), 2u);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 1);
  // Another address, or the port kept by a listener that stays, still binds anew or fails.
  EXPECT_FALSE(apply("v3", listenerYaml("new", "b", port) + listenerYaml("third", "a", port),
                     &errors));
  EXPECT_EQ(active("new")->sockets, sockets);
}

TEST_F(ListenerManagerTest, BadUpdatesChangeNothing) {
  ASSERT_TRUE(apply("v1", listenerYaml("l0", "a")));
  const auto sockets = active("l0")->sockets;
  std::vector<std::string> errors;

  EXPECT_FALSE(apply("v2", listenerYaml("l0", "b") + listenerYaml("l1", "nowhere"), &errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0],
            "resources[1].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]."
            "routes[0].route.cluster: unknown cluster 'nowhere'");

  EXPECT_FALSE(apply("v3", listenerYaml("l0", "b") + listenerYaml("l0", "a"), &errors));
  EXPECT_EQ(errors.back(), "resources[1].name: duplicate listener 'l0'");

  // Two listeners on one address.
  network::SocketFd probe = network::createListenSocket(
      *network::fromIp("127.0.0.1", 0, nullptr), false, 1, nullptr);
  const int port = static_cast<int>(network::localAddress(probe.fd())->port());
  probe.close();
  EXPECT_FALSE(apply("v4", listenerYaml("l1", "a", port) + listenerYaml("l2", "a", port), &errors));
  EXPECT_NE(errors.back().find("resources[1].address: 127.0.0.1:" + std::to_string(port) +
                               " is already the address of listener 'l1'"),
            std::string::npos)
      << errors.back();

  // A bind that fails refuses the whole update: the new listener before it is not added.
  network::SocketFd taken = network::createListenSocket(
      *network::fromIp("127.0.0.1", 0, nullptr), false, 1, nullptr);
  const int taken_port = static_cast<int>(network::localAddress(taken.fd())->port());
  EXPECT_FALSE(apply("v5", listenerYaml("l0", "b") + listenerYaml("l3", "a", taken_port), &errors));
  EXPECT_NE(errors.back().find("listener 'l3' .address"), std::string::npos) << errors.back();

  EXPECT_EQ(lm_.version(), "v1");
  EXPECT_EQ(lm_.active().size(), 1u);
  EXPECT_EQ(active("l0")->version_info, "v1");
  EXPECT_EQ(active("l0")->sockets, sockets);
  EXPECT_EQ(counter("listener_manager.listener_added"), 1u);
  EXPECT_EQ(counter("listener_manager.listener_modified"), 0u);
  EXPECT_TRUE(lm_.draining().empty());
}

TEST_F(ListenerManagerTest, StaticListenersCannotBeReplaced) {
  ASSERT_TRUE(addStatic(listenerYaml("static", "a")));
  std::vector<std::string> errors;
  EXPECT_FALSE(apply("v1", listenerYaml("static", "b"), &errors));
  EXPECT_EQ(errors.back(),
            "resources[0].name: listener 'static' is a static listener of the bootstrap; LDS "
            "cannot replace it");
  ASSERT_TRUE(apply("v2", listenerYaml("dyn", "b")));
  // An update without the static listener leaves it.
  EXPECT_NE(active("static"), nullptr);
  EXPECT_EQ(gauge("listener_manager.total_listeners_active"), 2);
}

// Listeners whose route tables come over ADS (a stream never started here: the test marks the
// tables in; the end-to-end test has the stream and the fetch timeout).
class ListenerWarmingTest : public ListenerManagerTest {
 protected:
  ListenerWarmingTest() {
    factory_.setAds(mux_);
    config::setRouteConfigProviders(&rds_);
    config::setAdsConfigured(true);
  }
  ~ListenerWarmingTest() override {
    config::setAdsConfigured(false);
    config::setRouteConfigProviders(nullptr);
  }
  static std::string rdsListener(const std::string& name, const std::string& table) {
    return listenerWithRoutes(name, 0, "",
                              "        rds:\n"
                              "          route_config_name: " + table + "\n"
                              "          config_source: {ads: {}, initial_fetch_timeout: 5s}\n");
  }
  // The route table's first version came (or was refused).
  void tableCame(const std::string& name) {
    for (const auto& [key, api] : rds_.all()) {
      if (key.second == name) api->initTarget()->setReady();
    }
  }
  const ListenerManager::Listener* warming(const std::string& name) {
    for (const auto& l : lm_.warming()) {
      if (l.name == name) return &l;
    }
    return nullptr;
  }

  upstream::ThreadLocalClusterManager tlcm_{main_};
  std::shared_ptr<config::GrpcMux> mux_ = std::make_shared<config::GrpcMux>(main_, tlcm_, store_);
  config::SubscriptionFactory factory_{main_, store_};
  config::RouteConfigProviders rds_{factory_};
};

TEST_F(ListenerWarmingTest, ANewListenerWarmsUntilItsRoutesCome) {
  int warmed = 0;
  lm_.whenWarmed([&] { ++warmed; });
  EXPECT_EQ(warmed, 1);  // nothing warming
  ASSERT_TRUE(apply("v1", rdsListener("l0", "r1")));
  EXPECT_EQ(active("l0"), nullptr);
  ASSERT_NE(warming("l0"), nullptr);
  EXPECT_NE(warming("l0")->sockets, nullptr) << "bound while warming: a bad address fails the update";
  EXPECT_EQ(warming("l0")->init->pending(), std::vector<std::string>{"route config 'r1'"});
  EXPECT_EQ(gauge("listener_manager.total_listeners_warming"), 1);
  EXPECT_EQ(gauge("listener_manager.total_listeners_active"), 0);
  lm_.whenWarmed([&] { ++warmed; });
  EXPECT_EQ(warmed, 1);

  tableCame("r1");
  ASSERT_NE(active("l0"), nullptr);
  EXPECT_EQ(active("l0")->version_info, "v1");
  EXPECT_TRUE(lm_.warming().empty());
  EXPECT_EQ(gauge("listener_manager.total_listeners_warming"), 0);
  EXPECT_EQ(counter("listener_manager.listener_added"), 1u);
  EXPECT_EQ(warmed, 2);
}

TEST_F(ListenerWarmingTest, TheActiveVersionServesWhileTheNewOneWarms) {
  ASSERT_TRUE(apply("v1", listenerYaml("l0", "a")));
  const auto sockets = active("l0")->sockets;
  ASSERT_TRUE(apply("v2", rdsListener("l0", "r1")));
  EXPECT_EQ(active("l0")->version_info, "v1");
  ASSERT_NE(warming("l0"), nullptr);
  EXPECT_EQ(warming("l0")->sockets, nullptr) << "same address: it will take the active one's";
  const init::Watcher* watcher = warming("l0")->init.get();
  // The same version again leaves it warming as it was.
  ASSERT_TRUE(apply("v3", rdsListener("l0", "r1")));
  EXPECT_EQ(warming("l0")->init.get(), watcher);
  // Back to the active version: the warming one goes, nothing changes.
  ASSERT_TRUE(apply("v4", listenerYaml("l0", "a")));
  EXPECT_EQ(warming("l0"), nullptr);
  tableCame("r1");
  EXPECT_EQ(active("l0")->version_info, "v1");
  EXPECT_EQ(counter("listener_manager.listener_modified"), 0u);

  ASSERT_TRUE(apply("v5", rdsListener("l0", "r2")));
  tableCame("r2");
  EXPECT_EQ(active("l0")->version_info, "v5");
  EXPECT_EQ(active("l0")->sockets, sockets);
  EXPECT_EQ(counter("listener_manager.listener_modified"), 1u);
  EXPECT_EQ(gauge("listener_manager.total_listeners_draining"), 1);
}

TEST_F(ListenerWarmingTest, AWarmingListenerSupersededOrRemovedNeverServes) {
  ASSERT_TRUE(apply("v1", rdsListener("l0", "r1")));
  ASSERT_TRUE(apply("v2", rdsListener("l0", "r2")));
  EXPECT_EQ(warming("l0")->init->pending(), std::vector<std::string>{"route config 'r2'"});
  tableCame("r1");  // the superseded version's table
  EXPECT_EQ(active("l0"), nullptr);
  ASSERT_TRUE(apply("v3", listenerYaml("l1", "a")));
  EXPECT_TRUE(lm_.warming().empty());
  tableCame("r2");
  EXPECT_EQ(active("l0"), nullptr);
  EXPECT_NE(active("l1"), nullptr);
  EXPECT_EQ(counter("listener_manager.listener_added"), 1u);
}

TEST_F(ListenerWarmingTest, ARouteTableNoListenerNamesIsUnsubscribed) {
  auto subscribed = [&] {
    std::vector<std::string> names;
    for (const auto& [key, api] : rds_.all()) names.push_back(key.second);
    return names;
  };
  ASSERT_TRUE(apply("v1", rdsListener("l0", "r1") + rdsListener("l1", "r1") +
                              rdsListener("l2", "r2")));
  tableCame("r1");
  tableCame("r2");
  EXPECT_EQ(subscribed(), (std::vector<std::string>{"r1", "r2"}));
  // l1 still names r1; l2 and its r2 go once l2's drain is over.
  ASSERT_TRUE(apply("v2", rdsListener("l1", "r1")));
  time_.advanceTimeAndRun(std::chrono::seconds(1), main_);
  EXPECT_EQ(subscribed(), (std::vector<std::string>{"r1", "r2"})) << "still draining";
  time_.advanceTimeAndRun(std::chrono::seconds(10), main_);
  EXPECT_EQ(subscribed(), std::vector<std::string>{"r1"});
  // Naming it again subscribes again; and the last user of r1 lets it go.
  ASSERT_TRUE(apply("v3", rdsListener("l1", "r2")));
  EXPECT_EQ(subscribed(), (std::vector<std::string>{"r1", "r2"}));
  tableCame("r2");
  time_.advanceTimeAndRun(std::chrono::seconds(11), main_);
  EXPECT_EQ(subscribed(), std::vector<std::string>{"r2"});
}

TEST_F(ListenerWarmingTest, StartUpWaitsForAStaticListenersRoutes) {
  ASSERT_TRUE(addStatic(rdsListener("static", "r1")));
  bool warmed = false;
  lm_.whenWarmed([&] { warmed = true; });
  EXPECT_FALSE(warmed);
  EXPECT_NE(active("static"), nullptr);  // a bootstrap listener is there from the start
  tableCame("r1");
  EXPECT_TRUE(warmed);
}

}  // namespace
}  // namespace sluice::server
