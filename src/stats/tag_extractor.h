#pragma once

// Envoy's tag extraction: turning a flat stat name such as
// "cluster.backend.upstream_rq_503" into a tag-extracted name ("cluster.upstream_rq") and
// tags (envoy.response_code=503, envoy.cluster_name=backend), as /stats/prometheus shows.
//
// The default extractors are Envoy's well-known ones (source/common/config/
// well_known_names.cc), each either a regex (the first capture group is removed from the
// name, the second is the value) or a token pattern ("cluster.$.**": '$' is the value, '*'
// one token, '**' any number of tokens). They run against the original name in Envoy's
// order: those that apply to any name first, then those for the name's first token; an
// extractor whose tag was already found is skipped. Compiled once; thread-safe.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::stats {

struct Tag {
  std::string name;
  std::string value;
  bool operator==(const Tag&) const = default;
};

// Envoy's well-known tag names.
namespace tag_names {
inline constexpr std::string_view kClusterName = "envoy.cluster_name";
inline constexpr std::string_view kListenerAddress = "envoy.listener_address";
inline constexpr std::string_view kHttpConnManagerPrefix = "envoy.http_conn_manager_prefix";
inline constexpr std::string_view kResponseCode = "envoy.response_code";
inline constexpr std::string_view kResponseCodeClass = "envoy.response_code_class";
inline constexpr std::string_view kVirtualHost = "envoy.virtual_host";
inline constexpr std::string_view kVirtualCluster = "envoy.virtual_cluster";
inline constexpr std::string_view kRoute = "envoy.route";
inline constexpr std::string_view kRdsRouteConfig = "envoy.rds_route_config";
inline constexpr std::string_view kWorkerId = "envoy.worker_id";
inline constexpr std::string_view kTcpPrefix = "envoy.tcp_prefix";
}  // namespace tag_names

class TagExtractor;

class TagProducer {
 public:
  // A producer with Envoy's default extractors (use_all_default_tags: true).
  TagProducer();
  ~TagProducer();
  TagProducer(const TagProducer&) = delete;
  TagProducer& operator=(const TagProducer&) = delete;

  // The process-wide producer with the default extractors.
  static const TagProducer& defaults();

  // Appends the tags found in `name` to `tags`, in extraction order, and returns the name
  // with the tagged parts removed.
  std::string produceTags(std::string_view name, std::vector<Tag>& tags) const;

 private:
  void add(std::unique_ptr<TagExtractor> extractor);

  std::vector<std::unique_ptr<TagExtractor>> any_prefix_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<TagExtractor>>> by_prefix_;
};

}  // namespace sluice::stats
