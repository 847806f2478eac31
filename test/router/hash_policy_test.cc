// The route's hash_policy: what each policy hashes, how they combine, cookie generation.

#include "router/hash_policy.h"

#include <gtest/gtest.h>

#include "config/bootstrap_loader.h"
#include "router/config_impl.h"
#include "upstream/load_balancer.h"

namespace sluice::router {
namespace {

using upstream::xxHash64;

std::shared_ptr<const RouteTableImpl> table(std::string_view hash_policy) {
  const std::string yaml = R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      hash_policy: )" + std::string(hash_policy) +
                           "\n";
  envoy::config::route::v3::RouteConfiguration proto;
  std::vector<std::string> errors;
  EXPECT_TRUE(
      config::messageFromYaml(yaml, "envoy.config.route.v3.RouteConfiguration", proto, errors));
  std::string error;
  auto t = RouteTableImpl::create(proto, &error);
  EXPECT_NE(t, nullptr) << error;
  return t;
}

const HashPolicy& policyOf(const std::shared_ptr<const RouteTableImpl>& t) {
  const HashPolicy* p = t->virtualHosts().at(0)->routes().at(0)->hashPolicy();
  EXPECT_NE(p, nullptr);
  return *p;
}

http::RequestHeaderMap request(
    std::string_view path,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  http::RequestHeaderMap h{{":method", "GET"}, {":path", path}, {":authority", "a"}};
  for (const auto& [k, v] : extra) h.add(k, v);
  return h;
}

uint64_t rotl1(uint64_t h) {
  return (h << 1) | (h >> 63);
}

TEST(HashPolicyTest, Header) {
  auto t = table("[{header: {header_name: X-User}}]");
  const auto& p = policyOf(t);
  EXPECT_EQ(p.generateHash(request("/", {{"x-user", "alice"}}), nullptr, nullptr),
            xxHash64("alice"));
  EXPECT_EQ(p.generateHash(request("/"), nullptr, nullptr), std::nullopt);
  // A route without hash_policy has none.
  EXPECT_EQ(table("[]")->virtualHosts().at(0)->routes().at(0)->hashPolicy(), nullptr);
}

TEST(HashPolicyTest, CookieQueryAndSourceIp) {
  auto t = table(R"([{cookie: {name: session}}])");
  EXPECT_EQ(policyOf(t).generateHash(request("/", {{"cookie", "a=1; session=\"abc\"; b=2"}}),
                                     nullptr, nullptr),
            xxHash64("abc"));
  EXPECT_EQ(policyOf(t).generateHash(request("/", {{"cookie", "sessionx=1"}}), nullptr, nullptr),
            std::nullopt);

  auto q = table("[{query_parameter: {name: user}}]");
  EXPECT_EQ(policyOf(q).generateHash(request("/p?x=1&user=bob&z"), nullptr, nullptr),
            xxHash64("bob"));
  EXPECT_EQ(policyOf(q).generateHash(request("/p?username=bob"), nullptr, nullptr), std::nullopt);

  auto s = table("[{connection_properties: {source_ip: true}}]");
  std::string error;
  auto addr = network::fromIp("10.1.2.3", 5555, &error);
  EXPECT_EQ(policyOf(s).generateHash(request("/"), addr.get(), nullptr), xxHash64("10.1.2.3"));
  EXPECT_EQ(policyOf(s).generateHash(request("/"), nullptr, nullptr), std::nullopt);
}

TEST(HashPolicyTest, PoliciesCombineByRotateAndXorUntilATerminalOne) {
  auto t = table(
      "[{header: {header_name: a}}, {header: {header_name: b}, terminal: true},"
      " {header: {header_name: c}}]");
  const auto& p = policyOf(t);
  const uint64_t a = xxHash64("1"), b = xxHash64("2"), c = xxHash64("3");
  // a then b; b is terminal: c is not used.
  EXPECT_EQ(p.generateHash(request("/", {{"a", "1"}, {"b", "2"}, {"c", "3"}}), nullptr, nullptr),
            rotl1(a) ^ b);
  // b absent, but a made a hash: the terminal b still ends the list (Envoy's rule).
  EXPECT_EQ(p.generateHash(request("/", {{"a", "1"}, {"c", "3"}}), nullptr, nullptr), a);
  // No hash yet when b is reached: c goes on.
  EXPECT_EQ(p.generateHash(request("/", {{"c", "3"}}), nullptr, nullptr), c);
  // Only a terminal policy that produced a hash ends the list.
  auto first = table("[{header: {header_name: a}, terminal: true}, {header: {header_name: b}}]");
  EXPECT_EQ(policyOf(first).generateHash(request("/", {{"a", "1"}, {"b", "2"}}), nullptr, nullptr),
            a);
  EXPECT_EQ(policyOf(first).generateHash(request("/", {{"b", "2"}}), nullptr, nullptr), b);
}

TEST(HashPolicyTest, MissingCookieWithTtlIsGenerated) {
  auto t = table("[{cookie: {name: sticky, ttl: 60s, path: /app}}]");
  std::vector<std::string> made;
  auto add = [&made](const std::string& name, const std::string& path, std::chrono::seconds ttl) {
    made.push_back(HashPolicy::makeSetCookie(name, "v123", path, ttl));
    return std::string("v123");
  };
  EXPECT_EQ(policyOf(t).generateHash(request("/"), nullptr, add), xxHash64("v123"));
  ASSERT_EQ(made.size(), 1u);
  EXPECT_EQ(made[0], "sticky=\"v123\"; Max-Age=60; Path=/app; HttpOnly");
  // Present: no new cookie.
  EXPECT_EQ(policyOf(t).generateHash(request("/", {{"cookie", "sticky=v9"}}), nullptr, add),
            xxHash64("v9"));
  EXPECT_EQ(made.size(), 1u);
  // Without a ttl nothing is generated.
  auto no_ttl = table("[{cookie: {name: sticky}}]");
  EXPECT_EQ(policyOf(no_ttl).generateHash(request("/"), nullptr, add), std::nullopt);
  EXPECT_EQ(made.size(), 1u);
  // ttl 0: a session cookie (no Max-Age).
  EXPECT_EQ(HashPolicy::makeSetCookie("s", "v", "", std::chrono::seconds(0)), "s=\"v\"; HttpOnly");
}

TEST(HashPolicyTest, FilterStateIsRefusedWithItsPath) {
  const std::string yaml = R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c, hash_policy: [{header: {header_name: a}}, {filter_state: {key: k}}]}
)";
  envoy::config::route::v3::RouteConfiguration proto;
  std::vector<std::string> errors;
  ASSERT_TRUE(
      config::messageFromYaml(yaml, "envoy.config.route.v3.RouteConfiguration", proto, errors));
  std::string error;
  EXPECT_EQ(RouteTableImpl::create(proto, &error), nullptr);
  EXPECT_EQ(error.substr(0, error.find(':')), "virtual_hosts[0].routes[0].route.hash_policy[1]");
}

}  // namespace
}  // namespace sluice::router
