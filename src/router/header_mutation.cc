#include "router/header_mutation.h"

#include <utility>

namespace sluice::router {

namespace {

using envoy::config::core::v3::HeaderValueOption;

// Envoy refuses to let headers_to_add/remove touch pseudo-headers or Host.
bool isModifiable(std::string_view lower_key) {
  return !lower_key.empty() && lower_key[0] != ':' && lower_key != http::headers::kHost;
}

std::string lowerCopy(std::string_view s) {
  std::string out(s);
  http::toLowerInPlace(out);
  return out;
}

}  // namespace

bool HeaderMutations::init(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& to_add,
    const google::protobuf::RepeatedPtrField<std::string>& to_remove, std::string_view add_path,
    std::string_view remove_path, std::string* error) {
  to_add_.clear();
  to_remove_.clear();
  for (int i = 0; i < to_add.size(); ++i) {
    const HeaderValueOption& opt = to_add[i];
    const std::string path = std::string(add_path) + "[" + std::to_string(i) + "]";
    HeaderToAdd h;
    h.key = lowerCopy(opt.header().key());
    if (h.key.empty()) {
      *error = path + ".header.key: a header name is required";
      return false;
    }
    if (!isModifiable(h.key)) {
      *error = path + ".header.key: '" + opt.header().key() +
               "': pseudo-headers and host may not be modified";
      return false;
    }
    if (!opt.header().raw_value().empty()) {
      *error = path + ".header.raw_value: raw_value is not supported; use value";
      return false;
    }
// The deprecated `append` is read on purpose: configs written for older Envoys still use it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    const bool has_append = opt.has_append();
    const bool append = has_append && opt.append().value();
#pragma GCC diagnostic pop
    if (has_append) {
      if (opt.append_action() != HeaderValueOption::APPEND_IF_EXISTS_OR_ADD) {
        *error = path + ": append and append_action may not both be set";
        return false;
      }
      h.action = append ? AppendAction::AppendIfExistsOrAdd : AppendAction::OverwriteIfExistsOrAdd;
    } else {
      switch (opt.append_action()) {
        case HeaderValueOption::ADD_IF_ABSENT:
          h.action = AppendAction::AddIfAbsent;
          break;
        case HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD:
          h.action = AppendAction::OverwriteIfExistsOrAdd;
          break;
        case HeaderValueOption::OVERWRITE_IF_EXISTS:
          h.action = AppendAction::OverwriteIfExists;
          break;
        case HeaderValueOption::APPEND_IF_EXISTS_OR_ADD:
          h.action = AppendAction::AppendIfExistsOrAdd;
          break;
        default:
          *error = path + ".append_action: unknown value " + std::to_string(opt.append_action());
          return false;
      }
    }
    h.keep_empty_value = opt.keep_empty_value();
    std::string format_error;
    access_log::FormatterPtr formatter =
        access_log::createHeaderValueFormatter(opt.header().value(), &format_error);
    if (formatter == nullptr) {
      *error = path + ".header.value: " + format_error;
      return false;
    }
    h.value = std::move(formatter);
    to_add_.push_back(std::move(h));
  }
  for (int i = 0; i < to_remove.size(); ++i) {
    std::string key = lowerCopy(to_remove[i]);
    if (!isModifiable(key)) {
      *error = std::string(remove_path) + "[" + std::to_string(i) + "]: '" + to_remove[i] +
               "': pseudo-headers and host may not be removed";
      return false;
    }
    to_remove_.push_back(std::move(key));
  }
  return true;
}

void HeaderMutations::apply(http::HeaderMap& headers, const http::StreamInfo& info,
                            const http::RequestHeaderMap* request) const {
  for (const std::string& key : to_remove_) headers.remove(key);
  if (to_add_.empty()) return;

  // Evaluate every value first, so that formatters (%REQ(x)%) read the headers as they were
  // before this level's additions; then overwrite; then add.
  struct Pending {
    const HeaderToAdd* header;
    std::string_view value;
    bool overwrite;
  };
  std::vector<Pending> pending;
  pending.reserve(to_add_.size());
  std::vector<std::string> formatted;  // storage for non-literal values
  formatted.reserve(to_add_.size());
  const access_log::FormatContext ctx{request, request == &headers ? nullptr : &headers, nullptr,
                                      info};
  for (const HeaderToAdd& h : to_add_) {
    std::string_view value;
    if (h.value->isLiteral()) {
      value = h.value->literal();
    } else {
      formatted.emplace_back();
      h.value->format(ctx, formatted.back());
      value = formatted.back();
    }
    if (value.empty() && !h.keep_empty_value) continue;
    switch (h.action) {
      case AppendAction::AppendIfExistsOrAdd:
        pending.push_back({&h, value, false});
        break;
      case AppendAction::AddIfAbsent:
        if (!headers.has(h.key)) pending.push_back({&h, value, false});
        break;
      case AppendAction::OverwriteIfExists:
        if (headers.has(h.key)) pending.push_back({&h, value, true});
        break;
      case AppendAction::OverwriteIfExistsOrAdd:
        pending.push_back({&h, value, true});
        break;
    }
  }
  for (const Pending& p : pending) {
    if (p.overwrite) headers.set(p.header->key, p.value);
  }
  for (const Pending& p : pending) {
    if (!p.overwrite) headers.add(p.header->key, p.value);
  }
}

}  // namespace sluice::router
