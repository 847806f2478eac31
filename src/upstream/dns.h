#pragma once

// Name resolution off the workers: getaddrinfo runs on the resolver's own thread and each
// answer is posted back to the dispatcher that asked.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "event/dispatcher.h"
#include "network/address.h"

namespace sluice::upstream {

enum class DnsLookupFamily { Auto, V4Only, V6Only, V4Preferred, All };

class DnsResolver {
 public:
  using Callback =
      std::function<void(std::vector<network::AddressConstSharedPtr> addresses, std::string error)>;

  DnsResolver();
  ~DnsResolver();  // stops the thread; answers not yet delivered are dropped

  // Resolves `host` and runs `cb` on `reply_to` with the addresses (port set) or an error.
  void resolve(std::string host, uint32_t port, DnsLookupFamily family,
               event::Dispatcher& reply_to, Callback cb);

 private:
  struct Query {
    std::string host;
    uint32_t port;
    DnsLookupFamily family;
    event::Dispatcher* reply_to;
    Callback cb;
  };
  void run();

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Query> queue_;
  bool stopping_{false};
  std::thread thread_;
};

}  // namespace sluice::upstream
