#include "router/config_impl.h"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/bootstrap_loader.h"
#include "network/address.h"

namespace sluice::router {
namespace {

using namespace std::chrono_literals;
using envoy::config::route::v3::RouteConfiguration;
using TablePtr = std::shared_ptr<const RouteTableImpl>;

RouteConfiguration parse(std::string_view yaml) {
  RouteConfiguration proto;
  std::vector<std::string> errors;
  EXPECT_TRUE(
      config::messageFromYaml(yaml, "envoy.config.route.v3.RouteConfiguration", proto, errors))
      << testing::PrintToString(errors);
  return proto;
}

TablePtr build(std::string_view yaml) {
  std::string error;
  TablePtr table = RouteTableImpl::create(parse(yaml), &error);
  EXPECT_NE(table, nullptr) << error;
  return table;
}

std::string buildError(std::string_view yaml) {
  std::string error;
  TablePtr table = RouteTableImpl::create(parse(yaml), &error);
  EXPECT_EQ(table, nullptr);
  return error;
}

http::RequestHeaderMap request(
    std::string_view path, std::string_view host = "example.com",
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  http::RequestHeaderMap h{
      {":method", "GET"}, {":path", path}, {":authority", host}, {":scheme", "http"}};
  for (const auto& [k, v] : extra) h.add(k, v);
  return h;
}

// The name of the route chosen for the request, or "none".
std::string routeName(const TablePtr& table, const http::RequestHeaderMap& headers) {
  const RouteEntry* r = table->findRoute(headers);
  return r == nullptr ? "none" : std::string(r->name());
}

std::string routeFor(
    const TablePtr& table, std::string_view path,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  return routeName(table, request(path, "example.com", extra));
}

std::string vhostName(const TablePtr& table, std::string_view authority) {
  const VirtualHost* vh = table->virtualHost(authority);
  return vh == nullptr ? "none" : vh->name();
}

const RouteEntry& onlyRoute(const TablePtr& table) {
  return *table->virtualHosts().at(0)->routes().at(0);
}

class FixedTime : public event::TimeSource {
 public:
  event::SystemTime systemTime() override { return event::SystemTime(); }
  event::MonotonicTime monotonicTime() override { return event::MonotonicTime(); }
};

// The values of `key`, in order.
std::vector<std::string> values(const http::HeaderMap& h, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& e : h) {
    if (e.key == key) out.emplace_back(e.value);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Path matching

TEST(RouteMatchTest, PathKinds) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: exact, match: {path: /exact}, route: {cluster: c}}
  - {name: regex, match: {safe_regex: {regex: "/users/[0-9]+"}}, route: {cluster: c}}
  - {name: sep, match: {path_separated_prefix: /api}, route: {cluster: c}}
  - {name: prefix, match: {prefix: /p}, route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/exact"), "exact");
  EXPECT_EQ(routeFor(t, "/exact?x=1"), "exact");  // the query is not part of the path
  EXPECT_EQ(routeFor(t, "/exact/"), "none");
  EXPECT_EQ(routeFor(t, "/EXACT"), "none");
  EXPECT_EQ(routeFor(t, "/users/42"), "regex");
  EXPECT_EQ(routeFor(t, "/users/42?page=2"), "regex");
  EXPECT_EQ(routeFor(t, "/users/42/x"), "none");  // full match, not partial
  EXPECT_EQ(routeFor(t, "/xx/users/42"), "none");
  EXPECT_EQ(routeFor(t, "/p"), "prefix");
  EXPECT_EQ(routeFor(t, "/pxyz/abc"), "prefix");
  EXPECT_EQ(routeFor(t, "/P"), "none");
  EXPECT_EQ(routeFor(t, "/"), "none");
}

TEST(RouteMatchTest, PathSeparatedPrefix) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: api, match: {path_separated_prefix: /api}, route: {cluster: c}}
  - {name: nocase, match: {path_separated_prefix: /Ci, case_sensitive: false}, route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/api"), "api");
  EXPECT_EQ(routeFor(t, "/api/"), "api");
  EXPECT_EQ(routeFor(t, "/api/x/y"), "api");
  EXPECT_EQ(routeFor(t, "/api?q=1"), "api");
  EXPECT_EQ(routeFor(t, "/api#frag"), "api");
  EXPECT_EQ(routeFor(t, "/apix"), "none");
  EXPECT_EQ(routeFor(t, "/ap"), "none");
  EXPECT_EQ(routeFor(t, "/API"), "none");
  EXPECT_EQ(routeFor(t, "/ci"), "nocase");
  EXPECT_EQ(routeFor(t, "/CI/x"), "nocase");
  EXPECT_EQ(routeFor(t, "/cix"), "none");
}

TEST(RouteMatchTest, CaseInsensitive) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: path, match: {path: /Exact/Path, case_sensitive: false}, route: {cluster: c}}
  - {name: regex, match: {safe_regex: {regex: "/re[a-z]+"}, case_sensitive: false},
     route: {cluster: c}}
  - {name: prefix, match: {prefix: /Foo, case_sensitive: false}, route: {cluster: c}}
  - {name: sensitive, match: {prefix: /Bar, case_sensitive: true}, route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/exact/path"), "path");
  EXPECT_EQ(routeFor(t, "/EXACT/PATH?Q"), "path");
  EXPECT_EQ(routeFor(t, "/foo"), "prefix");
  EXPECT_EQ(routeFor(t, "/FOOBAR"), "prefix");
  EXPECT_EQ(routeFor(t, "/fOo/x"), "prefix");
  EXPECT_EQ(routeFor(t, "/regex"), "regex");
  EXPECT_EQ(routeFor(t, "/REGEX"), "none");  // case_sensitive does not apply to regexes
  EXPECT_EQ(routeFor(t, "/Bar"), "sensitive");
  EXPECT_EQ(routeFor(t, "/bar"), "none");
}

TEST(RouteMatchTest, FirstMatchWins) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: first, match: {prefix: /}, route: {cluster: c}}
  - {name: second, match: {path: /x}, route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/x"), "first");
}

// Long runs of exact-path routes are looked up through an index; the answer must be the one a
// scan in order gives, whatever the mix of routes around and inside the run.
TEST(RouteMatchTest, IndexedExactRunsKeepFirstMatchOrder) {
  std::string yaml = R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: early-prefix, match: {prefix: /p/}, route: {cluster: c}}
)";
  // A run of 20 exact routes; /e/3 twice (the first needs a header), /p/1 shadowed by the
  // prefix route before the run.
  for (int i = 0; i < 20; ++i) {
    yaml += "  - {name: exact-" + std::to_string(i) + ", match: {path: /e/" + std::to_string(i) +
            "}, route: {cluster: c}}\n";
    if (i == 3) {
      yaml += "  - {name: exact-3-hdr, match: {path: /e/3, headers: [{name: x-v, string_match: "
              "{exact: two}}]}, route: {cluster: c}}\n";
    }
  }
  yaml += R"(  - {name: exact-p1, match: {path: /p/1}, route: {cluster: c}}
  - {name: ci, match: {path: /CI, case_sensitive: false}, route: {cluster: c}}
  - {name: short-0, match: {path: /s/0}, route: {cluster: c}}
  - {name: short-1, match: {path: /s/1}, route: {cluster: c}}
  - {name: late-prefix, match: {prefix: /e/}, route: {cluster: c}}
)";
  for (int i = 20; i < 40; ++i) {
    yaml += "  - {name: exact-" + std::to_string(i) + ", match: {path: /f/" + std::to_string(i) +
            "}, route: {cluster: c}}\n";
  }
  TablePtr t = build(yaml);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/e/7"), "exact-7");
  EXPECT_EQ(routeFor(t, "/e/3"), "exact-3");
  EXPECT_EQ(routeFor(t, "/e/3", {{"x-v", "two"}}), "exact-3");  // the earlier one wins
  EXPECT_EQ(routeFor(t, "/p/1"), "early-prefix");
  EXPECT_EQ(routeFor(t, "/ci"), "ci");
  EXPECT_EQ(routeFor(t, "/e/99"), "late-prefix");
  EXPECT_EQ(routeFor(t, "/f/25"), "exact-25");
  EXPECT_EQ(routeFor(t, "/f/25?x=1"), "exact-25");
  EXPECT_EQ(routeFor(t, "/F/25"), "none");
  // Against a scan in order, for many paths.
  const auto& routes = t->virtualHosts().at(0)->routes();
  for (const std::string prefix : {"/e/", "/f/", "/p/", "/s/", "/x/"}) {
    for (int i = 0; i < 45; ++i) {
      const std::string path = prefix + std::to_string(i);
      const http::RequestHeaderMap h = request(path);
      std::string expected = "none";
      for (const auto& r : routes) {
        if (r->match().matches(h, path, "")) {
          expected = std::string(r->name());
          break;
        }
      }
      EXPECT_EQ(routeFor(t, path), expected) << path;
    }
  }
}

TEST(RouteMatchTest, Grpc) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: grpc, match: {prefix: /, grpc: {}}, route: {cluster: c}}
  - {name: other, match: {prefix: /}, route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/pkg.Svc/Call", {{"content-type", "application/grpc"}}), "grpc");
  EXPECT_EQ(routeFor(t, "/pkg.Svc/Call", {{"content-type", "application/grpc+proto"}}), "grpc");
  EXPECT_EQ(routeFor(t, "/pkg.Svc/Call", {{"content-type", "application/grpc-web"}}), "other");
  EXPECT_EQ(routeFor(t, "/pkg.Svc/Call", {{"content-type", "application/json"}}), "other");
  EXPECT_EQ(routeFor(t, "/pkg.Svc/Call"), "other");
}

TEST(RouteMatchTest, UnsupportedConditionsAreRefused) {
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, runtime_fraction: {default_value: {numerator: 50}}}
    route: {cluster: c}
)"),
            "virtual_hosts[0].routes[0].match.runtime_fraction: runtime_fraction is not supported");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {connect_matcher: {}}, route: {cluster: c}}
)"),
            "virtual_hosts[0].routes[0].match.connect_matcher: connect_matcher is not supported");
}

// ---------------------------------------------------------------------------------------------
// Header matching

TablePtr headerTable() {
  return build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: exact, match: {prefix: /exact, headers: [{name: X-Env, string_match: {exact: prod}}]},
     route: {cluster: c}}
  - {name: exact_nocase, match: {prefix: /exact_nocase,
       headers: [{name: x-env, string_match: {exact: Prod, ignore_case: true}}]},
     route: {cluster: c}}
  - {name: prefix, match: {prefix: /prefix, headers: [{name: x-v, string_match: {prefix: v1.}}]},
     route: {cluster: c}}
  - {name: suffix, match: {prefix: /suffix,
       headers: [{name: x-v, string_match: {suffix: -BETA, ignore_case: true}}]},
     route: {cluster: c}}
  - {name: contains, match: {prefix: /contains,
       headers: [{name: user-agent, string_match: {contains: Mobile}}]},
     route: {cluster: c}}
  - {name: regex, match: {prefix: /regex,
       headers: [{name: x-id, string_match: {safe_regex: {regex: "[0-9]{3}"}}}]},
     route: {cluster: c}}
  - {name: present, match: {prefix: /present, headers: [{name: x-debug, present_match: true}]},
     route: {cluster: c}}
  - {name: absent, match: {prefix: /absent, headers: [{name: x-debug, present_match: false}]},
     route: {cluster: c}}
  - {name: nospec, match: {prefix: /nospec, headers: [{name: x-debug}]}, route: {cluster: c}}
  - {name: invert, match: {prefix: /invert,
       headers: [{name: x-env, string_match: {exact: prod}, invert_match: true}]},
     route: {cluster: c}}
  - {name: invert_present, match: {prefix: /invpresent,
       headers: [{name: x-debug, present_match: true, invert_match: true}]},
     route: {cluster: c}}
  - {name: method, match: {prefix: /method,
       headers: [{name: ":method", string_match: {exact: POST}}]},
     route: {cluster: c}}
  - {name: joined, match: {prefix: /joined,
       headers: [{name: x-tag, string_match: {exact: "a,b,c"}}]},
     route: {cluster: c}}
  - {name: range, match: {prefix: /range, headers: [{name: x-n, range_match: {start: 10, end: 20}}]},
     route: {cluster: c}}
  - {name: both, match: {prefix: /both, headers: [{name: x-a, string_match: {exact: "1"}},
                                                  {name: x-b, string_match: {exact: "2"}}]},
     route: {cluster: c}}
  - {name: missing_as_empty, match: {prefix: /missing,
       headers: [{name: x-m, string_match: {safe_regex: {regex: "^$"}},
                  treat_missing_header_as_empty: true}]},
     route: {cluster: c}}
)");
}

TEST(HeaderMatchTest, StringMatchKinds) {
  TablePtr t = headerTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/exact", {{"x-env", "prod"}}), "exact");
  EXPECT_EQ(routeFor(t, "/exact", {{"x-env", "Prod"}}), "none");
  EXPECT_EQ(routeFor(t, "/exact", {{"x-env", "prod2"}}), "none");
  EXPECT_EQ(routeFor(t, "/exact"), "none");
  EXPECT_EQ(routeFor(t, "/exact_nocase", {{"x-env", "PROD"}}), "exact_nocase");
  EXPECT_EQ(routeFor(t, "/exact_nocase", {{"x-env", "pRoD"}}), "exact_nocase");
  EXPECT_EQ(routeFor(t, "/exact_nocase", {{"x-env", "prodx"}}), "none");
  EXPECT_EQ(routeFor(t, "/prefix", {{"x-v", "v1.2"}}), "prefix");
  EXPECT_EQ(routeFor(t, "/prefix", {{"x-v", "V1.2"}}), "none");
  EXPECT_EQ(routeFor(t, "/prefix", {{"x-v", "v2.1"}}), "none");
  EXPECT_EQ(routeFor(t, "/suffix", {{"x-v", "2.0-beta"}}), "suffix");
  EXPECT_EQ(routeFor(t, "/suffix", {{"x-v", "2.0-Beta"}}), "suffix");
  EXPECT_EQ(routeFor(t, "/suffix", {{"x-v", "2.0-beta1"}}), "none");
  EXPECT_EQ(routeFor(t, "/contains", {{"user-agent", "Foo Mobile Safari"}}), "contains");
  EXPECT_EQ(routeFor(t, "/contains", {{"user-agent", "Foo mobile Safari"}}), "none");
  EXPECT_EQ(routeFor(t, "/regex", {{"x-id", "123"}}), "regex");
  EXPECT_EQ(routeFor(t, "/regex", {{"x-id", "1234"}}), "none");  // full match
  EXPECT_EQ(routeFor(t, "/regex", {{"x-id", "abc"}}), "none");
  EXPECT_EQ(routeFor(t, "/range", {{"x-n", "10"}}), "range");
  EXPECT_EQ(routeFor(t, "/range", {{"x-n", "19"}}), "range");
  EXPECT_EQ(routeFor(t, "/range", {{"x-n", "20"}}), "none");
  EXPECT_EQ(routeFor(t, "/range", {{"x-n", "1x"}}), "none");
  EXPECT_EQ(routeFor(t, "/both", {{"x-a", "1"}, {"x-b", "2"}}), "both");
  EXPECT_EQ(routeFor(t, "/both", {{"x-a", "1"}}), "none");
  EXPECT_EQ(routeFor(t, "/missing"), "missing_as_empty");
  EXPECT_EQ(routeFor(t, "/missing", {{"x-m", "v"}}), "none");
}

TEST(HeaderMatchTest, PresenceAndInversion) {
  TablePtr t = headerTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/present", {{"x-debug", ""}}), "present");
  EXPECT_EQ(routeFor(t, "/present", {{"x-debug", "1"}}), "present");
  EXPECT_EQ(routeFor(t, "/present"), "none");
  EXPECT_EQ(routeFor(t, "/absent"), "absent");
  EXPECT_EQ(routeFor(t, "/absent", {{"x-debug", "1"}}), "none");
  // No match specifier: the header must be present.
  EXPECT_EQ(routeFor(t, "/nospec", {{"x-debug", "1"}}), "nospec");
  EXPECT_EQ(routeFor(t, "/nospec"), "none");
  EXPECT_EQ(routeFor(t, "/invert", {{"x-env", "dev"}}), "invert");
  EXPECT_EQ(routeFor(t, "/invert", {{"x-env", "prod"}}), "none");
  // Envoy: an inverted value match on a missing header does not match.
  EXPECT_EQ(routeFor(t, "/invert"), "none");
  EXPECT_EQ(routeFor(t, "/invpresent"), "invert_present");
  EXPECT_EQ(routeFor(t, "/invpresent", {{"x-debug", "1"}}), "none");
}

TEST(HeaderMatchTest, PseudoHeadersAndRepeatedHeaders) {
  TablePtr t = headerTable();
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap post = request("/method");
  post.set(":method", "POST");
  EXPECT_EQ(routeName(t, post), "method");
  EXPECT_EQ(routeFor(t, "/method"), "none");
  // A header that appears several times matches as its values joined with ','.
  EXPECT_EQ(routeFor(t, "/joined", {{"x-tag", "a"}, {"x-tag", "b"}, {"x-tag", "c"}}), "joined");
  EXPECT_EQ(routeFor(t, "/joined", {{"x-tag", "a,b,c"}}), "joined");
  EXPECT_EQ(routeFor(t, "/joined", {{"x-tag", "a"}, {"x-tag", "b"}}), "none");
  EXPECT_EQ(routeFor(t, "/exact", {{"x-env", "prod"}, {"x-env", "dev"}}), "none");
}

// ---------------------------------------------------------------------------------------------
// Query parameter matching

TEST(QueryParameterMatchTest, Kinds) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: exact, match: {prefix: /exact, query_parameters: [{name: debug, string_match: {exact: "1"}}]},
     route: {cluster: c}}
  - {name: nocase, match: {prefix: /nocase,
       query_parameters: [{name: mode, string_match: {exact: fast, ignore_case: true}}]},
     route: {cluster: c}}
  - {name: regex, match: {prefix: /regex,
       query_parameters: [{name: id, string_match: {safe_regex: {regex: "[a-f0-9]+"}}}]},
     route: {cluster: c}}
  - {name: present, match: {prefix: /present, query_parameters: [{name: flag, present_match: true}]},
     route: {cluster: c}}
  - {name: decoded, match: {prefix: /decoded,
       query_parameters: [{name: q, string_match: {exact: "a b/c"}}]},
     route: {cluster: c}}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(routeFor(t, "/exact?debug=1"), "exact");
  EXPECT_EQ(routeFor(t, "/exact?a=b&debug=1&c"), "exact");
  EXPECT_EQ(routeFor(t, "/exact?debug=1#frag"), "exact");
  EXPECT_EQ(routeFor(t, "/exact?debug=2"), "none");
  EXPECT_EQ(routeFor(t, "/exact?debug=2&debug=1"), "none");  // the first value decides
  EXPECT_EQ(routeFor(t, "/exact?xdebug=1"), "none");
  EXPECT_EQ(routeFor(t, "/exact"), "none");
  EXPECT_EQ(routeFor(t, "/nocase?mode=FAST"), "nocase");
  EXPECT_EQ(routeFor(t, "/regex?id=beef"), "regex");
  EXPECT_EQ(routeFor(t, "/regex?id=beefy"), "none");
  EXPECT_EQ(routeFor(t, "/present?flag"), "present");
  EXPECT_EQ(routeFor(t, "/present?x=1&flag="), "present");
  EXPECT_EQ(routeFor(t, "/present?flags=1"), "none");
  EXPECT_EQ(routeFor(t, "/decoded?q=a%20b%2Fc"), "decoded");
}

// ---------------------------------------------------------------------------------------------
// Virtual hosts

TablePtr domainTable() {
  return build(R"(
virtual_hosts:
- {name: exact, domains: [www.foo.com, "Mixed.Case.COM", "withport.com:8080"], routes: []}
- {name: suffix_long, domains: ["*.api.foo.com"], routes: []}
- {name: suffix_short, domains: ["*.foo.com"], routes: []}
- {name: suffix_dash, domains: ["*-bar.foo.com"], routes: []}
- {name: prefix_long, domains: ["foo.bar.*"], routes: []}
- {name: prefix_short, domains: ["foo.*"], routes: []}
- {name: default, domains: ["*"], routes: []}
)");
}

TEST(VirtualHostTest, DomainPrecedence) {
  TablePtr t = domainTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(vhostName(t, "www.foo.com"), "exact");
  EXPECT_EQ(vhostName(t, "x.api.foo.com"), "suffix_long");
  EXPECT_EQ(vhostName(t, "api.foo.com"), "suffix_short");  // "*.api.foo.com" needs more
  EXPECT_EQ(vhostName(t, "a.foo.com"), "suffix_short");
  EXPECT_EQ(vhostName(t, "baz-bar.foo.com"), "suffix_dash");
  EXPECT_EQ(vhostName(t, "-bar.foo.com"), "suffix_short");  // a wildcard matches 1+ chars
  EXPECT_EQ(vhostName(t, ".foo.com"), "default");
  EXPECT_EQ(vhostName(t, "foo.bar.baz"), "prefix_long");
  EXPECT_EQ(vhostName(t, "foo.com"), "prefix_short");
  EXPECT_EQ(vhostName(t, "foo.bar.foo.com"), "suffix_short");  // suffixes before prefixes
  EXPECT_EQ(vhostName(t, "foo."), "default");
  EXPECT_EQ(vhostName(t, "other.org"), "default");
  EXPECT_EQ(vhostName(t, ""), "default");
}

TEST(VirtualHostTest, CaseInsensitive) {
  TablePtr t = domainTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(vhostName(t, "WWW.FOO.COM"), "exact");
  EXPECT_EQ(vhostName(t, "mixed.case.com"), "exact");
  EXPECT_EQ(vhostName(t, "X.API.Foo.Com"), "suffix_long");
  EXPECT_EQ(vhostName(t, "FOO.example"), "prefix_short");
  std::string long_host(300, 'A');
  long_host += ".FOO.COM";
  EXPECT_EQ(vhostName(t, long_host), "suffix_short");
}

TEST(VirtualHostTest, Ports) {
  TablePtr t = domainTable();
  ASSERT_NE(t, nullptr);
  // The whole authority first, then the host without the port.
  EXPECT_EQ(vhostName(t, "www.foo.com:8080"), "exact");
  EXPECT_EQ(vhostName(t, "withport.com:8080"), "exact");
  EXPECT_EQ(vhostName(t, "withport.com:9090"), "default");
  EXPECT_EQ(vhostName(t, "withport.com"), "default");
  EXPECT_EQ(vhostName(t, "a.api.foo.com:443"), "suffix_long");
  EXPECT_EQ(vhostName(t, "WWW.FOO.COM:80"), "exact");
  // "foo.*" matches the whole authority "foo.com:80" before the port is stripped.
  EXPECT_EQ(vhostName(t, "foo.com:80"), "prefix_short");

  TablePtr v6 = build(R"(
virtual_hosts:
- {name: v6, domains: ["[::1]"], routes: []}
- {name: v6port, domains: ["[::1]:9000"], routes: []}
)");
  ASSERT_NE(v6, nullptr);
  EXPECT_EQ(vhostName(v6, "[::1]"), "v6");
  EXPECT_EQ(vhostName(v6, "[::1]:8080"), "v6");
  EXPECT_EQ(vhostName(v6, "[::1]:9000"), "v6port");
  EXPECT_EQ(vhostName(v6, "[::2]:8080"), "none");
}

TEST(VirtualHostTest, IgnorePortInHostMatching) {
  TablePtr t = build(R"(
ignore_port_in_host_matching: true
virtual_hosts:
- {name: a, domains: ["a.com"], routes: []}
- {name: b, domains: ["b.com:8080"], routes: []}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(vhostName(t, "a.com:1234"), "a");
  EXPECT_EQ(vhostName(t, "a.com"), "a");
  EXPECT_EQ(vhostName(t, "b.com:8080"), "none");  // only the host is looked up
}

TEST(VirtualHostTest, NoDefaultAndRequireTls) {
  TablePtr t = build(R"(
virtual_hosts:
- {name: a, domains: ["a.com"], require_tls: ALL,
   routes: [{name: r, match: {prefix: /}, route: {cluster: c}}]}
- {name: b, domains: ["b.com"], require_tls: EXTERNAL_ONLY, routes: []}
- {name: c, domains: ["c.com"], routes: []}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->virtualHost("a.com")->requireTls(), VirtualHost::TlsRequirement::All);
  EXPECT_EQ(t->virtualHost("b.com")->requireTls(), VirtualHost::TlsRequirement::ExternalOnly);
  EXPECT_EQ(t->virtualHost("c.com")->requireTls(), VirtualHost::TlsRequirement::None);
  EXPECT_EQ(t->virtualHost("d.com"), nullptr);
  EXPECT_EQ(t->route(request("/", "d.com"), 0), nullptr);
  EXPECT_EQ(t->route(request("/", "c.com"), 0), nullptr);  // no route in the virtual host
  EXPECT_NE(t->route(request("/", "a.com"), 0), nullptr);
}

TEST(VirtualHostTest, HostHeaderWhenNoAuthority) {
  TablePtr t = build(R"(
virtual_hosts:
- {name: a, domains: ["a.com"], routes: [{name: r, match: {prefix: /}, route: {cluster: c}}]}
)");
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h{{":method", "GET"}, {":path", "/"}, {"host", "A.com"}};
  EXPECT_EQ(routeName(t, h), "r");
}

// ---------------------------------------------------------------------------------------------
// The route a table hands out

TEST(RouteTableTest, RouteKeepsTableAlive) {
  TablePtr t = build(R"(
name: rc
virtual_hosts:
- {name: vh, domains: ["*"], routes: [{name: r, match: {prefix: /}, route: {cluster: c}}]}
)");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name(), "rc");
  http::RouteConstSharedPtr route = t->route(request("/x"), 7);
  ASSERT_NE(route, nullptr);
  std::weak_ptr<const RouteTableImpl> weak = t;
  t.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(route->name(), "r");
  const auto* entry = dynamic_cast<const RouteEntry*>(route.get());
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->virtualHost().name(), "vh");
  route.reset();
  EXPECT_TRUE(weak.expired());
}

// ---------------------------------------------------------------------------------------------
// Clusters

TEST(ClusterTest, NamedCluster) {
  TablePtr t = build(R"(
virtual_hosts:
- {name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}
)");
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  EXPECT_EQ(r.kind(), RouteEntry::Kind::Cluster);
  const auto name = r.clusterName(request("/"), 12345);
  ASSERT_NE(name, std::nullopt);
  EXPECT_EQ(*name, "backend");
  EXPECT_EQ(r.weightedCluster(1), nullptr);
}

TEST(ClusterTest, ClusterHeader) {
  TablePtr t = build(R"(
virtual_hosts:
- {name: vh, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster_header: X-Cluster}}]}
)");
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  const http::RequestHeaderMap h = request("/", "x", {{"x-cluster", "blue"}, {"x-cluster", "red"}});
  const auto name = r.clusterName(h, 0);
  ASSERT_NE(name, std::nullopt);
  EXPECT_EQ(*name, "blue");  // the first value
  EXPECT_EQ(r.clusterName(request("/"), 0), std::nullopt);
  EXPECT_EQ(r.clusterName(request("/", "x", {{"x-cluster", ""}}), 0), std::nullopt);
}

TEST(ClusterTest, WeightedPicks) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - {name: a, weight: 10}
        - {name: never, weight: 0}
        - {name: b, weight: 30}
        - {name: c, weight: 60}
)");
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  EXPECT_EQ(r.totalWeight(), 100u);
  const http::RequestHeaderMap h = request("/");
  auto pick = [&](uint64_t random) { return *r.clusterName(h, random); };
  EXPECT_EQ(pick(0), "a");
  EXPECT_EQ(pick(9), "a");
  EXPECT_EQ(pick(10), "b");
  EXPECT_EQ(pick(39), "b");
  EXPECT_EQ(pick(40), "c");
  EXPECT_EQ(pick(99), "c");
  EXPECT_EQ(pick(100), "a");
  EXPECT_EQ(pick(UINT64_MAX), "b");  // 18446744073709551615 % 100 == 15
  EXPECT_EQ(r.weightedCluster(45)->name, "c");

  // 10,000 random picks land within 3 sigma of the weights.
  std::mt19937_64 rng(42);
  std::map<std::string, int> counts;
  constexpr int kN = 10000;
  for (int i = 0; i < kN; ++i) ++counts[std::string(pick(rng()))];
  EXPECT_EQ(counts.count("never"), 0u);
  for (const auto& [name, weight] :
       std::vector<std::pair<std::string, double>>{{"a", 0.1}, {"b", 0.3}, {"c", 0.6}}) {
    const double expected = kN * weight;
    const double sigma = std::sqrt(kN * weight * (1 - weight));
    EXPECT_NEAR(counts[name], expected, 3 * sigma) << name;
  }
}

TEST(ClusterTest, WeightedClusterHeader) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      weighted_clusters:
        clusters:
        - {name: fixed, weight: 1}
        - {cluster_header: x-pick, weight: 1}
)");
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  const http::RequestHeaderMap h = request("/", "x", {{"x-pick", "dyn"}});
  EXPECT_EQ(*r.clusterName(h, 0), "fixed");
  EXPECT_EQ(*r.clusterName(h, 1), "dyn");
  EXPECT_EQ(r.clusterName(request("/"), 1), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Timeouts and rewrites

TEST(RouteActionTest, Timeouts) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: default, match: {path: /default}, route: {cluster: c}}
  - {name: none, match: {path: /none}, route: {cluster: c, timeout: 0s}}
  - {name: custom, match: {path: /custom}, route: {cluster: c, timeout: 2.5s, idle_timeout: 30s}}
  - {name: noidle, match: {path: /noidle}, route: {cluster: c, idle_timeout: 0s}}
)");
  ASSERT_NE(t, nullptr);
  const auto& routes = t->virtualHosts()[0]->routes();
  EXPECT_EQ(routes[0]->timeout(), 15s);
  EXPECT_FALSE(routes[0]->idleTimeout().has_value());
  EXPECT_EQ(routes[1]->timeout(), 0ms);
  EXPECT_EQ(routes[2]->timeout(), 2500ms);
  EXPECT_EQ(routes[2]->idleTimeout(), std::optional<std::chrono::milliseconds>(30s));
  EXPECT_EQ(routes[3]->idleTimeout(), std::optional<std::chrono::milliseconds>(0ms));
}

TablePtr rewriteTable() {
  return build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: prefix, match: {prefix: /api/}, route: {cluster: c, prefix_rewrite: /v2/}}
  - {name: strip, match: {prefix: /strip}, route: {cluster: c, prefix_rewrite: /}}
  - {name: nocase, match: {prefix: /NoCase/, case_sensitive: false},
     route: {cluster: c, prefix_rewrite: /lower/}}
  - {name: sep, match: {path_separated_prefix: /sep}, route: {cluster: c, prefix_rewrite: /s}}
  - {name: exact, match: {path: /old}, route: {cluster: c, prefix_rewrite: /new}}
  - {name: same, match: {prefix: /same}, route: {cluster: c, prefix_rewrite: /same}}
  - name: regex
    match: {prefix: /service/}
    route:
      cluster: c
      regex_rewrite: {pattern: {regex: "^/service/([^/]+)(/.*)$"}, substitution: "\\2/instance/\\1"}
  - name: regex_all
    match: {prefix: /xxx/}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "one"}, substitution: "two"}}
  - name: host
    match: {prefix: /host}
    route: {cluster: c, host_rewrite_literal: upstream.internal, append_x_forwarded_host: true}
  - {name: auto, match: {prefix: /auto}, route: {cluster: c, auto_host_rewrite: true}}
)");
}

// Runs rewritePathAndHost on a request for `path` routed by `t`.
http::RequestHeaderMap rewrite(const TablePtr& t, std::string_view path, bool insert = true) {
  http::RequestHeaderMap h = request(path);
  const RouteEntry* r = t->findRoute(h);
  EXPECT_NE(r, nullptr) << path;
  if (r != nullptr) r->rewritePathAndHost(h, insert);
  return h;
}

TEST(RouteActionTest, PrefixRewrite) {
  TablePtr t = rewriteTable();
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = rewrite(t, "/api/users?id=1&x=/api/");
  EXPECT_EQ(h.path(), "/v2/users?id=1&x=/api/");
  EXPECT_EQ(h.getValue("x-envoy-original-path"), "/api/users?id=1&x=/api/");
  h = rewrite(t, "/api/users?id=1", false);
  EXPECT_EQ(h.path(), "/v2/users?id=1");
  EXPECT_FALSE(h.has("x-envoy-original-path"));
  EXPECT_EQ(rewrite(t, "/strip").path(), "/");
  EXPECT_EQ(rewrite(t, "/strip/etc").path(), "//etc");  // Envoy's documented trailing-slash caveat
  EXPECT_EQ(rewrite(t, "/NOCASE/a?b").path(), "/lower/a?b");
  EXPECT_EQ(rewrite(t, "/sep").path(), "/s");
  EXPECT_EQ(rewrite(t, "/sep/x?y=1").path(), "/s/x?y=1");
  EXPECT_EQ(rewrite(t, "/sep?y=1").path(), "/s?y=1");
  EXPECT_EQ(rewrite(t, "/old?q=1").path(), "/new?q=1");  // a path match replaces the whole path
  // An unchanged path gets no x-envoy-original-path.
  h = rewrite(t, "/same/x");
  EXPECT_EQ(h.path(), "/same/x");
  EXPECT_FALSE(h.has("x-envoy-original-path"));
}

TEST(RouteActionTest, RegexRewrite) {
  TablePtr t = rewriteTable();
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = rewrite(t, "/service/foo/v1/api?x=/service/a/b");
  EXPECT_EQ(h.path(), "/v1/api/instance/foo?x=/service/a/b");
  EXPECT_EQ(h.getValue("x-envoy-original-path"), "/service/foo/v1/api?x=/service/a/b");
  EXPECT_EQ(rewrite(t, "/xxx/one/yyy/one/zzz?one=1").path(), "/xxx/two/yyy/two/zzz?one=1");
}

TEST(RouteActionTest, HostRewrite) {
  TablePtr t = rewriteTable();
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = rewrite(t, "/host/x");
  EXPECT_EQ(h.authority(), "upstream.internal");
  EXPECT_EQ(h.path(), "/host/x");
  EXPECT_EQ(h.getValue("x-forwarded-host"), "example.com");
  EXPECT_FALSE(h.has("x-envoy-original-path"));

  const RouteEntry* host = t->findRoute(request("/host"));
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->hostRewriteLiteral(), "upstream.internal");
  EXPECT_FALSE(host->autoHostRewrite());
  const RouteEntry* autor = t->findRoute(request("/auto"));
  ASSERT_NE(autor, nullptr);
  EXPECT_TRUE(autor->autoHostRewrite());
  h = rewrite(t, "/auto");
  EXPECT_EQ(h.authority(), "example.com");  // the router rewrites it to the upstream host
}

// ---------------------------------------------------------------------------------------------
// Redirects

TablePtr redirectTable() {
  return build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: https, match: {prefix: /https}, redirect: {https_redirect: true}}
  - {name: scheme, match: {prefix: /scheme}, redirect: {scheme_redirect: HTTP}}
  - {name: host, match: {prefix: /host}, redirect: {host_redirect: new.example.org}}
  - {name: port, match: {prefix: /port}, redirect: {port_redirect: 8443}}
  - {name: host_port, match: {prefix: /hp}, redirect: {host_redirect: h.org, port_redirect: 81}}
  - {name: path, match: {prefix: /path}, redirect: {path_redirect: /new/path}}
  - {name: path_query, match: {prefix: /pq}, redirect: {path_redirect: "/new?foo=1", strip_query: true}}
  - {name: path_strip, match: {prefix: /ps}, redirect: {path_redirect: /new, strip_query: true}}
  - {name: prefix, match: {prefix: /old/}, redirect: {prefix_rewrite: /fresh/}}
  - {name: strip, match: {prefix: /strip}, redirect: {strip_query: true}}
  - name: regex
    match: {prefix: /re/}
    redirect: {regex_rewrite: {pattern: {regex: "^/re/(.*)$"}, substitution: "/rx/\\1"}}
  - {name: found, match: {prefix: /found}, redirect: {response_code: FOUND}}
  - {name: see_other, match: {prefix: /see}, redirect: {response_code: SEE_OTHER}}
  - {name: temporary, match: {prefix: /temp}, redirect: {response_code: TEMPORARY_REDIRECT}}
  - {name: permanent, match: {prefix: /perm}, redirect: {response_code: PERMANENT_REDIRECT}}
)");
}

std::string location(
    const TablePtr& t, std::string_view path, std::string_view host,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  const http::RequestHeaderMap h = request(path, host, extra);
  const RouteEntry* r = t->findRoute(h);
  EXPECT_NE(r, nullptr) << path;
  if (r == nullptr) return "";
  EXPECT_EQ(r->kind(), RouteEntry::Kind::Redirect);
  return r->redirectLocation(h);
}

TEST(RedirectTest, Scheme) {
  TablePtr t = redirectTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(location(t, "/https/a?b=1", "example.com"), "https://example.com/https/a?b=1");
  // The default port of the old scheme goes; another port stays.
  EXPECT_EQ(location(t, "/https", "example.com:80"), "https://example.com/https");
  EXPECT_EQ(location(t, "/https", "example.com:8080"), "https://example.com:8080/https");
  EXPECT_EQ(location(t, "/https", "[::1]:80"), "https://[::1]/https");
  // Already https (x-forwarded-proto): nothing to strip.
  EXPECT_EQ(location(t, "/https", "example.com:80", {{"x-forwarded-proto", "https"}}),
            "https://example.com:80/https");
  EXPECT_EQ(location(t, "/scheme", "example.com:443", {{"x-forwarded-proto", "https"}}),
            "http://example.com/scheme");
  EXPECT_EQ(location(t, "/scheme", "example.com:8443", {{"x-forwarded-proto", "https"}}),
            "http://example.com:8443/scheme");
  // Without a scheme override the request's scheme is kept (x-forwarded-proto over :scheme).
  EXPECT_EQ(location(t, "/host", "a.com", {{"x-forwarded-proto", "https"}}),
            "https://new.example.org/host");
}

TEST(RedirectTest, HostAndPort) {
  TablePtr t = redirectTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(location(t, "/host/x?y", "example.com:9000"), "http://new.example.org/host/x?y");
  EXPECT_EQ(location(t, "/port/x", "example.com:9000"), "http://example.com:8443/port/x");
  EXPECT_EQ(location(t, "/port", "example.com"), "http://example.com:8443/port");
  EXPECT_EQ(location(t, "/port", "[::1]:80"), "http://[::1]:8443/port");
  EXPECT_EQ(location(t, "/hp", "example.com:9000"), "http://h.org:81/hp");
}

TEST(RedirectTest, Paths) {
  TablePtr t = redirectTable();
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(location(t, "/path?bar=1", "a.com"), "http://a.com/new/path?bar=1");
  EXPECT_EQ(location(t, "/path", "a.com"), "http://a.com/new/path");
  // A query in path_redirect replaces the request's and is never stripped.
  EXPECT_EQ(location(t, "/pq?bar=1", "a.com"), "http://a.com/new?foo=1");
  EXPECT_EQ(location(t, "/ps?bar=1", "a.com"), "http://a.com/new");
  EXPECT_EQ(location(t, "/old/page?x=1", "a.com"), "http://a.com/fresh/page?x=1");
  EXPECT_EQ(location(t, "/strip/x?y=1&z=2", "a.com"), "http://a.com/strip/x");
  EXPECT_EQ(location(t, "/re/a/b?q", "a.com"), "http://a.com/rx/a/b?q");
}

TEST(RedirectTest, ResponseCodes) {
  TablePtr t = redirectTable();
  ASSERT_NE(t, nullptr);
  auto code = [&](std::string_view path) {
    const RouteEntry* r = t->findRoute(request(path));
    return r == nullptr ? 0u : r->redirectResponseCode();
  };
  EXPECT_EQ(code("/https"), 301u);
  EXPECT_EQ(code("/found"), 302u);
  EXPECT_EQ(code("/see"), 303u);
  EXPECT_EQ(code("/temp"), 307u);
  EXPECT_EQ(code("/perm"), 308u);
  EXPECT_EQ(t->findRoute(request("/https"))->clusterName(request("/https"), 0), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Direct responses

TEST(DirectResponseTest, StatusAndBody) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {name: text, match: {path: /text}, direct_response: {status: 200, body: {inline_string: "hello\n"}}}
  - {name: bytes, match: {path: /bytes}, direct_response: {status: 503, body: {inline_bytes: "AAEC"}}}
  - {name: empty, match: {path: /empty}, direct_response: {status: 204}}
)");
  ASSERT_NE(t, nullptr);
  const RouteEntry* r = t->findRoute(request("/text"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->kind(), RouteEntry::Kind::DirectResponse);
  EXPECT_EQ(r->directResponseCode(), 200u);
  EXPECT_EQ(r->directResponseBody(), "hello\n");
  r = t->findRoute(request("/bytes"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->directResponseCode(), 503u);
  EXPECT_EQ(r->directResponseBody(), std::string("\x00\x01\x02", 3));
  r = t->findRoute(request("/empty"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->directResponseCode(), 204u);
  EXPECT_EQ(r->directResponseBody(), "");
}

TEST(DirectResponseTest, BodyLimit) {
  EXPECT_EQ(buildError(R"(
max_direct_response_body_size_bytes: 4
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {path: /}, direct_response: {status: 200, body: {inline_string: "hello"}}}
)"),
            "virtual_hosts[0].routes[0].direct_response.body: the body is 5 bytes; the maximum "
            "is 4 (max_direct_response_body_size_bytes)");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {path: /}, direct_response: {status: 200, body: {filename: /etc/hostname}}}
)"),
            "virtual_hosts[0].routes[0].direct_response.body: only inline_string and "
            "inline_bytes are supported");
}

// ---------------------------------------------------------------------------------------------
// Header mutations

class HeaderMutationTest : public ::testing::Test {
 protected:
  HeaderMutationTest() : info_(time_) {
    std::string error;
    info_.downstream_remote_address = network::parseAddress("203.0.113.7:4711", &error);
    EXPECT_NE(info_.downstream_remote_address, nullptr) << error;
  }

  FixedTime time_;
  http::StreamInfo info_;
};

TEST_F(HeaderMutationTest, AppendActions) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add:
    - header: {key: X-Append, value: new}
    - header: {key: x-append-absent, value: new}
    - header: {key: x-if-absent, value: new}
      append_action: ADD_IF_ABSENT
    - header: {key: x-if-absent-missing, value: new}
      append_action: ADD_IF_ABSENT
    - header: {key: x-overwrite, value: new}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    - header: {key: x-overwrite-missing, value: new}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    - header: {key: x-if-exists, value: new}
      append_action: OVERWRITE_IF_EXISTS
    - header: {key: x-if-exists-missing, value: new}
      append_action: OVERWRITE_IF_EXISTS
    request_headers_to_remove: [X-Secret]
)");
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = request("/", "a",
                                     {{"x-append", "old"},
                                      {"x-if-absent", "old"},
                                      {"x-overwrite", "old1"},
                                      {"x-overwrite", "old2"},
                                      {"x-if-exists", "old"},
                                      {"x-secret", "s"}});
  onlyRoute(t).finalizeRequestHeaders(h, info_);
  EXPECT_EQ(values(h, "x-append"), (std::vector<std::string>{"old", "new"}));
  EXPECT_EQ(values(h, "x-append-absent"), std::vector<std::string>{"new"});
  EXPECT_EQ(values(h, "x-if-absent"), std::vector<std::string>{"old"});
  EXPECT_EQ(values(h, "x-if-absent-missing"), std::vector<std::string>{"new"});
  EXPECT_EQ(values(h, "x-overwrite"), std::vector<std::string>{"new"});
  EXPECT_EQ(values(h, "x-overwrite-missing"), std::vector<std::string>{"new"});
  EXPECT_EQ(values(h, "x-if-exists"), std::vector<std::string>{"new"});
  EXPECT_FALSE(h.has("x-if-exists-missing"));
  EXPECT_FALSE(h.has("x-secret"));
}

TEST_F(HeaderMutationTest, DeprecatedAppend) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add:
    - {header: {key: x-a, value: new}, append: true}
    - {header: {key: x-b, value: new}, append: false}
)");
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = request("/", "a", {{"x-a", "old"}, {"x-b", "old"}});
  onlyRoute(t).finalizeRequestHeaders(h, info_);
  EXPECT_EQ(values(h, "x-a"), (std::vector<std::string>{"old", "new"}));
  EXPECT_EQ(values(h, "x-b"), std::vector<std::string>{"new"});

  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add:
    - {header: {key: x-a, value: new}, append: true, append_action: ADD_IF_ABSENT}
)"),
            "virtual_hosts[0].routes[0].request_headers_to_add[0]: append and append_action may "
            "not both be set");
}

TEST_F(HeaderMutationTest, KeepEmptyValueAndFormatters) {
  TablePtr t = build(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_add:
    - header: {key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}
    - header: {key: x-client-ip, value: "ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}
    - header: {key: x-copy, value: "%REQ(x-in)%"}
    - header: {key: x-empty-dropped, value: ""}
    - header: {key: x-empty-kept, value: ""}
      keep_empty_value: true
    - header: {key: x-empty-formatted, value: "%REQ(x-missing)%"}
    - header: {key: x-in, value: "added"}
      append_action: OVERWRITE_IF_EXISTS_OR_ADD
    response_headers_to_add:
    - header: {key: x-resp-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}
    - header: {key: x-req-path, value: "%REQ(:path)%"}
)");
  ASSERT_NE(t, nullptr);
  http::RequestHeaderMap h = request("/p", "a", {{"x-in", "orig"}});
  onlyRoute(t).finalizeRequestHeaders(h, info_);
  EXPECT_EQ(h.getValue("x-client"), "203.0.113.7:4711");
  EXPECT_EQ(h.getValue("x-client-ip"), "ip=203.0.113.7");
  // Values are computed from the headers as they were before this level's changes.
  EXPECT_EQ(h.getValue("x-copy"), "orig");
  EXPECT_EQ(h.getValue("x-in"), "added");
  EXPECT_FALSE(h.has("x-empty-dropped"));
  EXPECT_TRUE(h.has("x-empty-kept"));
  EXPECT_EQ(h.getValue("x-empty-kept"), "");
  EXPECT_FALSE(h.has("x-empty-formatted"));

  http::ResponseHeaderMap resp{{":status", "200"}};
  onlyRoute(t).finalizeResponseHeaders(resp, info_, &h);
  EXPECT_EQ(resp.getValue("x-resp-client"), "203.0.113.7:4711");
  EXPECT_EQ(resp.getValue("x-req-path"), "/p");
}

constexpr std::string_view kLevels = R"(
request_headers_to_add:
- {header: {key: x-order, value: config}}
- {header: {key: x-winner, value: config}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
request_headers_to_remove: [x-remove-config]
response_headers_to_add:
- {header: {key: x-order, value: config}}
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: x-order, value: vhost}}
  - {header: {key: x-winner, value: vhost}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
  - {header: {key: x-remove-config, value: vhost}}
  response_headers_to_add:
  - {header: {key: x-order, value: vhost}}
  routes:
  - match: {prefix: /}
    request_headers_to_add:
    - {header: {key: x-order, value: route}}
    - {header: {key: x-winner, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    response_headers_to_add:
    - {header: {key: x-order, value: route}}
    response_headers_to_remove: [x-upstream]
    route:
      weighted_clusters:
        clusters:
        - name: only
          weight: 1
          request_headers_to_add:
          - {header: {key: x-order, value: weighted}}
          response_headers_to_add:
          - {header: {key: x-order, value: weighted}}
)";

TEST_F(HeaderMutationTest, OrderAcrossLevels) {
  TablePtr t = build(kLevels);
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  const WeightedCluster* chosen = r.weightedCluster(0);
  ASSERT_NE(chosen, nullptr);

  http::RequestHeaderMap h = request("/");
  r.finalizeRequestHeaders(h, info_, chosen);
  // Most specific first; the least specific level applies last, so its overwrite wins, and
  // its removal removes what a more specific level added.
  EXPECT_EQ(values(h, "x-order"),
            (std::vector<std::string>{"weighted", "route", "vhost", "config"}));
  EXPECT_EQ(values(h, "x-winner"), std::vector<std::string>{"config"});
  EXPECT_FALSE(h.has("x-remove-config"));

  http::RequestHeaderMap no_choice = request("/");
  r.finalizeRequestHeaders(no_choice, info_);
  EXPECT_EQ(values(no_choice, "x-order"), (std::vector<std::string>{"route", "vhost", "config"}));

  http::ResponseHeaderMap resp{{":status", "200"}, {"x-upstream", "1"}};
  r.finalizeResponseHeaders(resp, info_, &h, chosen);
  EXPECT_EQ(values(resp, "x-order"),
            (std::vector<std::string>{"weighted", "route", "vhost", "config"}));
  EXPECT_FALSE(resp.has("x-upstream"));
}

TEST_F(HeaderMutationTest, MostSpecificWins) {
  TablePtr t =
      build(std::string("most_specific_header_mutations_wins: true\n") + std::string(kLevels));
  ASSERT_NE(t, nullptr);
  const RouteEntry& r = onlyRoute(t);
  http::RequestHeaderMap h = request("/");
  r.finalizeRequestHeaders(h, info_, r.weightedCluster(0));
  EXPECT_EQ(values(h, "x-order"),
            (std::vector<std::string>{"config", "vhost", "route", "weighted"}));
  EXPECT_EQ(values(h, "x-winner"), std::vector<std::string>{"route"});
  EXPECT_EQ(values(h, "x-remove-config"), std::vector<std::string>{"vhost"});
}

// ---------------------------------------------------------------------------------------------
// Config errors

TEST(ConfigErrorTest, DuplicateDomains) {
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- {name: a, domains: [foo.com], routes: []}
- {name: b, domains: [Foo.COM], routes: []}
)"),
            "virtual_hosts[1].domains[0]: duplicate domain 'Foo.COM'");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- {name: a, domains: [a.com, "*.foo.com", "*.FOO.com"], routes: []}
)"),
            "virtual_hosts[0].domains[2]: duplicate domain '*.FOO.com'");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- {name: a, domains: ["foo.*"], routes: []}
- {name: b, domains: [x.com, "foo.*"], routes: []}
)"),
            "virtual_hosts[1].domains[1]: duplicate domain 'foo.*'");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- {name: a, domains: ["*"], routes: []}
- {name: b, domains: ["*"], routes: []}
)"),
            "virtual_hosts[1].domains[0]: duplicate domain '*'");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- {name: a, domains: [], routes: []}
)"),
            "virtual_hosts[0].domains: at least one domain is required");
}

TEST(ConfigErrorTest, BadRegexes) {
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {prefix: /}, route: {cluster: c}}
  - {match: {prefix: /}, route: {cluster: c}}
  - {match: {safe_regex: {regex: "/(a"}}, route: {cluster: c}}
)"),
            "virtual_hosts[0].routes[2].match.safe_regex: invalid regex: missing ): /(a");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, headers: [{name: x, string_match: {safe_regex: {regex: "a**"}}}]}
    route: {cluster: c}
)"),
            "virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex: invalid "
            "regex: bad repetition operator: **");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /, query_parameters: [{name: x, string_match: {safe_regex: {regex: "[z-a]"}}}]}
    route: {cluster: c}
)"),
            "virtual_hosts[0].routes[0].match.query_parameters[0].string_match.safe_regex: "
            "invalid regex: invalid character class range: z-a");
  EXPECT_EQ(buildError(R"yaml(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "(a)"}, substitution: "\\2"}}
)yaml"),
            "virtual_hosts[0].routes[0].route.regex_rewrite.substitution: Rewrite schema "
            "requests 2 matches, but the regexp only has 1 parenthesized subexpressions.");
}

TEST(ConfigErrorTest, BadHeaderMutations) {
  EXPECT_EQ(buildError(R"(
request_headers_to_add:
- {header: {key: x-a, value: "%FOO%"}}
virtual_hosts: []
)"),
            "request_headers_to_add[0].header.value: unknown command operator '%FOO%'");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    response_headers_to_add:
    - {header: {key: x-ok, value: "ok"}}
    - {header: {key: x-a, value: "%START_TIME"}}
)")
                .rfind("virtual_hosts[0].routes[0].response_headers_to_add[1].header.value: ", 0),
            0u);
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  request_headers_to_add:
  - {header: {key: ":path", value: "/x"}}
  routes: []
)"),
            "virtual_hosts[0].request_headers_to_add[0].header.key: ':path': pseudo-headers and "
            "host may not be modified");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c}
    request_headers_to_remove: [x-ok, Host]
)"),
            "virtual_hosts[0].routes[0].request_headers_to_remove[1]: 'Host': pseudo-headers and "
            "host may not be removed");
}

TEST(ConfigErrorTest, BadActions) {
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {weighted_clusters: {clusters: [{name: a, weight: 0}, {name: b}]}}
)"),
            "virtual_hosts[0].routes[0].route.weighted_clusters: the sum of the weights must be "
            "greater than 0");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route: {cluster: c, prefix_rewrite: /x, regex_rewrite: {pattern: {regex: a}, substitution: b}}
)"),
            "virtual_hosts[0].routes[0].route: only one of prefix_rewrite and regex_rewrite may "
            "be set");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
)"),
            "virtual_hosts[0].routes[0]: one of route, redirect or direct_response is required");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {headers: [{name: x}]}, route: {cluster: c}}
)"),
            "virtual_hosts[0].routes[0].match: one of prefix, path, safe_regex or "
            "path_separated_prefix is required");
  EXPECT_EQ(buildError(R"(
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - {match: {path_separated_prefix: /api/}, route: {cluster: c}}
)"),
            "virtual_hosts[0].routes[0].match.path_separated_prefix: '/api/' must be non-empty, "
            "without '?' or '#', and not end with '/'");
}

}  // namespace
}  // namespace sluice::router
