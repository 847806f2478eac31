#include "config/grpc_mux.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <set>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>

#include "common/logger.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "stats/stats.h"

namespace sluice::config {

namespace {
constexpr std::string_view kAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
constexpr std::string_view kDeltaAdsPath =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
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

// The order Envoy asks in on a new stream: what a resource of a later type names must be
// there first.
int typeRank(std::string_view type) {
  static constexpr std::string_view kOrder[] = {kClusterType, kClusterLoadAssignmentType,
                                                kListenerType, kRouteConfigurationType,
                                                kSecretType};
  for (size_t i = 0; i < std::size(kOrder); ++i) {
    if (kOrder[i] == type) return static_cast<int>(i);
  }
  return static_cast<int>(std::size(kOrder));
}

// A resource's name, as a watch names it (ClusterLoadAssignment calls it cluster_name).
std::string resourceName(const google::protobuf::Message& msg) {
  const auto* d = msg.GetDescriptor();
  const auto* f = d->FindFieldByName("name");
  if (!f) f = d->FindFieldByName("cluster_name");
  if (!f || f->type() != google::protobuf::FieldDescriptor::TYPE_STRING || f->is_repeated()) {
    return {};
  }
  return msg.GetReflection()->GetString(msg, f);
}

}  // namespace

struct GrpcMux::TypeState {
  std::string type;      // full message name
  std::string type_url;  // type.googleapis.com/<type>
  std::string version;   // last accepted
  std::string nonce;     // of the last response (sent again when the names change)
  std::vector<Watch*> watches;  // started ones
  // The resources as last accepted, by name (a watch that refused its part leaves its names
  // as they were), for watches started after they came; and the version they came in.
  std::map<std::string, Resource> accepted;
  std::string accepted_version;
  bool have_accepted{false};
  // While a response is offered: the names of the watches that refused their part, or all.
  std::set<std::string> refused;
  bool refused_all{false};
  bool dirty{false};  // the names changed: send the request again
  std::vector<std::string> sent_names;
  // Delta xDS: the resources held (name -> version and body), whose whole set each watch is
  // offered as a state-of-the-world update; and what this stream was asked for so far.
  std::map<std::string, std::pair<std::string, google::protobuf::Any>> held;
  bool asked_on_stream{false};
};

class GrpcMux::Watch : public Subscription {
 public:
  Watch(std::weak_ptr<GrpcMux> mux, uint64_t id, std::string type, std::vector<std::string> names,
        std::string prefix, OnUpdate on_update, std::chrono::milliseconds initial_fetch_timeout,
        std::function<void()> on_initialized)
      : mux_(std::move(mux)), id_(id), type_(std::move(type)), names_(std::move(names)),
        prefix_(std::move(prefix)), on_update_(std::move(on_update)),
        initial_fetch_timeout_(initial_fetch_timeout), on_initialized_(std::move(on_initialized)) {
    std::sort(names_.begin(), names_.end());
  }
  ~Watch() override {
    if (auto mux = mux_.lock(); mux && started_) mux->removeWatch(*this);
  }
  bool start(std::string& error) override {
    auto mux = mux_.lock();
    if (!mux) {
      error = "the ADS stream is gone";
      return false;
    }
    if (!started_) {
      started_ = true;
      mux->addWatch(*this);
    }
    return true;
  }
  const std::string& version() const override { return version_; }

  void initialized() {
    if (init_timer_) init_timer_->disableTimer();
    if (auto cb = std::exchange(on_initialized_, nullptr)) cb();
  }

  std::weak_ptr<GrpcMux> mux_;
  const uint64_t id_;  // unique per mux: a posted task finds its watch by it, never by address
  const std::string type_;
  std::vector<std::string> names_;  // sorted; empty: every resource of the type
  const std::string prefix_;
  OnUpdate on_update_;
  const std::chrono::milliseconds initial_fetch_timeout_;
  std::function<void()> on_initialized_;
  event::TimerPtr init_timer_;
  std::string version_;
  bool started_{false};
  bool timer_started_{false};
};

GrpcMux::GrpcMux(event::Dispatcher& main, upstream::ThreadLocalClusterManager& tlcm,
                 stats::Store& store)
    : main_(main), tlcm_(tlcm), store_(store), rng_(std::random_device{}()) {
  retry_timer_ = main_.createTimer([this] { connect(); });
  flush_timer_ = main_.createTimer([this] {
    for (auto& t : types_) {
      // A type nobody watches any more asks for nothing (in state of the world, no names
      // would mean every resource); in delta its names are unsubscribed.
      const bool watched = !t->watches.empty() || (config_.delta && t->asked_on_stream);
      if (t->dirty && encoder_ && watched) sendRequest(*t, false, nullptr);
    }
  });
  store_.gauge("control_plane.connected_state").set(0);
}

GrpcMux::~GrpcMux() {
  if (pending_) pending_->cancel();
  if (encoder_) {
    encoder_->getStream().removeCallbacks(*this);
    encoder_->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
  for (auto& t : types_) {
    for (Watch* w : t->watches) w->started_ = false;
  }
}

std::unique_ptr<Subscription> GrpcMux::subscribe(std::string_view type,
                                                 std::vector<std::string> names,
                                                 std::string stat_prefix,
                                                 Subscription::OnUpdate on_update,
                                                 std::chrono::milliseconds initial_fetch_timeout,
                                                 std::function<void()> on_initialized) {
  // The stats exist (at 0) from the start, as Envoy's do.
  for (const char* c : {"update_attempt", "update_success", "update_rejected", "update_failure",
                        "init_fetch_timeout"}) {
    store_.counter(stat_prefix + c);
  }
  return std::make_unique<Watch>(weak_from_this(), next_watch_id_++, std::string(type),
                                 std::move(names),
                                 std::move(stat_prefix), std::move(on_update),
                                 initial_fetch_timeout, std::move(on_initialized));
}

GrpcMux::TypeState& GrpcMux::typeState(std::string_view type) {
  for (auto& t : types_) {
    if (t->type == type) return *t;
  }
  auto t = std::make_unique<TypeState>();
  t->type = std::string(type);
  t->type_url = std::string(kTypeUrlPrefix) + t->type;
  auto pos = std::find_if(types_.begin(), types_.end(), [&](const auto& other) {
    return typeRank(other->type) > typeRank(type);
  });
  return **types_.insert(pos, std::move(t));
}

void GrpcMux::addWatch(Watch& watch) {
  TypeState& t = typeState(watch.type_);
  t.watches.push_back(&watch);
  t.dirty = true;
  if (started_) {
    startWatch(watch);
    scheduleFlush();
  }
}

void GrpcMux::removeWatch(Watch& watch) {
  TypeState& t = typeState(watch.type_);
  t.watches.erase(std::remove(t.watches.begin(), t.watches.end(), &watch), t.watches.end());
  t.dirty = true;
  if (started_) scheduleFlush();
}

void GrpcMux::startWatch(Watch& watch) {
  if (watch.timer_started_) return;
  watch.timer_started_ = true;
  if (watch.initial_fetch_timeout_.count() > 0 && watch.on_initialized_) {
    Watch* raw = &watch;
    watch.init_timer_ = main_.createTimer([this, raw] {
      store_.counter(raw->prefix_ + "init_fetch_timeout").inc();
      SLUICE_LOG(warn, config, "ADS: no {} after initial_fetch_timeout; going on without",
                 raw->type_);
      raw->initialized();
    });
    watch.init_timer_->enableTimer(watch.initial_fetch_timeout_);
  }
  // Resources that came before the watch: offered now (on the next loop, not inside the
  // caller's start()).
  if (typeState(watch.type_).have_accepted) {
    std::weak_ptr<GrpcMux> weak = weak_from_this();
    main_.post([weak, id = watch.id_, type = watch.type_] {
      auto self = weak.lock();
      if (!self) return;
      TypeState& ts = self->typeState(type);
      // Still watched (a watch removes itself when destroyed)?
      auto it = std::find_if(ts.watches.begin(), ts.watches.end(),
                             [id](const Watch* w) { return w->id_ == id; });
      if (it == ts.watches.end()) return;
      Watch& w = **it;
      std::vector<Resource> resources;
      for (const auto& [name, r] : ts.accepted) {
        if (w.names_.empty() || std::binary_search(w.names_.begin(), w.names_.end(), name)) {
          resources.push_back(r);
        }
      }
      std::vector<std::string> errors;
      if (!self->offer(ts, w, ts.accepted_version, resources, errors)) {
        for (const auto& e : errors) {
          SLUICE_LOG(warn, config, "ADS: {} version {} rejected: {}", type, ts.accepted_version,
                     e);
        }
      }
    });
  }
}

void GrpcMux::scheduleFlush() {
  if (!flush_timer_->enabled()) flush_timer_->enableTimer(std::chrono::milliseconds(0));
}

void GrpcMux::start() {
  started_ = true;
  for (auto& t : types_) {
    for (Watch* w : t->watches) startWatch(*w);
  }
  connect();
}

const std::string& GrpcMux::version(std::string_view type) const {
  static const std::string kNone;
  for (const auto& t : types_) {
    if (t->type == type) return t->version;
  }
  return kNone;
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
                                 {":path", config_.delta ? kDeltaAdsPath : kAdsPath},
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
  for (auto& t : types_) {
    t->nonce.clear();
    t->asked_on_stream = false;
    t->sent_names.clear();
    if (encoder_ && !t->watches.empty()) sendRequest(*t, false, nullptr);
  }
}

void GrpcMux::sendRequest(TypeState& t, bool reply, const std::string* error) {
  // The names the watches ask for; none if any asks for every resource.
  std::vector<std::string> names;
  bool all = false;
  for (const Watch* w : t.watches) {
    all = all || w->names_.empty();
    names.insert(names.end(), w->names_.begin(), w->names_.end());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (all) names.clear();
  const bool with_node = !sent_node_ || !config_.set_node_on_first_message_only;
  sent_node_ = true;
  t.dirty = false;
  if (config_.delta) {
    // Incremental: the first request of a stream says what the proxy holds and wants (no
    // names: every resource); later ones the names added and dropped, or an ACK/NACK.
    envoy::service::discovery::v3::DeltaDiscoveryRequest req;
    req.set_type_url(t.type_url);
    if (with_node) req.mutable_node()->ParseFromString(config_.node);
    if (!t.asked_on_stream) {
      for (const auto& n : names) req.add_resource_names_subscribe(n);
      for (const auto& [name, held] : t.held) {
        (*req.mutable_initial_resource_versions())[name] = held.first;
      }
      t.asked_on_stream = true;
    } else {
      std::set_difference(names.begin(), names.end(), t.sent_names.begin(), t.sent_names.end(),
                          google::protobuf::RepeatedFieldBackInserter(req.mutable_resource_names_subscribe()));
      std::set_difference(t.sent_names.begin(), t.sent_names.end(), names.begin(), names.end(),
                          google::protobuf::RepeatedFieldBackInserter(req.mutable_resource_names_unsubscribe()));
    }
    if (reply) req.set_response_nonce(t.nonce);
    if (error) {
      req.mutable_error_detail()->set_code(kInternal);
      req.mutable_error_detail()->set_message(*error);
    }
    t.sent_names = std::move(names);
    writeMessage(req.SerializeAsString());
    return;
  }
  envoy::service::discovery::v3::DiscoveryRequest req;
  req.set_version_info(t.version);
  req.set_type_url(t.type_url);
  req.set_response_nonce(t.nonce);
  for (const auto& n : names) req.add_resource_names(n);
  t.sent_names = std::move(names);
  if (with_node) req.mutable_node()->ParseFromString(config_.node);
  if (error) {
    req.mutable_error_detail()->set_code(kInternal);
    req.mutable_error_detail()->set_message(*error);
  }
  writeMessage(req.SerializeAsString());
}

void GrpcMux::writeMessage(const std::string& bytes) {
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

GrpcMux::TypeState* GrpcMux::watchedType(const std::string& type_url) {
  for (auto& ts : types_) {
    if (ts->type_url == type_url && !ts->watches.empty()) return ts.get();
  }
  SLUICE_LOG(warn, config, "ADS: ignoring a response of unsubscribed type {}", type_url);
  return nullptr;
}

void GrpcMux::onMessage(std::string_view bytes) {
  const int size = static_cast<int>(bytes.size());
  if (config_.delta) {
    envoy::service::discovery::v3::DeltaDiscoveryResponse resp;
    if (!resp.ParseFromArray(bytes.data(), size)) {
      onStreamClosed("a DeltaDiscoveryResponse that does not parse");
      return;
    }
    backoff_ = std::chrono::milliseconds(0);
    TypeState* t = watchedType(resp.type_url());
    if (!t) return;
    t->nonce = resp.nonce();
    // The whole set after this response: what is held, changed and less what is removed. It
    // is offered as a state-of-the-world response whose first resources are this response's
    // (so an error's resources[i] is the i-th of this response), then the others held.
    auto held = t->held;
    std::vector<std::string> errors;
    envoy::service::discovery::v3::DiscoveryResponse sotw;
    sotw.set_version_info(resp.system_version_info());
    sotw.set_type_url(resp.type_url());
    std::set<std::string> in_response;
    for (int i = 0; i < resp.resources_size(); ++i) {
      const auto& r = resp.resources(i);
      const std::string path = "resources[" + std::to_string(i) + "]";
      if (r.name().empty() || !r.has_resource()) {
        errors.push_back(path + (r.name().empty() ? ".name: a name is required"
                                                  : ".resource: a resource is required"));
        continue;
      }
      if (!in_response.insert(r.name()).second) {
        errors.push_back(path + ".name: '" + r.name() + "' twice in one response");
        continue;
      }
      held[r.name()] = {r.version(), r.resource()};
      *sotw.add_resources() = r.resource();
    }
    for (const auto& name : resp.removed_resources()) held.erase(name);
    for (const auto& [name, h] : held) {
      if (!in_response.count(name)) *sotw.add_resources() = h.second;
    }
    if (errors.empty()) {
      deliver(*t, sotw, errors);
      // What was taken is held from now on (a new stream reports it); what a watch refused
      // stays as it was, so a later response does not roll its accepted neighbours back.
      if (!t->refused_all) {
        for (const auto& r : resp.resources()) {
          if (!t->refused.count(r.name())) t->held[r.name()] = {r.version(), r.resource()};
        }
        for (const auto& name : resp.removed_resources()) {
          t->held.erase(name);
          t->accepted.erase(name);
        }
      }
    }
    reply(*t, sotw, errors);
    return;
  }
  envoy::service::discovery::v3::DiscoveryResponse resp;
  if (!resp.ParseFromArray(bytes.data(), size)) {
    onStreamClosed("a DiscoveryResponse that does not parse");
    return;
  }
  backoff_ = std::chrono::milliseconds(0);  // the control plane works: start over next time
  TypeState* t = watchedType(resp.type_url());
  if (!t) return;
  t->nonce = resp.nonce();
  std::vector<std::string> errors;
  deliver(*t, resp, errors);
  reply(*t, resp, errors);
}

bool GrpcMux::deliver(TypeState& t, const envoy::service::discovery::v3::DiscoveryResponse& resp,
                      std::vector<std::string>& errors) {
  DiscoveryUpdate update;
  bool ok = decodeDiscoveryResponse(resp, t.type, update, errors);
  std::vector<Resource> resources;
  for (size_t i = 0; i < update.resources.size(); ++i) {
    resources.push_back({std::move(update.resources[i]),
                         i < update.wire.size() ? std::move(update.wire[i]) : nullptr});
  }
  t.refused.clear();
  t.refused_all = !ok;
  // A watch may go (or come) while it applies its part: offer to a copy of the list.
  const std::vector<Watch*> watches = t.watches;
  for (Watch* w : watches) {
    if (std::find(t.watches.begin(), t.watches.end(), w) == t.watches.end()) continue;
    if (ok) {
      // Every watch is offered its part, even after another refused: each applies its own
      // resources or none (as Envoy's watches do); the NACK says what was refused.
      if (!offer(t, *w, resp.version_info(), resources, errors)) ok = false;
    } else {
      store_.counter(w->prefix_ + "update_attempt").inc();
      store_.counter(w->prefix_ + "update_rejected").inc();
      w->initialized();
    }
  }
  if (ok) {
    t.version = resp.version_info();
    SLUICE_LOG(info, config, "ADS: {} version {} accepted ({} resources)", t.type, t.version,
               resources.size());
  }
  return ok;
}

void GrpcMux::reply(TypeState& t, const envoy::service::discovery::v3::DiscoveryResponse& resp,
                    const std::vector<std::string>& errors) {
  if (errors.empty()) {
    if (encoder_) sendRequest(t, true, nullptr);
    return;
  }
  std::string detail;
  for (const auto& e : errors) {
    SLUICE_LOG(warn, config, "ADS: {} version {} rejected: {}", t.type, resp.version_info(), e);
    if (!detail.empty()) detail += "\n";
    detail += e;
  }
  if (encoder_) sendRequest(t, true, &detail);
}

bool GrpcMux::offer(TypeState& t, Watch& w, const std::string& version,
                    const std::vector<Resource>& resources, std::vector<std::string>& errors) {
  DiscoveryUpdate mine;
  mine.version_info = version;
  std::vector<size_t> index;  // of each of mine in the response, for the errors' paths
  std::vector<std::string> names;
  for (size_t i = 0; i < resources.size(); ++i) {
    const auto& r = resources[i];
    std::string name = resourceName(*r.msg);
    if (!w.names_.empty() && !std::binary_search(w.names_.begin(), w.names_.end(), name)) {
      continue;
    }
    index.push_back(i);
    names.push_back(std::move(name));
    mine.resources.push_back(r.msg);
    mine.wire.push_back(r.wire);
  }
  // State of the world: for every resource (CDS, LDS) the response is the whole set, even
  // when empty; for named ones (RDS, EDS, SDS) a response need not carry each name.
  if (!w.names_.empty() && mine.resources.empty()) return true;
  store_.counter(w.prefix_ + "update_attempt").inc();
  const size_t before = errors.size();
  const bool ok = w.on_update_(mine, errors);
  if (ok) {
    w.version_ = version;
    store_.counter(w.prefix_ + "update_success").inc();
    store_.gauge(w.prefix_ + "version").set(std::hash<std::string>{}(w.version_));
    store_.gauge(w.prefix_ + "update_time")
        .set(std::chrono::duration_cast<std::chrono::milliseconds>(
                 main_.timeSource().systemTime().time_since_epoch())
                 .count());
    // What a watch started later is offered: this watch's resources as it took them.
    if (w.names_.empty()) t.accepted.clear();
    for (size_t k = 0; k < index.size(); ++k) t.accepted[names[k]] = resources[index[k]];
    t.accepted_version = version;
    t.have_accepted = true;
  } else {
    store_.counter(w.prefix_ + "update_rejected").inc();
    if (w.names_.empty()) t.refused_all = true;
    t.refused.insert(names.begin(), names.end());
    if (errors.size() == before) errors.push_back("refused");
    // "resources[k]" of the watch's part is resources[index[k]] of the response.
    constexpr std::string_view kPrefix = "resources[";
    for (size_t e = before; e < errors.size(); ++e) {
      std::string& msg = errors[e];
      const size_t close = msg.find(']');
      if (msg.compare(0, kPrefix.size(), kPrefix) != 0 || close == std::string::npos) continue;
      const size_t k = std::strtoul(msg.c_str() + kPrefix.size(), nullptr, 10);
      if (k < index.size()) {
        msg = std::string(kPrefix) + std::to_string(index[k]) + msg.substr(close);
      }
    }
  }
  w.initialized();
  return ok;
}

void GrpcMux::onStreamClosed(std::string_view why) {
  stream_up_ = false;
  if (encoder_) {
    http::RequestEncoder* encoder = std::exchange(encoder_, nullptr);
    encoder->getStream().removeCallbacks(*this);
    encoder->getStream().resetStream(http::StreamResetReason::LocalReset);
  }
  store_.gauge("control_plane.connected_state").set(0);
  // A lost stream, or one that could not be opened: a failed fetch, as Envoy counts it.
  for (auto& t : types_) {
    for (Watch* w : t->watches) store_.counter(w->prefix_ + "update_failure").inc();
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
