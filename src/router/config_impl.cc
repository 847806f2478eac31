#include "router/config_impl.h"

#include <algorithm>
#include <charconv>
#include <unordered_set>
#include <utility>

#include "config/proto_duration.h"
#include "http/utility.h"

namespace sluice::router {

namespace {

using config::toMilliseconds;
using envoy::config::route::v3::RouteConfiguration;

char lowerChar(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lowerCopy(std::string_view s) {
  std::string out(s);
  http::toLowerInPlace(out);
  return out;
}

// `lower` must be lower case already.
bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (lowerChar(s[i]) != lower[i]) return false;
  }
  return true;
}

bool startsWithLower(std::string_view s, std::string_view lower) {
  return s.size() >= lower.size() && equalsLower(s.substr(0, lower.size()), lower);
}

bool endsWithLower(std::string_view s, std::string_view lower) {
  return s.size() >= lower.size() && equalsLower(s.substr(s.size() - lower.size()), lower);
}

bool containsLower(std::string_view s, std::string_view lower) {
  if (lower.size() > s.size()) return false;
  for (size_t i = 0; i + lower.size() <= s.size(); ++i) {
    if (equalsLower(s.substr(i, lower.size()), lower)) return true;
  }
  return false;
}

std::string indexed(const std::string& path, std::string_view field, int i) {
  return path + "." + std::string(field) + "[" + std::to_string(i) + "]";
}

std::unique_ptr<const re2::RE2> compileRegex(const std::string& regex, const std::string& path,
                                             std::string* error) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<const re2::RE2>(regex, options);
  if (!re->ok()) {
    *error = path + ": invalid regex: " + re->error();
    return nullptr;
  }
  return re;
}

bool compileRegexRewrite(const envoy::type::matcher::v3::RegexMatchAndSubstitute& proto,
                         const std::string& path, std::optional<RegexRewrite>& out,
                         std::string* error) {
  RegexRewrite rewrite;
  rewrite.pattern = compileRegex(proto.pattern().regex(), path + ".pattern", error);
  if (rewrite.pattern == nullptr) return false;
  std::string rewrite_error;
  if (!rewrite.pattern->CheckRewriteString(proto.substitution(), &rewrite_error)) {
    *error = path + ".substitution: " + rewrite_error;
    return false;
  }
  rewrite.substitution = proto.substitution();
  out = std::move(rewrite);
  return true;
}

// Where the path of a :path value ends (at '?' or '#').
size_t pathEnd(std::string_view path) {
  const size_t end = path.find_first_of("?#");
  return end == std::string_view::npos ? path.size() : end;
}

// Every match of the rewrite's pattern in the path (not the query) replaced.
std::string regexReplace(const RegexRewrite& rewrite, std::string_view path) {
  const size_t end = pathEnd(path);
  std::string out(path.substr(0, end));
  re2::RE2::GlobalReplace(&out, *rewrite.pattern, rewrite.substitution);
  out.append(path.substr(end));
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` (invalid escapes stay as they are). Returns `in` itself when there is
// nothing to decode; otherwise decodes into `storage`.
std::string_view percentDecode(std::string_view in, std::string& storage) {
  if (in.find('%') == std::string_view::npos) return in;
  storage.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      const int hi = hexValue(in[i + 1]);
      const int lo = hexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        storage.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    storage.push_back(in[i]);
  }
  return storage;
}

// The host of a lower-cased authority without its port ("[::1]:80" -> "[::1]",
// "foo.com:80" -> "foo.com"); unchanged when there is no port.
std::string_view stripPort(std::string_view authority) {
  size_t colon;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close + 1 >= authority.size() ||
        authority[close + 1] != ':') {
      return authority;
    }
    colon = close + 1;
  } else {
    colon = authority.find(':');
    if (colon == std::string_view::npos ||
        authority.find(':', colon + 1) != std::string_view::npos) {
      return authority;  // no port, or an unbracketed IPv6 address
    }
  }
  const std::string_view port = authority.substr(colon + 1);
  if (port.empty() ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return authority;
  }
  return authority.substr(0, colon);
}

// Compiles a typed_per_filter_config map (keys in sorted order, so errors are stable).
bool compilePerFilterConfigs(
    const google::protobuf::Map<std::string, google::protobuf::Any>& map, const std::string& path,
    const PerFilterConfigCompiler& compile, PerFilterConfigs& out, std::string* error) {
  if (map.empty()) return true;
  std::vector<std::string> keys;
  for (const auto& [key, value] : map) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    const std::string entry_path = path + ".typed_per_filter_config[" + key + "]";
    if (!compile) {
      *error = entry_path + ": typed_per_filter_config is not supported here";
      return false;
    }
    auto config = compile(key, map.at(key), entry_path, error);
    if (config == nullptr) return false;
    out.emplace_back(key, std::move(config));
  }
  return true;
}

const http::RouteSpecificFilterConfig* findPerFilterConfig(const PerFilterConfigs& configs,
                                                           std::string_view name) {
  for (const auto& [key, config] : configs) {
    if (key == name) return config.get();
  }
  return nullptr;
}

}  // namespace

// StringMatcher

bool StringMatcher::init(const envoy::type::matcher::v3::StringMatcher& proto,
                         const std::string& path, std::string* error) {
  using P = envoy::type::matcher::v3::StringMatcher;
  switch (proto.match_pattern_case()) {
    case P::kExact:
      initLiteral(Kind::Exact, proto.exact(), proto.ignore_case());
      return true;
    case P::kPrefix:
      initLiteral(Kind::Prefix, proto.prefix(), proto.ignore_case());
      return true;
    case P::kSuffix:
      initLiteral(Kind::Suffix, proto.suffix(), proto.ignore_case());
      return true;
    case P::kContains:
      initLiteral(Kind::Contains, proto.contains(), proto.ignore_case());
      return true;
    case P::kSafeRegex:
      return initRegex(proto.safe_regex().regex(), path + ".safe_regex", error);
    case P::kCustom:
      *error = path + ".custom: custom string matchers are not supported";
      return false;
    case P::MATCH_PATTERN_NOT_SET:
      break;
  }
  *error = path + ": a match pattern is required (exact, prefix, suffix, contains or safe_regex)";
  return false;
}

void StringMatcher::initLiteral(Kind kind, std::string_view value, bool ignore_case) {
  kind_ = kind;
  ignore_case_ = ignore_case;
  value_ = ignore_case ? lowerCopy(value) : std::string(value);
  regex_.reset();
}

bool StringMatcher::initRegex(const std::string& regex, const std::string& path,
                              std::string* error) {
  kind_ = Kind::Regex;
  regex_ = compileRegex(regex, path, error);
  return regex_ != nullptr;
}

bool StringMatcher::match(std::string_view value) const {
  switch (kind_) {
    case Kind::Exact:
      return ignore_case_ ? equalsLower(value, value_) : value == value_;
    case Kind::Prefix:
      return ignore_case_ ? startsWithLower(value, value_) : value.starts_with(value_);
    case Kind::Suffix:
      return ignore_case_ ? endsWithLower(value, value_) : value.ends_with(value_);
    case Kind::Contains:
      return ignore_case_ ? containsLower(value, value_)
                          : value.find(value_) != std::string_view::npos;
    case Kind::Regex:
      return re2::RE2::FullMatch(value, *regex_);
  }
  return false;
}

// HeaderMatcher

bool HeaderMatcher::init(const envoy::config::route::v3::HeaderMatcher& proto,
                         const std::string& path, std::string* error) {
  using P = envoy::config::route::v3::HeaderMatcher;
  name_ = lowerCopy(proto.name());
  if (name_.empty()) {
    *error = path + ".name: a header name is required";
    return false;
  }
  invert_ = proto.invert_match();
  treat_missing_as_empty_ = proto.treat_missing_header_as_empty();
  kind_ = Kind::String;
  // The deprecated specifiers (exact_match, ...) are read on purpose: older configs use them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  switch (proto.header_match_specifier_case()) {
    case P::kExactMatch:
      string_.initLiteral(StringMatcher::Kind::Exact, proto.exact_match(), false);
      return true;
    case P::kPrefixMatch:
      string_.initLiteral(StringMatcher::Kind::Prefix, proto.prefix_match(), false);
      return true;
    case P::kSuffixMatch:
      string_.initLiteral(StringMatcher::Kind::Suffix, proto.suffix_match(), false);
      return true;
    case P::kContainsMatch:
      string_.initLiteral(StringMatcher::Kind::Contains, proto.contains_match(), false);
      return true;
    case P::kSafeRegexMatch:
      return string_.initRegex(proto.safe_regex_match().regex(), path + ".safe_regex_match", error);
    case P::kStringMatch:
      return string_.init(proto.string_match(), path + ".string_match", error);
    case P::kRangeMatch:
      kind_ = Kind::Range;
      range_start_ = proto.range_match().start();
      range_end_ = proto.range_match().end();
      return true;
    case P::kPresentMatch:
      kind_ = Kind::Present;
      present_ = proto.present_match();
      return true;
    case P::HEADER_MATCH_SPECIFIER_NOT_SET:
      kind_ = Kind::Present;
      present_ = true;
      return true;
  }
#pragma GCC diagnostic pop
  *error = path + ": unknown header match specifier";
  return false;
}

bool HeaderMatcher::matches(const http::RequestHeaderMap& headers) const {
  // All the header's values joined with ','; a copy only when it appears more than once.
  const std::string_view* first = nullptr;
  std::string joined;
  bool repeated = false;
  for (const http::HeaderEntry& e : headers) {
    if (e.key != name_) continue;
    if (first == nullptr) {
      first = &e.value;
      continue;
    }
    if (!repeated) {
      joined = *first;
      repeated = true;
    }
    joined.push_back(',');
    joined.append(e.value);
  }
  if (first == nullptr && !treat_missing_as_empty_) {
    // Only a presence check can say anything about a missing header.
    return kind_ == Kind::Present && (invert_ ? present_ : !present_);
  }
  const std::string_view value = repeated ? std::string_view(joined)
                                 : first  ? std::string_view(*first)
                                          : std::string_view();
  bool match = false;
  switch (kind_) {
    case Kind::Present:
      match = present_;
      break;
    case Kind::String:
      match = string_.match(value);
      break;
    case Kind::Range: {
      int64_t n = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      match = !value.empty() && ec == std::errc() && ptr == value.data() + value.size() &&
              n >= range_start_ && n < range_end_;
      break;
    }
  }
  return match != invert_;
}

// QueryParameterMatcher

bool QueryParameterMatcher::init(const envoy::config::route::v3::QueryParameterMatcher& proto,
                                 const std::string& path, std::string* error) {
  name_ = proto.name();
  if (name_.empty()) {
    *error = path + ".name: a query parameter name is required";
    return false;
  }
  if (proto.has_string_match()) {
    string_.emplace();
    return string_->init(proto.string_match(), path + ".string_match", error);
  }
  // present_match, or nothing: the parameter must be present.
  return true;
}

bool QueryParameterMatcher::matches(std::string_view query) const {
  std::string name_storage;
  std::string value_storage;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    const std::string_view raw_name = param.substr(0, eq);
    if (percentDecode(raw_name, name_storage) != name_) continue;
    // The first occurrence decides.
    if (!string_.has_value()) return true;
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    return string_->match(percentDecode(raw_value, value_storage));
  }
  return false;
}

// RouteMatch

bool RouteMatch::init(const envoy::config::route::v3::RouteMatch& proto, const std::string& path,
                      std::string* error) {
  using P = envoy::config::route::v3::RouteMatch;
  switch (proto.path_specifier_case()) {
    case P::kPrefix:
      kind_ = PathKind::Prefix;
      path_ = proto.prefix();
      break;
    case P::kPath:
      kind_ = PathKind::Exact;
      path_ = proto.path();
      break;
    case P::kSafeRegex:
      kind_ = PathKind::Regex;
      regex_ = compileRegex(proto.safe_regex().regex(), path + ".safe_regex", error);
      if (regex_ == nullptr) return false;
      break;
    case P::kPathSeparatedPrefix: {
      kind_ = PathKind::PathSeparatedPrefix;
      path_ = proto.path_separated_prefix();
      if (path_.empty() || path_.find_first_of("?#") != std::string::npos || path_.back() == '/') {
        *error = path + ".path_separated_prefix: '" + path_ +
                 "' must be non-empty, without '?' or '#', and not end with '/'";
        return false;
      }
      break;
    }
    case P::kConnectMatcher:
      *error = path + ".connect_matcher: connect_matcher is not supported";
      return false;
    case P::kPathMatchPolicy:
      *error = path + ".path_match_policy: path_match_policy is not supported";
      return false;
    case P::PATH_SPECIFIER_NOT_SET:
      *error = path + ": one of prefix, path, safe_regex or path_separated_prefix is required";
      return false;
  }
  if (proto.has_runtime_fraction()) {
    *error = path + ".runtime_fraction: runtime_fraction is not supported";
    return false;
  }
  if (proto.has_tls_context()) {
    *error = path + ".tls_context: tls_context is not supported";
    return false;
  }
  if (proto.dynamic_metadata_size() > 0) {
    *error = path + ".dynamic_metadata: dynamic_metadata is not supported";
    return false;
  }
  grpc_ = proto.has_grpc();
  case_sensitive_ = !proto.has_case_sensitive() || proto.case_sensitive().value();
  compare_path_ = case_sensitive_ ? path_ : lowerCopy(path_);
  headers_.resize(proto.headers_size());
  for (int i = 0; i < proto.headers_size(); ++i) {
    if (!headers_[i].init(proto.headers(i), indexed(path, "headers", i), error)) return false;
  }
  query_parameters_.resize(proto.query_parameters_size());
  for (int i = 0; i < proto.query_parameters_size(); ++i) {
    if (!query_parameters_[i].init(proto.query_parameters(i), indexed(path, "query_parameters", i),
                                   error)) {
      return false;
    }
  }
  return true;
}

bool RouteMatch::matches(const http::RequestHeaderMap& headers, std::string_view path,
                         std::string_view query) const {
  switch (kind_) {
    case PathKind::Prefix:
      if (case_sensitive_ ? !path.starts_with(compare_path_)
                          : !startsWithLower(path, compare_path_)) {
        return false;
      }
      break;
    case PathKind::Exact:
      if (case_sensitive_ ? path != compare_path_ : !equalsLower(path, compare_path_)) {
        return false;
      }
      break;
    case PathKind::Regex:
      if (!re2::RE2::FullMatch(path, *regex_)) return false;
      break;
    case PathKind::PathSeparatedPrefix:
      if (case_sensitive_ ? !path.starts_with(compare_path_)
                          : !startsWithLower(path, compare_path_)) {
        return false;
      }
      // The prefix must end at a segment boundary ('?' is already cut off).
      if (path.size() != compare_path_.size() && path[compare_path_.size()] != '/') return false;
      break;
  }
  if (grpc_ && !http::isGrpcContentType(headers.getValue(http::headers::kContentType))) return false;
  for (const HeaderMatcher& h : headers_) {
    if (!h.matches(headers)) return false;
  }
  for (const QueryParameterMatcher& q : query_parameters_) {
    if (!q.matches(query)) return false;
  }
  return true;
}

// RetryPolicy

uint32_t RetryPolicy::parseRetryOn(std::string_view list, std::string* unknown) {
  static constexpr std::pair<std::string_view, uint32_t> kNames[] = {
      {"5xx", k5xx},
      {"gateway-error", kGatewayError},
      {"reset", kReset},
      {"connect-failure", kConnectFailure},
      {"retriable-4xx", kRetriable4xx},
      {"refused-stream", kRefusedStream},
      {"retriable-status-codes", kRetriableStatusCodes},
      {"retriable-headers", kRetriableHeaders},
      {"cancelled", kGrpcCancelled},
      {"deadline-exceeded", kGrpcDeadlineExceeded},
      {"internal", kGrpcInternal},
      {"resource-exhausted", kGrpcResourceExhausted},
      {"unavailable", kGrpcUnavailable},
  };
  uint32_t bits = 0;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name.empty()) continue;
    bool known = false;
    for (const auto& [n, bit] : kNames) {
      if (n == name) {
        bits |= bit;
        known = true;
      }
    }
    if (!known && unknown && unknown->empty()) *unknown = std::string(name);
  }
  return bits;
}

namespace {

std::unique_ptr<const RetryPolicy> compileRetryPolicy(
    const envoy::config::route::v3::RetryPolicy& proto, const std::string& path,
    std::string* error) {
  auto p = std::make_unique<RetryPolicy>();
  std::string unknown;
  p->retry_on = RetryPolicy::parseRetryOn(proto.retry_on(), &unknown);
  if (!unknown.empty()) {
    *error = path + ".retry_on: '" + unknown + "' is not a supported retry condition";
    return nullptr;
  }
  if (proto.has_num_retries()) p->num_retries = proto.num_retries().value();
  if (proto.has_per_try_timeout()) p->per_try_timeout = toMilliseconds(proto.per_try_timeout());
  if (proto.has_per_try_idle_timeout()) {
    p->per_try_idle_timeout = toMilliseconds(proto.per_try_idle_timeout());
  }
  if (proto.has_retry_back_off()) {
    const auto& b = proto.retry_back_off();
    p->base_interval = toMilliseconds(b.base_interval());
    if (p->base_interval.count() <= 0) {
      *error = path + ".retry_back_off.base_interval: must be at least 1ms";
      return nullptr;
    }
    p->max_interval =
        b.has_max_interval() ? toMilliseconds(b.max_interval()) : p->base_interval * 10;
    if (p->max_interval < p->base_interval) {
      *error = path + ".retry_back_off.max_interval: must not be less than base_interval";
      return nullptr;
    }
  }
  for (int i = 0; i < proto.retry_host_predicate_size(); ++i) {
    const auto& pred = proto.retry_host_predicate(i);
    if (pred.name() != "envoy.retry_host_predicates.previous_hosts") {
      *error = indexed(path, "retry_host_predicate", i) + ".name: '" + pred.name() +
               "' is not supported (only envoy.retry_host_predicates.previous_hosts)";
      return nullptr;
    }
    p->previous_hosts = true;
  }
  if (proto.host_selection_retry_max_attempts() < 0) {
    *error = path + ".host_selection_retry_max_attempts: must not be negative";
    return nullptr;
  }
  if (proto.host_selection_retry_max_attempts() > 0) {
    p->host_selection_max_attempts = static_cast<uint32_t>(
        std::min<int64_t>(proto.host_selection_retry_max_attempts(), 1000));
  }
  for (int i = 0; i < proto.retriable_status_codes_size(); ++i) {
    const uint32_t code = proto.retriable_status_codes(i);
    if (code < 100 || code > 599) {
      *error = indexed(path, "retriable_status_codes", i) + ": " + std::to_string(code) +
               " is not a status code";
      return nullptr;
    }
    p->retriable_status_codes.push_back(code);
  }
  p->retriable_headers.resize(proto.retriable_headers_size());
  for (int i = 0; i < proto.retriable_headers_size(); ++i) {
    if (!p->retriable_headers[i].init(proto.retriable_headers(i),
                                      indexed(path, "retriable_headers", i), error)) {
      return nullptr;
    }
  }
  return p;
}

}  // namespace

// RouteEntry

const http::RouteSpecificFilterConfig* RouteEntry::perFilterConfig(
    std::string_view filter_name) const {
  if (const auto* config = findPerFilterConfig(per_filter_configs_, filter_name)) return config;
  return vhost_->perFilterConfig(filter_name);
}

const http::RouteSpecificFilterConfig* VirtualHost::perFilterConfig(
    std::string_view filter_name) const {
  return findPerFilterConfig(per_filter_configs_, filter_name);
}

bool RouteEntry::init(const envoy::config::route::v3::Route& proto, const VirtualHost& vhost,
                      const RouteTableImpl& table, uint32_t max_direct_body,
                      const std::string& path, std::string* error) {
  using P = envoy::config::route::v3::Route;
  name_ = proto.name();
  vhost_ = &vhost;
  table_ = &table;
  if (!proto.has_match()) {
    *error = path + ".match: a match is required";
    return false;
  }
  if (!match_.init(proto.match(), path + ".match", error)) return false;
  switch (proto.action_case()) {
    case P::kRoute:
      kind_ = Kind::Cluster;
      if (!initRouteAction(proto.route(), path + ".route", error)) return false;
      break;
    case P::kRedirect:
      kind_ = Kind::Redirect;
      if (!initRedirect(proto.redirect(), path + ".redirect", error)) return false;
      break;
    case P::kDirectResponse: {
      kind_ = Kind::DirectResponse;
      const auto& dr = proto.direct_response();
      const std::string dr_path = path + ".direct_response";
      if (dr.status() < 200 || dr.status() >= 600) {
        *error = dr_path + ".status: " + std::to_string(dr.status()) +
                 " is not a status code in [200, 600)";
        return false;
      }
      direct_status_ = dr.status();
      if (dr.has_body()) {
        const auto& body = dr.body();
        switch (body.specifier_case()) {
          case envoy::config::core::v3::DataSource::kInlineString:
            direct_body_ = body.inline_string();
            break;
          case envoy::config::core::v3::DataSource::kInlineBytes:
            direct_body_ = body.inline_bytes();
            break;
          default:
            *error = dr_path + ".body: only inline_string and inline_bytes are supported";
            return false;
        }
        if (direct_body_.size() > max_direct_body) {
          *error = dr_path + ".body: the body is " + std::to_string(direct_body_.size()) +
                   " bytes; the maximum is " + std::to_string(max_direct_body) +
                   " (max_direct_response_body_size_bytes)";
          return false;
        }
      }
      break;
    }
    case P::kFilterAction:
      *error = path + ".filter_action: filter_action is not supported";
      return false;
    case P::kNonForwardingAction:
      *error = path + ".non_forwarding_action: non_forwarding_action is not supported";
      return false;
    case P::ACTION_NOT_SET:
      *error = path + ": one of route, redirect or direct_response is required";
      return false;
  }
  if (proto.has_per_request_buffer_limit_bytes()) {
    buffer_limit_ = proto.per_request_buffer_limit_bytes().value();
  }
  return request_headers_.init(proto.request_headers_to_add(), proto.request_headers_to_remove(),
                               path + ".request_headers_to_add",
                               path + ".request_headers_to_remove", error) &&
         response_headers_.init(proto.response_headers_to_add(), proto.response_headers_to_remove(),
                                path + ".response_headers_to_add",
                                path + ".response_headers_to_remove", error);
}

bool RouteEntry::initRouteAction(const envoy::config::route::v3::RouteAction& proto,
                                 const std::string& path, std::string* error) {
  using P = envoy::config::route::v3::RouteAction;
  switch (proto.cluster_specifier_case()) {
    case P::kCluster:
      cluster_ = proto.cluster();
      if (cluster_.empty()) {
        *error = path + ".cluster: a cluster name is required";
        return false;
      }
      break;
    case P::kClusterHeader:
      cluster_header_ = lowerCopy(proto.cluster_header());
      break;
    case P::kWeightedClusters: {
      const auto& wc = proto.weighted_clusters();
      const std::string wc_path = path + ".weighted_clusters";
      if (wc.clusters_size() == 0) {
        *error = wc_path + ".clusters: at least one cluster is required";
        return false;
      }
      if (!wc.header_name().empty()) {
        *error = wc_path + ".header_name: header_name is not supported";
        return false;
      }
      weighted_clusters_.resize(wc.clusters_size());
      for (int i = 0; i < wc.clusters_size(); ++i) {
        const auto& c = wc.clusters(i);
        const std::string c_path = indexed(wc_path, "clusters", i);
        WeightedCluster& choice = weighted_clusters_[i];
        choice.name = c.name();
        choice.cluster_header = lowerCopy(c.cluster_header());
        if (choice.name.empty() == choice.cluster_header.empty()) {
          *error = c_path + ": exactly one of name and cluster_header is required";
          return false;
        }
        if (!c.host_rewrite_literal().empty()) {
          *error = c_path + ".host_rewrite_literal: host_rewrite_literal is not supported here";
          return false;
        }
        choice.weight = c.has_weight() ? c.weight().value() : 0;
        total_weight_ += choice.weight;
        if (!choice.request_headers.init(c.request_headers_to_add(), c.request_headers_to_remove(),
                                         c_path + ".request_headers_to_add",
                                         c_path + ".request_headers_to_remove", error) ||
            !choice.response_headers.init(c.response_headers_to_add(),
                                          c.response_headers_to_remove(),
                                          c_path + ".response_headers_to_add",
                                          c_path + ".response_headers_to_remove", error)) {
          return false;
        }
      }
      if (total_weight_ == 0) {
        *error = wc_path + ": the sum of the weights must be greater than 0";
        return false;
      }
      break;
    }
    case P::kClusterSpecifierPlugin:
    case P::kInlineClusterSpecifierPlugin:
      *error = path + ": cluster specifier plugins are not supported";
      return false;
    case P::CLUSTER_SPECIFIER_NOT_SET:
      *error = path + ": one of cluster, cluster_header or weighted_clusters is required";
      return false;
  }

  if (!proto.prefix_rewrite().empty() && proto.has_regex_rewrite()) {
    *error = path + ": only one of prefix_rewrite and regex_rewrite may be set";
    return false;
  }
  if (proto.has_path_rewrite_policy()) {
    *error = path + ".path_rewrite_policy: path_rewrite_policy is not supported";
    return false;
  }
  prefix_rewrite_ = proto.prefix_rewrite();
  has_prefix_rewrite_ = !prefix_rewrite_.empty();
  if (proto.has_regex_rewrite() &&
      !compileRegexRewrite(proto.regex_rewrite(), path + ".regex_rewrite", regex_rewrite_, error)) {
    return false;
  }

  switch (proto.host_rewrite_specifier_case()) {
    case P::kHostRewriteLiteral:
      host_rewrite_literal_ = proto.host_rewrite_literal();
      break;
    case P::kAutoHostRewrite:
      auto_host_rewrite_ = proto.auto_host_rewrite().value();
      break;
    case P::kHostRewriteHeader:
      *error = path + ".host_rewrite_header: host_rewrite_header is not supported";
      return false;
    case P::kHostRewritePathRegex:
      *error = path + ".host_rewrite_path_regex: host_rewrite_path_regex is not supported";
      return false;
    case P::HOST_REWRITE_SPECIFIER_NOT_SET:
      break;
  }
  append_x_forwarded_host_ = proto.append_x_forwarded_host();

  if (proto.has_timeout()) timeout_ = toMilliseconds(proto.timeout());
  if (proto.has_idle_timeout()) idle_timeout_ = toMilliseconds(proto.idle_timeout());
  if (proto.has_max_stream_duration()) {
    const auto& d = proto.max_stream_duration();
    http::StreamDurationPolicy p;
    if (d.has_max_stream_duration()) {
      p.max_stream_duration = toMilliseconds(d.max_stream_duration());
    }
    if (d.has_grpc_timeout_header_max()) {
      p.grpc_timeout_header_max = toMilliseconds(d.grpc_timeout_header_max());
    }
    if (d.has_grpc_timeout_header_offset()) {
      p.grpc_timeout_header_offset = toMilliseconds(d.grpc_timeout_header_offset());
    }
    stream_duration_ = p;
  }
  if (proto.has_max_grpc_timeout()) max_grpc_timeout_ = toMilliseconds(proto.max_grpc_timeout());
  if (proto.has_grpc_timeout_offset()) {
    grpc_timeout_offset_ = toMilliseconds(proto.grpc_timeout_offset());
  }
  if (proto.has_retry_policy()) {
    retry_policy_ = compileRetryPolicy(proto.retry_policy(), path + ".retry_policy", error);
    if (!retry_policy_) return false;
  }
  if (proto.has_hedge_policy()) {
    hedge_on_per_try_timeout_ = proto.hedge_policy().hedge_on_per_try_timeout();
  }
  if (proto.priority() != envoy::config::core::v3::DEFAULT &&
      proto.priority() != envoy::config::core::v3::HIGH) {
    *error = path + ".priority: unknown priority " + std::to_string(proto.priority());
    return false;
  }
  high_priority_ = proto.priority() == envoy::config::core::v3::HIGH;
  for (int i = 0; i < proto.request_mirror_policies_size(); ++i) {
    const auto& m = proto.request_mirror_policies(i);
    const std::string m_path = indexed(path, "request_mirror_policies", i);
    if (m.cluster().empty()) {
      *error = m_path + ".cluster: a cluster is required";
      return false;
    }
    MirrorPolicy mirror;
    mirror.cluster = m.cluster();
    if (m.has_runtime_fraction()) {
      const auto& f = m.runtime_fraction().default_value();
      mirror.numerator = f.numerator();
      switch (f.denominator()) {
        case envoy::type::v3::FractionalPercent::HUNDRED: mirror.denominator = 100; break;
        case envoy::type::v3::FractionalPercent::TEN_THOUSAND: mirror.denominator = 10000; break;
        case envoy::type::v3::FractionalPercent::MILLION: mirror.denominator = 1000000; break;
        default:
          *error = m_path + ".runtime_fraction.default_value.denominator: unknown value";
          return false;
      }
    }
    mirrors_.push_back(std::move(mirror));
  }
  if (!proto.hash_policy().empty()) {
    hash_policy_ = HashPolicy::create(proto.hash_policy(), path + ".hash_policy", error);
    if (!hash_policy_) return false;
  }
  return true;
}

const RetryPolicy* RouteEntry::retryPolicy() const {
  return retry_policy_ ? retry_policy_.get() : vhost_->retryPolicy();
}

bool RouteEntry::hedgeOnPerTryTimeout() const {
  return hedge_on_per_try_timeout_ ? *hedge_on_per_try_timeout_ : vhost_->hedgeOnPerTryTimeout();
}

std::optional<uint32_t> RouteEntry::perRequestBufferLimit() const {
  return buffer_limit_ ? buffer_limit_ : vhost_->perRequestBufferLimit();
}

bool RouteEntry::initRedirect(const envoy::config::route::v3::RedirectAction& proto,
                              const std::string& path, std::string* error) {
  using P = envoy::config::route::v3::RedirectAction;
  switch (proto.scheme_rewrite_specifier_case()) {
    case P::kHttpsRedirect:
      if (proto.https_redirect()) redirect_.scheme = "https";
      break;
    case P::kSchemeRedirect:
      redirect_.scheme = lowerCopy(proto.scheme_redirect());
      break;
    case P::SCHEME_REWRITE_SPECIFIER_NOT_SET:
      break;
  }
  redirect_.host = proto.host_redirect();
  if (proto.port_redirect() != 0) {
    if (proto.port_redirect() > 65535) {
      *error = path + ".port_redirect: " + std::to_string(proto.port_redirect()) + " is not a port";
      return false;
    }
    redirect_.port = ":" + std::to_string(proto.port_redirect());
  }
  switch (proto.path_rewrite_specifier_case()) {
    case P::kPathRedirect:
      redirect_.path = proto.path_redirect();
      redirect_.path_has_query = redirect_.path.find('?') != std::string::npos;
      break;
    case P::kPrefixRewrite:
      redirect_.prefix_rewrite = proto.prefix_rewrite();
      break;
    case P::kRegexRewrite:
      if (!compileRegexRewrite(proto.regex_rewrite(), path + ".regex_rewrite",
                               redirect_.regex_rewrite, error)) {
        return false;
      }
      break;
    case P::PATH_REWRITE_SPECIFIER_NOT_SET:
      break;
  }
  switch (proto.response_code()) {
    case P::MOVED_PERMANENTLY:
      redirect_.response_code = 301;
      break;
    case P::FOUND:
      redirect_.response_code = 302;
      break;
    case P::SEE_OTHER:
      redirect_.response_code = 303;
      break;
    case P::TEMPORARY_REDIRECT:
      redirect_.response_code = 307;
      break;
    case P::PERMANENT_REDIRECT:
      redirect_.response_code = 308;
      break;
    default:
      *error = path + ".response_code: unknown value " + std::to_string(proto.response_code());
      return false;
  }
  redirect_.strip_query = proto.strip_query();
  return true;
}

const WeightedCluster* RouteEntry::weightedCluster(uint64_t random) const {
  if (weighted_clusters_.empty()) return nullptr;
  uint64_t pick = random % total_weight_;
  for (const WeightedCluster& c : weighted_clusters_) {
    if (pick < c.weight) return &c;
    pick -= c.weight;
  }
  return &weighted_clusters_.back();  // not reached: the weights sum to total_weight_
}

std::optional<std::string_view> RouteEntry::clusterName(const http::RequestHeaderMap& headers,
                                                        uint64_t random) const {
  if (kind_ != Kind::Cluster) return std::nullopt;
  const std::string* header_name = &cluster_header_;
  if (const WeightedCluster* choice = weightedCluster(random)) {
    if (choice->cluster_header.empty()) return choice->name;
    header_name = &choice->cluster_header;
  } else if (cluster_header_.empty()) {
    return cluster_;
  }
  const std::string_view* value = headers.get(*header_name);
  if (value == nullptr || value->empty()) return std::nullopt;
  return *value;
}

std::string RouteEntry::replaceMatchedPrefix(std::string_view path,
                                             std::string_view replacement) const {
  size_t matched;
  switch (match_.pathKind()) {
    case RouteMatch::PathKind::Prefix:
    case RouteMatch::PathKind::PathSeparatedPrefix:
      matched = std::min(match_.pathValue().size(), pathEnd(path));
      break;
    default:
      matched = pathEnd(path);
      break;
  }
  std::string out;
  out.reserve(replacement.size() + path.size() - matched);
  out.append(replacement);
  out.append(path.substr(matched));
  return out;
}

void RouteEntry::rewritePathAndHost(http::RequestHeaderMap& headers,
                                    bool insert_original_path) const {
  if (has_prefix_rewrite_ || regex_rewrite_.has_value()) {
    // Copy: setting headers may move the strings a view would point into.
    const std::string original(headers.path());
    std::string rewritten = has_prefix_rewrite_ ? replaceMatchedPrefix(original, prefix_rewrite_)
                                                : regexReplace(*regex_rewrite_, original);
    if (rewritten != original) {
      if (insert_original_path) headers.set(http::headers::kXEnvoyOriginalPath, original);
      headers.set(http::headers::kPath, rewritten);
    }
  }
  if (!host_rewrite_literal_.empty()) {
    if (append_x_forwarded_host_) {
      const std::string original(headers.authority());
      if (!original.empty()) headers.append(http::headers::kXForwardedHost, original);
    }
    headers.set(http::headers::kAuthority, host_rewrite_literal_);
  }
}

void RouteEntry::applyMutations(http::HeaderMap& headers, const http::StreamInfo& info,
                                const http::RequestHeaderMap* request,
                                const WeightedCluster* chosen, bool request_side) const {
  // Most specific first: the least specific level applies last, so its overwrites win.
  const HeaderMutations* levels[4] = {
      chosen == nullptr ? nullptr
      : request_side    ? &chosen->request_headers
                        : &chosen->response_headers,
      request_side ? &request_headers_ : &response_headers_,
      request_side ? &vhost_->requestHeaderMutations() : &vhost_->responseHeaderMutations(),
      request_side ? &table_->requestHeaderMutations() : &table_->responseHeaderMutations(),
  };
  if (table_->mostSpecificHeaderMutationsWins()) std::reverse(std::begin(levels), std::end(levels));
  for (const HeaderMutations* level : levels) {
    if (level != nullptr && !level->empty()) level->apply(headers, info, request);
  }
}

void RouteEntry::finalizeRequestHeaders(http::RequestHeaderMap& headers,
                                        const http::StreamInfo& info,
                                        const WeightedCluster* chosen) const {
  applyMutations(headers, info, &headers, chosen, true);
}

void RouteEntry::finalizeResponseHeaders(http::ResponseHeaderMap& headers,
                                         const http::StreamInfo& info,
                                         const http::RequestHeaderMap* request,
                                         const WeightedCluster* chosen) const {
  applyMutations(headers, info, request, chosen, false);
}

std::string RouteEntry::redirectLocation(const http::RequestHeaderMap& headers) const {
  std::string_view request_scheme = headers.getValue(http::headers::kXForwardedProto);
  if (request_scheme.empty()) request_scheme = headers.scheme();
  if (request_scheme.empty()) request_scheme = "http";
  const std::string_view scheme =
      redirect_.scheme.empty() ? request_scheme : std::string_view(redirect_.scheme);

  std::string_view host = redirect_.host;
  if (host.empty()) {
    host = headers.authority();
    if (host.empty()) host = headers.getValue(http::headers::kHost);
    // The request's port goes when the redirect names one, or when it is the default port of
    // the old scheme and the scheme changes (http://h:80 -> https://h, https://h:443 -> http://h).
    size_t colon = std::string_view::npos;
    if (!host.empty() && host[0] == '[') {
      colon = host.rfind("]:");
      if (colon != std::string_view::npos) ++colon;
    } else {
      colon = host.rfind(':');
    }
    if (colon != std::string_view::npos) {
      const std::string_view port = host.substr(colon);
      bool remove = !redirect_.port.empty();
      if (scheme != request_scheme) {
        remove |= scheme == "https" && port == ":80";
        remove |= scheme == "http" && port == ":443";
      }
      if (remove) host = host.substr(0, colon);
    }
  }

  const std::string_view request_path = headers.path();
  std::string path;
  if (!redirect_.path.empty()) {
    path = redirect_.path;
    if (!redirect_.path_has_query) {
      const size_t q = request_path.find('?');
      if (q != std::string_view::npos) path.append(request_path.substr(q));
    }
  } else if (redirect_.prefix_rewrite.has_value()) {
    path = replaceMatchedPrefix(request_path, *redirect_.prefix_rewrite);
  } else if (redirect_.regex_rewrite.has_value()) {
    path = regexReplace(*redirect_.regex_rewrite, request_path);
  } else {
    path = request_path;
  }
  if (path.empty() || path[0] != '/') path.insert(path.begin(), '/');
  if (redirect_.strip_query && !redirect_.path_has_query) {
    const size_t q = path.find('?');
    if (q != std::string::npos) path.resize(q);
  }

  std::string location;
  location.reserve(scheme.size() + 3 + host.size() + redirect_.port.size() + path.size());
  location.append(scheme).append("://").append(host).append(redirect_.port).append(path);
  return location;
}

// VirtualHost

const RouteEntry* VirtualHost::route(const http::RequestHeaderMap& headers, std::string_view path,
                                     std::string_view query) const {
  for (const Segment& s : segments_) {
    if (s.exact.empty()) {
      for (uint32_t i = s.begin; i < s.end; ++i) {
        if (routes_[i]->match().matches(headers, path, query)) return routes_[i].get();
      }
      continue;
    }
    auto it = s.exact.find(path);
    if (it == s.exact.end()) continue;
    for (uint32_t i : it->second) {
      if (routes_[i]->match().matches(headers, path, query)) return routes_[i].get();
    }
  }
  return nullptr;
}

void VirtualHost::buildSegments() {
  auto indexable = [this](size_t i) {
    const RouteMatch& m = routes_[i]->match();
    return m.pathKind() == RouteMatch::PathKind::Exact && m.caseSensitive();
  };
  const uint32_t n = static_cast<uint32_t>(routes_.size());
  uint32_t i = 0;
  while (i < n) {
    uint32_t j = i;
    while (j < n && indexable(j)) ++j;
    if (j - i >= kExactRunMin) {
      Segment s{i, j, {}};
      for (uint32_t k = i; k < j; ++k) s.exact[routes_[k]->match().pathValue()].push_back(k);
      segments_.push_back(std::move(s));
      i = j;
      continue;
    }
    // A plain segment: everything up to the next long run of exact routes.
    uint32_t end = i;
    while (end < n) {
      uint32_t run = end;
      while (run < n && indexable(run)) ++run;
      if (run - end >= kExactRunMin) break;
      end = run == end ? end + 1 : run;
    }
    segments_.push_back(Segment{i, end, {}});
    i = end;
  }
}

// RouteTableImpl

std::shared_ptr<const RouteTableImpl> RouteTableImpl::create(
    const RouteConfiguration& proto, std::string* error,
    const PerFilterConfigCompiler& compile_filter_config) {
  std::shared_ptr<RouteTableImpl> table(new RouteTableImpl());
  table->name_ = proto.name();
  table->ignore_port_ = proto.ignore_port_in_host_matching();
  table->most_specific_wins_ = proto.most_specific_header_mutations_wins();
  for (const std::string& h : proto.internal_only_headers()) {
    table->internal_only_headers_.push_back(lowerCopy(h));
  }
  if (proto.has_vhds()) {
    *error = "vhds: vhds is not supported";
    return nullptr;
  }
  const uint32_t max_direct_body = proto.has_max_direct_response_body_size_bytes()
                                       ? proto.max_direct_response_body_size_bytes().value()
                                       : 4096;
  if (!table->request_headers_.init(proto.request_headers_to_add(),
                                    proto.request_headers_to_remove(), "request_headers_to_add",
                                    "request_headers_to_remove", error) ||
      !table->response_headers_.init(proto.response_headers_to_add(),
                                     proto.response_headers_to_remove(), "response_headers_to_add",
                                     "response_headers_to_remove", error)) {
    return nullptr;
  }

  std::unordered_set<std::string> seen_domains;
  for (int i = 0; i < proto.virtual_hosts_size(); ++i) {
    const auto& vh_proto = proto.virtual_hosts(i);
    const std::string path = "virtual_hosts[" + std::to_string(i) + "]";
    auto vh = std::make_unique<VirtualHost>();
    vh->name_ = vh_proto.name();
    switch (vh_proto.require_tls()) {
      case envoy::config::route::v3::VirtualHost::NONE:
        vh->require_tls_ = VirtualHost::TlsRequirement::None;
        break;
      case envoy::config::route::v3::VirtualHost::EXTERNAL_ONLY:
        vh->require_tls_ = VirtualHost::TlsRequirement::ExternalOnly;
        break;
      case envoy::config::route::v3::VirtualHost::ALL:
        vh->require_tls_ = VirtualHost::TlsRequirement::All;
        break;
      default:
        *error = path + ".require_tls: unknown value " + std::to_string(vh_proto.require_tls());
        return nullptr;
    }
    if (vh_proto.has_matcher()) {
      *error = path + ".matcher: matcher is not supported; use routes";
      return nullptr;
    }
    if (!table->addDomains(vh_proto, vh.get(), path, error)) return nullptr;
    if (!vh->request_headers_.init(
            vh_proto.request_headers_to_add(), vh_proto.request_headers_to_remove(),
            path + ".request_headers_to_add", path + ".request_headers_to_remove", error) ||
        !vh->response_headers_.init(
            vh_proto.response_headers_to_add(), vh_proto.response_headers_to_remove(),
            path + ".response_headers_to_add", path + ".response_headers_to_remove", error)) {
      return nullptr;
    }
    if (!compilePerFilterConfigs(vh_proto.typed_per_filter_config(), path, compile_filter_config,
                                 vh->per_filter_configs_, error)) {
      return nullptr;
    }
    if (vh_proto.has_retry_policy()) {
      vh->retry_policy_ =
          compileRetryPolicy(vh_proto.retry_policy(), path + ".retry_policy", error);
      if (!vh->retry_policy_) return nullptr;
    }
    vh->hedge_on_per_try_timeout_ = vh_proto.hedge_policy().hedge_on_per_try_timeout();
    if (vh_proto.has_per_request_buffer_limit_bytes()) {
      vh->buffer_limit_ = vh_proto.per_request_buffer_limit_bytes().value();
    }
    vh->include_request_attempt_count_ = vh_proto.include_request_attempt_count();
    vh->include_attempt_count_in_response_ = vh_proto.include_attempt_count_in_response();
    vh->routes_.reserve(vh_proto.routes_size());
    for (int j = 0; j < vh_proto.routes_size(); ++j) {
      auto entry = std::make_unique<RouteEntry>();
      const std::string route_path = path + ".routes[" + std::to_string(j) + "]";
      if (!entry->init(vh_proto.routes(j), *vh, *table, max_direct_body, route_path, error) ||
          !compilePerFilterConfigs(vh_proto.routes(j).typed_per_filter_config(), route_path,
                                   compile_filter_config, entry->per_filter_configs_, error)) {
        return nullptr;
      }
      vh->routes_.push_back(std::move(entry));
    }
    vh->buildSegments();
    table->vhosts_.push_back(std::move(vh));
  }
  auto longest_first = [](const WildcardTable& a, const WildcardTable& b) {
    return a.length > b.length;
  };
  std::sort(table->suffixes_.begin(), table->suffixes_.end(), longest_first);
  std::sort(table->prefixes_.begin(), table->prefixes_.end(), longest_first);
  return table;
}

bool RouteTableImpl::addDomains(const envoy::config::route::v3::VirtualHost& proto,
                                const VirtualHost* vhost, const std::string& path,
                                std::string* error) {
  if (proto.domains_size() == 0) {
    *error = path + ".domains: at least one domain is required";
    return false;
  }
  auto add_wildcard = [](std::vector<WildcardTable>& tables, std::string key,
                         const VirtualHost* vh) {
    const size_t length = key.size();
    auto it = std::find_if(tables.begin(), tables.end(),
                           [length](const WildcardTable& t) { return t.length == length; });
    if (it == tables.end()) {
      tables.push_back(WildcardTable{length, {}});
      it = tables.end() - 1;
    }
    return it->domains.emplace(std::move(key), vh).second;
  };
  for (int k = 0; k < proto.domains_size(); ++k) {
    const std::string& domain = proto.domains(k);
    std::string lower = lowerCopy(domain);
    bool added;
    if (lower == "*") {
      added = default_ == nullptr;
      if (added) default_ = vhost;
    } else if (!lower.empty() && lower.front() == '*') {
      added = add_wildcard(suffixes_, lower.substr(1), vhost);
    } else if (!lower.empty() && lower.back() == '*') {
      lower.pop_back();
      added = add_wildcard(prefixes_, std::move(lower), vhost);
    } else if (lower.empty()) {
      *error = path + ".domains[" + std::to_string(k) + "]: a domain may not be empty";
      return false;
    } else {
      added = exact_.emplace(std::move(lower), vhost).second;
    }
    if (!added) {
      *error = path + ".domains[" + std::to_string(k) + "]: duplicate domain '" + domain + "'";
      return false;
    }
  }
  return true;
}

const VirtualHost* RouteTableImpl::findLowerHost(std::string_view host) const {
  if (auto it = exact_.find(host); it != exact_.end()) return it->second;
  // A wildcard never matches the empty string: the host must be longer than the rest.
  for (const WildcardTable& t : suffixes_) {
    if (t.length >= host.size()) continue;
    if (auto it = t.domains.find(host.substr(host.size() - t.length)); it != t.domains.end()) {
      return it->second;
    }
  }
  for (const WildcardTable& t : prefixes_) {
    if (t.length >= host.size()) continue;
    if (auto it = t.domains.find(host.substr(0, t.length)); it != t.domains.end()) {
      return it->second;
    }
  }
  return nullptr;
}

const VirtualHost* RouteTableImpl::virtualHost(std::string_view authority) const {
  // Lower-case into a stack buffer; only very long authorities take an allocation.
  char buf[256];
  std::string heap;
  std::string_view host;
  if (authority.size() <= sizeof(buf)) {
    for (size_t i = 0; i < authority.size(); ++i) buf[i] = lowerChar(authority[i]);
    host = std::string_view(buf, authority.size());
  } else {
    heap = lowerCopy(authority);
    host = heap;
  }
  if (ignore_port_) host = stripPort(host);
  if (const VirtualHost* vh = findLowerHost(host)) return vh;
  if (!ignore_port_) {
    const std::string_view without_port = stripPort(host);
    if (without_port.size() != host.size()) {
      if (const VirtualHost* vh = findLowerHost(without_port)) return vh;
    }
  }
  return default_;
}

const RouteEntry* RouteTableImpl::findRoute(const http::RequestHeaderMap& headers) const {
  std::string_view authority = headers.authority();
  if (authority.empty()) authority = headers.getValue(http::headers::kHost);
  const VirtualHost* vh = virtualHost(authority);
  if (vh == nullptr) return nullptr;
  const std::string_view full = headers.path();
  const size_t end = pathEnd(full);
  std::string_view query;
  if (end < full.size() && full[end] == '?') {
    query = full.substr(end + 1);
    query = query.substr(0, query.find('#'));
  }
  return vh->route(headers, full.substr(0, end), query);
}

http::RouteConstSharedPtr RouteTableImpl::route(const http::RequestHeaderMap& headers,
                                                uint64_t random) const {
  const RouteEntry* entry = findRoute(headers);
  if (entry == nullptr) return nullptr;
  // Aliasing: the route keeps the whole table (its virtual host, the shared mutations) alive.
  return http::RouteConstSharedPtr(shared_from_this(), entry);
}

}  // namespace sluice::router
