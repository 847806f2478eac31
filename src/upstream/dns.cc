#include "upstream/dns.h"

#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

namespace sluice::upstream {

DnsResolver::DnsResolver() : thread_([this] { run(); }) {}

DnsResolver::~DnsResolver() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void DnsResolver::resolve(std::string host, uint32_t port, DnsLookupFamily family,
                          event::Dispatcher& reply_to, Callback cb) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(Query{std::move(host), port, family, &reply_to, std::move(cb)});
  }
  cv_.notify_one();
}

void DnsResolver::run() {
  while (true) {
    Query q;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      q = std::move(queue_.front());
      queue_.pop_front();
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = q.family == DnsLookupFamily::V4Only   ? AF_INET
                      : q.family == DnsLookupFamily::V6Only ? AF_INET6
                                                            : AF_UNSPEC;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(q.host.c_str(), nullptr, &hints, &res);
    std::vector<network::AddressConstSharedPtr> v4, v6;
    std::string error;
    if (rc != 0) {
      error = "cannot resolve '" + q.host + "': " + gai_strerror(rc);
    } else {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        sockaddr_storage ss{};
        std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (ai->ai_family == AF_INET) {
          reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(static_cast<uint16_t>(q.port));
        } else if (ai->ai_family == AF_INET6) {
          reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(static_cast<uint16_t>(q.port));
        } else {
          continue;
        }
        auto addr = network::fromSockAddr(ss, ai->ai_addrlen);
        if (!addr) continue;
        // getaddrinfo lists an address once per socket type; keep each once.
        auto& bucket = ai->ai_family == AF_INET ? v4 : v6;
        bool seen = false;
        for (const auto& a : bucket) seen |= *a == *addr;
        if (!seen) bucket.push_back(addr);
      }
      freeaddrinfo(res);
    }
    std::vector<network::AddressConstSharedPtr> out;
    // Envoy's AUTO prefers IPv6 when present; V4_PREFERRED the other way round.
    const bool v6_first = q.family == DnsLookupFamily::Auto;
    const bool all = q.family == DnsLookupFamily::All;
    auto& first = v6_first ? v6 : v4;
    auto& second = v6_first ? v4 : v6;
    out = first;
    if (all || out.empty()) out.insert(out.end(), second.begin(), second.end());
    if (out.empty() && error.empty()) error = "no addresses for '" + q.host + "'";
    q.reply_to->post([cb = std::move(q.cb), out = std::move(out), error = std::move(error)] {
      cb(out, error);
    });
  }
}

}  // namespace sluice::upstream
