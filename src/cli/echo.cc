// `sluice echo`: every byte a client sends comes back. One listener per worker thread on
// SO_REUSEPORT sockets, back-pressure through the write buffer's watermarks, graceful exit on
// SIGINT/SIGTERM.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <signal.h>

#include "buffer/buffer.h"
#include "cli/commands.h"
#include "common/logger.h"
#include "event/dispatcher_impl.h"
#include "event/real_time_system.h"
#include "network/connection_impl.h"
#include "network/listener_impl.h"
#include "network/raw_transport_socket.h"

namespace sluice::cli {
namespace {

// Echoes what it reads; stops reading while the peer is slow to take the echo.
class EchoFilter : public network::ReadFilter, public network::ConnectionCallbacks {
 public:
  void initializeReadFilterCallbacks(network::ReadFilterCallbacks& cb) override {
    connection_ = &cb.connection();
    connection_->addConnectionCallbacks(*this);
  }
  network::FilterStatus onData(buffer::Buffer& data, bool end_stream) override {
    connection_->write(data, end_stream);
    return network::FilterStatus::StopIteration;
  }
  void onEvent(network::ConnectionEvent) override {}
  void onAboveWriteBufferHighWatermark() override { connection_->readDisable(true); }
  void onBelowWriteBufferLowWatermark() override { connection_->readDisable(false); }

 private:
  network::Connection* connection_{nullptr};
};

class EchoWorker : public network::ListenerCallbacks {
 public:
  EchoWorker(int index, event::TimeSystem& time, const network::Address& address,
             uint32_t buffer_limit, std::string* error)
      : dispatcher_("worker_" + std::to_string(index), time), buffer_limit_(buffer_limit) {
    socket_ = network::createListenSocket(address, /*reuse_port=*/true, 1024, error);
    if (socket_.isOpen()) {
      listener_ = std::make_unique<network::TcpListenerImpl>(dispatcher_, socket_, *this);
    }
  }
  bool ok() const { return socket_.isOpen(); }
  const network::SocketFd& socket() const { return socket_; }
  event::Dispatcher& dispatcher() { return dispatcher_; }

  void onAccept(network::SocketFd&& socket, network::AddressConstSharedPtr peer) override {
    auto conn = network::createServerConnection(dispatcher_, std::move(socket),
                                                std::make_unique<network::RawTransportSocket>(),
                                                nullptr, std::move(peer));
    conn->setBufferLimits(buffer_limit_);
    conn->enableHalfClose(true);
    conn->addReadFilter(std::make_shared<EchoFilter>());
    auto* raw = conn.get();
    auto closer = std::make_unique<Closer>(*this, raw);
    raw->addConnectionCallbacks(*closer);
    raw->initializeReadFilters();
    connections_.emplace(raw, Entry{std::move(conn), std::move(closer)});
  }

  void shutdown() {
    listener_.reset();
    for (auto& [raw, entry] : connections_) {
      raw->removeConnectionCallbacks(*entry.closer);
      raw->close(network::ConnectionCloseType::NoFlush);
    }
    connections_.clear();
  }

 private:
  struct Closer : network::ConnectionCallbacks {
    Closer(EchoWorker& w, network::Connection* c) : worker(w), conn(c) {}
    void onEvent(network::ConnectionEvent e) override {
      if (e == network::ConnectionEvent::Connected) return;
      auto it = worker.connections_.find(conn);
      if (it == worker.connections_.end()) return;
      worker.dispatcher_.deferredDelete(std::move(it->second.conn));
      worker.dispatcher_.deferredDelete(
          std::unique_ptr<event::DeferredDeletable>(new Deletable(std::move(it->second.closer))));
      worker.connections_.erase(it);
    }
    EchoWorker& worker;
    network::Connection* conn;
  };
  // Lets a Closer be destroyed after the callback it runs in.
  struct Deletable : event::DeferredDeletable {
    explicit Deletable(std::unique_ptr<Closer> c) : closer(std::move(c)) {}
    std::unique_ptr<Closer> closer;
  };
  struct Entry {
    network::ConnectionPtr conn;
    std::unique_ptr<Closer> closer;
  };

  event::DispatcherImpl dispatcher_;
  const uint32_t buffer_limit_;
  network::SocketFd socket_;
  network::ListenerPtr listener_;
  std::unordered_map<network::Connection*, Entry> connections_;
};

}  // namespace

Run addEchoCommand(CLI::App& app) {
  struct Options {
    std::string address = "127.0.0.1:10000";
    unsigned concurrency = std::max(1u, std::thread::hardware_concurrency());
    uint32_t buffer_limit = 1024 * 1024;
  };
  auto opts = std::make_shared<Options>();
  app.add_option("-a,--address", opts->address, "Address to listen on (ip:port or unix:/path)")
      ->capture_default_str();
  app.add_option("--concurrency", opts->concurrency, "Worker threads")->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--buffer-limit", opts->buffer_limit, "Per-connection buffer limit in bytes")
      ->capture_default_str();
  return [opts]() -> int {
    std::string error;
    auto address = network::parseAddress(opts->address, &error);
    if (!address) {
      SLUICE_LOG(critical, main, "{}", error);
      return 1;
    }
    event::RealTimeSystem time;
    std::vector<std::unique_ptr<EchoWorker>> workers;
    for (unsigned i = 0; i < opts->concurrency; ++i) {
      workers.push_back(std::make_unique<EchoWorker>(i, time, *address, opts->buffer_limit, &error));
      if (!workers.back()->ok()) {
        SLUICE_LOG(critical, main, "{}", error);
        return 1;
      }
      if (i == 0 && address->isIp() && address->port() == 0) {
        // Port 0: the kernel picked one for the first worker; the others share it.
        address = network::localAddress(workers[0]->socket().fd());
      }
    }
    event::DispatcherImpl main_dispatcher("main_thread", time);
    auto on_signal = [&] {
      SLUICE_LOG(info, main, "shutting down");
      main_dispatcher.exit();
    };
    auto sigint = main_dispatcher.listenForSignal(SIGINT, on_signal);
    auto sigterm = main_dispatcher.listenForSignal(SIGTERM, on_signal);
    std::vector<std::thread> threads;
    for (auto& w : workers) {
      threads.emplace_back([&w] { w->dispatcher().run(event::Dispatcher::RunType::RunUntilExit); });
    }
    SLUICE_LOG(info, main, "echo server listening on {} with {} worker(s)", address->asString(),
               workers.size());
    main_dispatcher.run(event::Dispatcher::RunType::RunUntilExit);
    for (auto& w : workers) {
      EchoWorker* raw = w.get();
      raw->dispatcher().post([raw] {
        raw->shutdown();
        raw->dispatcher().exit();
      });
    }
    for (auto& t : threads) t.join();
    return 0;
  };
}

}  // namespace sluice::cli
