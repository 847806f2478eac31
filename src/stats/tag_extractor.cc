#include "stats/tag_extractor.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace sluice::stats {

// One extractor: finds one tag in a stat name.
class TagExtractor {
 public:
  explicit TagExtractor(std::string_view tag_name) : tag_name_(tag_name) {}
  virtual ~TagExtractor() = default;

  const std::string& tagName() const { return tag_name_; }
  // The first token a name must have for this extractor to apply; empty: any name.
  const std::string& prefix() const { return prefix_; }

  // On a match, appends the tag and marks the characters of `name` to remove.
  virtual bool extract(std::string_view name, const std::vector<std::string_view>& tokens,
                       std::vector<Tag>& tags, std::vector<bool>& remove) const = 0;

 protected:
  static void markRemoved(std::vector<bool>& remove, size_t begin, size_t end) {
    for (size_t i = begin; i < end && i < remove.size(); ++i) remove[i] = true;
  }

  const std::string tag_name_;
  std::string prefix_;
};

namespace {

// The building blocks of Envoy's default regexes.
std::string expand(std::string regex) {
  static const std::pair<std::string_view, std::string_view> kParts[] = {
      // An IPv4 or (bracketed, '_' for ':') IPv6 address, then '_' and the port.
      {"<ADDRESS>", R"((?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+))"},
      {"<CIPHER>", R"([\w-]+)"},
      {"<TLS_VERSION>", R"(TLSv\d\.\d)"},
      {"<TAG_VALUE>", R"([^\.]+)"},
      {"<ROUTE_CONFIG_NAME>", R"([\w-\.]+)"},
      {"<LISTENER_OR_CLUSTER_WITH_NAME>", R"((?:listener|cluster)\..*?)"},
  };
  for (const auto& [from, to] : kParts) {
    for (size_t pos = regex.find(from); pos != std::string::npos;
         pos = regex.find(from, pos + to.size())) {
      regex.replace(pos, from.size(), to);
    }
  }
  return regex;
}

// Envoy's rule: a regex "^word\." (or "^word(?=\.)") applies only to names whose first
// token is "word".
std::string regexPrefix(std::string_view regex) {
  if (regex.empty() || regex[0] != '^') return "";
  size_t i = 1;
  while (i < regex.size() &&
         (std::isalnum(static_cast<unsigned char>(regex[i])) != 0 || regex[i] == '_')) {
    ++i;
  }
  if (i == 1 || i == regex.size()) return "";
  const std::string_view rest = regex.substr(i);
  const bool dot = rest.starts_with("\\.") || rest.starts_with("(?=\\.)");
  const bool end = rest == "$";
  return dot || end ? std::string(regex.substr(1, i - 1)) : "";
}

class RegexExtractor : public TagExtractor {
 public:
  RegexExtractor(std::string_view tag_name, const std::string& regex, std::string_view substr,
                 std::string_view negative_match)
      : TagExtractor(tag_name), regex_(regex), substr_(substr), negative_match_(negative_match) {
    if (!regex_.ok() || regex_.NumberOfCapturingGroups() < 1) {
      std::fprintf(stderr, "sluice: bad tag extractor regex for %s: %s\n", tag_name_.c_str(),
                   regex.c_str());
      std::abort();
    }
    prefix_ = regexPrefix(regex);
    groups_ = std::min(regex_.NumberOfCapturingGroups(), 2) + 1;
  }

  bool extract(std::string_view name, const std::vector<std::string_view>&, std::vector<Tag>& tags,
               std::vector<bool>& remove) const override {
    if (!substr_.empty() && name.find(substr_) == std::string_view::npos) return false;
    re2::StringPiece match[3];
    if (!regex_.Match(re2::StringPiece(name.data(), name.size()), 0, name.size(), RE2::UNANCHORED,
                      match, groups_)) {
      return false;
    }
    const re2::StringPiece removed = match[1];
    if (removed.empty()) return false;
    const re2::StringPiece value = groups_ > 2 && !match[2].empty() ? match[2] : removed;
    const std::string_view value_view(value.data(), value.size());
    if (!negative_match_.empty() && value_view == negative_match_) return false;
    tags.push_back(Tag{tag_name_, std::string(value_view)});
    const size_t begin = static_cast<size_t>(removed.data() - name.data());
    markRemoved(remove, begin, begin + removed.size());
    return true;
  }

 private:
  const RE2 regex_;
  const std::string substr_;          // a cheap test before the regex
  const std::string negative_match_;  // a value that is not a match ("admin")
  int groups_ = 2;
};

class TokenExtractor : public TagExtractor {
 public:
  TokenExtractor(std::string_view tag_name, std::string_view pattern) : TagExtractor(tag_name) {
    for (size_t start = 0;;) {
      const size_t dot = pattern.find('.', start);
      pattern_.emplace_back(pattern.substr(start, dot - start));
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    const std::string& first = pattern_.front();
    if (first != "$" && first != "*" && first != "**") prefix_ = first;
  }

  bool extract(std::string_view, const std::vector<std::string_view>& tokens,
               std::vector<Tag>& tags, std::vector<bool>& remove) const override {
    size_t value_index = tokens.size();
    if (!match(tokens, 0, 0, value_index) || value_index >= tokens.size()) return false;
    size_t begin = 0;
    for (size_t i = 0; i < value_index; ++i) begin += tokens[i].size() + 1;
    size_t end = begin + tokens[value_index].size();
    if (value_index + 1 < tokens.size()) {
      ++end;  // "value." before the next token
    } else if (begin > 0) {
      --begin;  // ".value" at the end
    }
    tags.push_back(Tag{tag_name_, std::string(tokens[value_index])});
    markRemoved(remove, begin, end);
    return true;
  }

 private:
  // '*' is one token, '$' one token that is the value, a final '**' one or more tokens, any
  // other '**' zero or more.
  bool match(const std::vector<std::string_view>& tokens, size_t ti, size_t pi,
             size_t& value_index) const {
    for (; pi < pattern_.size(); ++pi, ++ti) {
      const std::string& want = pattern_[pi];
      if (want == "**") {
        if (pi + 1 == pattern_.size()) return ti < tokens.size();
        for (size_t k = ti; k < tokens.size(); ++k) {
          if (match(tokens, k, pi + 1, value_index)) return true;
        }
        return false;
      }
      if (ti >= tokens.size()) return false;
      if (want == "$") {
        value_index = ti;
      } else if (want != "*" && want != tokens[ti]) {
        return false;
      }
    }
    return ti == tokens.size();
  }

  std::vector<std::string> pattern_;
};

struct RegexSpec {
  std::string_view tag;
  std::string_view regex;
  std::string_view substr = "";
  std::string_view negative_match = "";
};

struct TokenSpec {
  std::string_view tag;
  std::string_view pattern;
};

// Envoy's defaults, in Envoy's order (regexes are added before token patterns).
// * <...> in the comments: the text that is removed; [...]: another tag's part.
constexpr RegexSpec kDefaultRegexes[] = {
    // *_rq(_<response_code>)
    {"envoy.response_code", R"(_rq(_(\d{3}))$)", "_rq_"},
    // *_rq_(<response_code_class>)xx
    {"envoy.response_code_class", R"(_rq_((\d))xx$)", "_rq_"},
    // http.[<stat_prefix>.]dynamodb.table.[<table>.]capacity.[<op>.](__partition_id=<id>)
    {"envoy.dynamo_partition_id",
     R"(^http\.<TAG_VALUE>\.dynamodb\.table\.<TAG_VALUE>\.capacity\.<TAG_VALUE>(\.__partition_id=(\w{7}))$)",
     ".dynamodb.table."},
    // http.[<stat_prefix>.]dynamodb.operation.(<operation_name>.)* or
    // http.[<stat_prefix>.]dynamodb.table.[<table_name>.]capacity.(<operation_name>.)*
    {"envoy.dynamo_operation",
     R"(^http\.<TAG_VALUE>\.dynamodb.(?:operation|table\.<TAG_VALUE>\.capacity)(\.(<TAG_VALUE>))(?:\.|$))",
     ".dynamodb."},
    // http.[<stat_prefix>.]dynamodb.(table|error).(<table_name>.)*
    {"envoy.dynamo_table", R"(^http\.<TAG_VALUE>\.dynamodb.(?:table|error)\.((<TAG_VALUE>)\.))",
     ".dynamodb."},
    // listener.[<address>.]ssl.ciphers.(<cipher>)
    {"envoy.ssl_cipher", R"(^listener\..*?\.ssl\.ciphers(\.(<CIPHER>))$)", ".ssl.ciphers."},
    // (listener|cluster).[<name>.]ssl.curves.(<curve>)
    {"envoy.ssl_curve", R"(^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.curves(\.(<CIPHER>))$)",
     ".ssl.curves."},
    // (listener|cluster).[<name>.]ssl.sigalgs.(<algorithm>)
    {"envoy.ssl_sigalg", R"(^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.sigalgs(\.(<CIPHER>))$)",
     ".ssl.sigalgs."},
    // (listener|cluster).[<name>.]ssl.versions.(<version>)
    {"envoy.ssl_version", R"(^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.versions(\.(<TLS_VERSION>))$)",
     ".ssl.versions."},
    // cluster.[<cluster_name>.]ssl.ciphers.(<cipher>)
    {"cipher_suite", R"(^cluster\.<TAG_VALUE>\.ssl\.ciphers(\.(<CIPHER>))$)", ".ssl.ciphers."},
    // listener.[<address>.]http.(<stat_prefix>.)*
    {"envoy.http_conn_manager_prefix", R"(^listener\..*?\.http\.((<TAG_VALUE>)\.))", ".http."},
    // listener.<address|stat_prefix>.(worker_<id>.)*, listener_manager.(worker_<id>.)*,
    // server.(worker_<id>.)*
    {"envoy.worker_id",
     R"(^(?:listener\.(?:<ADDRESS>|<TAG_VALUE>)\.|server\.|listener_manager\.)worker_((\d+)\.))"},
    // listener.(<address|stat_prefix>.)*, except "admin"
    {"envoy.listener_address", R"(^listener\.((<ADDRESS>|<TAG_VALUE>)\.))", "", "admin"},
    // http.[<stat_prefix>.]rds.(<route_config_name>.)<base_stat> (the name may hold dots)
    {"envoy.rds_route_config", R"(^http\.<TAG_VALUE>\.rds\.((<ROUTE_CONFIG_NAME>)\.)\w+?$)",
     ".rds."},
};

constexpr TokenSpec kDefaultTokens[] = {
    {"envoy.mongo_callsite", "mongo.*.collection.*.callsite.$.query.**"},
    {"envoy.mongo_collection", "mongo.*.collection.$.**.query.*"},
    {"envoy.mongo_cmd", "mongo.*.cmd.$.**"},
    {"envoy.grpc_bridge_method", "cluster.*.grpc.*.$.**"},
    {"envoy.http_user_agent", "http.*.user_agent.$.**"},
    {"envoy.virtual_cluster", "vhost.*.vcluster.$.**"},
    {"envoy.fault_downstream_cluster", "http.*.fault.$.**"},
    {"envoy.grpc_bridge_service", "cluster.*.grpc.$.**"},
    {"envoy.tcp_prefix", "tcp.$.**"},
    {"envoy.udp_prefix", "udp.$.**"},
    {"envoy.clientssl_prefix", "auth.clientssl.$.**"},
    {"envoy.ratelimit_prefix", "ratelimit.$.**"},
    {"envoy.cluster_name", "cluster.$.**"},
    {"envoy.ext_authz_prefix", "cluster.*.ext_authz.$.**"},
    {"envoy.ext_authz_prefix", "http.*.ext_authz.$.**"},
    {"envoy.http_conn_manager_prefix", "http.$.**"},
    {"envoy.virtual_host", "vhost.$.**"},
    {"envoy.mongo_prefix", "mongo.$.**"},
    {"envoy.route", "vhost.*.route.$.**"},
    {"envoy.thrift_prefix", "thrift.$.**"},
    {"envoy.redis_prefix", "redis.$.**"},
    {"envoy.local_http_ratelimit_prefix", "$.http_local_rate_limit.**"},
    {"envoy.local_network_ratelimit_prefix", "local_rate_limit.$.**"},
    {"envoy.local_listener_ratelimit_prefix", "listener_local_ratelimit.$.**"},
    {"envoy.dns_filter_prefix", "dns_filter.$.**"},
};

std::vector<std::string_view> splitTokens(std::string_view name) {
  std::vector<std::string_view> tokens;
  for (size_t start = 0;;) {
    const size_t dot = name.find('.', start);
    tokens.push_back(name.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return tokens;
}

}  // namespace

TagProducer::TagProducer() {
  for (const RegexSpec& spec : kDefaultRegexes) {
    add(std::make_unique<RegexExtractor>(spec.tag, expand(std::string(spec.regex)), spec.substr,
                                         spec.negative_match));
  }
  for (const TokenSpec& spec : kDefaultTokens) {
    add(std::make_unique<TokenExtractor>(spec.tag, spec.pattern));
  }
}

TagProducer::~TagProducer() = default;

const TagProducer& TagProducer::defaults() {
  static const TagProducer* producer = new TagProducer;
  return *producer;
}

void TagProducer::add(std::unique_ptr<TagExtractor> extractor) {
  if (extractor->prefix().empty()) {
    any_prefix_.push_back(std::move(extractor));
  } else {
    const std::string prefix = extractor->prefix();
    by_prefix_[prefix].push_back(std::move(extractor));
  }
}

std::string TagProducer::produceTags(std::string_view name, std::vector<Tag>& tags) const {
  const std::vector<std::string_view> tokens = splitTokens(name);
  std::vector<bool> remove(name.size(), false);
  const size_t first_new = tags.size();
  auto run = [&](const TagExtractor& extractor) {
    // Several extractors may look for one tag (envoy.http_conn_manager_prefix); the first
    // that finds it wins.
    const bool found = std::any_of(tags.begin() + static_cast<ptrdiff_t>(first_new), tags.end(),
                                   [&](const Tag& t) { return t.name == extractor.tagName(); });
    if (!found) extractor.extract(name, tokens, tags, remove);
  };
  for (const auto& extractor : any_prefix_) run(*extractor);
  if (auto it = by_prefix_.find(std::string(tokens.front())); it != by_prefix_.end()) {
    for (const auto& extractor : it->second) run(*extractor);
  }
  std::string out;
  out.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    if (!remove[i]) out.push_back(name[i]);
  }
  return out;
}

}  // namespace sluice::stats
