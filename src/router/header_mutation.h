#pragma once

// The headers a route table adds to and removes from requests and responses
// (request_headers_to_add / request_headers_to_remove and the response pair), compiled once
// per config: lower-cased names, values as header value formatters (%DOWNSTREAM_REMOTE_ADDRESS%,
// %REQ(...)%, ...). One HeaderMutations is one level: a route configuration, a virtual host,
// a route or a weighted cluster. Immutable after creation; safe to share between workers.

#include <string>
#include <string_view>
#include <vector>

#include "access_log/formatter.h"
#include "envoy/config/core/v3/base.pb.h"
#include "http/header_map.h"
#include "http/stream_info.h"

namespace sluice::router {

class HeaderMutations {
 public:
  // Envoy's HeaderValueOption.HeaderAppendAction.
  enum class AppendAction {
    AppendIfExistsOrAdd,     // add one more entry (the default)
    AddIfAbsent,             // add only when the header is absent
    OverwriteIfExistsOrAdd,  // replace every entry, or add
    OverwriteIfExists,       // replace every entry; nothing when absent
  };

  struct HeaderToAdd {
    std::string key;  // lower case
    access_log::FormatterConstSharedPtr value;
    AppendAction action{AppendAction::AppendIfExistsOrAdd};
    bool keep_empty_value{false};  // an empty value is added only when set
  };

  HeaderMutations() = default;

  // Compiles one level. `add_path` and `remove_path` name the two fields in errors, e.g.
  // "virtual_hosts[0].request_headers_to_add". Returns false and sets `error` to
  // "<add_path>[i].header.value: unknown command operator '%FOO%'" and the like. Pseudo-headers
  // (":path") and "host" may be neither added nor removed (as in Envoy); the deprecated
  // `append` maps to APPEND_IF_EXISTS_OR_ADD (true) or OVERWRITE_IF_EXISTS_OR_ADD (false) and
  // may not be set together with append_action.
  bool init(
      const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& to_add,
      const google::protobuf::RepeatedPtrField<std::string>& to_remove, std::string_view add_path,
      std::string_view remove_path, std::string* error);

  // Removes headers_to_remove, then evaluates every value to add (all against the headers as
  // they were before this level's additions), then applies overwrites, then additions.
  // `request` is what %REQ(...)% reads: the request headers (for a request, `headers` itself).
  void apply(http::HeaderMap& headers, const http::StreamInfo& info,
             const http::RequestHeaderMap* request) const;

  bool empty() const { return to_add_.empty() && to_remove_.empty(); }
  const std::vector<HeaderToAdd>& headersToAdd() const { return to_add_; }
  const std::vector<std::string>& headersToRemove() const { return to_remove_; }

 private:
  std::vector<HeaderToAdd> to_add_;
  std::vector<std::string> to_remove_;  // lower case
};

}  // namespace sluice::router
