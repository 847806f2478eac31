#include "server/server.h"

#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <google/protobuf/util/json_util.h>
#include <malloc.h>
#include <signal.h>

#include "access_log/file_sink.h"
#include "admin/admin.h"
#include "admin/config_dump.h"
#include "common/logger.h"
#include "common/resident_pages.h"
#include "common/version.h"
#include "config/api_descriptors.h"
#include "config/bootstrap_loader.h"
#include "config/cds_api.h"
#include "config/eds_api.h"
#include "config/grpc_mux.h"
#include "config/filesystem_subscription.h"
#include "config/proxy_config.h"
#include "config/rds_api.h"
#include "config/sds_api.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "event/watchdog.h"
#include "network/io_socket.h"
#include "server/listener_manager.h"
#include "server/worker.h"
#include "stats/render.h"
#include "stats/stats.h"
#include "upstream/dns.h"

namespace sluice::server {

namespace {

std::string messageToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string binary = m.SerializeAsString();
  auto status = google::protobuf::util::BinaryToJsonString(
      &config::envoyApiTypeResolver(),
      std::string(config::kTypeUrlPrefix) + "/" + m.GetDescriptor()->full_name(), binary, &out,
      opts);
  if (!status.ok()) return "{}";
  return out;
}

std::string rfc3339(event::SystemTime t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A message for /config_dump: its sensitive fields redacted, as Envoy's dump has them.
nlohmann::json redactedJson(const google::protobuf::Message& m) {
  std::unique_ptr<google::protobuf::Message> copy(m.New());
  copy->CopyFrom(m);
  admin::redactSensitive(*copy);
  return nlohmann::json::parse(messageToJson(*copy));
}

// Envoy's SecretsConfigDump: static_resources.secrets, and each SDS secret, active once a
// version was taken (warming before, as Envoy shows one: "uninitialized", the name only).
nlohmann::json secretsConfigDump(
    const google::protobuf::RepeatedPtrField<envoy::extensions::transport_sockets::tls::v3::Secret>&
        statics,
    const std::string& start_time) {
  constexpr const char* kSecretType =
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
  nlohmann::json dump;
  dump["@type"] = "type.googleapis.com/envoy.admin.v3.SecretsConfigDump";
  for (const auto& s : statics) {
    nlohmann::json sj = redactedJson(s);
    sj["@type"] = kSecretType;
    dump["static_secrets"].push_back(
        {{"name", s.name()}, {"last_updated", start_time}, {"secret", sj}});
  }
  if (const config::SecretManager* manager = config::secretManager()) {
    for (const auto& [key, api] : manager->all()) {
      if (key.first == "static") continue;  // a static secret's watch: shown above
      if (!api->loaded()) {
        dump["dynamic_warming_secrets"].push_back(
            {{"name", api->name()},
             {"version_info", "uninitialized"},
             {"secret", {{"@type", kSecretType}, {"name", api->name()}}}});
        continue;
      }
      nlohmann::json sj = redactedJson(api->secret());
      sj["@type"] = kSecretType;
      dump["dynamic_active_secrets"].push_back({{"name", api->name()},
                                                {"version_info", api->versionInfo()},
                                                {"last_updated", rfc3339(api->lastUpdated())},
                                                {"secret", sj}});
    }
  }
  return dump;
}

const char* kStateNames[] = {"LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING"};

class Server {
 public:
  explicit Server(const Options& o) : options_(o) {}

  int run() {
    envoy::config::bootstrap::v3::Bootstrap bootstrap;
    std::vector<std::string> errors;
    config::BootstrapSource source{options_.config_path, options_.config_yaml};
    if (!config::loadBootstrap(source, bootstrap, errors)) return reportErrors(errors);
    if (!options_.service_cluster.empty()) bootstrap.mutable_node()->set_cluster(options_.service_cluster);
    if (!options_.service_node.empty()) bootstrap.mutable_node()->set_id(options_.service_node);
    if (options_.mode == "validate") {
      if (!config::buildProxyConfig(bootstrap, store_, sinks_, proxy_, errors)) {
        return reportErrors(errors);
      }
      std::printf("configuration '%s' OK\n", options_.config_path.c_str());
      return 0;
    }
    bootstrap_ = std::move(bootstrap);
    return serve();
  }

 private:
  // The workers start (the listeners open) once the clusters and LDS's first version are in.
  void startServing() {
    if (!clusters_ready_ || !lds_ready_ || serving_) return;
    serving_ = true;
    std::vector<Worker*> workers;
    for (auto& w : workers_) workers.push_back(w.get());
    lm_->startWorkers(workers);
    for (auto& w : workers_) w->start();
    if (!exiting_) {
      state_ = 0;
      store_.gauge("server.state").set(0);
    }
    store_.gauge("server.live").set(1);
    SLUICE_LOG(info, main, "all clusters initialized; {} worker(s) serving", workers_.size());
    // Loading the config (YAML, JSON, protos, descriptors) freed most of what it allocated,
    // but glibc keeps freed pages mapped: hand them back once, now that the workers serve.
    malloc_trim(0);
    // Likewise the code and constants only start-up ran and read (static initialisers,
    // config parsing and validation, the embedded API descriptors): unmapped, they stay in
    // the page cache, and what serving runs maps back what it uses.
    releaseReadOnlyFilePages();
  }

  int reportErrors(const std::vector<std::string>& errors) {
    for (const auto& e : errors) std::fprintf(stderr, "error: %s\n", e.c_str());
    if (options_.mode == "validate") {
      std::fprintf(stderr, "configuration '%s' is invalid (%zu error%s)\n",
                   options_.config_path.c_str(), errors.size(), errors.size() == 1 ? "" : "s");
    }
    return 1;
  }

  int serve() {
    start_time_ = time_.systemTime();
    event::DispatcherImpl main("main_thread", time_);
    main_ = &main;
    // Subscriptions (CDS, LDS, RDS, ...) from files or over the ADS stream. The stream runs on
    // the main thread, through its own view of the clusters; it exists before the config is
    // built, as the listeners' RDS subscribe to it while they are.
    upstream::ThreadLocalClusterManager main_tlcm(main);
    config::SubscriptionFactory subscriptions(main, store_);
    config::setSubscriptionFactory(&subscriptions);
    std::shared_ptr<config::GrpcMux> ads;
    if (bootstrap_.dynamic_resources().has_ads_config()) {
      ads = std::make_shared<config::GrpcMux>(main, main_tlcm, store_);
      subscriptions.setAds(ads);
    }
    // RDS subscriptions start as the connection managers that name them are built.
    config::RouteConfigProviders rds(subscriptions);
    rds_ = &rds;
    config::setRouteConfigProviders(&rds);
    // SDS secrets from files: each is read as the first TLS context naming it is built.
    config::SecretManager sds(main, store_, &subscriptions);
    config::setSecretManager(&sds);
    {
      std::vector<std::string> errors;
      if (!config::buildProxyConfig(bootstrap_, store_, sinks_, proxy_, errors)) {
        config::setRouteConfigProviders(nullptr);
        config::setSubscriptionFactory(nullptr);
        config::setSecretManager(nullptr);
        return reportErrors(errors);
      }
    }
    if (ads) ads->setConfig(*proxy_.ads);
    upstream::DnsResolver dns;
    upstream::ClusterManager cm(main, dns, store_);
    cm_ = &cm;
    for (auto& c : proxy_.clusters) cm.addCluster(c);
    if (ads) cm.registerWorker(main, main_tlcm);
    // CDS from a file: its first version is read now, so its clusters are among those the
    // listeners wait for. Over ADS: the listeners wait for its first version (or its
    // initial_fetch_timeout) and for the clusters it brings to warm.
    {
      std::vector<std::string> errors;  // checked when the config was built
      config::indexSecrets(bootstrap_.static_resources().secrets(), secrets_, errors);
    }
    std::unique_ptr<config::CdsApi> cds;
    std::unique_ptr<config::Subscription> cds_subscription;
    const bool cds_ads = proxy_.cds && proxy_.cds->ads;
    if (proxy_.cds) {
      cds = std::make_unique<config::CdsApi>(cm, secrets_, store_, time_);
      cds_ = cds.get();
      if (cds_ads) cm.holdInit();
      cds_subscription = subscriptions.create(
          *proxy_.cds, config::kClusterType, "", "cluster_manager.cds.",
          [&cds](config::DiscoveryUpdate& u, std::vector<std::string>& errors) {
            return cds->onConfigUpdate(u, errors);
          },
          [&cm, cds_ads] {
            if (cds_ads) cm.releaseInit();
          });
      std::string error;
      if (!cds_subscription->start(error)) {
        SLUICE_LOG(critical, main, "dynamic_resources.cds_config: {}", error);
        return 1;
      }
    }
    // Listeners: the bootstrap's, then LDS's first version (read now, so that its
    // listeners open with the others).
    ListenerManager lm(main, store_, sinks_, secrets_, options_.concurrency,
                       std::chrono::duration_cast<std::chrono::milliseconds>(options_.drain_time),
                       [&cm] {
                         std::set<std::string> names;
                         for (const auto& c : cm.clusters()) names.insert(c.info->name());
                         for (const auto& c : cm.warmingClusters()) names.insert(c.info->name());
                         return names;
                       });
    lm_ = &lm;
    for (size_t i = 0; i < proxy_.listeners.size(); ++i) {
      std::string error;
      const std::string name = proxy_.listeners[i].name;
      if (!lm.addStaticListener(std::move(proxy_.listeners[i]),
                                bootstrap_.static_resources().listeners(static_cast<int>(i)),
                                error)) {
        SLUICE_LOG(critical, main, "listener '{}': {}", name, error);
        return 1;
      }
    }
    // LDS: from a file, its first version is read now, so that its listeners open with the
    // others. When clusters or listeners come over ADS, LDS starts once the clusters are in
    // (Envoy's order: its listeners' routes may name them), and the workers start once its
    // first version is in (or its initial_fetch_timeout passed).
    std::unique_ptr<config::Subscription> lds_subscription;
    if (!proxy_.lds) {
      lm.whenWarmed([this] {
        lds_ready_ = true;
        startServing();
      });
    }
    const bool lds_later = proxy_.lds && (cds_ads || proxy_.lds->ads);
    if (proxy_.lds) {
      lds_ = true;
      lds_subscription = subscriptions.create(
          *proxy_.lds, config::kListenerType, "", "listener_manager.lds.",
          [&lm](config::DiscoveryUpdate& u, std::vector<std::string>& errors) {
            return lm.onConfigUpdate(u, errors);
          },
          [this, &lm] {
            lm.whenWarmed([this] {
              lds_ready_ = true;
              startServing();
            });
          });
      if (!lds_later) {
        std::string error;
        if (!lds_subscription->start(error)) {
          SLUICE_LOG(critical, main, "dynamic_resources.lds_config: {}", error);
          return 1;
        }
      }
    }

    stats::ThreadSlot::registerCurrentThread();
    store_.gauge("server.concurrency").set(options_.concurrency);
    store_.gauge("server.state").set(2);  // PRE_INITIALIZING
    store_.gauge("server.live").set(0);
    store_.gauge("server.hot_restart_epoch").set(0);

    for (unsigned i = 0; i < options_.concurrency; ++i) {
      workers_.push_back(std::make_unique<Worker>(i, time_, store_, cm));
    }
    // Admin on the main thread.
    std::unique_ptr<ConnectionHandler> admin_handler;
    network::SocketFd admin_socket;
    config::ListenerConfig admin_listener;
    registerAdminHandlers();
    if (proxy_.admin) {
      std::string error;
      admin_socket = network::createListenSocket(*proxy_.admin->address, false, 128, &error);
      if (!admin_socket.isOpen()) {
        SLUICE_LOG(critical, main, "admin: {}", error);
        return 1;
      }
      auto bound = network::localAddress(admin_socket.fd());
      admin_listener.name = "admin";
      admin_listener.address = bound;
      admin_listener.chains.push_back(
          {std::nullopt, admin_.connectionManagerConfig(store_, proxy_.admin->access_logs)});
      admin_handler = std::make_unique<ConnectionHandler>(main, store_);
      admin_handler->addListener(admin_listener, admin_socket, bound);
      SLUICE_LOG(info, main, "admin address: {}", bound->asString());
      if (!options_.admin_address_path.empty()) {
        std::ofstream(options_.admin_address_path) << bound->asString() << "\n";
      }
    }

    event::Watchdog watchdog(main, store_, event::Watchdog::Config{});
    for (auto& w : workers_) watchdog.watch(w->dispatcher());

    auto sigterm = main.listenForSignal(SIGTERM, [this] { startDrainAndExit(); });
    auto sigint = main.listenForSignal(SIGINT, [this] { startDrainAndExit(); });
    auto sigusr1 = main.listenForSignal(SIGUSR1, [this] { sinks_.reopenAll(); });
    uptime_timer_ = main.createTimer([this] {
      store_.gauge("server.uptime")
          .set(std::chrono::duration_cast<std::chrono::seconds>(time_.systemTime() - start_time_).count());
      uptime_timer_->enableTimer(std::chrono::seconds(1));
    });
    uptime_timer_->enableTimer(std::chrono::seconds(0));

    // Listeners open for traffic once every cluster has its first hosts (DNS), and LDS's
    // first version is in.
    cm.start([this, &lds_subscription, lds_later] {
      clusters_ready_ = true;
      if (lds_later) {
        std::string error;
        if (!lds_subscription->start(error)) {
          SLUICE_LOG(critical, main, "dynamic_resources.lds_config: {}", error);
          startDrainAndExit();
        }
      }
      startServing();
    });
    if (ads) ads->start();

    main.run(event::Dispatcher::RunType::RunUntilExit);

    // Workers stop (their threads joined) before the watchdog lets go of their touch timers.
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) watchdog.unwatch(w->dispatcher());
    subscriptions.setAds(nullptr);  // the last owner: the stream goes now, before the clusters
    ads.reset();
    cm.unregisterWorkers();
    lds_subscription.reset();
    lm_ = nullptr;
    cds_subscription.reset();
    config::setRouteConfigProviders(nullptr);
    config::setSecretManager(nullptr);
    config::setSubscriptionFactory(nullptr);
    rds_ = nullptr;
    cds_ = nullptr;
    workers_.clear();
    admin_handler.reset();
    drain_timer_.reset();
    uptime_timer_.reset();
    main.clearDeferredDeleteList();
    SLUICE_LOG(info, main, "exiting");
    return 0;
  }

  size_t activeConnections() const {
    size_t n = 0;
    for (const auto& w : workers_) n += w->activeConnections();
    return n;
  }

  // SIGTERM: stop accepting, let keep-alive clients go with "connection: close", finish
  // what is in flight, exit when nothing is left or after --drain-time-s.
  void startDrainAndExit() {
    if (exiting_) {
      main_->exit();  // a second signal: now
      return;
    }
    exiting_ = true;
    SLUICE_LOG(info, main, "draining: {} connection(s) open, up to {} s",
               activeConnections(), options_.drain_time.count());
    state_ = 1;
    store_.gauge("server.state").set(1);
    stopListeners(true);
    const auto deadline = time_.monotonicTime() + options_.drain_time;
    drain_timer_ = main_->createTimer([this, deadline] {
      if (activeConnections() == 0 || time_.monotonicTime() >= deadline) {
        main_->exit();
        return;
      }
      drain_timer_->enableTimer(std::chrono::milliseconds(20));
    });
    drain_timer_->enableTimer(std::chrono::milliseconds(20));
  }

  void stopListeners(bool drain) {
    if (lm_) lm_->stopListeners(drain);
  }

  void registerAdminHandlers();

  Options options_;
  event::RealTimeSystem time_;
  stats::Store store_;
  access_log::FileSinkManager sinks_;
  config::ProxyConfig proxy_;
  envoy::config::bootstrap::v3::Bootstrap bootstrap_;
  ListenerManager* lm_{nullptr};
  config::RouteConfigProviders* rds_{nullptr};
  bool lds_{false};
  bool clusters_ready_{false};  // every cluster has its first hosts
  // LDS's first version is in (or there is no LDS), and no listener is warming.
  bool lds_ready_{false};
  bool serving_{false};
  std::vector<std::unique_ptr<Worker>> workers_;
  event::Dispatcher* main_{nullptr};
  upstream::ClusterManager* cm_{nullptr};
  config::CdsApi* cds_{nullptr};  // with dynamic_resources.cds_config
  config::SecretMap secrets_;      // into bootstrap_, for CDS clusters' TLS
  admin::Admin admin_;
  event::TimerPtr drain_timer_;
  event::TimerPtr uptime_timer_;
  event::SystemTime start_time_;
  int state_{2};
  bool exiting_{false};
  bool healthcheck_failed_{false};
};

void Server::registerAdminHandlers() {
  using admin::Request;
  using H = http::ResponseHeaderMap;
  admin_.addHandler("/ready", "print server state, return 200 if LIVE, otherwise return 503", false,
                    [this](const Request&, H&, std::string& body) -> uint32_t {
                      const char* s = healthcheck_failed_ ? "DRAINING" : kStateNames[state_];
                      body = std::string(s) + "\n";
                      return std::string_view(s) == "LIVE" ? 200 : 503;
                    });
  admin_.addHandler("/server_info", "print server version/status information", false,
                    [this](const Request&, H& h, std::string& body) -> uint32_t {
                      nlohmann::json j;
                      j["version"] = std::string(version()) + "/" + std::string(buildCommit());
                      j["state"] = healthcheck_failed_ ? "DRAINING" : kStateNames[state_];
                      const auto up = std::chrono::duration_cast<std::chrono::seconds>(
                                          time_.systemTime() - start_time_)
                                          .count();
                      j["uptime_current_epoch"] = std::to_string(up) + "s";
                      j["uptime_all_epochs"] = std::to_string(up) + "s";
                      j["hot_restart_version"] = "disabled";
                      j["command_line_options"] = {
                          {"config_path", options_.config_path},
                          {"config_yaml", options_.config_yaml},
                          {"concurrency", options_.concurrency},
                          {"mode", options_.mode == "validate" ? "Validate" : "Serve"},
                          {"service_cluster", options_.service_cluster},
                          {"service_node", options_.service_node},
                          {"drain_time", std::to_string(options_.drain_time.count()) + "s"},
                          {"command_line", options_.command_line}};
                      j["node"] = nlohmann::json::parse(messageToJson(bootstrap_.node()));
                      h.set(http::headers::kContentType, "application/json");
                      body = j.dump(2) + "\n";
                      return 200;
                    });
  admin_.addHandler("/stats", "print server stats", false,
                    [this](const Request& r, H& h, std::string& body) -> uint32_t {
                      std::string error;
                      auto f = r.query.find("filter");
                      const std::string* filter = f == r.query.end() ? nullptr : &f->second;
                      if (filter && !stats::validateFilter(*filter, &error)) {
                        body = "Invalid regex: " + error + "\n";
                        return 400;
                      }
                      auto fmt = r.query.find("format");
                      if (fmt != r.query.end() && fmt->second == "json") {
                        body = stats::renderJson(store_, filter);
                        h.set(http::headers::kContentType, "application/json");
                      } else if (fmt != r.query.end() && fmt->second == "prometheus") {
                        body = stats::renderPrometheus(store_, filter);
                      } else {
                        body = stats::renderText(store_, filter);
                      }
                      return 200;
                    });
  admin_.addHandler("/stats/prometheus", "print server stats in prometheus format", false,
                    [this](const Request&, H& h, std::string& body) -> uint32_t {
                      body = stats::renderPrometheus(store_);
                      h.set(http::headers::kContentType, "text/plain; version=0.0.4");
                      return 200;
                    });
  admin_.addHandler("/clusters", "upstream cluster status", false,
                    [this](const Request& r, H& h, std::string& body) -> uint32_t {
                      auto fmt = r.query.find("format");
                      const bool json = fmt != r.query.end() && fmt->second == "json";
                      nlohmann::json statuses = nlohmann::json::array();
                      for (const auto& c : cm_->clusters()) {
                        const std::string& n = c.info->name();
                        nlohmann::json cj{{"name", n}, {"added_via_api", false}};
                        nlohmann::json hosts = nlohmann::json::array();
                        if (!json) {
                          body += n + "::observability_name::" + n + "\n";
                          body += n + "::added_via_api::false\n";
                        }
                        for (const auto& p : c.hosts->priorities) {
                          for (const auto& host : p.hosts) {
                            const std::string a = host->address()->asString();
                            auto& s = host->stats();
                            std::string flags;
                            const uint32_t hf = host->healthFlags();
                            if (hf & upstream::Host::FailedActiveHealthCheck) flags += "/failed_active_hc";
                            if (hf & upstream::Host::FailedOutlierCheck) flags += "/failed_outlier_check";
                            if (hf & upstream::Host::FailedEdsHealth) flags += "/failed_eds_health";
                            if (hf & upstream::Host::DegradedEdsHealth) flags += "/degraded_eds_health";
                            if (hf & upstream::Host::PendingDynamicRemoval) flags += "/pending_dynamic_removal";
                            if (flags.empty()) flags = "healthy";
                            nlohmann::json sj = nlohmann::json::array();
#define SLUICE_HOST_LINE(name)                                                             \
  if (json) {                                                                              \
    sj.push_back({{"name", #name}, {"value", s.name.load()},                               \
                  {"type", std::string_view(#name).ends_with("active") ? "GAUGE" : "COUNTER"}}); \
  } else {                                                                                 \
    body += n + "::" + a + "::" #name "::" + std::to_string(s.name.load()) + "\n";       \
  }
                            ALL_HOST_STATS(SLUICE_HOST_LINE)
#undef SLUICE_HOST_LINE
                            if (json) {
                              nlohmann::json hj;
                              hj["address"]["socket_address"] = {{"address", std::string(host->address()->ip())},
                                                                 {"port_value", host->address()->port()}};
                              hj["stats"] = sj;
                              nlohmann::json hs;
                              hs["eds_health_status"] = "HEALTHY";
                              if (hf & upstream::Host::FailedActiveHealthCheck) hs["failed_active_health_check"] = true;
                              if (hf & upstream::Host::FailedOutlierCheck) hs["failed_outlier_check"] = true;
                              hj["health_status"] = hs;
                              hj["weight"] = host->weight();
                              hj["priority"] = host->priority();
                              hj["hostname"] = host->hostname();
                              hj["locality"] = {{"region", host->locality().region},
                                                {"zone", host->locality().zone},
                                                {"sub_zone", host->locality().sub_zone}};
                              hosts.push_back(hj);
                            } else {
                              body += n + "::" + a + "::hostname::" + host->hostname() + "\n";
                              body += n + "::" + a + "::health_flags::" + flags + "\n";
                              body += n + "::" + a + "::weight::" + std::to_string(host->weight()) + "\n";
                              body += n + "::" + a + "::region::" + host->locality().region + "\n";
                              body += n + "::" + a + "::zone::" + host->locality().zone + "\n";
                              body += n + "::" + a + "::sub_zone::" + host->locality().sub_zone + "\n";
                              body += n + "::" + a + "::canary::false\n";
                              body += n + "::" + a + "::priority::" + std::to_string(host->priority()) + "\n";
                              body += n + "::" + a + "::success_rate::-1\n";
                              body += n + "::" + a + "::local_origin_success_rate::-1\n";
                            }
                          }
                        }
                        cj["host_statuses"] = hosts;
                        statuses.push_back(cj);
                      }
                      if (json) {
                        h.set(http::headers::kContentType, "application/json");
                        body = nlohmann::json{{"cluster_statuses", statuses}}.dump(2) + "\n";
                      }
                      return 200;
                    });
  admin_.addHandler("/listeners", "print listener info", false,
                    [this](const Request& r, H& h, std::string& body) -> uint32_t {
                      auto fmt = r.query.find("format");
                      if (fmt != r.query.end() && fmt->second == "json") {
                        nlohmann::json arr = nlohmann::json::array();
                        for (const auto& l : lm_->active()) {
                          arr.push_back({{"name", l.name},
                                         {"local_address",
                                          {{"socket_address",
                                            {{"address", std::string(l.sockets->bound->ip())},
                                             {"port_value", l.sockets->bound->port()}}}}}});
                        }
                        h.set(http::headers::kContentType, "application/json");
                        body = nlohmann::json{{"listener_statuses", arr}}.dump(2) + "\n";
                        return 200;
                      }
                      for (const auto& l : lm_->active()) {
                        body += l.name + "::" + l.sockets->bound->asString() + "\n";
                      }
                      return 200;
                    });
  admin_.addHandler("/config_dump", "dump current Envoy configs", false,
                    [this](const Request& r, H& h, std::string& body) -> uint32_t {
                      const std::string updated = rfc3339(start_time_);
                      nlohmann::json configs = nlohmann::json::array();
                      nlohmann::json boot;
                      boot["@type"] = "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump";
                      boot["bootstrap"] = redactedJson(bootstrap_);
                      boot["last_updated"] = updated;
                      configs.push_back(boot);
                      nlohmann::json clusters;
                      clusters["@type"] = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump";
                      clusters["static_clusters"] = nlohmann::json::array();
                      for (const auto& c : bootstrap_.static_resources().clusters()) {
                        nlohmann::json cj = redactedJson(c);
                        cj["@type"] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
                        clusters["static_clusters"].push_back({{"cluster", cj}, {"last_updated", updated}});
                      }
                      if (cds_) {
                        clusters["version_info"] = cds_->version();
                        // The cluster manager holds each API cluster's definition where it
                        // is: a changed cluster shows its new version warming, the old active.
                        auto add = [&clusters](const char* key,
                                               const upstream::ClusterManager::ClusterView& v) {
                          const auto* a = dynamic_cast<const config::CdsApi::Applied*>(v.api.get());
                          if (!a) return;
                          nlohmann::json cj = redactedJson(a->proto);
                          cj["@type"] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
                          clusters[key].push_back({{"version_info", a->version_info},
                                                   {"cluster", cj},
                                                   {"last_updated", rfc3339(a->last_updated)}});
                        };
                        for (const auto& v : cm_->clusters()) add("dynamic_active_clusters", v);
                        for (const auto& v : cm_->warmingClusters()) {
                          add("dynamic_warming_clusters", v);
                        }
                      }
                      configs.push_back(clusters);
                      nlohmann::json listeners;
                      listeners["@type"] = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump";
                      listeners["static_listeners"] = nlohmann::json::array();
                      for (const auto& l : bootstrap_.static_resources().listeners()) {
                        nlohmann::json lj = redactedJson(l);
                        lj["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener";
                        listeners["static_listeners"].push_back({{"listener", lj}, {"last_updated", updated}});
                      }
                      if (lds_) {
                        // One entry per name: its active version and the old ones draining.
                        listeners["version_info"] = lm_->version();
                        std::map<std::string, nlohmann::json> dynamic;
                        auto state = [](const ListenerManager::Listener& l) {
                          nlohmann::json lj = redactedJson(l.proto);
                          lj["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener";
                          return nlohmann::json{{"version_info", l.version_info},
                                                {"listener", lj},
                                                {"last_updated", rfc3339(l.last_updated)}};
                        };
                        for (const auto& l : lm_->active()) {
                          if (l.is_static) continue;
                          dynamic[l.name]["name"] = l.name;
                          dynamic[l.name]["active_state"] = state(l);
                        }
                        for (const auto& l : lm_->warming()) {
                          dynamic[l.name]["name"] = l.name;
                          dynamic[l.name]["warming_state"] = state(l);
                        }
                        for (const auto* l : lm_->draining()) {
                          if (l->is_static) continue;
                          dynamic[l->name]["name"] = l->name;
                          dynamic[l->name]["draining_state"] = state(*l);
                        }
                        listeners["dynamic_listeners"] = nlohmann::json::array();
                        for (auto& [_, j] : dynamic) listeners["dynamic_listeners"].push_back(j);
                      }
                      configs.push_back(listeners);
                      if (r.query.count("include_eds")) {
                        // Envoy's EndpointsConfigDump: each EDS assignment as last accepted.
                        nlohmann::json eps;
                        eps["@type"] = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump";
                        eps["dynamic_endpoint_configs"] = nlohmann::json::array();
                        for (const auto& [_, e] : config::edsConfigDump()) {
                          nlohmann::json ej = redactedJson(*e.assignment);
                          ej["@type"] =
                              "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
                          eps["dynamic_endpoint_configs"].push_back(
                              {{"version_info", e.version_info},
                               {"endpoint_config", ej},
                               {"last_updated", rfc3339(e.last_updated)}});
                        }
                        configs.push_back(eps);
                      }
                      if (rds_ && !rds_->all().empty()) {
                        nlohmann::json routes;
                        routes["@type"] = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump";
                        routes["dynamic_route_configs"] = nlohmann::json::array();
                        for (const auto& [_, api] : rds_->all()) {
                          if (!api->loaded()) continue;
                          nlohmann::json rj = redactedJson(api->proto());
                          rj["@type"] =
                              "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
                          routes["dynamic_route_configs"].push_back(
                              {{"version_info", api->versionInfo()},
                               {"route_config", rj},
                               {"last_updated", rfc3339(api->lastUpdated())}});
                        }
                        configs.push_back(routes);
                      }
                      configs.push_back(
                          secretsConfigDump(bootstrap_.static_resources().secrets(), updated));
                      std::string error;
                      if (uint32_t code = admin::filterConfigDump(configs, r.query, error);
                          code != 200) {
                        body = error + "\n";
                        return code;
                      }
                      h.set(http::headers::kContentType, "application/json");
                      body = nlohmann::json{{"configs", configs}}.dump(2) + "\n";
                      return 200;
                    });
  admin_.addHandler("/logging", "query/change logging levels", false,
                    [](const Request& r, H&, std::string& body) -> uint32_t {
                      if (!r.query.empty() && r.method != "POST") {
                        body = "This endpoint requires the POST method to change levels.\n";
                        return 405;
                      }
                      for (const auto& [k, v] : r.query) {
                        spdlog::level::level_enum l;
                        if (!logger::levelFromString(v, l)) {
                          body = "unknown log level '" + v + "'\n";
                          return 400;
                        }
                        if (k == "level") {
                          logger::setAllLevels(l);
                        } else if (!logger::setLevel(k, l)) {
                          body = "unknown logger '" + k + "'\n";
                          return 404;
                        }
                      }
                      body = "active loggers:\n";
                      for (const auto& info : logger::all()) {
                        body += "  " + info.name + ": " + std::string(logger::levelName(info.level)) + "\n";
                      }
                      return 200;
                    });
  admin_.addHandler("/healthcheck/fail", "cause the server to fail health checks", true,
                    [this](const Request&, H&, std::string& body) -> uint32_t {
                      healthcheck_failed_ = true;
                      body = "OK\n";
                      return 200;
                    });
  admin_.addHandler("/healthcheck/ok", "cause the server to pass health checks", true,
                    [this](const Request&, H&, std::string& body) -> uint32_t {
                      healthcheck_failed_ = false;
                      body = "OK\n";
                      return 200;
                    });
  admin_.addHandler("/drain_listeners", "drain listeners (?graceful: drain connections first)", true,
                    [this](const Request& r, H&, std::string& body) -> uint32_t {
                      stopListeners(r.query.count("graceful") > 0);
                      body = "OK\n";
                      return 200;
                    });
  admin_.addHandler("/reset_counters", "reset all counters to zero", true,
                    [this](const Request&, H&, std::string& body) -> uint32_t {
                      store_.resetCounters();
                      body = "OK\n";
                      return 200;
                    });
  admin_.addHandler("/quitquitquit", "exit the server", true,
                    [this](const Request&, H&, std::string& body) -> uint32_t {
                      main_->post([this] { main_->exit(); });
                      body = "OK\n";
                      return 200;
                    });
}

}  // namespace

int runProxy(const Options& options) {
  Server server(options);
  return server.run();
}

}  // namespace sluice::server
