#include "router/hash_policy.h"

#include <algorithm>
#include <cctype>

#include "upstream/load_balancer.h"

namespace sluice::router {

using Proto = envoy::config::route::v3::RouteAction::HashPolicy;

std::unique_ptr<HashPolicy> HashPolicy::create(
    const google::protobuf::RepeatedPtrField<Proto>& protos, const std::string& path,
    std::string* error) {
  auto out = std::make_unique<HashPolicy>();
  for (int i = 0; i < protos.size(); ++i) {
    const Proto& p = protos[i];
    const std::string pp = path + "[" + std::to_string(i) + "]";
    Policy policy;
    policy.terminal = p.terminal();
    switch (p.policy_specifier_case()) {
      case Proto::kHeader:
        policy.kind = Policy::Kind::Header;
        policy.name = p.header().header_name();
        std::transform(policy.name.begin(), policy.name.end(), policy.name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        break;
      case Proto::kCookie:
        policy.kind = Policy::Kind::Cookie;
        policy.name = p.cookie().name();
        policy.cookie_path = p.cookie().path();
        if (p.cookie().has_ttl())
          policy.cookie_ttl = std::chrono::seconds(p.cookie().ttl().seconds());
        break;
      case Proto::kConnectionProperties:
        if (!p.connection_properties().source_ip()) continue;  // hashes nothing
        policy.kind = Policy::Kind::SourceIp;
        break;
      case Proto::kQueryParameter:
        policy.kind = Policy::Kind::QueryParameter;
        policy.name = p.query_parameter().name();
        break;
      default:
        *error = pp +
                 ": this hash policy is not supported (header, cookie, "
                 "connection_properties and query_parameter are)";
        return nullptr;
    }
    out->policies_.push_back(std::move(policy));
  }
  return out;
}

std::optional<std::string> HashPolicy::cookieValue(const http::RequestHeaderMap& headers,
                                                   std::string_view name) {
  for (const auto& e : headers) {
    if (e.key != "cookie") continue;
    std::string_view rest = e.value;
    while (!rest.empty()) {
      const size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      const size_t eq = pair.find('=');
      if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
      std::string_view v = pair.substr(eq + 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return std::string(v);
    }
  }
  return std::nullopt;
}

std::string HashPolicy::makeSetCookie(const std::string& name, const std::string& value,
                                      const std::string& path, std::chrono::seconds max_age) {
  std::string out = name + "=\"" + value + "\"";
  if (max_age.count() != 0) out += "; Max-Age=" + std::to_string(max_age.count());
  if (!path.empty()) out += "; Path=" + path;
  out += "; HttpOnly";
  return out;
}

namespace {

std::optional<std::string_view> queryValue(std::string_view path, std::string_view name) {
  const size_t q = path.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = path.substr(q + 1);
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos)
    rest = rest.substr(0, hash);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> HashPolicy::generateHash(const http::RequestHeaderMap& headers,
                                                 const network::Address* remote,
                                                 const AddCookie& add_cookie) const {
  std::optional<uint64_t> hash;
  for (const Policy& p : policies_) {
    std::optional<uint64_t> h;
    switch (p.kind) {
      case Policy::Kind::Header: {
        // Several entries of the header: their values sorted, so order does not matter.
        std::vector<std::string_view> values;
        for (const auto& e : headers) {
          if (e.key == p.name) values.push_back(e.value);
        }
        if (values.empty()) break;
        std::sort(values.begin(), values.end());
        std::string joined;
        for (auto v : values) joined.append(v);
        h = upstream::xxHash64(joined);
        break;
      }
      case Policy::Kind::Cookie: {
        if (auto v = cookieValue(headers, p.name)) {
          h = upstream::xxHash64(*v);
        } else if (p.cookie_ttl && add_cookie) {
          h = upstream::xxHash64(add_cookie(p.name, p.cookie_path, *p.cookie_ttl));
        }
        break;
      }
      case Policy::Kind::SourceIp:
        if (remote && remote->isIp()) h = upstream::xxHash64(remote->ip());
        break;
      case Policy::Kind::QueryParameter:
        if (auto v = queryValue(headers.path(), p.name)) h = upstream::xxHash64(*v);
        break;
    }
    if (h) hash = hash ? (((*hash << 1) | (*hash >> 63)) ^ *h) : *h;
    if (p.terminal && hash) break;
  }
  return hash;
}

}  // namespace sluice::router
