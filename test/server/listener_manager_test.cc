// The listener manager's LDS updates, on the simulated clock: all-or-nothing per update, a
// changed listener on the same address keeps its sockets, drains for --drain-time-s.
// (Workers are left out: the end-to-end test drives them.)

#include "server/listener_manager.h"

#include <gtest/gtest.h>

#include "access_log/file_sink.h"
#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "network/io_socket.h"
#include "stats/stats.h"

namespace sluice::server {
namespace {

std::string listenerYaml(const std::string& name, const std::string& cluster, int port = 0,
                         const std::string& extra = "") {
  return "- '@type': type.googleapis.com/envoy.config.listener.v3.Listener\n"
         "  name: " + name + "\n"
         "  address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(port) +
         "}}\n" + extra +
         "  filter_chains:\n"
         "  - filters:\n"
         "    - name: envoy.filters.network.http_connection_manager\n"
         "      typed_config:\n"
         "        '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n"
         "        stat_prefix: ingress\n"
         "        route_config:\n"
         "          virtual_hosts:\n"
         "          - {name: all, domains: ['*'], routes: [{match: {prefix: /}, route: {cluster: " +
         cluster + "}}]}\n"
         "        http_filters:\n"
         "        - name: envoy.filters.http.router\n"
         "          typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n";
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
  config::DiscoveryUpdate first;
  std::vector<std::string> errors;
  ASSERT_TRUE(config::decodeDiscoveryResponseText(
      "resources:\n" + listenerYaml("static", "a"), config::kListenerType, first, errors));
  envoy::config::listener::v3::Listener proto;
  ASSERT_TRUE(config::copyMessage(*first.resources[0], proto));
  config::ListenerConfig lc;
  ASSERT_TRUE(config::buildListenerConfig(proto, "l", secrets_, {"a"}, store_, sinks_, lc, errors));
  std::string error;
  ASSERT_TRUE(lm_.addStaticListener(std::move(lc), proto, error)) << error;
  EXPECT_FALSE(apply("v1", listenerYaml("static", "b"), &errors));
  EXPECT_EQ(errors.back(),
            "resources[0].name: listener 'static' is a static listener of the bootstrap; LDS "
            "cannot replace it");
  ASSERT_TRUE(apply("v2", listenerYaml("dyn", "b")));
  // An update without the static listener leaves it.
  EXPECT_NE(active("static"), nullptr);
  EXPECT_EQ(gauge("listener_manager.total_listeners_active"), 2);
}

}  // namespace
}  // namespace sluice::server
