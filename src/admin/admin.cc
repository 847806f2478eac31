#include "admin/admin.h"

#include "buffer/buffer.h"
#include "http/filter.h"
#include "stats/stats.h"

namespace sluice::admin {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hexValue(in[i + 1]) >= 0 && hexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(in[i + 1]) * 16 + hexValue(in[i + 2])));
      i += 2;
    } else if (in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

// Answers every request from the admin handlers once the request is complete.
class AdminFilter : public http::StreamDecoderFilter {
 public:
  explicit AdminFilter(const Admin& admin) : admin_(admin) {}
  void setDecoderFilterCallbacks(http::StreamDecoderFilterCallbacks& cb) override { callbacks_ = &cb; }
  http::FilterHeadersStatus decodeHeaders(http::RequestHeaderMap& headers, bool end_stream) override {
    headers_ = &headers;
    if (end_stream) respond();
    return http::FilterHeadersStatus::StopIteration;
  }
  http::FilterDataStatus decodeData(buffer::Buffer& data, bool end_stream) override {
    data.drain(data.length());  // admin requests carry their arguments in the query
    if (end_stream) respond();
    return http::FilterDataStatus::StopIterationNoBuffer;
  }
  http::FilterTrailersStatus decodeTrailers(http::RequestTrailerMap&) override {
    respond();
    return http::FilterTrailersStatus::StopIteration;
  }

 private:
  void respond() {
    auto headers = std::make_unique<http::HeaderMap>();
    std::string body;
    const uint32_t code = admin_.handle(headers_->method(), headers_->path(), *headers, body);
    headers->set(http::headers::kStatus, std::to_string(code));
    if (!headers->has(http::headers::kContentType)) {
      headers->set(http::headers::kContentType, "text/plain; charset=UTF-8");
    }
    headers->set("cache-control", "no-cache, max-age=0");
    headers->set("x-content-type-options", "nosniff");
    headers->set(http::headers::kContentLength, std::to_string(body.size()));
    const bool head = headers_->method() == "HEAD";
    callbacks_->streamInfo().response_code_details = "admin_filter_response";
    if (body.empty() || head) {
      callbacks_->encodeHeaders(std::move(headers), true, "admin_filter_response");
      return;
    }
    callbacks_->encodeHeaders(std::move(headers), false, "admin_filter_response");
    buffer::Buffer b;
    b.add(body);
    callbacks_->encodeData(b, true);
  }

  const Admin& admin_;
  http::StreamDecoderFilterCallbacks* callbacks_{nullptr};
  http::RequestHeaderMap* headers_{nullptr};
};

}  // namespace

std::map<std::string, std::string, std::less<>> parseQuery(std::string_view query) {
  std::map<std::string, std::string, std::less<>> out;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    const size_t eq = item.find('=');
    if (!item.empty()) {
      out[percentDecode(item.substr(0, eq))] =
          eq == std::string_view::npos ? "" : percentDecode(item.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

void Admin::addHandler(std::string path, std::string help, bool mutates, Handler handler) {
  handlers_[std::move(path)] = Entry{std::move(help), mutates, std::move(handler)};
}

uint32_t Admin::handle(std::string_view method, std::string_view path_and_query,
                       http::ResponseHeaderMap& headers, std::string& body) const {
  const size_t q = path_and_query.find('?');
  Request req;
  req.method = method;
  req.path = path_and_query.substr(0, q);
  if (q != std::string_view::npos) req.query = parseQuery(path_and_query.substr(q + 1));
  if (req.path == "/" || req.path == "/help") {
    body = "admin commands are:\n";
    for (const auto& [path, e] : handlers_) body += "  " + path + ": " + e.help + "\n";
    return 200;
  }
  auto it = handlers_.find(req.path);
  if (it == handlers_.end()) {
    body = "invalid path. admin commands are:\n";
    for (const auto& [path, e] : handlers_) body += "  " + path + ": " + e.help + "\n";
    return 404;
  }
  if (it->second.mutates && method != "POST") {
    body = "This endpoint requires the POST method.\n";
    headers.set("allow", "POST");
    return 405;
  }
  return it->second.handler(req, headers, body);
}

http::ConnectionManagerConfigConstSharedPtr Admin::connectionManagerConfig(
    stats::Store& store, std::vector<http::AccessLogSharedPtr> access_logs) {
  auto cfg = std::make_shared<http::ConnectionManagerConfig>();
  cfg->stat_prefix = "admin";
  cfg->stats = std::make_shared<http::ConnectionManagerStats>(
      http::ConnectionManagerStats::create(store, "admin"));
  cfg->access_logs = std::move(access_logs);
  cfg->http1_settings.accept_http_10 = true;
  const Admin* self = this;
  cfg->filter_factories.push_back([self](http::FilterChainFactoryCallbacks& cb) {
    cb.addStreamDecoderFilter(std::make_shared<AdminFilter>(*self));
  });
  return cfg;
}

}  // namespace sluice::admin
