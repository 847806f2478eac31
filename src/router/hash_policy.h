#pragma once

// A route's hash_policy (envoy.config.route.v3.RouteAction.HashPolicy): the request's hash
// for the RING_HASH and MAGLEV balancers. Each policy hashes one thing (a header, a cookie,
// the client's IP, a query parameter); the hashes of the policies that produce one are
// combined in order (the running hash rotated left by one bit, then xor'ed with the next),
// and a `terminal` policy that produced a hash ends the list.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/repeated_ptr_field.h>

#include "envoy/config/route/v3/route_components.pb.h"
#include "http/header_map.h"
#include "network/address.h"

namespace sluice::router {

class HashPolicy {
 public:
  // Null with `*error` ("hash_policy[1].filter_state: ...") when a policy is not supported.
  static std::unique_ptr<HashPolicy> create(
      const google::protobuf::RepeatedPtrField<envoy::config::route::v3::RouteAction::HashPolicy>&
          protos,
      const std::string& path, std::string* error);

  // Makes a cookie for a cookie policy whose cookie the request lacks (and that has a ttl):
  // gets the cookie's name, path and ttl, sets it on the response, returns its value.
  using AddCookie = std::function<std::string(const std::string& name, const std::string& path,
                                              std::chrono::seconds ttl)>;
  // The hash, or none when no policy produced one. `remote` (the client) may be null.
  std::optional<uint64_t> generateHash(const http::RequestHeaderMap& headers,
                                       const network::Address* remote,
                                       const AddCookie& add_cookie) const;

  // The value of cookie `name` in the request's cookie headers, or none.
  static std::optional<std::string> cookieValue(const http::RequestHeaderMap& headers,
                                                std::string_view name);
  // A Set-Cookie value as Envoy writes it: name="value"; Max-Age=N; Path=p; HttpOnly.
  static std::string makeSetCookie(const std::string& name, const std::string& value,
                                   const std::string& path, std::chrono::seconds max_age);

 private:
  struct Policy {
    enum class Kind { Header, Cookie, SourceIp, QueryParameter } kind;
    std::string name;  // header (lower case), cookie or query parameter name
    std::string cookie_path;
    std::optional<std::chrono::seconds> cookie_ttl;
    bool terminal{false};
  };
  std::vector<Policy> policies_;
};

}  // namespace sluice::router
