#include "server/listener_manager.h"

#include <algorithm>
#include <map>

#include <fmt/ranges.h>

#include "common/assert.h"
#include "common/logger.h"
#include "network/io_socket.h"
#include "stats/stats.h"

namespace sluice::server {

// An old version of a listener, draining until its timer fires.
struct ListenerManager::Draining {
  Listener listener;
  event::TimerPtr timer;
};

ListenerManager::ListenerManager(event::Dispatcher& main, stats::Store& store,
                                 access_log::FileSinkManager& sinks,
                                 const config::SecretMap& secrets, unsigned concurrency,
                                 std::chrono::milliseconds drain_time,
                                 std::function<std::set<std::string>()> cluster_names)
    : main_(main),
      store_(store),
      sinks_(sinks),
      secrets_(secrets),
      concurrency_(concurrency == 0 ? 1 : concurrency),
      drain_time_(drain_time),
      cluster_names_(std::move(cluster_names)) {
  updateGauges();
}

ListenerManager::~ListenerManager() = default;

bool ListenerManager::bind(const config::ListenerConfig& l, ListenSockets& out,
                           std::string& error) {
  const unsigned n = l.reuse_port ? concurrency_ : 1;
  network::AddressConstSharedPtr addr = l.address;
  for (unsigned i = 0; i < n; ++i) {
    network::SocketFd s = network::createListenSocket(*addr, l.reuse_port, 1024, &error);
    if (!s.isOpen()) return false;
    if (i == 0) {
      // Port 0: the kernel picked one; the other workers' sockets share it.
      addr = network::localAddress(s.fd());
      out.bound = addr;
    }
    out.sockets.push_back(std::move(s));
  }
  initializeStats(l, *out.bound);
  return true;
}

void ListenerManager::initializeStats(const config::ListenerConfig& l,
                                      const network::Address& bound) {
  // The TLS contexts count their handshakes under the listener's address (ssl.*).
  for (const auto& chain : l.chains) {
    if (chain.transport_socket) {
      chain.transport_socket->initializeStats(store_,
                                              "listener." + config::statAddress(bound) + ".");
    }
  }
}

bool ListenerManager::addStaticListener(config::ListenerConfig config,
                                        const envoy::config::listener::v3::Listener& proto,
                                        std::string& error) {
  Listener l;
  l.sockets = std::make_shared<ListenSockets>();
  if (!bind(config, *l.sockets, error)) return false;
  l.name = config.name;
  l.tag = next_tag_++;
  l.is_static = true;
  l.config = std::make_shared<const config::ListenerConfig>(std::move(config));
  l.proto = proto;
  l.last_updated = main_.timeSource().systemTime();
  SLUICE_LOG(info, main, "listener '{}' listening on {}", l.name, l.sockets->bound->asString());
  // A bootstrap listener serves from the start; start-up waits for what it names.
  if (auto w = init::Watcher::create(l.config->init_targets, [this] { checkWarmed(); })) {
    SLUICE_LOG(info, main, "listener '{}': start-up waits for {}", l.name,
               fmt::join(w->pending(), ", "));
    static_init_.push_back(std::move(w));
  }
  active_.push_back(std::move(l));
  updateGauges();
  return true;
}

void ListenerManager::whenWarmed(std::function<void()> cb) {
  on_warmed_.push_back(std::move(cb));
  checkWarmed();
}

void ListenerManager::checkWarmed() {
  std::erase_if(static_init_, [](const auto& w) { return w->done(); });
  if (!warming_.empty() || !static_init_.empty()) return;
  auto callbacks = std::move(on_warmed_);
  on_warmed_.clear();
  for (auto& cb : callbacks) cb();
}

namespace {
const ListenerManager::Listener* findIn(const std::vector<ListenerManager::Listener>& list,
                                        const std::string& name) {
  for (const auto& l : list) {
    if (l.name == name) return &l;
  }
  return nullptr;
}
}  // namespace

ListenerManager::Listener* ListenerManager::find(const std::string& name) {
  for (auto& l : active_) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

bool ListenerManager::onConfigUpdate(config::DiscoveryUpdate& update,
                                     std::vector<std::string>& errors) {
  std::vector<Listener> built;
  std::vector<std::string> reverted;
  std::set<std::string> names;
  // Addresses (with a fixed port) of the listeners the update keeps, to refuse two on one.
  std::map<std::string, std::string> addresses;
  const std::set<std::string> clusters = cluster_names_();
  for (size_t i = 0; i < update.resources.size(); ++i) {
    const std::string path = "resources[" + std::to_string(i) + "]";
    envoy::config::listener::v3::Listener proto;
    if (!config::copyMessage(*update.resources[i], proto)) {
      errors.push_back(path + ": does not parse as a Listener");
      return false;
    }
    if (proto.name().empty()) {
      errors.push_back(path + ".name: a listener from LDS needs a name");
      return false;
    }
    if (!names.insert(proto.name()).second) {
      errors.push_back(path + ".name: duplicate listener '" + proto.name() + "'");
      return false;
    }
    Listener* known = find(proto.name());
    if (known && known->is_static) {
      errors.push_back(path + ".name: listener '" + proto.name() +
                       "' is a static listener of the bootstrap; LDS cannot replace it");
      return false;
    }
    Listener b;
    b.bytes = config::deterministicBytes(proto);
    // The newest version of the name: the one warming, else the active one.
    const Listener* warm = findIn(warming_, proto.name());
    const Listener* newest = warm ? warm : known;
    const bool unchanged = newest && newest->bytes == b.bytes;
    // Back to the active version while a newer one warms: the warming one goes.
    const bool revert = !unchanged && warm && known && known->bytes == b.bytes;
    config::ListenerConfig lc;
    if (!unchanged && !revert &&
        !config::buildListenerConfig(proto, path, secrets_, clusters, store_, sinks_, lc,
                                     errors)) {
      return false;
    }
    const network::Address& address = unchanged ? *newest->config->address
                                      : revert  ? *known->config->address
                                                : *lc.address;
    const std::string addr = address.asString();
    if (address.port() != 0) {
      auto [it, fresh] = addresses.emplace(addr, proto.name());
      if (!fresh) {
        errors.push_back(path + ".address: " + addr + " is already the address of listener '" +
                         it->second + "'");
        return false;
      }
    }
    if (unchanged) continue;
    if (revert) {
      reverted.push_back(proto.name());
      continue;
    }
    b.name = proto.name();
    b.proto = std::move(proto);
    b.reuses_sockets = known && known->config->address->asString() == addr &&
                       known->config->reuse_port == lc.reuse_port;
    b.config = std::make_shared<const config::ListenerConfig>(std::move(lc));
    built.push_back(std::move(b));
  }
  // A new listener on the fixed address of one this update removes takes over its sockets
  // (as the removed one stops accepting, the new one starts on the same sockets), instead of
  // failing to bind an address that is still open.
  // Only for a listener that needs no warming: the removed one stops accepting now, and a
  // port must not be left listening with nobody accepting while its successor warms (that
  // one binds its own sockets, and fails the update if the address is still taken).
  for (Listener& b : built) {
    if (b.reuses_sockets || b.config->address->port() == 0 || !b.config->init_targets.empty()) {
      continue;
    }
    for (auto* list : {&active_, &warming_}) {
      for (const Listener& gone : *list) {
        if (gone.is_static || names.count(gone.name) || !gone.sockets ||
            gone.config->reuse_port != b.config->reuse_port ||
            gone.config->address->asString() != b.config->address->asString()) {
          continue;
        }
        b.sockets = gone.sockets;
        initializeStats(*b.config, *b.sockets->bound);
      }
    }
  }
  // The static listeners' addresses are taken too.
  for (const auto& l : active_) {
    if (!l.is_static || l.config->address->port() == 0) continue;
    auto it = addresses.find(l.config->address->asString());
    if (it != addresses.end()) {
      errors.push_back("listener '" + it->second + "' .address: " + it->first +
                       " is already the address of static listener '" + l.name + "'");
      return false;
    }
  }
  // Bind every new socket before changing anything: a failed bind refuses the update whole.
  for (Listener& b : built) {
    if (b.reuses_sockets || b.sockets) continue;
    auto sockets = std::make_shared<ListenSockets>();
    std::string error;
    if (!bind(*b.config, *sockets, error)) {
      errors.push_back("listener '" + b.name + "' .address: " + error);
      return false;
    }
    b.sockets = std::move(sockets);
  }
  // Everything checked: apply.
  const event::SystemTime now = main_.timeSource().systemTime();
  for (const auto& name : reverted) dropWarming(name);
  for (Listener& l : built) {
    l.version_info = update.version_info;
    l.last_updated = now;
    dropWarming(l.name);  // superseded
    const std::string name = l.name;
    auto watcher = std::make_shared<const init::Watcher*>(nullptr);
    l.init = init::Watcher::create(l.config->init_targets, [this, name, watcher] {
      onWarmed(name, *watcher);
    });
    if (!l.init) {
      activate(std::move(l));
      continue;
    }
    *watcher = l.init.get();
    SLUICE_LOG(info, main, "listener '{}' warming on {}: waits for {}", l.name,
               l.sockets ? l.sockets->bound->asString() : "its active version's sockets",
               fmt::join(l.init->pending(), ", "));
    warming_.push_back(std::move(l));
  }
  for (auto it = warming_.begin(); it != warming_.end();) {
    it = names.count(it->name) ? it + 1 : warming_.erase(it);
  }
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->is_static || names.count(it->name)) {
      ++it;
      continue;
    }
    Listener old = std::move(*it);
    it = active_.erase(it);
    SLUICE_LOG(info, main, "listener '{}' removed; draining", old.name);
    store_.counter("listener_manager.listener_removed").inc();
    startDraining(std::move(old), true);
  }
  version_ = update.version_info;
  updateGauges();
  SLUICE_LOG(info, main, "lds: version '{}' applied: {} listener(s)", update.version_info,
             names.size());
  checkWarmed();
  return true;
}

void ListenerManager::dropWarming(const std::string& name) {
  std::erase_if(warming_, [&](const Listener& l) { return l.name == name; });
}

void ListenerManager::onWarmed(const std::string& name, const init::Watcher* watcher) {
  auto it = std::find_if(warming_.begin(), warming_.end(), [&](const Listener& l) {
    return l.name == name && l.init.get() == watcher;
  });
  if (it == warming_.end()) return;  // superseded or removed meanwhile
  Listener l = std::move(*it);
  warming_.erase(it);
  l.init.reset();  // (the target that ran this callback holds the watcher until it returns)
  SLUICE_LOG(info, main, "listener '{}' warmed", l.name);
  activate(std::move(l));
  updateGauges();
  checkWarmed();
}

void ListenerManager::activate(Listener l) {
  Listener* known = find(l.name);
  // An update that removes the active version also drops the warming one, so a listener
  // that reuses its active version's sockets finds them here.
  SLUICE_RELEASE_ASSERT(l.reuses_sockets ? known && known->sockets : l.sockets != nullptr,
                "a listener is activated with sockets to serve on");
  if (l.reuses_sockets) {
    l.tag = known->tag;
    l.sockets = known->sockets;
    // Not bound anew, but its TLS contexts are new: they need their stats before a handshake.
    initializeStats(*l.config, *l.sockets->bound);
    Listener old = std::move(*known);
    *known = l;
    if (workers_started_ && !stopped_) {
      for (auto* w : workers_) w->updateListener(l.tag, l.config);
    }
    startDraining(std::move(old), false);
    store_.counter("listener_manager.listener_modified").inc();
    SLUICE_LOG(info, main, "listener '{}' updated in place on {}", l.name,
               l.sockets->bound->asString());
    return;
  }
  l.tag = next_tag_++;
  if (known) {
    Listener old = std::move(*known);
    *known = l;
    startDraining(std::move(old), true);
    store_.counter("listener_manager.listener_modified").inc();
  } else {
    active_.push_back(l);
    store_.counter("listener_manager.listener_added").inc();
  }
  if (workers_started_ && !stopped_) {
    for (size_t i = 0; i < workers_.size(); ++i) {
      workers_[i]->addListener(l.tag, l.config, l.sockets, i);
    }
  }
  SLUICE_LOG(info, main, "listener '{}' listening on {}", l.name, l.sockets->bound->asString());
}

void ListenerManager::startDraining(Listener old, bool removed) {
  // A removed (or moved) listener stops accepting now; its sockets close once every worker
  // let go of them.
  if (removed && workers_started_ && !stopped_) {
    for (auto* w : workers_) w->removeListener(old.tag, main_, nullptr);
  }
  old.sockets.reset();
  auto d = std::make_unique<Draining>();
  d->listener = std::move(old);
  Draining* raw = d.get();
  d->timer = main_.createTimer([this, raw] {
    if (workers_started_) {
      for (auto* w : workers_) w->finishDrain(raw->listener.config);
    }
    for (auto it = draining_.begin(); it != draining_.end(); ++it) {
      if (it->get() != raw) continue;
      // Not from inside its own callback: the timer goes after it returns.
      main_.post([owned = std::shared_ptr<Draining>(std::move(*it))] {});
      draining_.erase(it);
      break;
    }
    updateGauges();
  });
  d->timer->enableTimer(drain_time_);
  draining_.push_back(std::move(d));
}

std::vector<const ListenerManager::Listener*> ListenerManager::draining() const {
  std::vector<const Listener*> out;
  for (const auto& d : draining_) out.push_back(&d->listener);
  return out;
}

void ListenerManager::startWorkers(std::vector<Worker*> workers) {
  workers_ = std::move(workers);
  workers_started_ = true;
  if (stopped_) return;  // stopped during start-up: the sockets are closed already
  for (const auto& l : active_) {
    for (size_t i = 0; i < workers_.size(); ++i) {
      workers_[i]->addListener(l.tag, l.config, l.sockets, i);
    }
  }
}

void ListenerManager::stopListeners(bool drain) {
  stopped_ = true;
  warming_.clear();  // never to serve: their sockets close now
  updateGauges();
  auto remaining = std::make_shared<size_t>(workers_.size());
  std::vector<std::shared_ptr<ListenSockets>> sockets;
  for (auto& l : active_) sockets.push_back(l.sockets);
  // New connections are refused rather than queued once nobody accepts.
  auto close_sockets = [sockets] {
    for (auto& s : sockets) {
      for (auto& fd : s->sockets) fd.close();
    }
  };
  if (workers_.empty()) close_sockets();
  for (auto* w : workers_) {
    w->stopListeners(drain, main_, [remaining, close_sockets] {
      if (--*remaining == 0) close_sockets();
    });
  }
}

void ListenerManager::updateGauges() {
  store_.gauge("listener_manager.total_listeners_active").set(active_.size());
  store_.gauge("listener_manager.total_listeners_warming").set(warming_.size());
  store_.gauge("listener_manager.total_listeners_draining").set(draining_.size());
}

}  // namespace sluice::server
