#include "access_log/formatter.h"

#include <unistd.h>

#include <chrono>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "network/address.h"

namespace sluice::access_log {
namespace {

using namespace std::chrono_literals;

// 2026-11-25T13:26:04.123456789Z
constexpr int64_t kStartSeconds = 1795613164;
constexpr int64_t kStartNanos = 123456789;

class FixedTime : public event::TimeSource {
 public:
  event::SystemTime systemTime() override {
    return event::SystemTime(std::chrono::duration_cast<event::SystemTime::duration>(
        std::chrono::seconds(kStartSeconds) + std::chrono::nanoseconds(kStartNanos)));
  }
  event::MonotonicTime monotonicTime() override { return event::MonotonicTime(); }
};

network::AddressConstSharedPtr addr(std::string_view text) {
  std::string error;
  auto a = network::parseAddress(text, &error);
  EXPECT_NE(a, nullptr) << error;
  return a;
}

std::string hostname() {
  char buf[256] = {};
  EXPECT_EQ(::gethostname(buf, sizeof(buf) - 1), 0);
  return buf;
}

class FormatterTest : public ::testing::Test {
 protected:
  FormatterTest() : info_(time_), empty_info_(time_) {
    request_ = {
        {":method", "GET"},        {":path", "/api/v1?x=1"},   {":authority", "example.com"},
        {":scheme", "http"},       {"user-agent", "curl/8.1"}, {"x-forwarded-for", "203.0.113.7"},
        {"x-request-id", "a1b2c3"}};
    response_ = {{":status", "200"}, {"x-envoy-upstream-service-time", "12"}};
    trailers_ = {{"grpc-status", "0"}};

    info_.last_downstream_rx_byte = 3ms + 700us;
    info_.first_upstream_tx_byte = 4ms;
    info_.last_upstream_tx_byte = 5ms;
    info_.first_upstream_rx_byte = 15ms + 200us;
    info_.last_upstream_rx_byte = 40ms;
    info_.first_downstream_tx_byte = 16ms;
    info_.last_downstream_tx_byte = 41ms + 999us;
    info_.request_complete = 42ms + 500us;
    info_.response_code = 200;
    info_.response_code_details = "via_upstream";
    info_.protocol = http::Protocol::Http11;
    info_.bytes_received = 17;
    info_.bytes_sent = 1234;
    info_.route_name = "default-route";
    info_.upstream_cluster = "backend";
    info_.upstream_host = addr("10.1.2.3:8080");
    info_.upstream_local_address = addr("10.0.0.5:40000");
    info_.upstream_transport_failure_reason = "";
    info_.downstream_local_address = addr("[2001:db8::1]:443");
    info_.downstream_remote_address = addr("198.51.100.4:51000");
    info_.downstream_direct_remote_address = addr("192.0.2.9:60000");
    info_.connection_id = 77;
    info_.attempt_count = 2;
  }

  FormatContext ctx() const { return {&request_, &response_, &trailers_, info_}; }

  std::string text(std::string_view format) const { return text(format, ctx()); }
  std::string text(std::string_view format, const FormatContext& c) const {
    std::string error;
    FormatterPtr f = createTextFormatter(format, &error);
    EXPECT_NE(f, nullptr) << format << ": " << error;
    if (!f) return "<error>";
    std::string out;
    f->format(c, out);
    return out;
  }
  std::string textEmpty(std::string_view format) const {
    return text(format, FormatContext{nullptr, nullptr, nullptr, empty_info_});
  }
  std::string textError(std::string_view format) const {
    std::string error;
    EXPECT_EQ(createTextFormatter(format, &error), nullptr) << format;
    return error;
  }
  std::string header(std::string_view value, const FormatContext& c) const {
    std::string error;
    FormatterPtr f = createHeaderValueFormatter(value, &error);
    EXPECT_NE(f, nullptr) << value << ": " << error;
    if (!f) return "<error>";
    std::string out;
    f->format(c, out);
    return out;
  }

  FixedTime time_;
  http::StreamInfo info_;
  http::StreamInfo empty_info_;
  http::RequestHeaderMap request_;
  http::ResponseHeaderMap response_;
  http::ResponseTrailerMap trailers_;
};

TEST_F(FormatterTest, EveryOperatorFilled) {
  EXPECT_EQ(text("%START_TIME%"), "2026-11-25T13:26:04.123Z");
  EXPECT_EQ(text("%REQ(:METHOD)%"), "GET");
  EXPECT_EQ(text("%REQ(User-Agent)%"), "curl/8.1");
  EXPECT_EQ(text("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"), "12");
  EXPECT_EQ(text("%TRAILER(GRPC-STATUS)%"), "0");
  EXPECT_EQ(text("%PROTOCOL%"), "HTTP/1.1");
  EXPECT_EQ(text("%RESPONSE_CODE%"), "200");
  EXPECT_EQ(text("%RESPONSE_CODE_DETAILS%"), "via_upstream");
  EXPECT_EQ(text("%RESPONSE_FLAGS%"), "-");
  EXPECT_EQ(text("%BYTES_RECEIVED%"), "17");
  EXPECT_EQ(text("%BYTES_SENT%"), "1234");
  EXPECT_EQ(text("%DURATION%"), "42");
  EXPECT_EQ(text("%REQUEST_DURATION%"), "3");
  EXPECT_EQ(text("%RESPONSE_DURATION%"), "15");
  EXPECT_EQ(text("%RESPONSE_TX_DURATION%"), "26");  // 41.999 - 15.2
  EXPECT_EQ(text("%UPSTREAM_HOST%"), "10.1.2.3:8080");
  EXPECT_EQ(text("%UPSTREAM_REMOTE_ADDRESS%"), "10.1.2.3:8080");
  EXPECT_EQ(text("%UPSTREAM_CLUSTER%"), "backend");
  EXPECT_EQ(text("%UPSTREAM_LOCAL_ADDRESS%"), "10.0.0.5:40000");
  EXPECT_EQ(text("%UPSTREAM_TRANSPORT_FAILURE_REASON%"), "-");
  EXPECT_EQ(text("%DOWNSTREAM_REMOTE_ADDRESS%"), "198.51.100.4:51000");
  EXPECT_EQ(text("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"), "198.51.100.4");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_ADDRESS%"), "[2001:db8::1]:443");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"), "2001:db8::1");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_PORT%"), "443");
  EXPECT_EQ(text("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%"), "192.0.2.9:60000");
  EXPECT_EQ(text("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"), "192.0.2.9");
  EXPECT_EQ(text("%CONNECTION_ID%"), "77");
  EXPECT_EQ(text("%ROUTE_NAME%"), "default-route");
  EXPECT_EQ(text("%UPSTREAM_REQUEST_ATTEMPT_COUNT%"), "2");
  EXPECT_EQ(text("%HOSTNAME%"), hostname());
  EXPECT_EQ(text("100%% of %PROTOCOL%%%"), "100% of HTTP/1.1%");

  info_.upstream_transport_failure_reason = "TLS_error:_handshake";
  EXPECT_EQ(text("%UPSTREAM_TRANSPORT_FAILURE_REASON%"), "TLS_error:_handshake");
  info_.setResponseFlag(http::UpstreamRetryLimitExceeded);
  info_.setResponseFlag(http::NoHealthyUpstream);
  EXPECT_EQ(text("%RESPONSE_FLAGS%"), "UH,URX");
  info_.protocol = http::Protocol::Http2;
  EXPECT_EQ(text("%PROTOCOL%"), "HTTP/2");
}

TEST_F(FormatterTest, MissingValuesPrintDash) {
  const char* kDash[] = {"%REQ(:METHOD)%",
                         "%RESP(x)%",
                         "%TRAILER(x)%",
                         "%PROTOCOL%",
                         "%RESPONSE_CODE_DETAILS%",
                         "%RESPONSE_FLAGS%",
                         "%DURATION%",
                         "%REQUEST_DURATION%",
                         "%RESPONSE_DURATION%",
                         "%RESPONSE_TX_DURATION%",
                         "%UPSTREAM_HOST%",
                         "%UPSTREAM_CLUSTER%",
                         "%UPSTREAM_LOCAL_ADDRESS%",
                         "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
                         "%DOWNSTREAM_REMOTE_ADDRESS%",
                         "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                         "%DOWNSTREAM_LOCAL_ADDRESS%",
                         "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
                         "%DOWNSTREAM_LOCAL_PORT%",
                         "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
                         "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
                         "%ROUTE_NAME%"};
  for (const char* f : kDash) EXPECT_EQ(textEmpty(f), "-") << f;
  // Counters are 0, as in Envoy (a response code of 0: no response was sent).
  const char* kZero[] = {"%RESPONSE_CODE%", "%BYTES_RECEIVED%", "%BYTES_SENT%", "%CONNECTION_ID%",
                         "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"};
  for (const char* f : kZero) EXPECT_EQ(textEmpty(f), "0") << f;
  // One end of RESPONSE_TX_DURATION is not enough.
  empty_info_.first_upstream_rx_byte = 5ms;
  EXPECT_EQ(textEmpty("%RESPONSE_TX_DURATION%"), "-");
  // A header present but empty is "-" too.
  request_.set("x-empty", "");
  EXPECT_EQ(text("[%REQ(X-EMPTY)%]"), "[-]");
}

TEST_F(FormatterTest, PipeAddresses) {
  info_.downstream_local_address = addr("/run/sluice.sock");
  info_.downstream_remote_address = addr("@abstract");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_ADDRESS%"), "/run/sluice.sock");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"), "/run/sluice.sock");
  EXPECT_EQ(text("%DOWNSTREAM_LOCAL_PORT%"), "-");
  EXPECT_EQ(text("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"), "@abstract");
}

TEST_F(FormatterTest, HeaderFallbackAndTruncation) {
  EXPECT_EQ(text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/api/v1?x=1");
  request_.add("x-envoy-original-path", "/original");
  EXPECT_EQ(text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/original");
  EXPECT_EQ(text("%REQ(x-missing?User-Agent)%"), "curl/8.1");
  EXPECT_EQ(text("%REQ(x-missing?x-missing-too)%"), "-");
  EXPECT_EQ(text("%REQ(USER-AGENT):4%"), "curl");
  EXPECT_EQ(text("%REQ(USER-AGENT):100%"), "curl/8.1");
  EXPECT_EQ(text("%REQ(:PATH):0%"), "-");
  EXPECT_EQ(text("%REQ(X-MISSING?:PATH):4%"), "/api");
  EXPECT_EQ(text("%RESP(:STATUS):2%"), "20");
  EXPECT_EQ(text("%UPSTREAM_CLUSTER:3%"), "bac");
  EXPECT_EQ(text("%RESPONSE_CODE:1%"), "200");  // numbers are not truncated
  // No header map at all.
  EXPECT_EQ(text("%RESP(:STATUS)%", FormatContext{&request_, nullptr, nullptr, info_}), "-");
}

TEST_F(FormatterTest, StartTimeFormats) {
  EXPECT_EQ(text("%START_TIME()%"), "2026-11-25T13:26:04.123Z");
  EXPECT_EQ(text("%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%"), "2026/11/25T13:26:04+0000 1795613164");
  EXPECT_EQ(text("%START_TIME(%s.%3f)%"), "1795613164.123");
  EXPECT_EQ(text("%START_TIME(%s.%6f)%"), "1795613164.123456");
  EXPECT_EQ(text("%START_TIME(%s.%9f)%"), "1795613164.123456789");
  EXPECT_EQ(text("%START_TIME(%s.%f)%"), "1795613164.123456789");
  EXPECT_EQ(text("%START_TIME(%1f|%2f)%"), "1|12");
  EXPECT_EQ(text("%START_TIME(%H:%M:%E3S)%"), "13:26:04.123");
  EXPECT_EQ(text("%START_TIME(%E*S %Ez %Z)%"), "04.123456789 +00:00 UTC");
  EXPECT_EQ(text("%START_TIME(%a %d %b %Y, 100%%)%"), "Wed 25 Nov 2026, 100%");
  EXPECT_EQ(text("%START_TIME(%j)%:%START_TIME(%e)%"), "329:25");

  info_.start_time = event::SystemTime(std::chrono::seconds(kStartSeconds));
  EXPECT_EQ(text("%START_TIME%"), "2026-11-25T13:26:04.000Z");
  EXPECT_EQ(text("%START_TIME(%E*S)%"), "04");
  EXPECT_EQ(text("%START_TIME(%s.%3f)%"), "1795613164.000");
  info_.start_time = event::SystemTime(std::chrono::milliseconds(951782400007));  // leap day
  EXPECT_EQ(text("%START_TIME%"), "2000-02-29T00:00:00.007Z");
}

TEST_F(FormatterTest, DefaultFormatIsEnvoys) {
  EXPECT_EQ(defaultFormat(),
            "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
            "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
            "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
            "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "
            "\"%UPSTREAM_HOST%\"\n");
  EXPECT_EQ(text(defaultFormat()),
            "[2026-11-25T13:26:04.123Z] \"GET /api/v1?x=1 HTTP/1.1\" 200 - 17 1234 42 12 "
            "\"203.0.113.7\" \"curl/8.1\" \"a1b2c3\" \"example.com\" \"10.1.2.3:8080\"\n");

  // A local reply with no upstream: no route.
  request_.remove("x-forwarded-for");
  info_.response_code = 404;
  info_.setResponseFlag(http::NoRouteFound);
  info_.upstream_host = nullptr;
  info_.bytes_sent = 0;
  response_.remove("x-envoy-upstream-service-time");
  EXPECT_EQ(text(defaultFormat()),
            "[2026-11-25T13:26:04.123Z] \"GET /api/v1?x=1 HTTP/1.1\" 404 NR 17 0 42 - \"-\" "
            "\"curl/8.1\" \"a1b2c3\" \"example.com\" \"-\"\n");
}

TEST_F(FormatterTest, JsonFormatNestedTypedAndNull) {
  const nlohmann::json config = nlohmann::json::parse(R"({
    "status": "%RESPONSE_CODE%",
    "bytes": {"in": "%BYTES_RECEIVED%", "out": "%BYTES_SENT%"},
    "duration": "%DURATION%",
    "port": "%DOWNSTREAM_LOCAL_PORT%",
    "method": "%REQ(:METHOD)%",
    "flags": "%RESPONSE_FLAGS%",
    "missing": "%RESP(x-nope)%",
    "request": {"line": "%REQ(:METHOD)% %REQ(:PATH)% %REQ(x-nope)%", "ua": "%REQ(USER-AGENT)%"},
    "literal": "fixed \"text\"",
    "empty": "",
    "nested": {"deeper": {"start": "%START_TIME(%s)%"}},
    "version": 3,
    "enabled": true,
    "nothing": null,
    "percent": "100%%"
  })");
  std::string error;
  FormatterPtr f = createJsonFormatter(config, &error);
  ASSERT_NE(f, nullptr) << error;
  std::string out;
  f->format(ctx(), out);
  EXPECT_EQ(out, R"({"bytes":{"in":17,"out":1234},"duration":42,"empty":"","enabled":true,)"
                 R"("flags":"-","literal":"fixed \"text\"","method":"GET","missing":null,)"
                 R"("nested":{"deeper":{"start":"1795613164"}},"nothing":null,"percent":"100%",)"
                 R"("port":443,"request":{"line":"GET /api/v1?x=1 -","ua":"curl/8.1"},)"
                 R"("status":200,"version":3})"
                 "\n");
  // It is valid JSON with the types we promised.
  const auto parsed = nlohmann::json::parse(out);
  EXPECT_TRUE(parsed["status"].is_number_integer());
  EXPECT_TRUE(parsed["missing"].is_null());
  EXPECT_TRUE(parsed["method"].is_string());

  // Missing numbers are null; the response code is 0 as in text.
  out.clear();
  f->format(FormatContext{nullptr, nullptr, nullptr, empty_info_}, out);
  const auto empty = nlohmann::json::parse(out);
  EXPECT_EQ(empty["status"], 0);
  EXPECT_TRUE(empty["duration"].is_null());
  EXPECT_TRUE(empty["port"].is_null());
  EXPECT_TRUE(empty["method"].is_null());
  EXPECT_EQ(empty["request"]["line"], "- - -");
}

TEST_F(FormatterTest, JsonEscapesValues) {
  request_.set("user-agent", "evil\"agent\\\n\x01");
  std::string error;
  FormatterPtr f = createJsonFormatter(
      nlohmann::json{{"ua", "%REQ(USER-AGENT)%"}, {"mix", "ua=%REQ(USER-AGENT)%;"}}, &error);
  ASSERT_NE(f, nullptr) << error;
  std::string out;
  f->format(ctx(), out);
  EXPECT_EQ(out, R"({"mix":"ua=evil\"agent\\\n\u0001;","ua":"evil\"agent\\\n\u0001"})"
                 "\n");
  EXPECT_EQ(nlohmann::json::parse(out)["ua"], "evil\"agent\\\n\x01");
}

TEST_F(FormatterTest, JsonFormatErrors) {
  std::string error;
  EXPECT_EQ(createJsonFormatter(nlohmann::json("%PROTOCOL%"), &error), nullptr);
  EXPECT_EQ(error, "json_format must be an object");
  EXPECT_EQ(createJsonFormatter(nlohmann::json::parse(R"({"a": {"b": "%NOPE%"}})"), &error),
            nullptr);
  EXPECT_EQ(error, "json_format.a.b: unknown command operator '%NOPE%'");
  EXPECT_EQ(createJsonFormatter(nlohmann::json::parse(R"({"a": ["%PROTOCOL%"]})"), &error),
            nullptr);
  EXPECT_EQ(error,
            "json_format.a: only strings, numbers, booleans, null and objects are supported in "
            "json_format");
}

TEST_F(FormatterTest, BadFormats) {
  EXPECT_EQ(textError("%FOO%"), "unknown command operator '%FOO%'");
  EXPECT_EQ(textError("x %REQ(a)% %start_time%"), "unknown command operator '%start_time%'");
  EXPECT_EQ(textError("[%START_TIME"), "'%START_TIME' at position 1: missing closing '%'");
  EXPECT_EQ(textError("%PROTOCOL %"), "'%PROTOCOL' at position 0: missing closing '%'");
  EXPECT_EQ(textError("%REQ(user-agent"), "'%REQ(user-agent' at position 0: missing closing ')'");
  EXPECT_EQ(textError("%REQ(a):x%"), "'%REQ(a):x' at position 0: expected a max length after ':'");
  EXPECT_EQ(textError("50% off"),
            "'%' at position 2 does not start a command operator (write '%%' for a literal '%')");
  EXPECT_EQ(textError("done 100%"),
            "'%' at position 8 does not start a command operator (write '%%' for a literal '%')");
  EXPECT_EQ(textError("%REQ%"), "'%REQ%': REQ needs a header name, as in %REQ(user-agent)%");
  EXPECT_EQ(textError("%RESP()%"),
            "'%RESP()%': RESP needs a header name, as in %RESP(user-agent)%");
  EXPECT_EQ(textError("%REQ(a?b?c)%"), "'%REQ(a?b?c)%': more than one fallback header");
  EXPECT_EQ(textError("%REQ(a?)%"), "'%REQ(a?)%': empty header name");
  EXPECT_EQ(textError("%PROTOCOL(x)%"), "'%PROTOCOL(x)%': PROTOCOL takes no argument");
  EXPECT_EQ(textError("%REQUEST_ID%"), "unknown command operator '%REQUEST_ID%'");
  // A null error pointer is allowed.
  EXPECT_EQ(createTextFormatter("%FOO%", nullptr), nullptr);
}

TEST_F(FormatterTest, HeaderValues) {
  const FormatContext c = ctx();
  EXPECT_EQ(header("%DOWNSTREAM_REMOTE_ADDRESS%", c), "198.51.100.4:51000");
  EXPECT_EQ(header("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", c), "198.51.100.4");
  EXPECT_EQ(header("%DOWNSTREAM_LOCAL_ADDRESS%", c), "[2001:db8::1]:443");
  EXPECT_EQ(header("%DOWNSTREAM_LOCAL_PORT%", c), "443");
  EXPECT_EQ(header("%UPSTREAM_REMOTE_ADDRESS%|%UPSTREAM_HOST%", c), "10.1.2.3:8080|10.1.2.3:8080");
  EXPECT_EQ(header("%START_TIME(%s)%", c), "1795613164");
  EXPECT_EQ(header("%PROTOCOL%", c), "HTTP/1.1");
  EXPECT_EQ(header("ua=%REQ(User-Agent)%", c), "ua=curl/8.1");
  EXPECT_EQ(header("%HOSTNAME%", c), hostname());
  EXPECT_EQ(header("50%%", c), "50%");

  // Unknown values are empty, not "-".
  const FormatContext none{nullptr, nullptr, nullptr, empty_info_};
  EXPECT_EQ(header("[%DOWNSTREAM_REMOTE_ADDRESS%][%REQ(x-y)%][%PROTOCOL%][%UPSTREAM_HOST%]", none),
            "[][][][]");

  // Operators Envoy does not allow in header values are refused.
  std::string error;
  EXPECT_EQ(createHeaderValueFormatter("%BYTES_SENT%", &error), nullptr);
  EXPECT_EQ(error, "command operator '%BYTES_SENT%' is not supported in a header value");
  EXPECT_EQ(createHeaderValueFormatter("%NOPE%", &error), nullptr);
  EXPECT_EQ(error, "unknown command operator '%NOPE%'");
}

TEST_F(FormatterTest, LiteralFastPath) {
  std::string error;
  FormatterPtr lit = createHeaderValueFormatter("plain value, 100%%", &error);
  ASSERT_NE(lit, nullptr) << error;
  EXPECT_TRUE(lit->isLiteral());
  EXPECT_EQ(lit->literal(), "plain value, 100%");
  FormatterPtr empty = createHeaderValueFormatter("", &error);
  ASSERT_NE(empty, nullptr);
  EXPECT_TRUE(empty->isLiteral());
  EXPECT_EQ(empty->literal(), "");
  FormatterPtr dynamic = createHeaderValueFormatter("v=%PROTOCOL%", &error);
  ASSERT_NE(dynamic, nullptr);
  EXPECT_FALSE(dynamic->isLiteral());
  FormatterPtr host = createHeaderValueFormatter("%HOSTNAME%", &error);
  ASSERT_NE(host, nullptr);
  EXPECT_FALSE(host->isLiteral());
  FormatterPtr text_lit = createTextFormatter("just text\n", &error);
  ASSERT_NE(text_lit, nullptr);
  EXPECT_TRUE(text_lit->isLiteral());
  EXPECT_EQ(text_lit->literal(), "just text\n");
}

TEST_F(FormatterTest, FormatAppends) {
  std::string error;
  FormatterPtr f = createTextFormatter("%RESPONSE_CODE%\n", &error);
  ASSERT_NE(f, nullptr);
  std::string out = "prefix ";
  f->format(ctx(), out);
  f->format(ctx(), out);
  EXPECT_EQ(out, "prefix 200\n200\n");
}

TEST(ResponseFlagsTest, EnvoyNamesInEnvoyOrder) {
  EXPECT_EQ(http::responseFlagsString(0), "-");
  EXPECT_EQ(http::responseFlagsString(http::NoHealthyUpstream), "UH");
  EXPECT_EQ(http::responseFlagsString(http::UpstreamConnectionFailure | http::NoHealthyUpstream),
            "UH,UF");
  // Envoy prints DC before URX and SI, and DT before UPE and NC, whatever our bit order.
  EXPECT_EQ(http::responseFlagsString(http::StreamIdleTimeout | http::UpstreamRetryLimitExceeded |
                                      http::DownstreamConnectionTermination),
            "DC,URX,SI");
  EXPECT_EQ(http::responseFlagsString(http::NoClusterFound | http::UpstreamProtocolError |
                                      http::DurationTimeout),
            "DT,UPE,NC");
  uint32_t all = 0;
  for (uint32_t bit = 0; bit <= 20; ++bit) all |= 1u << bit;
  EXPECT_EQ(http::responseFlagsString(all),
            "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,DC,URX,SI,DPE,UMSDR,DT,UPE,NC,DR");
  // Bits we do not know are ignored.
  EXPECT_EQ(http::responseFlagsString(1u << 31), "-");
}

}  // namespace
}  // namespace sluice::access_log
