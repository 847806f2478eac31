#include "access_log/formatter.h"

#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/codec.h"

namespace sluice::access_log {
namespace {

constexpr size_t kNoMaxLength = std::numeric_limits<size_t>::max();

// ---------------------------------------------------------------------------------------------
// START_TIME formats, split at config time into segments so that a request costs at most one
// gmtime_r and one small strftime per conversion.

struct TimeSegment {
  enum class Kind : uint8_t {
    Text,            // literal text (also %z/%Z/%Ez/%%, fixed because we format in UTC)
    Strftime,        // one strftime conversion, e.g. "%Y" or "%Ec"
    Epoch,           // %s: seconds since the epoch
    Fraction,        // %f, %1f..%9f: `digits` digits of the fractional second
    SecondsFraction  // %E<n>S (digits = n) and %E*S (digits = -1): absl's seconds with a fraction
  };
  Kind kind;
  std::string text;
  int digits{0};
};

struct TimeFormat {
  bool iso_default{true};  // 2026-11-25T13:26:04.123Z
  bool needs_tm{false};    // some segment needs the broken-down time
  std::vector<TimeSegment> segments;
};

void addTimeText(std::vector<TimeSegment>& segments, std::string_view text) {
  if (!segments.empty() && segments.back().kind == TimeSegment::Kind::Text) {
    segments.back().text.append(text);
  } else {
    segments.push_back({TimeSegment::Kind::Text, std::string(text), 0});
  }
}

TimeFormat parseTimeFormat(std::string_view fmt) {
  TimeFormat tf;
  if (fmt.empty()) return tf;
  tf.iso_default = false;
  auto& segs = tf.segments;
  size_t i = 0;
  while (i < fmt.size()) {
    const char c = fmt[i];
    if (c != '%' || i + 1 == fmt.size()) {
      addTimeText(segs, fmt.substr(i, 1));
      ++i;
      continue;
    }
    const char next = fmt[i + 1];
    if (next == '%') {
      addTimeText(segs, "%");
      i += 2;
    } else if (next == 's') {
      segs.push_back({TimeSegment::Kind::Epoch, {}, 0});
      i += 2;
    } else if (next == 'f') {
      segs.push_back({TimeSegment::Kind::Fraction, {}, 9});
      i += 2;
    } else if (next >= '1' && next <= '9' && i + 2 < fmt.size() && fmt[i + 2] == 'f') {
      segs.push_back({TimeSegment::Kind::Fraction, {}, next - '0'});
      i += 3;
    } else if (next == 'z') {
      addTimeText(segs, "+0000");
      i += 2;
    } else if (next == 'Z') {
      addTimeText(segs, "UTC");
      i += 2;
    } else if (next == 'E' && i + 2 < fmt.size() && fmt[i + 2] == 'z') {
      addTimeText(segs, "+00:00");
      i += 3;
    } else if (next == 'E' && i + 3 < fmt.size() && fmt[i + 2] == '*' && fmt[i + 3] == 'S') {
      segs.push_back({TimeSegment::Kind::SecondsFraction, {}, -1});
      tf.needs_tm = true;
      i += 4;
    } else if (next == 'E' && i + 3 < fmt.size() && fmt[i + 2] >= '0' && fmt[i + 2] <= '9' &&
               fmt[i + 3] == 'S') {
      segs.push_back({TimeSegment::Kind::SecondsFraction, {}, fmt[i + 2] - '0'});
      tf.needs_tm = true;
      i += 4;
    } else if ((next == 'E' || next == 'O') && i + 2 < fmt.size()) {
      segs.push_back({TimeSegment::Kind::Strftime, std::string(fmt.substr(i, 3)), 0});
      tf.needs_tm = true;
      i += 3;
    } else {
      segs.push_back({TimeSegment::Kind::Strftime, std::string(fmt.substr(i, 2)), 0});
      tf.needs_tm = true;
      i += 2;
    }
  }
  return tf;
}

void appendInt(int64_t v, std::string& out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out.append(buf, end);
}

// `v` zero-padded to `width` digits (v >= 0).
void appendPadded(int64_t v, int width, std::string& out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  for (int n = static_cast<int>(end - buf); n < width; ++n) out.push_back('0');
  out.append(buf, end);
}

// The first `digits` digits of a nanosecond fraction.
void appendFraction(int64_t nanos, int digits, std::string& out) {
  int64_t div = 1;
  for (int i = digits; i < 9; ++i) div *= 10;
  appendPadded(nanos / div, digits, out);
}

void formatTime(const TimeFormat& tf, event::SystemTime t, std::string& out) {
  using namespace std::chrono;
  const auto ns_since = duration_cast<nanoseconds>(t.time_since_epoch());
  const auto secs = floor<seconds>(ns_since);
  const int64_t nanos = (ns_since - secs).count();

  if (tf.iso_default) {
    const auto day = floor<days>(secs);
    const year_month_day ymd{sys_days{day}};
    const hh_mm_ss<seconds> hms{secs - day};
    appendPadded(static_cast<int>(ymd.year()), 4, out);
    out.push_back('-');
    appendPadded(static_cast<unsigned>(ymd.month()), 2, out);
    out.push_back('-');
    appendPadded(static_cast<unsigned>(ymd.day()), 2, out);
    out.push_back('T');
    appendPadded(hms.hours().count(), 2, out);
    out.push_back(':');
    appendPadded(hms.minutes().count(), 2, out);
    out.push_back(':');
    appendPadded(hms.seconds().count(), 2, out);
    out.push_back('.');
    appendFraction(nanos, 3, out);
    out.push_back('Z');
    return;
  }

  std::tm tm{};
  if (tf.needs_tm) {
    const std::time_t tt = static_cast<std::time_t>(secs.count());
    gmtime_r(&tt, &tm);
  }
  for (const TimeSegment& seg : tf.segments) {
    switch (seg.kind) {
      case TimeSegment::Kind::Text:
        out.append(seg.text);
        break;
      case TimeSegment::Kind::Strftime: {
        char buf[128];
        const size_t n = std::strftime(buf, sizeof(buf), seg.text.c_str(), &tm);
        out.append(buf, n);
        break;
      }
      case TimeSegment::Kind::Epoch:
        appendInt(secs.count(), out);
        break;
      case TimeSegment::Kind::Fraction:
        appendFraction(nanos, seg.digits, out);
        break;
      case TimeSegment::Kind::SecondsFraction:
        appendPadded(tm.tm_sec, 2, out);
        if (seg.digits > 0) {
          out.push_back('.');
          appendFraction(nanos, seg.digits, out);
        } else if (seg.digits < 0 && nanos != 0) {
          out.push_back('.');
          const size_t mark = out.size();
          appendFraction(nanos, 9, out);
          while (out.size() > mark && out.back() == '0') out.pop_back();
        }
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Command operators.

enum class Op : uint8_t {
  Literal,
  Hostname,
  StartTime,
  RequestHeader,
  ResponseHeader,
  ResponseTrailer,
  Protocol,
  ResponseCode,
  ResponseCodeDetails,
  ResponseFlags,
  BytesReceived,
  BytesSent,
  Duration,
  RequestDuration,
  ResponseDuration,
  ResponseTxDuration,
  UpstreamHost,
  UpstreamCluster,
  UpstreamLocalAddress,
  UpstreamTransportFailureReason,
  DownstreamRemoteAddress,
  DownstreamRemoteAddressWithoutPort,
  DownstreamLocalAddress,
  DownstreamLocalAddressWithoutPort,
  DownstreamLocalPort,
  DownstreamDirectRemoteAddress,
  DownstreamDirectRemoteAddressWithoutPort,
  ConnectionId,
  RouteName,
  UpstreamRequestAttemptCount,
  DownstreamTlsVersion,
  DownstreamPeerUriSan,
  DownstreamLocalUriSan,
  DownstreamPeerSubject,
};

enum class Arg : uint8_t { None, Header, Time };

struct OperatorSpec {
  std::string_view name;
  Op op;
  Arg arg;
  bool number;            // its value is a number (typed in JSON)
  bool in_header_values;  // allowed in request_headers_to_add / response_headers_to_add
};

constexpr OperatorSpec kOperators[] = {
    {"START_TIME", Op::StartTime, Arg::Time, false, true},
    {"REQ", Op::RequestHeader, Arg::Header, false, true},
    {"RESP", Op::ResponseHeader, Arg::Header, false, false},
    {"TRAILER", Op::ResponseTrailer, Arg::Header, false, false},
    {"PROTOCOL", Op::Protocol, Arg::None, false, true},
    {"RESPONSE_CODE", Op::ResponseCode, Arg::None, true, false},
    {"RESPONSE_CODE_DETAILS", Op::ResponseCodeDetails, Arg::None, false, false},
    {"RESPONSE_FLAGS", Op::ResponseFlags, Arg::None, false, false},
    {"BYTES_RECEIVED", Op::BytesReceived, Arg::None, true, false},
    {"BYTES_SENT", Op::BytesSent, Arg::None, true, false},
    {"DURATION", Op::Duration, Arg::None, true, false},
    {"REQUEST_DURATION", Op::RequestDuration, Arg::None, true, false},
    {"RESPONSE_DURATION", Op::ResponseDuration, Arg::None, true, false},
    {"RESPONSE_TX_DURATION", Op::ResponseTxDuration, Arg::None, true, false},
    {"UPSTREAM_HOST", Op::UpstreamHost, Arg::None, false, true},
    {"UPSTREAM_REMOTE_ADDRESS", Op::UpstreamHost, Arg::None, false, true},
    {"UPSTREAM_CLUSTER", Op::UpstreamCluster, Arg::None, false, false},
    {"UPSTREAM_LOCAL_ADDRESS", Op::UpstreamLocalAddress, Arg::None, false, false},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", Op::UpstreamTransportFailureReason, Arg::None, false,
     false},
    {"DOWNSTREAM_REMOTE_ADDRESS", Op::DownstreamRemoteAddress, Arg::None, false, true},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Op::DownstreamRemoteAddressWithoutPort, Arg::None,
     false, true},
    {"DOWNSTREAM_LOCAL_ADDRESS", Op::DownstreamLocalAddress, Arg::None, false, true},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", Op::DownstreamLocalAddressWithoutPort, Arg::None,
     false, true},
    {"DOWNSTREAM_LOCAL_PORT", Op::DownstreamLocalPort, Arg::None, true, true},
    {"DOWNSTREAM_TLS_VERSION", Op::DownstreamTlsVersion, Arg::None, false, true},
    {"DOWNSTREAM_PEER_URI_SAN", Op::DownstreamPeerUriSan, Arg::None, false, true},
    {"DOWNSTREAM_LOCAL_URI_SAN", Op::DownstreamLocalUriSan, Arg::None, false, true},
    {"DOWNSTREAM_PEER_SUBJECT", Op::DownstreamPeerSubject, Arg::None, false, true},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS", Op::DownstreamDirectRemoteAddress, Arg::None, false, true},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", Op::DownstreamDirectRemoteAddressWithoutPort,
     Arg::None, false, true},
    {"CONNECTION_ID", Op::ConnectionId, Arg::None, true, false},
    {"ROUTE_NAME", Op::RouteName, Arg::None, false, false},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", Op::UpstreamRequestAttemptCount, Arg::None, true, false},
    {"HOSTNAME", Op::Hostname, Arg::None, false, true},
};

const OperatorSpec* findOperator(std::string_view name) {
  for (const OperatorSpec& spec : kOperators) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

// One piece of a compiled format: literal text, or an operator with its parsed arguments.
struct Part {
  Op op{Op::Literal};
  bool number{false};
  std::string text;      // Literal: the text; Hostname: the host name
  std::string header;    // header operators: the lower-case name
  std::string fallback;  // header operators: the lower-case fallback name, or empty
  size_t max_length{kNoMaxLength};
  TimeFormat time;
};

std::string localHostname() {
  char buf[256];
  if (::gethostname(buf, sizeof(buf)) != 0) return {};
  buf[sizeof(buf) - 1] = '\0';
  return buf;
}

void appendAddress(const network::AddressConstSharedPtr& a, std::string& out) {
  if (a) out.append(a->asString());
}

void appendAddressWithoutPort(const network::AddressConstSharedPtr& a, std::string& out) {
  if (a) out.append(a->isIp() ? a->ip() : a->asString());
}

bool appendMillis(std::optional<std::chrono::nanoseconds> d, std::string& out) {
  if (!d) return false;
  appendInt(std::chrono::duration_cast<std::chrono::milliseconds>(*d).count(), out);
  return true;
}

// URI SANs as Envoy prints them: comma-separated.
void appendJoined(const std::vector<std::string>& values, std::string& out) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(values[i]);
  }
}

void appendHeader(const http::HeaderMap* map, const Part& p, std::string& out) {
  if (map == nullptr) return;
  const std::string_view* v = map->get(p.header);
  if (v == nullptr && !p.fallback.empty()) v = map->get(p.fallback);
  if (v != nullptr) out.append(*v);
}

// Appends the value of operator `p` to `out`. False (with nothing appended) when the value is
// unknown or empty: the caller prints its placeholder ("-", null or "").
bool appendValue(const Part& p, const FormatContext& ctx, std::string& out) {
  const http::StreamInfo& info = ctx.info;
  const size_t mark = out.size();
  switch (p.op) {
    case Op::Literal:
    case Op::Hostname:
      out.append(p.text);
      break;
    case Op::StartTime:
      formatTime(p.time, info.start_time, out);
      break;
    case Op::RequestHeader:
      appendHeader(ctx.request_headers, p, out);
      break;
    case Op::ResponseHeader:
      appendHeader(ctx.response_headers, p, out);
      break;
    case Op::ResponseTrailer:
      appendHeader(ctx.response_trailers, p, out);
      break;
    case Op::Protocol:
      if (info.protocol) out.append(http::protocolString(*info.protocol));
      break;
    case Op::ResponseCode:
      appendInt(info.response_code.value_or(0), out);
      return true;
    case Op::ResponseCodeDetails:
      out.append(info.response_code_details);
      break;
    case Op::ResponseFlags:
      // "-" for none, in JSON too (Envoy's flag string is "-" then, not an absent value).
      out.append(info.response_flags != 0 ? http::responseFlagsString(info.response_flags) : "-");
      return true;
    case Op::BytesReceived:
      appendInt(static_cast<int64_t>(info.bytes_received), out);
      return true;
    case Op::BytesSent:
      appendInt(static_cast<int64_t>(info.bytes_sent), out);
      return true;
    case Op::Duration:
      return appendMillis(info.duration(), out);
    case Op::RequestDuration:
      return appendMillis(info.last_downstream_rx_byte, out);
    case Op::ResponseDuration:
      return appendMillis(info.first_upstream_rx_byte, out);
    case Op::ResponseTxDuration:
      if (!info.last_downstream_tx_byte || !info.first_upstream_rx_byte) return false;
      return appendMillis(*info.last_downstream_tx_byte - *info.first_upstream_rx_byte, out);
    case Op::UpstreamHost:
      appendAddress(info.upstream_host, out);
      break;
    case Op::UpstreamCluster:
      out.append(info.upstream_cluster);
      break;
    case Op::UpstreamLocalAddress:
      appendAddress(info.upstream_local_address, out);
      break;
    case Op::UpstreamTransportFailureReason:
      out.append(info.upstream_transport_failure_reason);
      break;
    case Op::DownstreamRemoteAddress:
      appendAddress(info.downstream_remote_address, out);
      break;
    case Op::DownstreamRemoteAddressWithoutPort:
      appendAddressWithoutPort(info.downstream_remote_address, out);
      break;
    case Op::DownstreamLocalAddress:
      appendAddress(info.downstream_local_address, out);
      break;
    case Op::DownstreamLocalAddressWithoutPort:
      appendAddressWithoutPort(info.downstream_local_address, out);
      break;
    case Op::DownstreamLocalPort:
      if (!info.downstream_local_address || !info.downstream_local_address->isIp()) return false;
      appendInt(info.downstream_local_address->port(), out);
      return true;
    case Op::DownstreamDirectRemoteAddress:
      appendAddress(info.downstream_direct_remote_address, out);
      break;
    case Op::DownstreamTlsVersion:
      if (info.downstream_ssl) out.append(info.downstream_ssl->tls_version);
      break;
    case Op::DownstreamPeerUriSan:
      if (info.downstream_ssl) appendJoined(info.downstream_ssl->peer_uri_sans, out);
      break;
    case Op::DownstreamLocalUriSan:
      if (info.downstream_ssl) appendJoined(info.downstream_ssl->local_uri_sans, out);
      break;
    case Op::DownstreamPeerSubject:
      if (info.downstream_ssl) out.append(info.downstream_ssl->peer_subject);
      break;
    case Op::DownstreamDirectRemoteAddressWithoutPort:
      appendAddressWithoutPort(info.downstream_direct_remote_address, out);
      break;
    case Op::ConnectionId:
      appendInt(static_cast<int64_t>(info.connection_id), out);
      return true;
    case Op::RouteName:
      out.append(info.route_name);
      break;
    case Op::UpstreamRequestAttemptCount:
      appendInt(info.attempt_count, out);
      return true;
  }
  if (out.size() - mark > p.max_length) out.resize(mark + p.max_length);
  return out.size() != mark;
}

// ---------------------------------------------------------------------------------------------
// Parsing.

bool isNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

std::string lower(std::string_view s) {
  std::string out(s);
  http::toLowerInPlace(out);
  return out;
}

bool fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

// Fills the operator part `p` from its name, argument and max length. `token` is the whole
// operator as written, for messages.
bool makeOperator(std::string_view token, std::string_view name,
                  std::optional<std::string_view> arg, size_t max_length, bool header_value,
                  Part& p, std::string* error) {
  const OperatorSpec* spec = findOperator(name);
  if (spec == nullptr) {
    return fail(error, "unknown command operator '" + std::string(token) + "'");
  }
  if (header_value && !spec->in_header_values) {
    return fail(error,
                "command operator '" + std::string(token) + "' is not supported in a header value");
  }
  p.op = spec->op;
  p.number = spec->number;
  p.max_length = max_length;
  switch (spec->arg) {
    case Arg::None:
      if (arg) {
        return fail(error,
                    "'" + std::string(token) + "': " + std::string(name) + " takes no argument");
      }
      break;
    case Arg::Time:
      p.time = parseTimeFormat(arg.value_or(std::string_view()));
      break;
    case Arg::Header: {
      if (!arg || arg->empty()) {
        return fail(error, "'" + std::string(token) + "': " + std::string(name) +
                               " needs a header name, as in %" + std::string(name) +
                               "(user-agent)%");
      }
      const size_t q = arg->find('?');
      const std::string_view primary = arg->substr(0, q);
      const std::string_view fallback =
          q == std::string_view::npos ? std::string_view() : arg->substr(q + 1);
      if (q != std::string_view::npos && fallback.find('?') != std::string_view::npos) {
        return fail(error, "'" + std::string(token) + "': more than one fallback header");
      }
      if (primary.empty() || (q != std::string_view::npos && fallback.empty())) {
        return fail(error, "'" + std::string(token) + "': empty header name");
      }
      p.header = lower(primary);
      p.fallback = lower(fallback);
      break;
    }
  }
  if (spec->op == Op::Hostname) p.text = localHostname();
  return true;
}

// Compiles `format` into `parts` (adjacent literals merged). "%%" is a literal '%'.
bool parseFormat(std::string_view format, bool header_value, std::vector<Part>& parts,
                 std::string* error) {
  std::string literal;
  auto flushLiteral = [&] {
    if (literal.empty()) return;
    Part p;
    p.text = std::move(literal);
    parts.push_back(std::move(p));
    literal.clear();
  };

  const size_t n = format.size();
  size_t i = 0;
  while (i < n) {
    const size_t pct = format.find('%', i);
    if (pct == std::string_view::npos) {
      literal.append(format.substr(i));
      break;
    }
    literal.append(format.substr(i, pct - i));
    if (pct + 1 < n && format[pct + 1] == '%') {
      literal.push_back('%');
      i = pct + 2;
      continue;
    }
    size_t j = pct + 1;
    while (j < n && isNameChar(format[j])) ++j;
    const std::string_view name = format.substr(pct + 1, j - pct - 1);
    if (name.empty()) {
      return fail(error, "'%' at position " + std::to_string(pct) +
                             " does not start a command operator (write '%%' for a literal '%')");
    }
    std::optional<std::string_view> arg;
    if (j < n && format[j] == '(') {
      const size_t close = format.find(')', j + 1);
      if (close == std::string_view::npos) {
        return fail(error, "'" + std::string(format.substr(pct)) + "' at position " +
                               std::to_string(pct) + ": missing closing ')'");
      }
      arg = format.substr(j + 1, close - j - 1);
      j = close + 1;
    }
    size_t max_length = kNoMaxLength;
    if (j < n && format[j] == ':') {
      size_t k = j + 1;
      while (k < n && format[k] >= '0' && format[k] <= '9') ++k;
      const std::string_view digits = format.substr(j + 1, k - j - 1);
      size_t value = 0;
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size()) {
        return fail(error, "'" + std::string(format.substr(pct, k - pct + 1)) + "' at position " +
                               std::to_string(pct) + ": expected a max length after ':'");
      }
      max_length = value;
      j = k;
    }
    if (j >= n || format[j] != '%') {
      return fail(error, "'" + std::string(format.substr(pct, j - pct)) + "' at position " +
                             std::to_string(pct) + ": missing closing '%'");
    }
    const std::string_view token = format.substr(pct, j + 1 - pct);
    Part p;
    if (!makeOperator(token, name, arg, max_length, header_value, p, error)) return false;
    flushLiteral();
    parts.push_back(std::move(p));
    i = j + 1;
  }
  flushLiteral();
  return true;
}

// ---------------------------------------------------------------------------------------------
// Text formatter (access logs and header values).

class TextFormatter : public Formatter {
 public:
  TextFormatter(std::vector<Part> parts, std::string_view missing)
      : parts_(std::move(parts)), missing_(missing) {}

  void format(const FormatContext& ctx, std::string& out) const override {
    for (const Part& p : parts_) {
      if (p.op == Op::Literal) {
        out.append(p.text);
      } else if (!appendValue(p, ctx, out)) {
        out.append(missing_);
      }
    }
  }

  bool isLiteral() const override {
    return parts_.empty() || (parts_.size() == 1 && parts_[0].op == Op::Literal);
  }
  std::string_view literal() const override {
    return isLiteral() && !parts_.empty() ? std::string_view(parts_[0].text) : std::string_view();
  }

 private:
  const std::vector<Part> parts_;
  const std::string missing_;
};

// ---------------------------------------------------------------------------------------------
// JSON formatter.

bool needsJsonEscape(std::string_view s) {
  for (const char c : s) {
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

// Escapes for a JSON string body. Bytes >= 0x80 pass through as they are.
void appendJsonEscaped(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : s) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default: {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20) {
          out.append("\\u00");
          out.push_back(kHex[u >> 4]);
          out.push_back(kHex[u & 0xf]);
        } else {
          out.push_back(c);
        }
      }
    }
  }
}

// Escapes what appendValue() wrote to `out` from `mark` on, in place.
void escapeTail(std::string& out, size_t mark) {
  const std::string_view tail(out.data() + mark, out.size() - mark);
  if (!needsJsonEscape(tail)) return;
  const std::string raw(tail);
  out.resize(mark);
  appendJsonEscaped(raw, out);
}

struct JsonPiece {
  enum class Kind : uint8_t {
    Raw,     // JSON text, as is
    Typed,   // a value that is one operator: number, string, or null
    String,  // a string of literals (already escaped) and operators ("-" when unknown)
  };
  Kind kind;
  std::string raw;
  std::vector<Part> parts;  // Typed: one; String: several
};

class JsonFormatter : public Formatter {
 public:
  explicit JsonFormatter(std::vector<JsonPiece> pieces) : pieces_(std::move(pieces)) {}

  void format(const FormatContext& ctx, std::string& out) const override {
    for (const JsonPiece& piece : pieces_) {
      switch (piece.kind) {
        case JsonPiece::Kind::Raw:
          out.append(piece.raw);
          break;
        case JsonPiece::Kind::Typed: {
          const Part& p = piece.parts[0];
          if (p.number) {
            if (!appendValue(p, ctx, out)) out.append("null");
            break;
          }
          out.push_back('"');
          const size_t mark = out.size();
          if (!appendValue(p, ctx, out)) {
            out.resize(mark - 1);  // drop the opening quote
            out.append("null");
            break;
          }
          escapeTail(out, mark);
          out.push_back('"');
          break;
        }
        case JsonPiece::Kind::String:
          out.push_back('"');
          for (const Part& p : piece.parts) {
            if (p.op == Op::Literal) {
              out.append(p.text);
              continue;
            }
            const size_t mark = out.size();
            if (appendValue(p, ctx, out)) {
              escapeTail(out, mark);
            } else {
              out.push_back('-');
            }
          }
          out.push_back('"');
          break;
      }
    }
    out.push_back('\n');
  }

 private:
  const std::vector<JsonPiece> pieces_;
};

class JsonCompiler {
 public:
  bool compile(const nlohmann::json& object, const std::string& path, std::string* error) {
    raw_.push_back('{');
    bool first = true;
    for (auto it = object.begin(); it != object.end(); ++it) {
      if (!first) raw_.push_back(',');
      first = false;
      raw_.push_back('"');
      appendJsonEscaped(it.key(), raw_);
      raw_.append("\":");
      const std::string key_path = path + "." + it.key();
      const nlohmann::json& v = it.value();
      if (v.is_object()) {
        if (!compile(v, key_path, error)) return false;
      } else if (v.is_string()) {
        if (!compileString(v.get_ref<const std::string&>(), key_path, error)) return false;
      } else if (v.is_number() || v.is_boolean() || v.is_null()) {
        raw_.append(v.dump());
      } else {
        return fail(error, key_path + ": only strings, numbers, booleans, null and objects are " +
                               "supported in json_format");
      }
    }
    raw_.push_back('}');
    return true;
  }

  std::vector<JsonPiece> finish() {
    flushRaw();
    return std::move(pieces_);
  }

 private:
  bool compileString(const std::string& format, const std::string& key_path, std::string* error) {
    std::vector<Part> parts;
    std::string message;
    if (!parseFormat(format, false, parts, &message)) {
      return fail(error, key_path + ": " + message);
    }
    if (parts.empty() || (parts.size() == 1 && parts[0].op == Op::Literal)) {
      raw_.push_back('"');
      if (!parts.empty()) appendJsonEscaped(parts[0].text, raw_);
      raw_.push_back('"');
      return true;
    }
    flushRaw();
    if (parts.size() == 1) {
      pieces_.push_back({JsonPiece::Kind::Typed, {}, std::move(parts)});
      return true;
    }
    for (Part& p : parts) {
      if (p.op != Op::Literal) continue;
      std::string escaped;
      appendJsonEscaped(p.text, escaped);
      p.text = std::move(escaped);
    }
    pieces_.push_back({JsonPiece::Kind::String, {}, std::move(parts)});
    return true;
  }

  void flushRaw() {
    if (raw_.empty()) return;
    pieces_.push_back({JsonPiece::Kind::Raw, std::move(raw_), {}});
    raw_.clear();
  }

  std::string raw_;
  std::vector<JsonPiece> pieces_;
};

}  // namespace

FormatterPtr createTextFormatter(std::string_view format, std::string* error) {
  std::vector<Part> parts;
  if (!parseFormat(format, false, parts, error)) return nullptr;
  return std::make_unique<TextFormatter>(std::move(parts), "-");
}

FormatterPtr createJsonFormatter(const nlohmann::json& json_format, std::string* error) {
  if (!json_format.is_object()) {
    fail(error, "json_format must be an object");
    return nullptr;
  }
  JsonCompiler compiler;
  if (!compiler.compile(json_format, "json_format", error)) return nullptr;
  return std::make_unique<JsonFormatter>(compiler.finish());
}

FormatterPtr createHeaderValueFormatter(std::string_view value, std::string* error) {
  std::vector<Part> parts;
  if (!parseFormat(value, true, parts, error)) return nullptr;
  return std::make_unique<TextFormatter>(std::move(parts), "");
}

std::string_view defaultFormat() {
  return "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
         "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
         "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
         "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";
}

}  // namespace sluice::access_log
