#include "config/validation.h"

#include <arpa/inet.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <re2/re2.h>
#include <time.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "config/api_descriptors.h"
#include "config/proto_duration.h"
#include "validate/validate.pb.h"

namespace sluice::config {

namespace pb = google::protobuf;
using Error = std::optional<std::string>;

namespace {

// --- Reading the options, once per descriptor. ---------------------------------------------

// Custom options of descriptors built from the embedded descriptor set may sit in unknown
// fields rather than in the extension; parsing the serialized options again into the
// generated options type (whose extension registry knows `validate.*`) finds them either way.
template <class Options, class Ext>
bool readExtension(const Options& options, const Ext& ext,
                   typename std::remove_cvref_t<decltype(options.GetExtension(ext))>& out) {
  if (options.HasExtension(ext)) {
    out = options.GetExtension(ext);
    return true;
  }
  if (options.unknown_fields().empty()) {
    return false;
  }
  Options reparsed;
  if (reparsed.ParseFromString(options.SerializeAsString()) && reparsed.HasExtension(ext)) {
    out = reparsed.GetExtension(ext);
    return true;
  }
  return false;
}

// What the walk needs from one descriptor's options. Descriptors of the generated pool and of
// the embedded pool live until exit, so their addresses are stable keys.
class OptionCache {
 public:
  // The rules of each field of a message type, by field index (nullptr: the field has no
  // `(validate.rules)`): one lookup per message walked instead of one per field (a big route
  // table walks millions of fields, most without rules).
  const std::vector<const validate::FieldRules*>& fieldRules(const pb::Descriptor* message) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = message_rules_.find(message);
    if (it == message_rules_.end()) {
      std::vector<const validate::FieldRules*> rules;
      for (int i = 0; i < message->field_count(); ++i) {
        rules.push_back(rulesLocked(message->field(i)));
      }
      it = message_rules_.emplace(message, std::move(rules)).first;  // a node: stays put
    }
    return it->second;
  }

 private:
  const validate::FieldRules* rulesLocked(const pb::FieldDescriptor* field) {
    auto it = field_rules_.find(field);
    if (it == field_rules_.end()) {
      auto rules = std::make_unique<validate::FieldRules>();
      if (!readExtension(field->options(), validate::rules, *rules)) {
        rules.reset();
      }
      it = field_rules_.emplace(field, std::move(rules)).first;
    }
    return it->second.get();
  }

 public:
  bool disabled(const pb::Descriptor* message) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flags_.find(message);
    if (it == flags_.end()) {
      bool disabled = false;
      readExtension(message->options(), validate::disabled, disabled);
      it = flags_.emplace(message, disabled).first;
    }
    return it->second;
  }

  bool required(const pb::OneofDescriptor* oneof) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = flags_.find(oneof);
    if (it == flags_.end()) {
      bool required = false;
      readExtension(oneof->options(), validate::required, required);
      it = flags_.emplace(oneof, required).first;
    }
    return it->second;
  }

  const RE2& regex(const std::string& pattern) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& re = regexes_[pattern];
    if (re == nullptr) {
      re = std::make_unique<RE2>(pattern, RE2::Quiet);
    }
    return *re;
  }

 private:
  std::mutex mu_;
  std::unordered_map<const pb::FieldDescriptor*, std::unique_ptr<validate::FieldRules>>
      field_rules_;
  std::unordered_map<const pb::Descriptor*, std::vector<const validate::FieldRules*>>
      message_rules_;
  std::unordered_map<const void*, bool> flags_;
  std::unordered_map<std::string, std::unique_ptr<RE2>> regexes_;
};

OptionCache& optionCache() {
  static auto* cache = new OptionCache();
  return *cache;
}

// --- Values. ---------------------------------------------------------------------------------

// One value of a field: the field itself (index < 0) or an element of a repeated field.
template <class T>
T getNumber(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  const bool one = i < 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return static_cast<T>(one ? r->GetInt32(m, f) : r->GetRepeatedInt32(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return static_cast<T>(one ? r->GetInt64(m, f) : r->GetRepeatedInt64(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return static_cast<T>(one ? r->GetUInt32(m, f) : r->GetRepeatedUInt32(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return static_cast<T>(one ? r->GetUInt64(m, f) : r->GetRepeatedUInt64(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return static_cast<T>(one ? r->GetFloat(m, f) : r->GetRepeatedFloat(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return static_cast<T>(one ? r->GetDouble(m, f) : r->GetRepeatedDouble(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return static_cast<T>(one ? r->GetEnumValue(m, f) : r->GetRepeatedEnumValue(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return static_cast<T>(one ? r->GetBool(m, f) : r->GetRepeatedBool(m, f, i));
    default:
      return T{};
  }
}

std::string getString(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  return i < 0 ? r->GetString(m, f) : r->GetRepeatedString(m, f, i);
}

const pb::Message& getMessage(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  return i < 0 ? r->GetMessage(m, f) : r->GetRepeatedMessage(m, f, i);
}

// A scalar value as text, for `unique` and for map keys.
std::string scalarText(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return getString(m, f, i);
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return getNumber<int>(m, f, i) != 0 ? "true" : "false";
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return std::to_string(getNumber<int64_t>(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(getNumber<uint64_t>(m, f, i));
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE: {
      char buf[64];
      auto res = std::to_chars(buf, buf + sizeof(buf), getNumber<double>(m, f, i));
      return std::string(buf, res.ptr);
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return getMessage(m, f, i).SerializeAsString();
  }
  return "";
}

template <class T>
std::string formatNumber(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), v);
    return std::string(buf, res.ptr);
  } else {
    return std::to_string(v);
  }
}

std::string quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

template <class List, class Fmt>
std::string formatList(const List& list, Fmt fmt) {
  std::string out = "[";
  bool first = true;
  for (const auto& item : list) {
    if (!first) {
      out += ", ";
    }
    first = false;
    out += fmt(item);
  }
  return out + "]";
}

// google.protobuf.Duration and Timestamp as (seconds, nanos), read by reflection.
struct SecondsNanos {
  int64_t seconds{0};
  int32_t nanos{0};
  friend bool operator<(const SecondsNanos& a, const SecondsNanos& b) {
    return a.seconds != b.seconds ? a.seconds < b.seconds : a.nanos < b.nanos;
  }
  friend bool operator==(const SecondsNanos& a, const SecondsNanos& b) {
    return a.seconds == b.seconds && a.nanos == b.nanos;
  }
};

SecondsNanos readSecondsNanos(const pb::Message& m) {
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection* r = m.GetReflection();
  const pb::FieldDescriptor* seconds = d->FindFieldByName("seconds");
  const pb::FieldDescriptor* nanos = d->FindFieldByName("nanos");
  SecondsNanos v;
  if (seconds != nullptr && seconds->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64) {
    v.seconds = r->GetInt64(m, seconds);
  }
  if (nanos != nullptr && nanos->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT32) {
    v.nanos = r->GetInt32(m, nanos);
  }
  return v;
}

SecondsNanos fromProto(const pb::Duration& d) {
  return {d.seconds(), d.nanos()};
}
SecondsNanos fromProto(const pb::Timestamp& t) {
  return {t.seconds(), t.nanos()};
}

std::string formatDuration(const SecondsNanos& d) {
  const bool negative = d.seconds < 0 || d.nanos < 0;
  const uint64_t seconds =
      d.seconds < 0 ? 0 - static_cast<uint64_t>(d.seconds) : static_cast<uint64_t>(d.seconds);
  const uint32_t nanos = static_cast<uint32_t>(d.nanos < 0 ? -d.nanos : d.nanos);
  std::string out = (negative ? "-" : "") + std::to_string(seconds);
  if (nanos != 0) {
    std::string frac = std::to_string(nanos);
    frac.insert(0, 9 - frac.size(), '0');
    while (frac.back() == '0') {
      frac.pop_back();
    }
    out += "." + frac;
  }
  return out + "s";
}

std::string formatTimestamp(const SecondsNanos& t) {
  const time_t seconds = static_cast<time_t>(t.seconds);
  struct tm tm {};
  if (gmtime_r(&seconds, &tm) == nullptr) {
    return std::to_string(t.seconds) + "s";
  }
  char buf[64];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (t.nanos != 0) {
    std::string frac = std::to_string(t.nanos);
    frac.insert(0, 9 - frac.size(), '0');
    out += "." + frac;
  }
  return out + "Z";
}

// The bounds that PGV numeric, duration and timestamp rules share. With a lower and an upper
// bound, lower < upper means "inside the range" and otherwise "outside of it".
template <class V, class Fmt>
Error checkRange(const V& v, const V* lt, const V* lte, const V* gt, const V* gte, Fmt fmt) {
  const V* hi = lt != nullptr ? lt : lte;
  const bool hi_inclusive = lt == nullptr && lte != nullptr;
  const V* lo = gt != nullptr ? gt : gte;
  const bool lo_inclusive = gt == nullptr && gte != nullptr;
  if (hi != nullptr && lo != nullptr) {
    if (*lo < *hi) {
      const bool above = lo_inclusive ? !(v < *lo) : *lo < v;
      const bool below = hi_inclusive ? !(*hi < v) : v < *hi;
      if (!(above && below)) {
        return "value must be inside range " + std::string(lo_inclusive ? "[" : "(") + fmt(*lo) +
               ", " + fmt(*hi) + (hi_inclusive ? "]" : ")");
      }
    } else {
      const bool past_hi = hi_inclusive ? *hi < v : !(v < *hi);
      const bool before_lo = lo_inclusive ? v < *lo : !(*lo < v);
      if (past_hi && before_lo) {
        return "value must be outside range " + std::string(hi_inclusive ? "(" : "[") + fmt(*hi) +
               ", " + fmt(*lo) + (lo_inclusive ? ")" : "]");
      }
    }
    return std::nullopt;
  }
  if (lt != nullptr && !(v < *lt)) {
    return "value must be less than " + fmt(*lt);
  }
  if (lte != nullptr && *lte < v) {
    return "value must be less than or equal to " + fmt(*lte);
  }
  if (gt != nullptr && !(*gt < v)) {
    return "value must be greater than " + fmt(*gt);
  }
  if (gte != nullptr && v < *gte) {
    return "value must be greater than or equal to " + fmt(*gte);
  }
  return std::nullopt;
}

// Int32Rules, UInt64Rules, DoubleRules, ...: T is the type the value is compared in.
template <class T, class Rules>
Error checkNumber(T v, const Rules& r) {
  using R = std::remove_cvref_t<decltype(r.const_())>;
  auto fmt = [](const T& x) { return formatNumber<R>(static_cast<R>(x)); };
  if (r.has_const_() && v != static_cast<T>(r.const_())) {
    return "value must equal " + fmt(static_cast<T>(r.const_()));
  }
  const T lt = static_cast<T>(r.lt()), lte = static_cast<T>(r.lte());
  const T gt = static_cast<T>(r.gt()), gte = static_cast<T>(r.gte());
  if (auto e = checkRange<T>(v, r.has_lt() ? &lt : nullptr, r.has_lte() ? &lte : nullptr,
                             r.has_gt() ? &gt : nullptr, r.has_gte() ? &gte : nullptr, fmt)) {
    return e;
  }
  auto listed = [&v](const auto& list) {
    for (const auto& x : list) {
      if (static_cast<T>(x) == v) {
        return true;
      }
    }
    return false;
  };
  auto fmt_item = [](const R& x) { return formatNumber<R>(x); };
  if (r.in_size() > 0 && !listed(r.in())) {
    return "value must be in list " + formatList(r.in(), fmt_item);
  }
  if (listed(r.not_in())) {
    return "value must not be in list " + formatList(r.not_in(), fmt_item);
  }
  return std::nullopt;
}

size_t runeCount(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80;
  }
  return n;
}

bool isHostname(std::string_view s) {
  if (!s.empty() && s.back() == '.') {
    s.remove_suffix(1);
  }
  if (s.empty() || s.size() > 253) {
    return false;
  }
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('.', start);
    if (end == std::string_view::npos) {
      end = s.size();
    }
    const std::string_view label = s.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!isalnum(static_cast<unsigned char>(c)) && c != '-') {
        return false;
      }
    }
    start = end + 1;
  }
  return true;
}

bool isIpv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool isIpv6(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

bool hasSpaceOrControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) {
      return true;
    }
  }
  return false;
}

bool isUri(std::string_view s) {
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0 || !isalpha(static_cast<unsigned char>(s[0]))) {
    return false;
  }
  for (char c : s.substr(0, colon)) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return !hasSpaceOrControl(s);
}

bool isUuid(std::string_view s) {
  if (s.size() != 36) {
    return false;
  }
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

bool isEmail(const std::string& s) {
  const size_t at = s.rfind('@');
  if (at == std::string::npos || at == 0 || at > 64 || hasSpaceOrControl(s)) {
    return false;
  }
  return isHostname(std::string_view(s).substr(at + 1));
}

// RFC 7230 token characters (tchar), for strict header names.
bool isTokenChar(unsigned char c) {
  return isalnum(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

Error checkKnownRegex(validate::KnownRegex kind, bool strict, std::string_view s) {
  if (kind == validate::HTTP_HEADER_NAME) {
    if (strict) {
      std::string_view name = s;
      if (!name.empty() && name[0] == ':') {
        name.remove_prefix(1);
      }
      bool ok = !name.empty();
      for (unsigned char c : name) {
        ok = ok && isTokenChar(c);
      }
      if (!ok) {
        return "value must be a valid HTTP header name";
      }
    } else if (s.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos) {
      return "value must be a valid HTTP header name (no NUL, CR or LF)";
    }
  } else if (kind == validate::HTTP_HEADER_VALUE) {
    for (unsigned char c : s) {
      const bool bad =
          strict ? ((c < 0x20 && c != '\t') || c == 0x7f) : (c == 0 || c == '\r' || c == '\n');
      if (bad) {
        return strict ? "value must be a valid HTTP header value"
                      : "value must be a valid HTTP header value (no NUL, CR or LF)";
      }
    }
  }
  return std::nullopt;
}

Error checkString(const std::string& s, const validate::StringRules& r) {
  if (r.ignore_empty() && s.empty()) {
    return std::nullopt;
  }
  if (r.has_const_() && s != r.const_()) {
    return "value must equal " + quote(r.const_());
  }
  if (r.has_len() && runeCount(s) != r.len()) {
    return "value length must be " + std::to_string(r.len()) + " characters";
  }
  if (r.has_min_len() && runeCount(s) < r.min_len()) {
    return "value length must be at least " + std::to_string(r.min_len()) + " characters";
  }
  if (r.has_max_len() && runeCount(s) > r.max_len()) {
    return "value length must be at most " + std::to_string(r.max_len()) + " characters";
  }
  if (r.has_len_bytes() && s.size() != r.len_bytes()) {
    return "value length must be " + std::to_string(r.len_bytes()) + " bytes";
  }
  if (r.has_min_bytes() && s.size() < r.min_bytes()) {
    return "value length must be at least " + std::to_string(r.min_bytes()) + " bytes";
  }
  if (r.has_max_bytes() && s.size() > r.max_bytes()) {
    return "value length must be at most " + std::to_string(r.max_bytes()) + " bytes";
  }
  if (r.has_pattern()) {
    const RE2& re = optionCache().regex(r.pattern());
    if (!re.ok()) {
      return "the API's regex pattern " + quote(r.pattern()) + " does not compile";
    }
    if (!RE2::PartialMatch(s, re)) {
      return "value does not match regex pattern " + quote(r.pattern());
    }
  }
  if (r.has_prefix() && s.rfind(r.prefix(), 0) != 0) {
    return "value does not have prefix " + quote(r.prefix());
  }
  if (r.has_suffix() &&
      (s.size() < r.suffix().size() ||
       s.compare(s.size() - r.suffix().size(), std::string::npos, r.suffix()) != 0)) {
    return "value does not have suffix " + quote(r.suffix());
  }
  if (r.has_contains() && s.find(r.contains()) == std::string::npos) {
    return "value does not contain substring " + quote(r.contains());
  }
  if (r.has_not_contains() && s.find(r.not_contains()) != std::string::npos) {
    return "value contains substring " + quote(r.not_contains());
  }
  if (r.in_size() > 0 && std::find(r.in().begin(), r.in().end(), s) == r.in().end()) {
    return "value must be in list " + formatList(r.in(), quote);
  }
  if (std::find(r.not_in().begin(), r.not_in().end(), s) != r.not_in().end()) {
    return "value must not be in list " + formatList(r.not_in(), quote);
  }
  switch (r.well_known_case()) {
    case validate::StringRules::kEmail:
      if (r.email() && !isEmail(s)) {
        return "value must be a valid email address";
      }
      break;
    case validate::StringRules::kHostname:
      if (r.hostname() && !isHostname(s)) {
        return "value must be a valid hostname";
      }
      break;
    case validate::StringRules::kIp:
      if (r.ip() && !isIpv4(s) && !isIpv6(s)) {
        return "value must be a valid IP address";
      }
      break;
    case validate::StringRules::kIpv4:
      if (r.ipv4() && !isIpv4(s)) {
        return "value must be a valid IPv4 address";
      }
      break;
    case validate::StringRules::kIpv6:
      if (r.ipv6() && !isIpv6(s)) {
        return "value must be a valid IPv6 address";
      }
      break;
    case validate::StringRules::kUri:
      if (r.uri() && !isUri(s)) {
        return "value must be a valid URI";
      }
      break;
    case validate::StringRules::kUriRef:
      if (r.uri_ref() && hasSpaceOrControl(s)) {
        return "value must be a valid URI reference";
      }
      break;
    case validate::StringRules::kAddress:
      if (r.address() && !isHostname(s) && !isIpv4(s) && !isIpv6(s)) {
        return "value must be a valid hostname or IP address";
      }
      break;
    case validate::StringRules::kUuid:
      if (r.uuid() && !isUuid(s)) {
        return "value must be a valid UUID";
      }
      break;
    case validate::StringRules::kWellKnownRegex:
      return checkKnownRegex(r.well_known_regex(), r.strict(), s);
    case validate::StringRules::WELL_KNOWN_NOT_SET:
      break;
  }
  return std::nullopt;
}

std::string escapeBytes(std::string_view b) {
  std::string out = "\"";
  for (unsigned char c : b) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

Error checkBytes(const std::string& b, const validate::BytesRules& r) {
  if (r.ignore_empty() && b.empty()) {
    return std::nullopt;
  }
  if (r.has_const_() && b != r.const_()) {
    return "value must equal " + escapeBytes(r.const_());
  }
  if (r.has_len() && b.size() != r.len()) {
    return "value length must be " + std::to_string(r.len()) + " bytes";
  }
  if (r.has_min_len() && b.size() < r.min_len()) {
    return "value length must be at least " + std::to_string(r.min_len()) + " bytes";
  }
  if (r.has_max_len() && b.size() > r.max_len()) {
    return "value length must be at most " + std::to_string(r.max_len()) + " bytes";
  }
  if (r.has_pattern()) {
    const RE2& re = optionCache().regex(r.pattern());
    if (!re.ok() || !RE2::PartialMatch(b, re)) {
      return "value does not match regex pattern " + quote(r.pattern());
    }
  }
  if (r.has_prefix() && b.rfind(r.prefix(), 0) != 0) {
    return "value does not have prefix " + escapeBytes(r.prefix());
  }
  if (r.has_suffix() &&
      (b.size() < r.suffix().size() ||
       b.compare(b.size() - r.suffix().size(), std::string::npos, r.suffix()) != 0)) {
    return "value does not have suffix " + escapeBytes(r.suffix());
  }
  if (r.has_contains() && b.find(r.contains()) == std::string::npos) {
    return "value does not contain " + escapeBytes(r.contains());
  }
  if (r.in_size() > 0 && std::find(r.in().begin(), r.in().end(), b) == r.in().end()) {
    return "value must be in list " + formatList(r.in(), escapeBytes);
  }
  if (std::find(r.not_in().begin(), r.not_in().end(), b) != r.not_in().end()) {
    return "value must not be in list " + formatList(r.not_in(), escapeBytes);
  }
  if (r.ip() && b.size() != 4 && b.size() != 16) {
    return "value must be a valid IP address";
  }
  if (r.ipv4() && b.size() != 4) {
    return "value must be a valid IPv4 address";
  }
  if (r.ipv6() && b.size() != 16) {
    return "value must be a valid IPv6 address";
  }
  return std::nullopt;
}

Error checkEnum(int v, const pb::EnumDescriptor* type, const validate::EnumRules& r) {
  auto name = [type](int32_t n) {
    const pb::EnumValueDescriptor* value = type->FindValueByNumber(n);
    return value != nullptr ? value->name() : std::to_string(n);
  };
  if (r.has_const_() && v != r.const_()) {
    return "value must equal " + name(r.const_());
  }
  if (r.defined_only() && type->FindValueByNumber(v) == nullptr) {
    return "value must be one of the defined enum values";
  }
  if (r.in_size() > 0 && std::find(r.in().begin(), r.in().end(), v) == r.in().end()) {
    return "value must be in list " + formatList(r.in(), name);
  }
  if (std::find(r.not_in().begin(), r.not_in().end(), v) != r.not_in().end()) {
    return "value must not be in list " + formatList(r.not_in(), name);
  }
  return std::nullopt;
}

Error checkDuration(const pb::Message& m, const validate::DurationRules& r) {
  const SecondsNanos d = readSecondsNanos(m);
  if (d.seconds > kMaxDurationSeconds || d.seconds < -kMaxDurationSeconds ||
      d.nanos >= 1000000000 || d.nanos <= -1000000000 || (d.seconds > 0 && d.nanos < 0) ||
      (d.seconds < 0 && d.nanos > 0)) {
    return "value is not a valid duration";
  }
  if (r.has_const_() && !(d == fromProto(r.const_()))) {
    return "value must equal " + formatDuration(fromProto(r.const_()));
  }
  const SecondsNanos lt = fromProto(r.lt()), lte = fromProto(r.lte());
  const SecondsNanos gt = fromProto(r.gt()), gte = fromProto(r.gte());
  if (auto e =
          checkRange(d, r.has_lt() ? &lt : nullptr, r.has_lte() ? &lte : nullptr,
                     r.has_gt() ? &gt : nullptr, r.has_gte() ? &gte : nullptr, formatDuration)) {
    return e;
  }
  auto listed = [&d](const auto& list) {
    for (const auto& x : list) {
      if (fromProto(x) == d) {
        return true;
      }
    }
    return false;
  };
  auto fmt = [](const pb::Duration& x) { return formatDuration(fromProto(x)); };
  if (r.in_size() > 0 && !listed(r.in())) {
    return "value must be in list " + formatList(r.in(), fmt);
  }
  if (listed(r.not_in())) {
    return "value must not be in list " + formatList(r.not_in(), fmt);
  }
  return std::nullopt;
}

Error checkTimestamp(const pb::Message& m, const validate::TimestampRules& r) {
  const SecondsNanos t = readSecondsNanos(m);
  if (r.has_const_() && !(t == fromProto(r.const_()))) {
    return "value must equal " + formatTimestamp(fromProto(r.const_()));
  }
  const SecondsNanos lt = fromProto(r.lt()), lte = fromProto(r.lte());
  const SecondsNanos gt = fromProto(r.gt()), gte = fromProto(r.gte());
  if (auto e =
          checkRange(t, r.has_lt() ? &lt : nullptr, r.has_lte() ? &lte : nullptr,
                     r.has_gt() ? &gt : nullptr, r.has_gte() ? &gte : nullptr, formatTimestamp)) {
    return e;
  }
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch).count();
  const SecondsNanos now{now_ns / 1000000000, static_cast<int32_t>(now_ns % 1000000000)};
  if (r.lt_now() && !(t < now)) {
    return "value must be less than now";
  }
  if (r.gt_now() && !(now < t)) {
    return "value must be greater than now";
  }
  if (r.has_within()) {
    const long double within = static_cast<long double>(r.within().seconds()) +
                               static_cast<long double>(r.within().nanos()) / 1e9L;
    const long double delta = (static_cast<long double>(t.seconds) - now.seconds) +
                              (static_cast<long double>(t.nanos) - now.nanos) / 1e9L;
    if (delta > within || -delta > within) {
      return "value must be within " + formatDuration(fromProto(r.within())) + " of now";
    }
  }
  return std::nullopt;
}

bool isWrapper(const pb::Descriptor* d) {
  const std::string& n = d->full_name();
  return d->file()->package() == "google.protobuf" && n.size() > 5 &&
         n.compare(n.size() - 5, 5, "Value") == 0 && n != "google.protobuf.Value" &&
         d->field_count() == 1 && d->field(0)->name() == "value";
}

bool requiresPresence(const validate::FieldRules& r) {
  return r.message().required() || (r.has_duration() && r.duration().required()) ||
         (r.has_timestamp() && r.timestamp().required()) || (r.has_any() && r.any().required());
}

// --- The walk. -------------------------------------------------------------------------------

constexpr int kMaxDepth = 100;

class Validator {
 public:
  explicit Validator(std::vector<std::string>& errors) : errors_(errors) {}

  void walkMessage(const pb::Message& msg, const std::string& path, int depth) {
    if (depth > kMaxDepth) {
      return;
    }
    const pb::Descriptor* desc = msg.GetDescriptor();
    if (desc->full_name() == "google.protobuf.Any") {
      walkAny(msg, path, depth);
      return;
    }
    if (optionCache().disabled(desc)) {
      return;
    }
    const pb::Reflection* refl = msg.GetReflection();
    for (int i = 0; i < desc->oneof_decl_count(); ++i) {
      const pb::OneofDescriptor* oneof = desc->oneof_decl(i);
      if (!oneof->is_synthetic() && optionCache().required(oneof) && !refl->HasOneof(msg, oneof)) {
        std::string names;
        for (int j = 0; j < oneof->field_count(); ++j) {
          names += (j == 0 ? "" : ", ") + oneof->field(j)->name();
        }
        fail(joinPath(path, oneof->name()), "one of " + names + " must be set");
      }
    }
    const std::vector<const validate::FieldRules*>& rules = optionCache().fieldRules(desc);
    for (int i = 0; i < desc->field_count(); ++i) {
      walkField(msg, desc->field(i), rules[i], path, depth);
    }
  }

 private:
  void fail(const std::string& path, std::string_view message) {
    errors_.push_back(path.empty() ? std::string(message) : path + ": " + std::string(message));
  }

  void walkAny(const pb::Message& any, const std::string& path, int depth) {
    if (anyTypeUrl(any).empty()) {
      return;
    }
    std::string error;
    std::unique_ptr<pb::Message> inner = unpackAny(any, error);
    if (inner == nullptr) {
      fail(path, error);
      return;
    }
    walkMessage(*inner, path, depth + 1);
  }

  void walkField(const pb::Message& msg, const pb::FieldDescriptor* f,
                 const validate::FieldRules* rules, const std::string& base, int depth) {
    const pb::Reflection* refl = msg.GetReflection();
    if (f->real_containing_oneof() != nullptr && !refl->HasField(msg, f)) {
      return;
    }
    // Nothing to check (and no path to build) in a field without rules that holds nothing
    // to walk: most fields of a big config.
    if (rules == nullptr) {
      if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) return;
      if (f->is_repeated() ? refl->FieldSize(msg, f) == 0 : !refl->HasField(msg, f)) return;
    }
    const std::string path = joinPath(base, f->name());
    if (f->is_map()) {
      walkMap(msg, f, rules, path, depth);
      return;
    }
    if (f->is_repeated()) {
      walkRepeated(msg, f, rules, path, depth);
      return;
    }
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!refl->HasField(msg, f)) {
        if (rules != nullptr && requiresPresence(*rules)) {
          fail(path, "value is required");
        }
        return;
      }
      if (rules != nullptr) {
        checkValue(msg, f, -1, *rules, path);
      }
      if (rules == nullptr || !rules->message().skip()) {
        walkMessage(refl->GetMessage(msg, f), path, depth + 1);
      }
      return;
    }
    if (f->has_presence() && !refl->HasField(msg, f)) {
      return;
    }
    if (rules != nullptr) {
      checkValue(msg, f, -1, *rules, path);
    }
  }

  void walkRepeated(const pb::Message& msg, const pb::FieldDescriptor* f,
                    const validate::FieldRules* rules, const std::string& path, int depth) {
    const int n = msg.GetReflection()->FieldSize(msg, f);
    const bool is_message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    bool skip_items = false;
    if (rules != nullptr && rules->has_repeated()) {
      const validate::RepeatedRules& r = rules->repeated();
      skip_items = r.items().message().skip();
      if (!(r.ignore_empty() && n == 0)) {
        const uint64_t size = static_cast<uint64_t>(n);
        if (r.has_min_items() && size < r.min_items()) {
          fail(path, "value must contain at least " + std::to_string(r.min_items()) + " item(s)");
        } else if (r.has_max_items() && size > r.max_items()) {
          fail(path,
               "value must contain no more than " + std::to_string(r.max_items()) + " item(s)");
        } else if (r.unique()) {
          std::set<std::string> seen;
          for (int i = 0; i < n; ++i) {
            if (!seen.insert(scalarText(msg, f, i)).second) {
              fail(path + "[" + std::to_string(i) + "]",
                   "repeated value must contain unique items");
              break;
            }
          }
        }
        if (r.has_items()) {
          for (int i = 0; i < n; ++i) {
            checkValue(msg, f, i, r.items(), path + "[" + std::to_string(i) + "]");
          }
        }
      }
    }
    if (is_message && !skip_items) {
      for (int i = 0; i < n; ++i) {
        walkMessage(getMessage(msg, f, i), path + "[" + std::to_string(i) + "]", depth + 1);
      }
    }
  }

  void walkMap(const pb::Message& msg, const pb::FieldDescriptor* f,
               const validate::FieldRules* rules, const std::string& path, int depth) {
    const int n = msg.GetReflection()->FieldSize(msg, f);
    const pb::Descriptor* entry_type = f->message_type();
    const pb::FieldDescriptor* key_field = entry_type->FindFieldByNumber(1);
    const pb::FieldDescriptor* value_field = entry_type->FindFieldByNumber(2);
    const validate::MapRules* r = rules != nullptr && rules->has_map() ? &rules->map() : nullptr;
    if (r != nullptr && !(r->ignore_empty() && n == 0)) {
      const uint64_t size = static_cast<uint64_t>(n);
      if (r->has_min_pairs() && size < r->min_pairs()) {
        fail(path, "value must contain at least " + std::to_string(r->min_pairs()) + " pair(s)");
      } else if (r->has_max_pairs() && size > r->max_pairs()) {
        fail(path,
             "value must contain no more than " + std::to_string(r->max_pairs()) + " pair(s)");
      }
    }
    const bool is_message = value_field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    for (int i = 0; i < n; ++i) {
      const pb::Message& entry = getMessage(msg, f, i);
      const std::string entry_path = path + "[" + mapKeyText(entry) + "]";
      if (r != nullptr && r->has_keys()) {
        checkValue(entry, key_field, -1, r->keys(), entry_path);
      }
      if (r != nullptr && r->has_values()) {
        checkValue(entry, value_field, -1, r->values(), entry_path);
      }
      if (is_message && !(r != nullptr && r->values().message().skip())) {
        walkMessage(entry.GetReflection()->GetMessage(entry, value_field), entry_path, depth + 1);
      }
    }
  }

  // The rules of one value: a singular field (index < 0) or one element of a repeated field.
  void checkValue(const pb::Message& msg, const pb::FieldDescriptor* f, int index,
                  const validate::FieldRules& rules, const std::string& path) {
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      const pb::Message& value = getMessage(msg, f, index);
      const pb::Descriptor* type = value.GetDescriptor();
      if (isWrapper(type)) {
        // Scalar rules on google.protobuf.*Value apply to the wrapped value.
        checkValue(value, type->field(0), -1, rules, path);
        return;
      }
      Error e;
      if (rules.has_duration() && type->full_name() == "google.protobuf.Duration") {
        e = checkDuration(value, rules.duration());
      } else if (rules.has_timestamp() && type->full_name() == "google.protobuf.Timestamp") {
        e = checkTimestamp(value, rules.timestamp());
      } else if (rules.has_any() && type->full_name() == "google.protobuf.Any") {
        const std::string url = anyTypeUrl(value);
        const auto& in = rules.any().in();
        const auto& not_in = rules.any().not_in();
        if (in.size() > 0 && std::find(in.begin(), in.end(), url) == in.end()) {
          e = "type URL must be in list " + formatList(in, quote);
        } else if (std::find(not_in.begin(), not_in.end(), url) != not_in.end()) {
          e = "type URL must not be in list " + formatList(not_in, quote);
        }
      }
      if (e) {
        fail(path, *e);
      }
      return;
    }
    Error e;
    switch (rules.type_case()) {
      case validate::FieldRules::kString:
        if (f->type() == pb::FieldDescriptor::TYPE_STRING) {
          e = checkString(getString(msg, f, index), rules.string());
        }
        break;
      case validate::FieldRules::kBytes:
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
          e = checkBytes(getString(msg, f, index), rules.bytes());
        }
        break;
      case validate::FieldRules::kBool:
        if (rules.bool_().has_const_() &&
            (getNumber<int>(msg, f, index) != 0) != rules.bool_().const_()) {
          e = std::string("value must equal ") + (rules.bool_().const_() ? "true" : "false");
        }
        break;
      case validate::FieldRules::kEnum:
        if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM) {
          e = checkEnum(getNumber<int>(msg, f, index), f->enum_type(), rules.enum_());
        }
        break;
      case validate::FieldRules::kFloat:
        e = checkNumber(getNumber<double>(msg, f, index), rules.float_());
        break;
      case validate::FieldRules::kDouble:
        e = checkNumber(getNumber<double>(msg, f, index), rules.double_());
        break;
      case validate::FieldRules::kInt32:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.int32());
        break;
      case validate::FieldRules::kInt64:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.int64());
        break;
      case validate::FieldRules::kSint32:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.sint32());
        break;
      case validate::FieldRules::kSint64:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.sint64());
        break;
      case validate::FieldRules::kSfixed32:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.sfixed32());
        break;
      case validate::FieldRules::kSfixed64:
        e = checkNumber(getNumber<int64_t>(msg, f, index), rules.sfixed64());
        break;
      case validate::FieldRules::kUint32:
        e = checkNumber(getNumber<uint64_t>(msg, f, index), rules.uint32());
        break;
      case validate::FieldRules::kUint64:
        e = checkNumber(getNumber<uint64_t>(msg, f, index), rules.uint64());
        break;
      case validate::FieldRules::kFixed32:
        e = checkNumber(getNumber<uint64_t>(msg, f, index), rules.fixed32());
        break;
      case validate::FieldRules::kFixed64:
        e = checkNumber(getNumber<uint64_t>(msg, f, index), rules.fixed64());
        break;
      default:
        break;
    }
    if (e) {
      fail(path, *e);
    }
  }

  std::vector<std::string>& errors_;
};

pb::DynamicMessageFactory& dynamicFactory() {
  // Types with generated classes (found in the generated pool) get those.
  static auto* factory = [] {
    auto* f = new pb::DynamicMessageFactory(&envoyApiPool());
    f->SetDelegateToGeneratedFactory(true);
    return f;
  }();
  return *factory;
}

}  // namespace

std::string joinPath(std::string_view base, std::string_view field) {
  if (base.empty()) {
    return std::string(field);
  }
  std::string out;
  out.reserve(base.size() + 1 + field.size());
  out.append(base).append(".").append(field);
  return out;
}

std::string mapKeyText(const pb::Message& entry) {
  const pb::FieldDescriptor* key = entry.GetDescriptor()->FindFieldByNumber(1);
  return key == nullptr ? "" : scalarText(entry, key, -1);
}

std::string anyTypeUrl(const pb::Message& any) {
  const pb::FieldDescriptor* url = any.GetDescriptor()->FindFieldByNumber(1);
  if (url == nullptr || url->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING) {
    return "";
  }
  return any.GetReflection()->GetString(any, url);
}

std::string_view typeNameOfUrl(std::string_view type_url) {
  const size_t slash = type_url.rfind('/');
  return slash == std::string_view::npos ? type_url : type_url.substr(slash + 1);
}

std::unique_ptr<pb::Message> newApiMessage(std::string_view full_name) {
  const pb::Descriptor* type = findApiMessageType(full_name);
  if (type == nullptr) return nullptr;
  return std::unique_ptr<pb::Message>(dynamicFactory().GetPrototype(type)->New());
}

std::unique_ptr<pb::Message> unpackAny(const pb::Message& any, std::string& error,
                                       std::string* wire) {
  const std::string url = anyTypeUrl(any);
  if (url.empty()) {
    error = "the Any has no type URL";
    return nullptr;
  }
  const pb::Descriptor* type = findApiMessageType(typeNameOfUrl(url));
  if (type == nullptr) {
    error = "unknown type " + url;
    return nullptr;
  }
  const pb::FieldDescriptor* value = any.GetDescriptor()->FindFieldByNumber(2);
  std::unique_ptr<pb::Message> out(dynamicFactory().GetPrototype(type)->New());
  std::string scratch;
  const std::string& bytes =
      value ? any.GetReflection()->GetStringReference(any, value, &scratch) : scratch;
  // Partial: the API is proto3 (no required fields); the full form walks the whole dynamic
  // message by reflection for them.
  if (value == nullptr || !out->ParsePartialFromString(bytes)) {
    error = "the value does not parse as " + type->full_name();
    return nullptr;
  }
  if (wire) *wire = bytes;
  return out;
}

bool validateMessage(const pb::Message& msg, std::vector<std::string>& errors,
                     std::string_view root_path) {
  const size_t before = errors.size();
  Validator(errors).walkMessage(msg, std::string(root_path), 0);
  return errors.size() == before;
}

}  // namespace sluice::config
