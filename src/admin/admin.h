#pragma once

// The admin interface: Envoy's admin paths on the admin listener, served on the main thread
// through a connection manager whose only filter is the admin handler.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "http/conn_manager_config.h"
#include "http/header_map.h"

namespace sluice::buffer {
class Buffer;
}

namespace sluice::admin {

struct Request {
  std::string_view method;
  std::string_view path;  // without the query
  std::map<std::string, std::string, std::less<>> query;
};

// A handler fills the response body and headers and returns the status code.
using Handler = std::function<uint32_t(const Request& request, http::ResponseHeaderMap& headers,
                                       std::string& body)>;

class Admin {
 public:
  // `mutates`: the path changes server state and answers only to POST.
  void addHandler(std::string path, std::string help, bool mutates, Handler handler);
  // The connection manager config for the admin listener (access logs from the bootstrap).
  http::ConnectionManagerConfigConstSharedPtr connectionManagerConfig(
      stats::Store& store, std::vector<http::AccessLogSharedPtr> access_logs);
  // Runs a request (for tests and for the filter).
  uint32_t handle(std::string_view method, std::string_view path_and_query,
                  http::ResponseHeaderMap& headers, std::string& body) const;

 private:
  struct Entry {
    std::string help;
    bool mutates;
    Handler handler;
  };
  std::map<std::string, Entry, std::less<>> handlers_;
};

// Parses "a=1&b" into {a: "1", b: ""} (percent-decoding values).
std::map<std::string, std::string, std::less<>> parseQuery(std::string_view query);

}  // namespace sluice::admin
