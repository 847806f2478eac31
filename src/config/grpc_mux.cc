#include "config/grpc_mux.h"

#include <algorithm>

#include "common/logger.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "stats/stats.h"

namespace sluice::config {

namespace {
constexpr std::string_view kAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
constexpr std::string_view kTypeUrlPrefix = "type.googleapis.com/";
constexpr std::chrono::milliseconds kBackoffBase{500};
constexpr std::chrono::milliseconds kBackoffMax{30000};
// A gRPC message is framed by a flag byte (compressed or not) and a 4-byte length.
constexpr size_t kFrameHeader = 5;
// Bounds a response we would buffer whole (Envoy's default max_receive_message_length is
// unbounded for xDS; a config this large is a control-plane bug, not a config).
constexpr size_t kMaxMessage = 256u << 20;
// google.rpc.Code INTERNAL, which Envoy puts in a NACK's error_detail.
constexpr int kInternal = 13;
}  // namespace

struct GrpcMux::Subscription {
  std::string type;      // full message name
  std::string type_url;  // type.googleapis.com/<type>
  std::string prefix;    // of its stats
  OnUpdate on_update;
  std::chrono::milliseconds initial_fetch_timeout{0};
  std::function<void()> on_initialized;
  event::TimerPtr init_timer;
  std::string version;  // last accepted
};

GrpcMux::GrpcMux(event::Dispatcher& main, upstream::ThreadLocalClusterManager& tlcm,
                 AdsConfig config, stats::Store& store)
    : main_(main),
      tlcm_(tlcm),
      config_(std::move(config)),
      store_(store),
      rng_(std::random_device{}()) {
  retry_timer_ = main_.createTimer([this] { connect(); });
  store_.gauge("control_plane.connected_state").set(0);
}

GrpcMux::~GrpcMux() {
  if (pending_) pending_->cancel();
  if (encoder_) {
    encoder_->getStream().removeCallbacks(*this);
    encoder_->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
}

void GrpcMux::subscribe(std::string_view type, std::string stat_prefix, OnUpdate on_update,
                        std::chrono::milliseconds initial_fetch_timeout,
                        std::function<void()> on_initialized) {
  auto sub = std::make_unique<Subscription>();
  sub->type = std::string(type);
  sub->type_url = std::string(kTypeUrlPrefix) + sub->type;
  sub->prefix = std::move(stat_prefix);
  sub->on_update = std::move(on_update);
  sub->initial_fetch_timeout = initial_fetch_timeout;
  sub->on_initialized = std::move(on_initialized);
  // The stats exist (at 0) from the start, as Envoy's do.
  for (const char* c : {"update_attempt", "update_success", "update_rejected", "update_failure",
                        "init_fetch_timeout"}) {
    store_.counter(sub->prefix + c);
  }
  subs_.push_back(std::move(sub));
}

void GrpcMux::start() {
  for (auto& sub : subs_) {
    if (sub->initial_fetch_timeout.count() > 0 && sub->on_initialized) {
      Subscription* raw = sub.get();
      sub->init_timer = main_.createTimer([this, raw] {
        store_.counter(raw->prefix + "init_fetch_timeout").inc();
        SLUICE_LOG(warn, config, "ADS: no {} after initial_fetch_timeout; going on without",
                   raw->type);
        initialized(*raw);
      });
      sub->init_timer->enableTimer(sub->initial_fetch_timeout);
    }
  }
  connect();
}

const std::string& GrpcMux::version(std::string_view type) const {
  static const std::string kNone;
  for (const auto& sub : subs_) {
    if (sub->type == type) return sub->version;
  }
  return kNone;
}

GrpcMux::Subscription* GrpcMux::find(std::string_view type_url) {
  for (auto& sub : subs_) {
    if (sub->type_url == type_url) return sub.get();
  }
  return nullptr;
}

void GrpcMux::initialized(Subscription& sub) {
  if (sub.init_timer) sub.init_timer->disableTimer();
  if (auto cb = std::exchange(sub.on_initialized, nullptr)) cb();
}

void GrpcMux::connect() {
  cluster_ = tlcm_.get(config_.cluster_name);
  upstream::HostSharedPtr host = cluster_ ? cluster_->chooseHost(nullptr) : nullptr;
  if (!host) {
    onStreamClosed(cluster_ ? "no healthy host in the ADS cluster"
                            : "the ADS cluster has no hosts yet");
    return;
  }
  // gRPC is HTTP/2 whatever the cluster's use_downstream_protocol_config would pick.
  pending_ = cluster_->connPool(host, upstream::ResourcePriority::Default, /*downstream_http2=*/true)
                 .newStream(*this, *this);
}

void GrpcMux::onPoolFailure(upstream::PoolFailureReason, std::string_view transport_failure_reason,
                            const upstream::HostSharedPtr& host) {
  pending_ = nullptr;
  onStreamClosed("cannot connect to " + (host ? host->address()->asString() : std::string("?")) +
                 (transport_failure_reason.empty()
                      ? std::string()
                      : ": " + std::string(transport_failure_reason)));
}

void GrpcMux::onPoolReady(http::RequestEncoder& encoder, const upstream::HostSharedPtr& host,
                          bool, const network::AddressConstSharedPtr&) {
  pending_ = nullptr;
  encoder_ = &encoder;
  stream_up_ = true;
  encoder.getStream().addCallbacks(*this);
  http::RequestHeaderMap headers{{":method", "POST"},
                                 {":path", kAdsPath},
                                 {":scheme", "http"},
                                 {":authority", config_.cluster_name},
                                 {"content-type", "application/grpc"},
                                 {"te", "trailers"}};
  encoder.encodeHeaders(headers, false);
  store_.gauge("control_plane.connected_state").set(1);
  SLUICE_LOG(info, config, "ADS: stream open to {}", host->address()->asString());
  sent_node_ = false;
  inbound_.drain(inbound_.length());
  // Each type asks again with what it has; the nonces of the last stream mean nothing here.
  for (auto& sub : subs_) {
    if (encoder_) sendRequest(*sub, "", nullptr);
  }
}

void GrpcMux::sendRequest(Subscription& sub, const std::string& nonce, const std::string* error) {
  envoy::service::discovery::v3::DiscoveryRequest req;
  req.set_version_info(sub.version);
  req.set_type_url(sub.type_url);
  req.set_response_nonce(nonce);
  if (!sent_node_ || !config_.set_node_on_first_message_only) {
    req.mutable_node()->ParseFromString(config_.node);
    sent_node_ = true;
  }
  if (error) {
    req.mutable_error_detail()->set_code(kInternal);
    req.mutable_error_detail()->set_message(*error);
  }
  const std::string bytes = req.SerializeAsString();
  char header[kFrameHeader];
  header[0] = 0;
  const uint32_t n = static_cast<uint32_t>(bytes.size());
  header[1] = static_cast<char>(n >> 24);
  header[2] = static_cast<char>(n >> 16);
  header[3] = static_cast<char>(n >> 8);
  header[4] = static_cast<char>(n);
  buffer::Buffer frame;
  frame.add(header, sizeof(header));
  frame.add(bytes);
  encoder_->encodeData(frame, false);
}

void GrpcMux::decodeHeaders(http::HeaderMapPtr&& headers, bool end_stream) {
  if (headers->status() != 200) {
    onStreamClosed("the control plane answered HTTP " + std::to_string(headers->status()));
    return;
  }
  if (end_stream) {  // trailers-only: the call ended at once
    onStreamClosed("grpc-status " + std::string(headers->getValue("grpc-status")) + " " +
                   std::string(headers->getValue("grpc-message")));
  }
}

void GrpcMux::decodeData(buffer::Buffer& data, bool end_stream) {
  inbound_.move(data);
  while (encoder_ && inbound_.length() >= kFrameHeader) {
    unsigned char h[kFrameHeader];
    inbound_.copyOut(0, kFrameHeader, h);
    const size_t n = (size_t{h[1]} << 24) | (size_t{h[2]} << 16) | (size_t{h[3]} << 8) | h[4];
    if (h[0] != 0 || n > kMaxMessage) {
      onStreamClosed(h[0] != 0 ? "a compressed message (no compression was offered)"
                               : "a message larger than 256 MiB");
      return;
    }
    if (inbound_.length() < kFrameHeader + n) break;
    inbound_.drain(kFrameHeader);
    std::string bytes(n, '\0');
    if (n > 0) inbound_.copyOut(0, n, bytes.data());
    inbound_.drain(n);
    onMessage(bytes);
  }
  if (end_stream && encoder_) onStreamClosed("the control plane ended the stream");
}

void GrpcMux::decodeTrailers(http::HeaderMapPtr&& trailers) {
  onStreamClosed("grpc-status " + std::string(trailers->getValue("grpc-status")) + " " +
                 std::string(trailers->getValue("grpc-message")));
}

void GrpcMux::onResetStream(http::StreamResetReason reason, std::string_view details) {
  encoder_ = nullptr;  // the stream is gone: don't reset it again
  onStreamClosed("stream reset (" + std::string(http::resetReasonString(reason)) +
                 (details.empty() ? "" : ", " + std::string(details)) + ")");
}

void GrpcMux::onMessage(std::string_view bytes) {
  envoy::service::discovery::v3::DiscoveryResponse resp;
  if (!resp.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    onStreamClosed("a DiscoveryResponse that does not parse");
    return;
  }
  backoff_ = std::chrono::milliseconds(0);  // the control plane works: start over next time
  Subscription* sub = find(resp.type_url());
  if (!sub) {
    SLUICE_LOG(warn, config, "ADS: ignoring a response of unsubscribed type {}", resp.type_url());
    return;
  }
  store_.counter(sub->prefix + "update_attempt").inc();
  DiscoveryUpdate update;
  std::vector<std::string> errors;
  if (decodeDiscoveryResponse(resp, sub->type, update, errors) && sub->on_update(update, errors)) {
    sub->version = resp.version_info();
    store_.counter(sub->prefix + "update_success").inc();
    store_.gauge(sub->prefix + "version").set(std::hash<std::string>{}(sub->version));
    store_.gauge(sub->prefix + "update_time")
        .set(std::chrono::duration_cast<std::chrono::milliseconds>(
                 main_.timeSource().systemTime().time_since_epoch())
                 .count());
    SLUICE_LOG(info, config, "ADS: {} version {} accepted ({} resources)", sub->type,
               sub->version, update.resources.size());
    if (encoder_) sendRequest(*sub, resp.nonce(), nullptr);
  } else {
    store_.counter(sub->prefix + "update_rejected").inc();
    std::string detail;
    for (const auto& e : errors) {
      SLUICE_LOG(warn, config, "ADS: {} version {} rejected: {}", sub->type, resp.version_info(),
                 e);
      if (!detail.empty()) detail += "\n";
      detail += e;
    }
    if (encoder_) sendRequest(*sub, resp.nonce(), &detail);
  }
  initialized(*sub);
}

void GrpcMux::onStreamClosed(std::string_view why) {
  const bool was_open = std::exchange(stream_up_, false);
  if (encoder_) {
    http::RequestEncoder* encoder = std::exchange(encoder_, nullptr);
    encoder->getStream().removeCallbacks(*this);
    encoder->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
  store_.gauge("control_plane.connected_state").set(0);
  if (was_open) {
    for (auto& sub : subs_) store_.counter(sub->prefix + "update_failure").inc();
  }
  cluster_.reset();
  // Jittered exponential back-off: a random delay up to a ceiling that doubles each time.
  backoff_ = std::clamp(backoff_ * 2, kBackoffBase, kBackoffMax);
  const auto delay = std::chrono::milliseconds(
      1 + static_cast<int64_t>(rng_() % static_cast<uint64_t>(backoff_.count())));
  SLUICE_LOG(warn, config, "ADS: {}; keeping the current config, retrying in {} ms", why,
             delay.count());
  retry_timer_->enableTimer(delay);
}

}  // namespace sluice::config
