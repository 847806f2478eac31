#pragma once

// The route table: an envoy.config.route.v3.RouteConfiguration compiled, once per config
// change, into an immutable structure that the request path reads without touching a proto.
//
//   RouteTableImpl   the whole table: virtual hosts found by :authority (a hash lookup for
//                    exact domains, then suffix and prefix wildcards by length, then "*"),
//                    plus the route-configuration-level header mutations.
//   VirtualHost      its routes, in order, and its own header mutations.
//   RouteEntry       one route: its match (compiled: lower-cased strings, RE2s) and its action
//                    (forward to a cluster, redirect, or answer directly).
//
// A RouteEntry handed out by RouteTableImpl::route() keeps the whole table alive (an aliasing
// shared_ptr), so a request may keep using its route after a config change.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <re2/re2.h>

#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/route/v3/route_components.pb.h"
#include "http/header_map.h"
#include "http/route.h"
#include "http/stream_info.h"
#include "router/hash_policy.h"
#include "router/header_mutation.h"

namespace sluice::router {

class RouteEntry;
class RouteTableImpl;
class VirtualHost;

// Compiles one typed_per_filter_config entry (map key `filter_name`) into the filter's own
// per-route config; null with `error` ("<path>: ...") when the filter refuses it. Given by
// whoever knows the HTTP filters (src/config), so that the router does not depend on them.
using PerFilterConfigCompiler = std::function<http::RouteSpecificFilterConfigConstSharedPtr(
    const std::string& filter_name, const google::protobuf::Any& config, const std::string& path,
    std::string* error)>;

// typed_per_filter_config of one route or virtual host, compiled: few entries, a linear scan.
using PerFilterConfigs =
    std::vector<std::pair<std::string, http::RouteSpecificFilterConfigConstSharedPtr>>;

// A compiled envoy.type.matcher.v3.StringMatcher: exact, prefix, suffix, contains (each with
// ignore_case) or safe_regex (RE2, full match).
class StringMatcher {
 public:
  enum class Kind { Exact, Prefix, Suffix, Contains, Regex };

  // `path` names the matcher in errors ("...string_match.safe_regex: invalid regex: ...").
  bool init(const envoy::type::matcher::v3::StringMatcher& proto, const std::string& path,
            std::string* error);
  // A literal matcher (not Kind::Regex).
  void initLiteral(Kind kind, std::string_view value, bool ignore_case);
  // A regex matcher; `path` names the regex field in errors.
  bool initRegex(const std::string& regex, const std::string& path, std::string* error);
  bool match(std::string_view value) const;

 private:
  Kind kind_{Kind::Exact};
  std::string value_;  // lower case when ignore_case_
  bool ignore_case_{false};
  std::unique_ptr<const re2::RE2> regex_;
};

// A compiled envoy.config.route.v3.HeaderMatcher. The header's value is all its entries
// joined with ',' (as Envoy matches); a missing header matches only `present_match: false`
// (or, inverted, `present_match: true`), unless treat_missing_header_as_empty.
class HeaderMatcher {
 public:
  bool init(const envoy::config::route::v3::HeaderMatcher& proto, const std::string& path,
            std::string* error);
  bool matches(const http::RequestHeaderMap& headers) const;

 private:
  enum class Kind { Present, String, Range };
  std::string name_;  // lower case
  Kind kind_{Kind::Present};
  bool present_{true};
  StringMatcher string_;
  int64_t range_start_{0};
  int64_t range_end_{0};
  bool invert_{false};
  bool treat_missing_as_empty_{false};
};

// A compiled envoy.config.route.v3.QueryParameterMatcher: the first value of the parameter
// (percent-decoded) against string_match; present_match, or no matcher, needs it present.
class QueryParameterMatcher {
 public:
  bool init(const envoy::config::route::v3::QueryParameterMatcher& proto, const std::string& path,
            std::string* error);
  // `query` is the part of :path after '?' (without it).
  bool matches(std::string_view query) const;

 private:
  std::string name_;
  std::optional<StringMatcher> string_;
};

// A compiled envoy.config.route.v3.RouteMatch.
class RouteMatch {
 public:
  enum class PathKind { Prefix, Exact, Regex, PathSeparatedPrefix };

  bool init(const envoy::config::route::v3::RouteMatch& proto, const std::string& path,
            std::string* error);
  // `path` is :path without its query (and fragment); `query` is what follows '?'.
  bool matches(const http::RequestHeaderMap& headers, std::string_view path,
               std::string_view query) const;

  PathKind pathKind() const { return kind_; }
  // The prefix or exact path as configured (prefix and path_separated_prefix: the part that
  // prefix_rewrite replaces).
  const std::string& pathValue() const { return path_; }
  bool caseSensitive() const { return case_sensitive_; }

 private:
  PathKind kind_{PathKind::Prefix};
  std::string path_;          // as configured
  std::string compare_path_;  // lower case unless case_sensitive_
  bool case_sensitive_{true};
  std::unique_ptr<const re2::RE2> regex_;
  bool grpc_{false};  // match.grpc: only gRPC requests (content-type application/grpc[+;])
  std::vector<HeaderMatcher> headers_;
  std::vector<QueryParameterMatcher> query_parameters_;
};

// One choice of weighted_clusters.
struct WeightedCluster {
  std::string name;            // the cluster, or empty when cluster_header is used
  std::string cluster_header;  // lower case; the cluster is this header's value
  uint32_t weight{0};
  HeaderMutations request_headers;
  HeaderMutations response_headers;
};
using ClusterChoice = WeightedCluster;

// A regex and its substitution (RE2 syntax, "\1" for groups), replacing every match.
struct RegexRewrite {
  std::unique_ptr<const re2::RE2> pattern;
  std::string substitution;
};

// RedirectAction, compiled.
struct RedirectConfig {
  std::string scheme;  // https_redirect gives "https"; empty keeps the request's
  std::string host;    // empty keeps the request's
  std::string port;    // ":8080", or empty
  std::string path;    // path_redirect; empty when unset
  bool path_has_query{false};
  std::optional<std::string> prefix_rewrite;
  std::optional<RegexRewrite> regex_rewrite;
  uint32_t response_code{301};
  bool strip_query{false};
};

// A compiled envoy.config.route.v3.RetryPolicy (the route's, else its virtual host's).
struct RetryPolicy {
  // retry_on conditions, as bits.
  enum On : uint32_t {
    k5xx = 1 << 0,
    kGatewayError = 1 << 1,
    kReset = 1 << 2,
    kConnectFailure = 1 << 3,
    kRetriable4xx = 1 << 4,
    kRefusedStream = 1 << 5,
    kRetriableStatusCodes = 1 << 6,
    kRetriableHeaders = 1 << 7,
    // gRPC: the grpc-status of a trailers-only response (x-envoy-retry-grpc-on's names).
    kGrpcCancelled = 1 << 8,
    kGrpcDeadlineExceeded = 1 << 9,
    kGrpcInternal = 1 << 10,
    kGrpcResourceExhausted = 1 << 11,
    kGrpcUnavailable = 1 << 12,
    kGrpcAll = kGrpcCancelled | kGrpcDeadlineExceeded | kGrpcInternal | kGrpcResourceExhausted |
               kGrpcUnavailable,
  };
  // Parses a comma list ("5xx,reset"). Unknown names: `unknown` gets the first, and the
  // bits of the known ones are still returned.
  static uint32_t parseRetryOn(std::string_view list, std::string* unknown = nullptr);

  uint32_t retry_on{0};
  uint32_t num_retries{1};
  std::chrono::milliseconds per_try_timeout{0};       // zero: none
  std::chrono::milliseconds per_try_idle_timeout{0};  // zero: none
  std::chrono::milliseconds base_interval{25};
  std::chrono::milliseconds max_interval{250};
  bool previous_hosts{false};  // envoy.retry_host_predicates.previous_hosts
  uint32_t host_selection_max_attempts{1};
  std::vector<uint32_t> retriable_status_codes;
  std::vector<HeaderMatcher> retriable_headers;  // matched against the response
};

// A compiled envoy.config.route.v3.RouteAction.RequestMirrorPolicy.
struct MirrorPolicy {
  std::string cluster;
  uint32_t numerator{100};  // runtime_fraction.default_value, as a fraction of denominator
  uint32_t denominator{100};
};

class RouteEntry : public http::Route {
 public:
  enum class Kind { Cluster, Redirect, DirectResponse };

  std::string_view name() const override { return name_; }
  const http::RouteSpecificFilterConfig* perFilterConfig(
      std::string_view filter_name) const override;
  Kind kind() const { return kind_; }
  const VirtualHost& virtualHost() const { return *vhost_; }
  const RouteMatch& match() const { return match_; }

  // Kind::Cluster. The cluster for this request: the configured one; with weighted_clusters
  // the choice at `random % total weight`; with cluster_header that header's (first) value.
  // None when the header is absent or empty. The view lives as long as the route and the
  // headers.
  std::optional<std::string_view> clusterName(const http::RequestHeaderMap& headers,
                                              uint64_t random) const;
  // The weighted choice for `random` (what clusterName() picks), or null without
  // weighted_clusters. Pass it to finalize*Headers() to apply that choice's mutations.
  const WeightedCluster* weightedCluster(uint64_t random) const;
  const std::vector<WeightedCluster>& weightedClusters() const { return weighted_clusters_; }
  uint64_t totalWeight() const { return total_weight_; }
  const std::string& clusterHeader() const { return cluster_header_; }

  // Upstream timeout: 15s unless set; zero means none.
  std::chrono::milliseconds timeout() const { return timeout_; }
  // RouteAction.max_stream_duration (the connection manager runs that deadline).
  const http::StreamDurationPolicy* streamDurationPolicy() const override {
    return stream_duration_ ? &*stream_duration_ : nullptr;
  }
  // The legacy max_grpc_timeout (0: no cap) and grpc_timeout_offset, when set.
  std::optional<std::chrono::milliseconds> maxGrpcTimeout() const { return max_grpc_timeout_; }
  std::optional<std::chrono::milliseconds> grpcTimeoutOffset() const { return grpc_timeout_offset_; }
  // Stream idle timeout for this route, when set (zero disables it).
  std::optional<std::chrono::milliseconds> idleTimeout() const { return idle_timeout_; }
  // The retry policy: the route's, else the virtual host's; null when neither has one.
  const RetryPolicy* retryPolicy() const;
  // hedge_policy.hedge_on_per_try_timeout (the route's, else the virtual host's).
  bool hedgeOnPerTryTimeout() const;
  // per_request_buffer_limit_bytes (the route's, else the virtual host's), if set.
  std::optional<uint32_t> perRequestBufferLimit() const;
  const std::vector<MirrorPolicy>& mirrorPolicies() const { return mirrors_; }
  // priority: HIGH (its requests count against the cluster's HIGH circuit breakers and use
  // their own connection pools) or DEFAULT.
  bool highPriority() const { return high_priority_; }
  // The route's hash_policy, or null without one.
  const HashPolicy* hashPolicy() const { return hash_policy_.get(); }
  const std::string& prefixRewrite() const { return prefix_rewrite_; }
  const std::string& hostRewriteLiteral() const { return host_rewrite_literal_; }
  bool autoHostRewrite() const { return auto_host_rewrite_; }

  // Applies prefix_rewrite (the matched prefix, or the whole path for path and regex
  // matches, is replaced) or regex_rewrite to :path, keeping the query; and
  // host_rewrite_literal to :authority. When :path changed and `insert_original_path`, the
  // original goes to x-envoy-original-path. Meant for Kind::Cluster.
  void rewritePathAndHost(http::RequestHeaderMap& headers, bool insert_original_path) const;

  // Applies the request (response) header mutations of the weighted choice (if any), the
  // route, its virtual host and the route configuration: in that order (most specific
  // first, so that the least specific overwrite wins), or the reverse with
  // most_specific_header_mutations_wins.
  void finalizeRequestHeaders(http::RequestHeaderMap& headers, const http::StreamInfo& info,
                              const WeightedCluster* chosen = nullptr) const;
  void finalizeResponseHeaders(http::ResponseHeaderMap& headers, const http::StreamInfo& info,
                               const http::RequestHeaderMap* request = nullptr,
                               const WeightedCluster* chosen = nullptr) const;
  const HeaderMutations& requestHeaderMutations() const { return request_headers_; }
  const HeaderMutations& responseHeaderMutations() const { return response_headers_; }

  // Kind::Redirect.
  const RedirectConfig& redirect() const { return redirect_; }
  uint32_t redirectResponseCode() const { return redirect_.response_code; }
  // The Location for a redirect of this request: scheme (the redirect's, else the request's
  // x-forwarded-proto, else :scheme, else "http"), host (host_redirect, else :authority; its
  // port is dropped when port_redirect is set, or when switching scheme from a default port
  // (":80" to https, ":443" to http)), port_redirect, then the path (path_redirect,
  // prefix_rewrite, regex_rewrite or the request's) with its query unless strip_query.
  std::string redirectLocation(const http::RequestHeaderMap& headers) const;

  // Kind::DirectResponse.
  uint32_t directResponseCode() const { return direct_status_; }
  const std::string& directResponseBody() const { return direct_body_; }

 private:
  friend class VirtualHost;
  friend class RouteTableImpl;

  bool init(const envoy::config::route::v3::Route& proto, const VirtualHost& vhost,
            const RouteTableImpl& table, uint32_t max_direct_body, const std::string& path,
            std::string* error);
  bool initRouteAction(const envoy::config::route::v3::RouteAction& proto, const std::string& path,
                       std::string* error);
  bool initRedirect(const envoy::config::route::v3::RedirectAction& proto, const std::string& path,
                    std::string* error);
  // `path` (with its query) with the part the route matched replaced: the prefix for prefix
  // and path_separated_prefix matches, the whole path (without the query) otherwise.
  std::string replaceMatchedPrefix(std::string_view path, std::string_view replacement) const;
  void applyMutations(http::HeaderMap& headers, const http::StreamInfo& info,
                      const http::RequestHeaderMap* request, const WeightedCluster* chosen,
                      bool request_side) const;

  std::string name_;
  Kind kind_{Kind::Cluster};
  const VirtualHost* vhost_{nullptr};
  const RouteTableImpl* table_{nullptr};
  RouteMatch match_;

  // Kind::Cluster.
  std::string cluster_;
  std::string cluster_header_;  // lower case
  std::vector<WeightedCluster> weighted_clusters_;
  uint64_t total_weight_{0};
  std::string prefix_rewrite_;
  bool has_prefix_rewrite_{false};
  std::optional<RegexRewrite> regex_rewrite_;
  std::string host_rewrite_literal_;
  bool auto_host_rewrite_{false};
  bool append_x_forwarded_host_{false};
  std::chrono::milliseconds timeout_{15000};
  std::optional<std::chrono::milliseconds> idle_timeout_;
  std::optional<http::StreamDurationPolicy> stream_duration_;
  std::optional<std::chrono::milliseconds> max_grpc_timeout_;
  std::optional<std::chrono::milliseconds> grpc_timeout_offset_;
  std::unique_ptr<const RetryPolicy> retry_policy_;
  std::optional<bool> hedge_on_per_try_timeout_;
  std::optional<uint32_t> buffer_limit_;
  bool high_priority_{false};
  std::vector<MirrorPolicy> mirrors_;
  std::unique_ptr<const HashPolicy> hash_policy_;

  RedirectConfig redirect_;

  uint32_t direct_status_{0};
  std::string direct_body_;

  HeaderMutations request_headers_;
  HeaderMutations response_headers_;
  PerFilterConfigs per_filter_configs_;
};

class VirtualHost {
 public:
  enum class TlsRequirement { None, ExternalOnly, All };

  const std::string& name() const { return name_; }
  // Where a plain-text request is redirected to https (by the router filter).
  TlsRequirement requireTls() const { return require_tls_; }
  const std::vector<std::unique_ptr<RouteEntry>>& routes() const { return routes_; }
  // The first route that matches, or null. `path` and `query` as in RouteMatch::matches.
  const RouteEntry* route(const http::RequestHeaderMap& headers, std::string_view path,
                          std::string_view query) const;
  const HeaderMutations& requestHeaderMutations() const { return request_headers_; }
  const HeaderMutations& responseHeaderMutations() const { return response_headers_; }
  const http::RouteSpecificFilterConfig* perFilterConfig(std::string_view filter_name) const;
  const RetryPolicy* retryPolicy() const { return retry_policy_.get(); }
  bool hedgeOnPerTryTimeout() const { return hedge_on_per_try_timeout_; }
  std::optional<uint32_t> perRequestBufferLimit() const { return buffer_limit_; }
  // include_request_attempt_count / include_attempt_count_in_response.
  bool includeRequestAttemptCount() const { return include_request_attempt_count_; }
  bool includeAttemptCountInResponse() const { return include_attempt_count_in_response_; }

 private:
  friend class RouteTableImpl;

  // Routes are tried in order, as in Envoy. A run of kExactRunMin or more consecutive
  // case-sensitive exact-path routes is one segment with a hash index (path -> its routes in
  // order), so that a table of thousands of `path:` routes costs one lookup, not a scan; any
  // other route is a segment of its own. First-match order is kept: segments are tried in
  // order, and within an indexed one the candidates for the path in order.
  static constexpr size_t kExactRunMin = 8;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Segment {
    uint32_t begin{0};
    uint32_t end{0};
    std::unordered_map<std::string, std::vector<uint32_t>, StringHash, std::equal_to<>> exact;
  };
  void buildSegments();

  std::string name_;
  TlsRequirement require_tls_{TlsRequirement::None};
  std::vector<std::unique_ptr<RouteEntry>> routes_;
  std::vector<Segment> segments_;
  std::unique_ptr<const RetryPolicy> retry_policy_;
  bool hedge_on_per_try_timeout_{false};
  std::optional<uint32_t> buffer_limit_;
  bool include_request_attempt_count_{false};
  bool include_attempt_count_in_response_{false};
  HeaderMutations request_headers_;
  HeaderMutations response_headers_;
  PerFilterConfigs per_filter_configs_;
};

class RouteTableImpl : public http::RouteTable,
                       public std::enable_shared_from_this<RouteTableImpl> {
 public:
  // Builds the table, or returns null with `error` naming the field, e.g.
  //   "virtual_hosts[1].domains[0]: duplicate domain 'foo.com'"
  //   "virtual_hosts[0].routes[2].match.safe_regex: invalid regex: missing ): (a"
  //   "request_headers_to_add[0].header.value: unknown command operator '%FOO%'"
  // Fields outside Sluice's subset are config::checkSupported's business; fields that
  // would change routing and are not implemented here are refused too. typed_per_filter_config
  // (routes and virtual hosts) goes through `compile_filter_config`; without one it is refused.
  static std::shared_ptr<const RouteTableImpl> create(
      const envoy::config::route::v3::RouteConfiguration& proto, std::string* error,
      const PerFilterConfigCompiler& compile_filter_config = {});

  // http::RouteTable. The route for the request (:authority, then :path and the match
  // conditions), or null. The route keeps this table alive. `random` is not used here: pass
  // the same value to RouteEntry::clusterName() / weightedCluster().
  http::RouteConstSharedPtr route(const http::RequestHeaderMap& headers,
                                  uint64_t random) const override;
  // The same without a reference count, for callers that hold the table.
  const RouteEntry* findRoute(const http::RequestHeaderMap& headers) const;

  // The virtual host for an :authority: case-insensitive; exact domains, then suffix
  // wildcards ("*.foo.com") longest first, then prefix wildcards ("foo.*") longest first,
  // tried on the whole authority and then (when it has a port) on the host alone; then "*".
  // With ignore_port_in_host_matching only the host is tried. Null when nothing matches.
  const VirtualHost* virtualHost(std::string_view authority) const;

  const std::string& name() const { return name_; }
  const std::vector<std::unique_ptr<VirtualHost>>& virtualHosts() const { return vhosts_; }
  // Headers removed from requests that come from outside the mesh (lower case).
  const std::vector<std::string>& internalOnlyHeaders() const { return internal_only_headers_; }
  bool mostSpecificHeaderMutationsWins() const { return most_specific_wins_; }
  const HeaderMutations& requestHeaderMutations() const { return request_headers_; }
  const HeaderMutations& responseHeaderMutations() const { return response_headers_; }

 private:
  RouteTableImpl() = default;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using DomainMap =
      std::unordered_map<std::string, const VirtualHost*, StringHash, std::equal_to<>>;
  // Wildcard domains of one length (without the '*'), longest first.
  struct WildcardTable {
    size_t length;
    DomainMap domains;
  };

  bool addDomains(const envoy::config::route::v3::VirtualHost& proto, const VirtualHost* vhost,
                  const std::string& path, std::string* error);
  const VirtualHost* findLowerHost(std::string_view host) const;

  std::string name_;
  std::vector<std::unique_ptr<VirtualHost>> vhosts_;
  DomainMap exact_;
  std::vector<WildcardTable> suffixes_;  // "*.foo.com" stored as ".foo.com"
  std::vector<WildcardTable> prefixes_;  // "foo.*" stored as "foo."
  const VirtualHost* default_{nullptr};  // "*"
  bool ignore_port_{false};
  bool most_specific_wins_{false};
  std::vector<std::string> internal_only_headers_;
  HeaderMutations request_headers_;
  HeaderMutations response_headers_;
};

}  // namespace sluice::router
