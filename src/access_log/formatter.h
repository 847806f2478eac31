#pragma once

// Envoy-compatible substitution formats: access log lines (text or JSON) and the values of
// request_headers_to_add / response_headers_to_add. A format is compiled once, at config load,
// into a list of parts (literal text and command operators with their arguments parsed);
// formatting walks the parts and appends to a string: no parsing and no regex per request.
//
// Formatters are immutable after creation and safe to share between workers
// (FormatterConstSharedPtr). Creation never throws: a bad format gives null and an error
// naming the culprit, e.g. "unknown command operator '%FOO%'".

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "http/header_map.h"
#include "http/stream_info.h"

namespace sluice::access_log {

// What one log line (or header value) is made from. Any header map may be null.
struct FormatContext {
  const http::RequestHeaderMap* request_headers{nullptr};
  const http::ResponseHeaderMap* response_headers{nullptr};
  const http::ResponseTrailerMap* response_trailers{nullptr};
  const http::StreamInfo& info;
};

class Formatter {
 public:
  virtual ~Formatter() = default;

  // Appends the formatted text to `out`.
  virtual void format(const FormatContext& ctx, std::string& out) const = 0;

  // True when the format has no command operator: its output is always literal(), and a
  // caller may use that instead of calling format() per request.
  virtual bool isLiteral() const { return false; }
  virtual std::string_view literal() const { return {}; }
};
using FormatterPtr = std::unique_ptr<Formatter>;
using FormatterConstSharedPtr = std::shared_ptr<const Formatter>;

// A text access log format with Envoy's command operators (%START_TIME%, %REQ(X?Y):Z%,
// %RESPONSE_CODE%, ...; "%%" is a literal '%'). Values that are not known print as "-".
// Nothing is appended for you: end the format with "\n" for one line per entry.
FormatterPtr createTextFormatter(std::string_view format, std::string* error);

// Envoy's json_format: an object whose values are format strings, nested objects, or plain
// numbers/booleans/null. Each entry gives one compact JSON object and a "\n". A value that is
// exactly one command operator keeps its type: numbers (%RESPONSE_CODE%, %BYTES_SENT%,
// %DURATION%, ...) are JSON numbers, unknown values are null. A value mixing text and
// operators is a string in which unknown values print as "-". Keys come out sorted.
FormatterPtr createJsonFormatter(const nlohmann::json& json_format, std::string* error);

// The value of a header to add (request_headers_to_add, response_headers_to_add): only the
// operators Envoy allows there (%DOWNSTREAM_REMOTE_ADDRESS%,
// %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_ADDRESS%,
// %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_PORT%, %UPSTREAM_REMOTE_ADDRESS%,
// %UPSTREAM_HOST%, %START_TIME%, %PROTOCOL%, %REQ(...)%, %HOSTNAME%, "%%"); unknown values
// give "" instead of "-". A value without operators isLiteral().
FormatterPtr createHeaderValueFormatter(std::string_view value, std::string* error);

// Envoy's default access log format, with its trailing "\n".
std::string_view defaultFormat();

}  // namespace sluice::access_log
