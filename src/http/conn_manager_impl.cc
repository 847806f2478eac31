#include "http/conn_manager_impl.h"

#include <algorithm>
#include <optional>
#include <string>

#include "buffer/watermark_buffer.h"
#include "common/assert.h"
#include "common/object_pool.h"
#include "common/small_vector.h"
#include "common/logger.h"
#include "event/dispatcher.h"
#include "http/utility.h"
#include "stats/stats.h"

namespace sluice::http {

ConnectionManagerStats ConnectionManagerStats::create(stats::Store& store,
                                                      const std::string& stat_prefix) {
  const std::string p = "http." + stat_prefix + ".";
#define SLUICE_MAKE_COUNTER(name) store.counter(p + #name),
#define SLUICE_MAKE_GAUGE(name) store.gauge(p + #name),
  ConnectionManagerStats s{ALL_HTTP_CONN_MAN_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE)
                               store.histogram(p + "downstream_rq_time"),
                           store.histogram(p + "downstream_cx_length_ms"), {}};
  s.downstream_cx_bytes = {&s.downstream_cx_rx_bytes_total, &s.downstream_cx_tx_bytes_total,
                           &s.downstream_cx_rx_bytes_buffered, &s.downstream_cx_tx_bytes_buffered};
  return s;
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

// ---------------------------------------------------------------------------------------
// One request/response exchange and its filter chain.
//
// Filter iteration follows Envoy's filter manager, the same way in both directions (decoder
// filters in chain order for the request, encoder filters in reverse order for the response):
//
// - Headers, data and trailers go through the filters in order. A filter that returns a Stop
//   status holds iteration at itself: the filters after it get nothing until it continues
//   (continueDecoding()/continueEncoding(), or Continue returned from a later data or
//   trailers callback). It still gets every part that arrives meanwhile.
// - What a stopped filter keeps (StopIterationAndBuffer/AndWatermark) waits in that filter's
//   own buffer. On continue, the filters after it get in order what they have not had: the
//   headers, the kept data, the trailers, each with end_stream where that filter saw the end
//   (an empty data frame carries the end when the filter took the last frame itself).
// - Kept data is bounded by the connection's buffer limit. Over it, StopIterationAndBuffer
//   fails the stream (413 for a request; 500, or a reset once headers went out, for a
//   response); StopIterationAndWatermark pushes back instead (stops reading downstream, or
//   tells the router to stop reading upstream) until the data has moved on.
// - A continue called from inside the filter's own callback takes effect when that callback
//   returns, after the status it returned for that part.
// - A local reply asked for inside a decoder callback is sent when the callback returns, and
//   no decoder filter runs after it. See sendLocalReply() for where the reply goes.
// - After every filter callback the stream may be gone (reset, or completed by a reply):
//   iteration checks before going on.

struct ConnectionManagerImpl::ActiveStream : public RequestDecoder,
                                             public StreamCallbacks,
                                             public FilterChainFactoryCallbacks,
                                             public event::DeferredDeletable,
                                             public event::ListTimer,
                                             public Pooled<ActiveStream> {
  // Where one filter is in one direction of the stream.
  struct Iteration {
    bool headers_called{false};      // it has had the headers
    bool headers_continued{false};   // the headers went past it
    bool stopped{false};             // iteration waits at it
    bool end_seen{false};            // it has had the end (end_stream, or trailers)
    bool trailers_seen{false};       // it has had the trailers
    uint32_t in_callback{0};         // one of its callbacks of this direction is running
    bool continue_requested{false};  // it asked to continue from inside that callback
  };

  // What decoder and encoder filter callbacks have in common.
  template <class Callbacks>
  struct FilterEntryBase : public Callbacks {
    FilterEntryBase(ActiveStream& s, size_t i) : stream(s), index(i) {}
    const network::Connection* connection() override { return stream.parent.connection_; }
    event::Dispatcher& dispatcher() override { return stream.parent.connection_->dispatcher(); }
    void resetStream() override { stream.resetFromFilter(); }
    RouteConstSharedPtr route() override { return stream.route(); }
    void clearRouteCache() override { stream.route_resolved = false; }
    StreamInfo& streamInfo() override { return stream.info; }
    uint64_t streamId() const override { return stream.id; }
    void sendLocalReply(uint32_t code, std::string_view body, const ModifyHeadersCb& modify,
                        std::string_view details) override {
      stream.sendLocalReply(code, body, modify, details);
    }

    const buffer::Buffer* heldBuffer() const {
      return held && !held->empty() ? held.get() : nullptr;
    }
    bool holdsData() const { return held && !held->empty(); }

    ActiveStream& stream;
    size_t index;  // place in its chain (decode order, or encode order)
    Iteration it;
    // Data this filter kept while stopped, for the filters after it.
    std::unique_ptr<buffer::WatermarkBuffer> held;
    bool held_streaming{false};  // kept with StopIterationAndWatermark: over the limit pushes back
    bool held_paused{false};     // this buffer's push-back is in force
  };

  struct DecoderEntry : public FilterEntryBase<StreamDecoderFilterCallbacks>,
                        public Pooled<DecoderEntry> {
    DecoderEntry(ActiveStream& s, StreamDecoderFilterSharedPtr f, size_t i)
        : FilterEntryBase(s, i), filter(std::move(f)) {}
    // StreamDecoderFilterCallbacks
    void continueDecoding() override {
      if (it.in_callback > 0) {
        it.continue_requested = true;  // applied when the callback returns
        return;
      }
      stream.resumeDecoding(index, nullptr);
    }
    const buffer::Buffer* decodingBuffer() override { return heldBuffer(); }
    void encode1xxHeaders(HeaderMapPtr&& headers) override {
      stream.encode1xxHeaders(std::move(headers));
    }
    void encodeHeaders(HeaderMapPtr&& headers, bool end_stream, std::string_view details) override {
      stream.encodeHeadersFromFilter(std::move(headers), end_stream, details);
    }
    void encodeData(buffer::Buffer& data, bool end_stream) override {
      stream.encodeDataFromFilter(data, end_stream);
    }
    void encodeTrailers(HeaderMapPtr&& trailers) override {
      stream.encodeTrailersFromFilter(std::move(trailers));
    }
    void onDecoderFilterAboveWriteBufferHighWatermark() override {
      stream.readDisableDownstream(true);
    }
    void onDecoderFilterBelowWriteBufferLowWatermark() override {
      stream.readDisableDownstream(false);
    }
    void addDownstreamWatermarkCallbacks(DownstreamWatermarkCallbacks& cb) override {
      stream.watermark_callbacks.push_back(&cb);
      // Already backed up: tell the newcomer now.
      for (uint32_t i = 0; i < stream.parent.connection_->aboveHighWatermark(); ++i) {
        cb.onAboveWriteBufferHighWatermark();
      }
    }
    void removeDownstreamWatermarkCallbacks(DownstreamWatermarkCallbacks& cb) override {
      auto& v = stream.watermark_callbacks;
      v.erase(std::remove(v.begin(), v.end(), &cb), v.end());
    }
    uint32_t decoderBufferLimit() override { return stream.parent.connection_->bufferLimit(); }
    const RequestHeaderMap* requestHeaders() override { return stream.request_headers.get(); }
    void setStreamIdleTimeout(std::chrono::milliseconds timeout) override {
      stream.startIdleTimer(timeout);
    }

    StreamDecoderFilterSharedPtr filter;
  };

  struct EncoderEntry : public FilterEntryBase<StreamEncoderFilterCallbacks>,
                        public Pooled<EncoderEntry> {
    EncoderEntry(ActiveStream& s, StreamEncoderFilterSharedPtr f, size_t i)
        : FilterEntryBase(s, i), filter(std::move(f)) {}
    void continueEncoding() override {
      if (it.in_callback > 0) {
        it.continue_requested = true;  // applied when the callback returns
        return;
      }
      stream.resumeEncoding(index, nullptr);
    }
    const buffer::Buffer* encodingBuffer() override { return heldBuffer(); }
    void injectEncodedDataToFilterChain(buffer::Buffer& data, bool end_stream) override {
      if (stream.encodingHalted() || !it.headers_continued) return;
      stream.encodeDataFrom(index + 1, data, end_stream);
    }
    void onEncoderFilterAboveWriteBufferHighWatermark() override {
      for (auto* cb : stream.watermark_callbacks) cb->onAboveWriteBufferHighWatermark();
    }
    void onEncoderFilterBelowWriteBufferLowWatermark() override {
      for (auto* cb : stream.watermark_callbacks) cb->onBelowWriteBufferLowWatermark();
    }
    uint32_t encoderBufferLimit() override { return stream.parent.connection_->bufferLimit(); }

    StreamEncoderFilterSharedPtr filter;
    bool dual{false};  // the same filter is a decoder filter too (its onDestroy runs there)
  };
  // x-forwarded-client-cert by forward_client_cert_details, as Envoy: removed unless the
  // mode keeps it; with mTLS, set or appended with this hop's element
  // (By=<our URI SAN>;Hash=<peer cert SHA-256>;Subject="...";URI=...;DNS=...).
  void forwardClientCert(HeaderMap& h, const ConnectionManagerConfig& cfg) {
    const ForwardClientCert mode = cfg.forward_client_cert;
    if (mode == ForwardClientCert::AlwaysForwardOnly) return;
    const bool mtls = info.downstream_ssl && info.downstream_ssl->peer_certificate_presented;
    if (mode == ForwardClientCert::Sanitize || !mtls) {
      h.remove(headers::kXForwardedClientCert);
      return;
    }
    if (mode == ForwardClientCert::ForwardOnly) return;
    const network::SslConnectionInfo& ssl = *info.downstream_ssl;
    std::string v;
    auto add = [&v](std::string_view key, std::string_view value) {
      if (!v.empty()) v.push_back(';');
      v.append(key).push_back('=');
      v.append(value);
    };
    for (const auto& uri : ssl.local_uri_sans) add("By", uri);
    add("Hash", ssl.peer_cert_sha256);
    if (cfg.client_cert_details.subject) add("Subject", "\"" + ssl.peer_subject + "\"");
    if (cfg.client_cert_details.uri) {
      for (const auto& uri : ssl.peer_uri_sans) add("URI", uri);
    }
    if (cfg.client_cert_details.dns) {
      for (const auto& dns : ssl.peer_dns_sans) add("DNS", dns);
    }
    if (mode == ForwardClientCert::AppendForward) {
      h.append(headers::kXForwardedClientCert, v);
    } else {
      h.set(headers::kXForwardedClientCert, v);
    }
  }

  ActiveStream(ConnectionManagerImpl& p, ResponseEncoder& e)
      : parent(p), encoder(e),
        info(p.connection_->dispatcher().timeSource().systemTime(),
             p.connection_->dispatcher().approximateMonotonicTime()),
        id(randomU64()) {
    info.downstream_local_address = p.connection_->localAddress();
    info.downstream_remote_address = p.connection_->remoteAddress();
    info.downstream_direct_remote_address = p.connection_->remoteAddress();
    info.connection_id = p.connection_->id();
    info.downstream_ssl = p.connection_->ssl();
    encoder.getStream().addCallbacks(*this);
    for (const auto& factory : p.config_->filter_factories) factory(*this);
    // Encoder filters run in reverse order of their place in the chain.
    std::reverse(encoders.begin(), encoders.end());
    for (size_t i = 0; i < encoders.size(); ++i) encoders[i]->index = i;
    const auto& cfg = *p.config_;
    auto& dispatcher = p.connection_->dispatcher();
    startIdleTimer(cfg.stream_idle_timeout);
    if (cfg.request_headers_timeout.count() > 0) {
      headers_timer = dispatcher.createTimer([this] {
        parent.stats_.downstream_rq_header_timeout.inc();
        timeoutReply(408, "request_header_timeout", 0);
      });
      headers_timer->enableTimer(cfg.request_headers_timeout);
    }
    if (cfg.request_timeout.count() > 0) {
      request_timer = dispatcher.createTimer([this] {
        parent.stats_.downstream_rq_timeout.inc();
        timeoutReply(408, "request_overall_timeout", 0);
      });
      request_timer->enableTimer(cfg.request_timeout);
    }
    if (cfg.max_stream_duration.count() > 0) {
      duration_timer = dispatcher.createTimer([this] { onMaxDuration(); });
      duration_timer->enableTimer(cfg.max_stream_duration);
    }
  }

  ~ActiveStream() override = default;

  // FilterChainFactoryCallbacks
  void addStreamDecoderFilter(StreamDecoderFilterSharedPtr f) override {
    decoders.push_back(std::make_unique<DecoderEntry>(*this, f, decoders.size()));
    f->setDecoderFilterCallbacks(*decoders.back());
  }
  void addStreamEncoderFilter(StreamEncoderFilterSharedPtr f) override {
    encoders.push_back(std::make_unique<EncoderEntry>(*this, f, encoders.size()));
    f->setEncoderFilterCallbacks(*encoders.back());
  }
  void addStreamFilter(StreamFilterSharedPtr f) override {
    addStreamDecoderFilter(f);
    addStreamEncoderFilter(f);
    encoders.back()->dual = true;
  }

  // A stream's timestamps (start, bytes received and sent, completion: for access logs and
  // stats) are the dispatcher's time at the start of the current callback, refreshed at every
  // file event, timer and posted callback: no clock read for each of them.
  std::chrono::nanoseconds sinceStart() { return now() - info.start_monotonic; }

  event::MonotonicTime now() { return parent.connection_->dispatcher().approximateMonotonicTime(); }

  // The stream idle timeout runs on the worker's list of timers of its length
  // (event/timer_list.h): its durations come from config (the connection manager's, or a
  // route's), so there are a handful of lists, and arming or re-arming one is a relink, not
  // a libevent timer per stream. Zero turns it off.
  void startIdleTimer(std::chrono::milliseconds timeout) {
    if (timeout.count() == 0) {
      stopIdleTimer();
      return;
    }
    idle_list = &parent.connection_->dispatcher().timerList(timeout);
    idle_list->enable(*this);
  }
  void stopIdleTimer() {
    idle_list = nullptr;
    disableListTimer();
  }
  // Activity restarts the stream idle timeout.
  void resetIdleTimer() {
    if (idle_list != nullptr) idle_list->enable(*this);
  }
  void onListTimeout() override { onIdleTimeout(); }

  RouteConstSharedPtr route() {
    if (!route_resolved) {
      route_resolved = true;
      cached_route = (request_headers && parent.config_->route_table)
                         ? parent.config_->route_table->route(*request_headers, id)
                         : nullptr;
      if (cached_route) info.route_name = std::string(cached_route->name());
      if (cached_route && cached_route->streamDurationPolicy()) {
        refreshDurationTimeout(*cached_route->streamDurationPolicy());
      }
    }
    return cached_route;
  }

  // A route with max_stream_duration sets the stream's deadline (Envoy's rules): its
  // max_stream_duration, or the connection manager's, or with a grpc-timeout header and
  // grpc_timeout_header_max, that timeout capped and less the offset. A gRPC request's
  // grpc-timeout is lowered to the deadline so the upstream knows it too. Runs from the
  // stream's start, so the time already spent counts.
  void refreshDurationTimeout(const StreamDurationPolicy& p) {
    HeaderMap& h = *request_headers;
    const auto grpc_timeout = parseGrpcTimeout(h.getValue("grpc-timeout"));
    const bool grpc = isGrpcContentType(h.getValue(headers::kContentType));
    std::chrono::milliseconds timeout{0};
    bool disable = false;
    if (!grpc_timeout || !p.grpc_timeout_header_max) {
      if (p.max_stream_duration) {
        timeout = *p.max_stream_duration;
        disable = timeout.count() == 0;  // an explicit 0 turns the deadline off
      } else if (parent.config_->max_stream_duration.count() > 0) {
        timeout = parent.config_->max_stream_duration;
      } else {
        disable = true;
      }
    } else {
      timeout = *grpc_timeout;
      if (p.grpc_timeout_header_max->count() > 0 && timeout > *p.grpc_timeout_header_max) {
        timeout = *p.grpc_timeout_header_max;
      }
      if (timeout.count() > 0 && p.grpc_timeout_header_offset) {
        timeout = *p.grpc_timeout_header_offset < timeout ? timeout - *p.grpc_timeout_header_offset
                                                          : std::chrono::milliseconds(0);
      }
    }
    if (disable) {
      if (duration_timer) {
        duration_timer->disableTimer();
        if (grpc) h.remove("grpc-timeout");
      }
      return;
    }
    if (grpc && (!grpc_timeout || timeout < *grpc_timeout)) {
      h.set("grpc-timeout", formatGrpcTimeout(timeout));
    }
    // A deadline: the real clock (the stream's start may be a callback's start, earlier,
    // which only shortens what is left).
    const auto used = std::chrono::ceil<std::chrono::milliseconds>(
        parent.connection_->dispatcher().timeSource().monotonicTime() - info.start_monotonic);
    timeout = timeout > used ? timeout - used : std::chrono::milliseconds(0);
    if (!duration_timer) {
      duration_timer = parent.connection_->dispatcher().createTimer([this] { onMaxDuration(); });
    }
    duration_timer->enableTimer(timeout);
  }

  void onMaxDuration() {
    parent.stats_.downstream_rq_max_duration_reached.inc();
    // A gRPC client hears DEADLINE_EXCEEDED, as Envoy answers this timeout.
    const bool grpc = request_headers &&
                      isGrpcContentType(request_headers->getValue(headers::kContentType));
    ModifyHeadersCb modify;
    if (grpc) {
      modify = [](ResponseHeaderMap& h) {
        h.set("grpc-status", "4");
        h.set("grpc-message", "downstream duration timeout");
      };
    }
    timeoutReply(408, "max_duration_timeout", 0, modify);
  }

  // ---- RequestDecoder (from the codec)

  void decodeHeaders(HeaderMapPtr&& headers, bool end_stream) override {
    if (headers_timer) headers_timer->disableTimer();
    request_headers = std::move(headers);
    remote_complete = end_stream;
    SLUICE_LOG(debug, http, "[C{}][S{}] request {} {} (end_stream={})", parent.connection_->id(),
               id, request_headers->method(), request_headers->path(), end_stream);
    resetIdleTimer();
    info.protocol = parent.codec_->protocol();
    if (info.protocol == Protocol::Http2) {
      parent.stats_.downstream_rq_http2_total.inc();
    } else {
      parent.stats_.downstream_rq_http1_total.inc();
    }
    if (end_stream) onRequestComplete();
    if (!prepareRequest()) return;
    decodeHeadersFrom(0, end_stream);
  }

  void decodeData(buffer::Buffer& data, bool end_stream) override {
    if (decodingHalted()) {
      // The response is complete or on its way (or a local reply took over): the rest of the
      // request is not needed.
      data.drain(data.length());
      if (end_stream) {
        remote_complete = true;
        onRequestComplete();
        maybeEndStream();
      }
      return;
    }
    resetIdleTimer();
    info.bytes_received += data.length();
    remote_complete = end_stream;
    if (end_stream) onRequestComplete();
    decodeDataFrom(0, data, end_stream);
  }

  void decodeTrailers(HeaderMapPtr&& trailers) override {
    resetIdleTimer();
    request_trailers = std::move(trailers);
    remote_complete = true;
    onRequestComplete();
    if (decodingHalted()) {
      maybeEndStream();
      return;
    }
    decodeTrailersFrom(0);
  }

  void onRequestComplete() {
    info.last_downstream_rx_byte = sinceStart();
    if (request_timer) request_timer->disableTimer();
  }

  // Connection-level request handling before the filters see the headers. False when a
  // local reply was sent instead.
  bool prepareRequest() {
    const auto& cfg = *parent.config_;
    HeaderMap& h = *request_headers;
    const Protocol protocol = parent.codec_->protocol();

    // Keep-alive.
    const std::string_view connection_hdr = h.getValue(headers::kConnection);
    if (protocol == Protocol::Http10) {
      close_after = !headerHasToken(connection_hdr, "keep-alive");
    } else {
      close_after = headerHasToken(connection_hdr, "close");
    }

    // Upgrades (WebSocket).
    const std::string_view upgrade_hdr = h.getValue(headers::kUpgrade);
    if (!upgrade_hdr.empty() && headerHasToken(connection_hdr, "upgrade")) {
      if (!cfg.allow_websocket || !headerHasToken(upgrade_hdr, "websocket")) {
        parent.stats_.downstream_rq_ws_on_non_ws_route.inc();
        sendLocalReply(403, "", nullptr, "upgrade_failed");
        return false;
      }
      upgrade = true;
    }

    // 100-continue: answered here, not forwarded (Envoy's default, proxy_100_continue off).
    if (protocol == Protocol::Http11 &&
        headerHasToken(h.getValue(headers::kExpect), "100-continue")) {
      h.remove(headers::kExpect);
      auto cont = std::make_unique<HeaderMap>();
      cont->add(headers::kStatus, "100");
      encoder.encode1xxHeaders(*cont);
    }

    // Hop-by-hop headers stay on this hop.
    const bool te_trailers = headerHasToken(h.getValue(headers::kTe), "trailers");
    h.removeIf([&](const HeaderEntry& e) {
      if (upgrade && (e.key == headers::kUpgrade || e.key == headers::kConnection)) return false;
      return isHopByHopHeader(e.key);
    });
    if (upgrade) h.set(headers::kConnection, "upgrade");
    if (te_trailers) h.add(headers::kTe, "trailers");

    // The path.
    std::string path(h.path());
    if (path.empty() || (path[0] != '/' && !(path == "*" && h.method() == "OPTIONS"))) {
      parent.stats_.downstream_rq_non_relative_path.inc();
      sendLocalReply(404, "", nullptr, "absolute_path_rejected");
      return false;
    }
    if (path[0] == '/' && (cfg.normalize_path || cfg.merge_slashes)) {
      if (cfg.normalize_path) {
        normalizePath(path, cfg.merge_slashes);
      } else {
        mergeSlashes(path);
      }
      h.set(headers::kPath, path);
    }
    if (!h.has(headers::kScheme)) h.add(headers::kScheme, info.downstream_ssl ? "https" : "http");

    // x-forwarded-for, the trusted client address and internal or external origin, by Envoy's
    // rules (its docs: "HTTP header manipulation", x-forwarded-for).
    const auto& remote = parent.connection_->remoteAddress();
    const std::string xff(h.getValue(headers::kXForwardedFor));
    const uint32_t hops = cfg.xff_num_trusted_hops;
    auto fromXff = [&](uint32_t skip) -> network::AddressConstSharedPtr {
      const std::string_view a = trustedXffAddress(xff, skip);
      if (a.empty()) return nullptr;
      std::string error;
      return network::fromIp(a, 0, &error);
    };
    network::AddressConstSharedPtr trusted;
    bool internal = false;
    if (cfg.use_remote_address) {
      // The connection's address, or with N trusted hops the Nth address from the right.
      if (hops > 0) trusted = fromXff(hops - 1);
      internal = xff.empty() && remote && remote->isInternal();
      if (remote && remote->isIp()) h.append(headers::kXForwardedFor, remote->ip());
      h.set(headers::kXForwardedProto, h.scheme());
    } else {
      // The (N+1)th address from the right of x-forwarded-for.
      trusted = fromXff(hops);
      internal =
          !xff.empty() && xff.find(',') == std::string::npos && trusted && trusted->isInternal();
      if (!h.has(headers::kXForwardedProto)) h.add(headers::kXForwardedProto, h.scheme());
    }
    if (!trusted) trusted = remote;
    info.downstream_remote_address = trusted;
    edge_request = cfg.use_remote_address && !internal;
    if (edge_request) {
      // An external client does not get to steer the proxy with Envoy's internal headers.
      h.removeIf([](const HeaderEntry& e) {
        return e.key.size() > 8 && e.key.compare(0, 8, "x-envoy-") == 0;
      });
      if (trusted && trusted->isIp()) h.set(headers::kXEnvoyExternalAddress, trusted->ip());
    }
    if (internal) {
      h.set(headers::kXEnvoyInternal, "true");
    } else {
      h.remove(headers::kXEnvoyInternal);
    }
    forwardClientCert(h, cfg);

    // x-request-id.
    if (cfg.generate_request_id) {
      const bool keep =
          h.has(headers::kXRequestId) && (!edge_request || cfg.preserve_external_request_id);
      if (!keep) h.set(headers::kXRequestId, randomUuid());
    }
    info.request_id = std::string(h.getValue(headers::kXRequestId));

    if (!cfg.via.empty()) h.append(headers::kVia, cfg.via);
    return true;
  }

  // ---- Decoder filter iteration

  // The decoder filters get nothing more: the stream is gone, a local reply took over, or the
  // whole response is on its way (an upgraded stream keeps its request side until it ends).
  bool decodingHalted() const {
    return destroyed || local_reply || (encode_end_received && !upgrade);
  }

  // Runs one decoder filter callback. A continueDecoding() from inside it, and a local reply
  // asked for inside it, wait until it has returned.
  template <class Fn>
  auto callDecoder(DecoderEntry& d, Fn&& fn) {
    ++d.it.in_callback;
    ++decode_callback_depth;
    const auto status = fn();
    --d.it.in_callback;
    --decode_callback_depth;
    if (decode_callback_depth == 0 && pending_local_reply) sendPendingLocalReply();
    return status;
  }

  static bool takeContinueRequest(Iteration& it) {
    const bool requested = it.continue_requested;
    it.continue_requested = false;
    return requested;
  }

  bool overBufferLimit(const buffer::Buffer& b) const {
    const uint32_t limit = parent.connection_->bufferLimit();
    return limit > 0 && b.length() > limit;
  }

  // Keeps `data` for a stopped decoder filter. False if that took the kept request body over
  // the buffer limit with StopIterationAndBuffer: the request failed (413).
  bool holdDecodeData(DecoderEntry& d, buffer::Buffer& data, bool streaming) {
    if (!d.held) {
      d.held = std::make_unique<buffer::WatermarkBuffer>(
          [this, &d] {
            if (!d.held_paused) return;
            d.held_paused = false;
            readDisableDownstream(false);
          },
          [this, &d] {
            if (!d.held_streaming || d.held_paused) return;
            d.held_paused = true;
            readDisableDownstream(true);
          });
      d.held->setWatermarks(parent.connection_->bufferLimit());
    }
    d.held_streaming = streaming;  // before the move: the watermark callback reads it
    d.held->move(data);
    if (streaming || !overBufferLimit(*d.held)) return true;
    parent.stats_.downstream_rq_too_large.inc();
    sendLocalReply(413, statusReason(413), nullptr, "request_payload_too_large");
    return false;
  }

  // Runs the request headers through decoder filters [from, end).
  void decodeHeadersFrom(size_t from, bool end_stream) {
    for (size_t i = from; i < decoders.size(); ++i) {
      DecoderEntry& d = *decoders[i];
      d.it.headers_called = true;
      d.it.end_seen = end_stream;
      FilterHeadersStatus status =
          callDecoder(d, [&] { return d.filter->decodeHeaders(*request_headers, end_stream); });
      if (decodingHalted()) return;
      if (takeContinueRequest(d.it)) status = FilterHeadersStatus::Continue;
      if (status == FilterHeadersStatus::StopIteration) {
        d.it.stopped = true;
        return;
      }
      d.it.headers_continued = true;
    }
  }

  // Runs request data through decoder filters [from, end). Data that gets past the last
  // filter has no taker and is dropped.
  void decodeDataFrom(size_t from, buffer::Buffer& data, bool end_stream) {
    for (size_t i = from; i < decoders.size(); ++i) {
      DecoderEntry& d = *decoders[i];
      SLUICE_ASSERT(d.it.headers_called, "request data reached a filter before the headers");
      if (d.it.end_seen) return;  // it had the end already: nothing may follow
      d.it.end_seen = end_stream;
      const FilterDataStatus status =
          callDecoder(d, [&] { return d.filter->decodeData(data, end_stream); });
      if (decodingHalted()) return;
      const bool resume = takeContinueRequest(d.it);
      if (status == FilterDataStatus::Continue) {
        if (!d.it.stopped) continue;
        // Continue from a stopped filter: iteration resumes, this data after what it kept.
        resumeDecoding(i, &data);
        return;
      }
      d.it.stopped = true;
      if (status != FilterDataStatus::StopIterationNoBuffer &&
          !holdDecodeData(d, data, status == FilterDataStatus::StopIterationAndWatermark)) {
        return;
      }
      if (resume) resumeDecoding(i, nullptr);
      return;
    }
    data.drain(data.length());
  }

  // Runs the request trailers through decoder filters [from, end).
  void decodeTrailersFrom(size_t from) {
    for (size_t i = from; i < decoders.size(); ++i) {
      DecoderEntry& d = *decoders[i];
      SLUICE_ASSERT(d.it.headers_called, "request trailers reached a filter before the headers");
      if (d.it.end_seen) return;
      d.it.end_seen = true;
      d.it.trailers_seen = true;
      const FilterTrailersStatus status =
          callDecoder(d, [&] { return d.filter->decodeTrailers(*request_trailers); });
      if (decodingHalted()) return;
      const bool resume = takeContinueRequest(d.it);
      if (status == FilterTrailersStatus::Continue) {
        if (!d.it.stopped) continue;
        resumeDecoding(i, nullptr);
        return;
      }
      d.it.stopped = true;
      if (resume) resumeDecoding(i, nullptr);
      return;
    }
  }

  // Decoder filter `index` continues: the filters after it get, in order, what it held back.
  // `more` is data that came with a Continue from its decodeData(), after what it kept.
  void resumeDecoding(size_t index, buffer::Buffer* more) {
    DecoderEntry& d = *decoders[index];
    if (decodingHalted() || !d.it.stopped) return;
    d.it.stopped = false;
    const size_t next = index + 1;
    const bool trailers = d.it.trailers_seen;
    const bool data_end = d.it.end_seen && !trailers;
    const bool has_data = d.holdsData() || (more != nullptr && !more->empty());
    if (!d.it.headers_continued) {
      d.it.headers_continued = true;
      decodeHeadersFrom(next, data_end && !has_data);
      if (decodingHalted()) return;
    }
    // The end travels with data when the headers did not carry it: an empty frame if this
    // filter took the last bytes itself.
    const bool next_has_end = next < decoders.size() && decoders[next]->it.end_seen;
    if (has_data || (data_end && !next_has_end)) {
      buffer::Buffer data;
      if (d.held) data.move(*d.held);
      if (more != nullptr) data.move(*more);
      decodeDataFrom(next, data, data_end);
      if (decodingHalted()) return;
    }
    if (trailers) decodeTrailersFrom(next);
  }

  // ---- Encoder filter iteration (the response, from a decoder filter or a local reply)

  // The encoder filters get nothing more: the stream is gone or the response is complete.
  bool encodingHalted() const { return destroyed || local_complete; }

  template <class Fn>
  auto callEncoder(EncoderEntry& e, Fn&& fn) {
    ++e.it.in_callback;
    const auto status = fn();
    --e.it.in_callback;
    return status;
  }

  // Keeps `data` for a stopped encoder filter. False if that took the kept response body over
  // the buffer limit with StopIterationAndBuffer: the response failed (500, or a reset).
  bool holdEncodeData(EncoderEntry& e, buffer::Buffer& data, bool streaming) {
    if (!e.held) {
      e.held = std::make_unique<buffer::WatermarkBuffer>(
          [this, &e] {
            if (!e.held_paused) return;
            e.held_paused = false;
            for (auto* cb : watermark_callbacks) cb->onBelowWriteBufferLowWatermark();
          },
          [this, &e] {
            if (!e.held_streaming || e.held_paused) return;
            e.held_paused = true;
            for (auto* cb : watermark_callbacks) cb->onAboveWriteBufferHighWatermark();
          });
      e.held->setWatermarks(parent.connection_->bufferLimit());
    }
    e.held_streaming = streaming;
    e.held->move(data);
    if (streaming || !overBufferLimit(*e.held)) return true;
    parent.stats_.rs_too_large.inc();
    sendLocalReply(500, statusReason(500), nullptr, "response_payload_too_large");
    return false;
  }

  void encode1xxHeaders(HeaderMapPtr&& headers) {
    if (destroyed || local_complete || local_reply || response_started) return;
    encoder.encode1xxHeaders(*headers);
  }

  // The response from a decoder filter (the router, or a filter that answers itself). One
  // response per stream: after a local reply, or a second time, these do nothing.
  void encodeHeadersFromFilter(HeaderMapPtr&& headers, bool end_stream, std::string_view details) {
    if (destroyed || local_reply || response_headers) return;
    info.response_code_details = details;
    beginEncodeHeaders(std::move(headers), end_stream);
  }
  void encodeDataFromFilter(buffer::Buffer& data, bool end_stream) {
    if (destroyed || local_reply || !response_headers || encode_end_received) {
      data.drain(data.length());
      return;
    }
    beginEncodeData(data, end_stream);
  }
  void encodeTrailersFromFilter(HeaderMapPtr&& trailers) {
    if (destroyed || local_reply || !response_headers || encode_end_received) return;
    response_trailers = std::move(trailers);
    encode_end_received = true;
    encodeTrailersFrom(0);
  }

  void beginEncodeHeaders(HeaderMapPtr&& headers, bool end_stream) {
    response_headers = std::move(headers);
    if (end_stream) encode_end_received = true;
    encodeHeadersFrom(0, end_stream);
  }
  void beginEncodeData(buffer::Buffer& data, bool end_stream) {
    resetIdleTimer();
    if (end_stream) encode_end_received = true;
    encodeDataFrom(0, data, end_stream);
  }

  // Runs the response headers through encoder filters [from, end), then to the codec.
  void encodeHeadersFrom(size_t from, bool end_stream) {
    for (size_t i = from; i < encoders.size(); ++i) {
      EncoderEntry& e = *encoders[i];
      e.it.headers_called = true;
      e.it.end_seen = end_stream;
      FilterHeadersStatus status =
          callEncoder(e, [&] { return e.filter->encodeHeaders(*response_headers, end_stream); });
      if (encodingHalted()) return;
      if (takeContinueRequest(e.it)) status = FilterHeadersStatus::Continue;
      if (status == FilterHeadersStatus::StopIteration) {
        e.it.stopped = true;
        return;
      }
      e.it.headers_continued = true;
    }
    finalEncodeHeaders(end_stream);
  }

  // The response headers, past every encoder filter: connection-level headers, stats, codec.
  void finalEncodeHeaders(bool end_stream) {
    const auto& cfg = *parent.config_;
    HeaderMap& h = *response_headers;
    const uint32_t status = h.status();
    info.response_code = status;
    const bool switching = upgrade && status == 101;
    if (!switching) {
      h.removeIf([](const HeaderEntry& e) { return isHopByHopHeader(e.key); });
    }
    switch (cfg.server_header_transformation) {
      case ServerHeaderTransformation::Overwrite:
        h.set(headers::kServer, cfg.server_name);
        break;
      case ServerHeaderTransformation::AppendIfAbsent:
        if (!h.has(headers::kServer)) h.add(headers::kServer, cfg.server_name);
        break;
      case ServerHeaderTransformation::PassThrough:
        break;
    }
    if (!cfg.via.empty()) h.append(headers::kVia, cfg.via);
    if (upgrade && !switching) close_after = true;
    if (parent.draining_) {
      close_after = true;
      parent.stats_.downstream_cx_drain_close.inc();
    }
    if (close_after && !switching) h.set(headers::kConnection, "close");
    response_started = true;
    info.first_downstream_tx_byte = sinceStart();
    if (status >= 100 && status < 600) {
      switch (status / 100) {
        case 1:
          parent.stats_.downstream_rq_1xx.inc();
          break;
        case 2:
          parent.stats_.downstream_rq_2xx.inc();
          break;
        case 3:
          parent.stats_.downstream_rq_3xx.inc();
          break;
        case 4:
          parent.stats_.downstream_rq_4xx.inc();
          break;
        case 5:
          parent.stats_.downstream_rq_5xx.inc();
          break;
      }
    }
    if (switching) {
      parent.stats_.downstream_cx_upgrades_total.inc();
      parent.stats_.downstream_cx_upgrades_active.inc();
      upgrade_counted = true;
      // A tunnel is open-ended: no request or idle deadlines for it beyond the stream idle.
      if (request_timer) request_timer->disableTimer();
      if (duration_timer) duration_timer->disableTimer();
    }
    if (close_after) parent.close_after_stream_ = true;
    SLUICE_LOG(debug, http, "[C{}][S{}] response {} (end_stream={}, details={})",
               parent.connection_->id(), id, status, end_stream, info.response_code_details);
    encoder.encodeHeaders(h, end_stream);
    if (end_stream && !destroyed) onResponseComplete();
  }

  // Runs response data through encoder filters [from, end), then to the codec.
  void encodeDataFrom(size_t from, buffer::Buffer& data, bool end_stream) {
    for (size_t i = from; i < encoders.size(); ++i) {
      EncoderEntry& e = *encoders[i];
      SLUICE_ASSERT(e.it.headers_called, "response data reached a filter before the headers");
      if (e.it.end_seen) return;  // it had the end already: nothing may follow
      e.it.end_seen = end_stream;
      const FilterDataStatus status =
          callEncoder(e, [&] { return e.filter->encodeData(data, end_stream); });
      if (encodingHalted()) return;
      const bool resume = takeContinueRequest(e.it);
      if (status == FilterDataStatus::Continue) {
        if (!e.it.stopped) continue;
        // Continue from a stopped filter: iteration resumes, this data after what it kept.
        resumeEncoding(i, &data);
        return;
      }
      e.it.stopped = true;
      if (status != FilterDataStatus::StopIterationNoBuffer &&
          !holdEncodeData(e, data, status == FilterDataStatus::StopIterationAndWatermark)) {
        return;
      }
      if (resume) resumeEncoding(i, nullptr);
      return;
    }
    info.bytes_sent += data.length();
    encoder.encodeData(data, end_stream);
    if (end_stream && !destroyed) onResponseComplete();
  }

  // Runs the response trailers through encoder filters [from, end), then to the codec.
  void encodeTrailersFrom(size_t from) {
    for (size_t i = from; i < encoders.size(); ++i) {
      EncoderEntry& e = *encoders[i];
      SLUICE_ASSERT(e.it.headers_called, "response trailers reached a filter before the headers");
      if (e.it.end_seen) return;
      e.it.end_seen = true;
      e.it.trailers_seen = true;
      const FilterTrailersStatus status =
          callEncoder(e, [&] { return e.filter->encodeTrailers(*response_trailers); });
      if (encodingHalted()) return;
      const bool resume = takeContinueRequest(e.it);
      if (status == FilterTrailersStatus::Continue) {
        if (!e.it.stopped) continue;
        resumeEncoding(i, nullptr);
        return;
      }
      e.it.stopped = true;
      if (resume) resumeEncoding(i, nullptr);
      return;
    }
    encoder.encodeTrailers(*response_trailers);
    if (!destroyed) onResponseComplete();
  }

  // Encoder filter `index` continues: the filters after it (and then the codec) get, in
  // order, what it held back. `more` is data that came with a Continue from its encodeData().
  void resumeEncoding(size_t index, buffer::Buffer* more) {
    EncoderEntry& e = *encoders[index];
    if (encodingHalted() || !e.it.stopped) return;
    e.it.stopped = false;
    const size_t next = index + 1;
    const bool trailers = e.it.trailers_seen;
    const bool data_end = e.it.end_seen && !trailers;
    const bool has_data = e.holdsData() || (more != nullptr && !more->empty());
    if (!e.it.headers_continued) {
      e.it.headers_continued = true;
      encodeHeadersFrom(next, data_end && !has_data);
      if (encodingHalted()) return;
    }
    // Past the last filter is the codec, which has not had the end while the stream runs.
    const bool next_has_end = next < encoders.size() && encoders[next]->it.end_seen;
    if (has_data || (data_end && !next_has_end)) {
      buffer::Buffer data;
      if (e.held) data.move(*e.held);
      if (more != nullptr) data.move(*more);
      encodeDataFrom(next, data, data_end);
      if (encodingHalted()) return;
    }
    if (trailers) encodeTrailersFrom(next);
  }

  // ---- Local replies

  struct LocalReply {
    HeaderMapPtr headers;
    std::string body;  // empty for HEAD
  };

  // Envoy's rules: before any response, the reply runs through all encoder filters (asked
  // from inside a decoder callback: once it returns, and no decoder filter runs after it).
  // With response headers in the encoder filters but not sent, the reply replaces them and
  // goes straight to the codec, so that no filter sees a second response. After headers
  // went out, all that is left is a reset.
  void sendLocalReply(uint32_t code, std::string_view body, const ModifyHeadersCb& modify,
                      std::string_view details) {
    if (destroyed || local_complete || pending_local_reply) return;
    info.response_code_details = details;
    if (response_started) {
      // Too late for a reply: the client has seen part of a response.
      resetStream(StreamResetReason::LocalReset);
      return;
    }
    local_reply = true;
    // The rest of the request will not be read: say that the connection closes.
    if (!remote_complete && !upgrade) close_after = true;
    // The headers are built now: `modify` may refer to the caller's locals.
    LocalReply reply;
    reply.headers = std::make_unique<HeaderMap>();
    reply.headers->add(headers::kStatus, std::to_string(code));
    const bool is_head = request_headers && request_headers->method() == "HEAD";
    if (request_headers && isGrpcContentType(request_headers->getValue(headers::kContentType))) {
      // A gRPC client gets a gRPC error, as Envoy sends it: HTTP 200, trailers-only, the
      // status mapped from the HTTP code (unless the caller set one) and the body as
      // grpc-message.
      if (modify) modify(*reply.headers);
      reply.headers->set(headers::kStatus, "200");
      reply.headers->set(headers::kContentType, "application/grpc");
      reply.headers->remove(headers::kContentLength);
      if (!reply.headers->get("grpc-status")) {
        reply.headers->set("grpc-status", std::to_string(httpToGrpcStatus(code)));
      }
      if (!body.empty() && !is_head) reply.headers->set("grpc-message", grpcMessageEncode(body));
    } else {
      if (!body.empty()) {
        reply.headers->add(headers::kContentLength, std::to_string(body.size()));
        reply.headers->add(headers::kContentType, "text/plain");
      }
      if (modify) modify(*reply.headers);
      if (!is_head) reply.body = std::string(body);
    }
    if (response_headers) {
      sendDirectLocalReply(std::move(reply));
    } else if (decode_callback_depth > 0) {
      pending_local_reply = std::move(reply);
    } else {
      sendLocalReplyThroughFilters(std::move(reply));
    }
  }

  void sendPendingLocalReply() {
    LocalReply reply = std::move(*pending_local_reply);
    pending_local_reply.reset();
    if (destroyed || local_complete) return;
    sendLocalReplyThroughFilters(std::move(reply));
  }

  void sendLocalReplyThroughFilters(LocalReply&& reply) {
    const bool end = reply.body.empty();
    beginEncodeHeaders(std::move(reply.headers), end);
    if (end || encodingHalted()) return;
    buffer::Buffer b;
    b.add(reply.body);
    beginEncodeData(b, true);
  }

  void sendDirectLocalReply(LocalReply&& reply) {
    SLUICE_LOG(debug, http, "[C{}][S{}] local reply replaces response headers not yet sent",
               parent.connection_->id(), id);
    // An encoder filter may be inside a callback with the old headers: keep them alive.
    replaced_response_headers = std::move(response_headers);
    response_headers = std::move(reply.headers);
    encode_end_received = true;
    const bool end = reply.body.empty();
    finalEncodeHeaders(end);
    if (end || encodingHalted()) return;
    buffer::Buffer b;
    b.add(reply.body);
    info.bytes_sent += b.length();
    encoder.encodeData(b, true);
    if (!destroyed) onResponseComplete();
  }

  void timeoutReply(uint32_t code, std::string_view details, uint32_t flag,
                    const ModifyHeadersCb& modify = nullptr) {
    if (flag) info.setResponseFlag(static_cast<ResponseFlag>(flag));
    if (response_started) {
      resetStream(StreamResetReason::LocalReset);
    } else {
      close_after = true;  // the request may be incomplete: the connection cannot be reused
      sendLocalReply(code, "", modify, details);
    }
  }

  void onIdleTimeout() {
    parent.stats_.downstream_rq_idle_timeout.inc();
    timeoutReply(408, "stream_idle_timeout", ResponseFlag::StreamIdleTimeout);
  }

  void onResponseComplete() {
    local_complete = true;
    info.last_downstream_tx_byte = sinceStart();
    stopIdleTimer();
    if (request_timer) request_timer->disableTimer();
    if (headers_timer) headers_timer->disableTimer();
    if (duration_timer) duration_timer->disableTimer();
    if (!remote_complete && !upgrade) {
      // The response finished first (a local reply, or an upstream that did not wait):
      // HTTP/1 cannot resynchronise on the rest of the request, so the connection closes.
      parent.stats_.downstream_rq_response_before_rq_complete.inc();
      close_after = true;
      parent.close_after_stream_ = true;
      remote_complete = true;
    }
    maybeEndStream();
  }

  void maybeEndStream() {
    if (local_complete && remote_complete && !destroyed) parent.doEndStream(*this);
  }

  void readDisableDownstream(bool disable) {
    if (destroyed) return;
    if (disable) {
      ++read_disabled;
      encoder.getStream().readDisable(true);
    } else if (read_disabled > 0) {
      --read_disabled;
      encoder.getStream().readDisable(false);
    }
  }

  // ---- StreamCallbacks (the downstream stream was reset)

  void onResetStream(StreamResetReason reason, std::string_view details) override {
    if (destroyed) return;
    if (reason == StreamResetReason::ConnectionTermination ||
        reason == StreamResetReason::RemoteReset) {
      parent.stats_.downstream_rq_rx_reset.inc();
      info.setResponseFlag(ResponseFlag::DownstreamConnectionTermination);
    } else {
      parent.stats_.downstream_rq_tx_reset.inc();
    }
    if (info.response_code_details.empty())
      info.response_code_details = "downstream_remote_disconnect";
    read_disabled = 0;  // the stream is gone: nothing to re-enable
    parent.doEndStream(*this);
  }
  void onAboveWriteBufferHighWatermark() override {
    for (auto* cb : watermark_callbacks) cb->onAboveWriteBufferHighWatermark();
  }
  void onBelowWriteBufferLowWatermark() override {
    for (auto* cb : watermark_callbacks) cb->onBelowWriteBufferLowWatermark();
  }

  void resetStream(StreamResetReason reason) {
    if (destroyed) return;
    // Counted as downstream_rq_tx_reset by onResetStream, which the codec calls back.
    info.setResponseFlag(ResponseFlag::LocalReset);
    // HTTP/1: a reset closes the connection; the codec reports it back through
    // onResetStream, which ends the stream.
    encoder.getStream().resetStream(reason);
    if (!destroyed) parent.doEndStream(*this);
  }

  void resetFromFilter() { resetStream(StreamResetReason::LocalReset); }

  void destroyFilters() {
    destroyed = true;
    for (auto& d : decoders) d->filter->onDestroy();
    for (auto& e : encoders) {
      if (!e->dual) e->filter->onDestroy();
    }
    stopIdleTimer();
    request_timer.reset();
    headers_timer.reset();
    duration_timer.reset();
  }

  ConnectionManagerImpl& parent;
  ResponseEncoder& encoder;
  StreamInfo info;
  const uint64_t id;
  HeaderMapPtr request_headers;
  HeaderMapPtr request_trailers;
  HeaderMapPtr response_headers;
  HeaderMapPtr replaced_response_headers;  // what a direct local reply replaced
  HeaderMapPtr response_trailers;
  // Inline room for the usual chain (the router and a few filters before it).
  SmallVector<std::unique_ptr<DecoderEntry>, 4> decoders;
  SmallVector<std::unique_ptr<EncoderEntry>, 4> encoders;
  SmallVector<DownstreamWatermarkCallbacks*, 2> watermark_callbacks;
  std::optional<LocalReply> pending_local_reply;  // asked for inside a decoder callback
  event::TimerList* idle_list{nullptr};  // the stream idle timeout's, while it runs
  event::TimerPtr request_timer;
  event::TimerPtr headers_timer;
  event::TimerPtr duration_timer;
  RouteConstSharedPtr cached_route;
  uint32_t read_disabled{0};
  uint32_t decode_callback_depth{0};  // decoder filter callbacks running
  bool route_resolved{false};
  bool remote_complete{false};
  bool encode_end_received{false};  // the end of the response entered the encoder filters
  bool local_reply{false};          // a local reply took over the response
  bool local_complete{false};       // the response went to the codec in full
  bool response_started{false};     // response headers went to the codec
  bool close_after{false};
  bool upgrade{false};
  bool upgrade_counted{false};
  bool edge_request{false};
  bool destroyed{false};
  ActiveStream* prev{nullptr};  // in the connection's list of streams
  ActiveStream* next{nullptr};
};

// ---------------------------------------------------------------------------------------

ConnectionManagerImpl::ConnectionManagerImpl(ConnectionManagerConfigConstSharedPtr config)
    : config_(std::move(config)), stats_(*config_->stats) {}

ConnectionManagerImpl::~ConnectionManagerImpl() {
  while (streams_head_ != nullptr) {
    ActiveStream* s = streams_head_;
    unlinkStream(*s);
    delete s;
  }
}

void ConnectionManagerImpl::linkStream(ActiveStream& stream) {
  stream.prev = nullptr;
  stream.next = streams_head_;
  if (streams_head_ != nullptr) {
    streams_head_->prev = &stream;
  } else {
    streams_tail_ = &stream;
  }
  streams_head_ = &stream;
  ++stream_count_;
}

void ConnectionManagerImpl::unlinkStream(ActiveStream& stream) {
  (stream.prev != nullptr ? stream.prev->next : streams_head_) = stream.next;
  (stream.next != nullptr ? stream.next->prev : streams_tail_) = stream.prev;
  stream.prev = stream.next = nullptr;
  --stream_count_;
}

void ConnectionManagerImpl::initializeReadFilterCallbacks(network::ReadFilterCallbacks& callbacks) {
  connection_ = &callbacks.connection();
  connection_->addConnectionCallbacks(*this);
  connected_at_ = connection_->dispatcher().timeSource().monotonicTime();
  connection_->setDelayedCloseTimeout(config_->delayed_close_timeout);
  stats_.downstream_cx_total.inc();
  stats_.downstream_cx_active.inc();
  connection_->setConnectionStats(&stats_.downstream_cx_bytes);
  // AUTO waits for the first bytes to tell the protocol.
  if (config_->codec_type == CodecType::Http1) createCodec("http/1.1");
  if (config_->codec_type == CodecType::Http2) createCodec("h2");
  armIdleTimer();
}

void ConnectionManagerImpl::armIdleTimer() {
  if (config_->idle_timeout.count() > 0) {
    connection_->dispatcher().timerList(config_->idle_timeout).enable(*this);
  }
}

network::FilterStatus ConnectionManagerImpl::onNewConnection() {
  return network::FilterStatus::Continue;
}

network::FilterStatus ConnectionManagerImpl::onData(buffer::Buffer& data, bool end_stream) {
  if (closed_) {
    data.drain(data.length());
    return network::FilterStatus::StopIteration;
  }
  if (!codec_) {
    if (http1_) {
      createCodec("http/1.1");  // the next request on an idle HTTP/1 connection
    } else {
      bool need_more = false;
      const bool h2 = http2::startsWithPreface(data, need_more);
      if (need_more) return network::FilterStatus::StopIteration;
      createCodec(h2 ? "h2" : "http/1.1");
    }
  }
  dispatching_ = true;
  CodecStatus status = codec_->dispatch(data);
  dispatching_ = false;
  if (!status.ok()) {
    stats_.downstream_cx_protocol_error.inc();
    // Answer the request that broke, if its response has not started; then close.
    if (streams_tail_ != nullptr) {
      ActiveStream& s = *streams_tail_;
      s.info.setResponseFlag(ResponseFlag::DownstreamProtocolError);
      s.close_after = true;
      if (!s.response_started && status.http_status != 0) {
        s.sendLocalReply(status.http_status, "", nullptr, status.details);
      }
    }
    resetAllStreams(StreamResetReason::ProtocolError);
    closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
    data.drain(data.length());
    return network::FilterStatus::StopIteration;
  }
  if (end_stream && codec_) {
    // Only with half-close enabled: the client ended its side (a tunnel passes it on).
    codec_->onReadEndStream();
  }
  // A request answered within this dispatch (a local reply) ended its stream before the codec
  // finished the request; and bytes that began no request leave it idle too.
  if (streams_head_ == nullptr && !closed_) releaseIdleCodec();
  return network::FilterStatus::StopIteration;
}

RequestDecoder& ConnectionManagerImpl::newStream(ResponseEncoder& encoder) {
  disableListTimer();
  stats_.downstream_rq_total.inc();
  stats_.downstream_rq_active.inc();
  if (config_->max_requests_per_connection > 0 && !draining_ &&
      ++requests_ >= config_->max_requests_per_connection) {
    // The last request this connection takes: HTTP/1 answers it with connection: close,
    // HTTP/2 sends GOAWAY; the connection closes once its streams are done (Envoy's drain).
    stats_.downstream_cx_max_requests_reached.inc();
    draining_ = true;
    if (http2_) codec_->goAway();
  }
  auto* stream = new ActiveStream(*this, encoder);
  linkStream(*stream);
  return *stream;
}

void ConnectionManagerImpl::doEndStream(ActiveStream& stream) {
  if (stream.destroyed) return;
  if (!stream.local_complete) {
    // Ended before the response completed (reset, downstream gone).
    stream.info.last_downstream_tx_byte = stream.sinceStart();
  }
  stream.info.request_complete = stream.sinceStart();
  for (const auto& log : config_->access_logs) {
    log->log(stream.request_headers.get(), stream.response_headers.get(),
             stream.response_trailers.get(), stream.info);
  }
  stats_.downstream_rq_active.dec();
  stats_.downstream_rq_completed.inc();
  stats_.downstream_rq_time.recordValue(
      std::chrono::duration_cast<std::chrono::milliseconds>(*stream.info.request_complete).count());
  if (stream.upgrade_counted) stats_.downstream_cx_upgrades_active.dec();
  // Re-enable reads that this stream paused.
  while (stream.read_disabled > 0) {
    --stream.read_disabled;
    stream.encoder.getStream().readDisable(false);
  }
  stream.encoder.getStream().removeCallbacks(stream);
  stream.destroyFilters();
  unlinkStream(stream);
  connection_->dispatcher().deferredDelete(std::unique_ptr<ActiveStream>(&stream));
  checkForDeferredClose();
}

void ConnectionManagerImpl::createCodec(std::string_view protocol) {
  if (protocol == "h2") {
    http2_ = true;
    stats_.downstream_cx_http2_total.inc();
    stats_.downstream_cx_http2_active.inc();
    http2::CodecSettings settings = config_->http2_settings;
    settings.max_headers_kb = config_->http1_settings.max_request_headers_kb;
    settings.max_headers_count = config_->http1_settings.max_headers_count;
    codec_ = http2::createServerCodec(*connection_, *this, settings);
    if (draining_) codec_->goAway();
    return;
  }
  if (!http1_) {
    http1_ = true;
    stats_.downstream_cx_http1_total.inc();
    stats_.downstream_cx_http1_active.inc();
  }
  codec_ = http1::createServerCodec(*connection_, *this, config_->http1_settings, {});
}

void ConnectionManagerImpl::releaseIdleCodec() {
  // Not inside dispatch(): a stream that a filter answered at once may end there while the
  // codec's parse loop has a pipelined request still to parse (onData lets it go after). And
  // deferred: this may run inside another call that came through the codec.
  if (codec_ && http1_ && !dispatching_ && codec_->releasableWhenIdle()) {
    connection_->dispatcher().deferredDelete(std::move(codec_));
  }
}

void ConnectionManagerImpl::checkForDeferredClose() {
  if (closed_ || streams_head_ != nullptr) return;
  // HTTP/2: one stream's "close" is that stream's end, not the connection's.
  // A soft drain (a listener update) closes an HTTP/1 connection only after a response that
  // said so: one that began before the drain did not, and its client may already reuse it.
  if ((close_after_stream_ && !http2_) ||
      (draining_ && (http2_ ? !final_goaway_pending_ : drain_close_idle_))) {
    if (http2_ && codec_->hasStreamsToFinish()) {
      // A response's end still waits for the client's window: closing now would cut it. The
      // codec closes the connection once it is out (the final GOAWAY went); the idle timeout
      // bounds a client that never opens its window.
      armIdleTimer();
      return;
    }
    closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
    return;
  }
  releaseIdleCodec();
  armIdleTimer();
}

void ConnectionManagerImpl::startDrain(bool close_idle) {
  const bool was_draining = draining_;
  draining_ = true;
  drain_close_idle_ = drain_close_idle_ || close_idle;
  if (http2_ && !close_idle && config_->drain_timeout.count() > 0) {
    // A soft drain (a listener update) of HTTP/2, as Envoy's drain_timeout has it: a GOAWAY
    // with a final stream id at once would refuse the streams the client has in flight (a
    // client that does not retry them fails them: found under load, h2load through an LDS
    // update). So a shutdown notice now, the final GOAWAY after drain_timeout.
    if (!was_draining) {
      final_goaway_pending_ = true;
      codec_->shutdownNotice();
      drain_timer_ = connection_->dispatcher().createTimer([this] {
        final_goaway_pending_ = false;
        if (closed_) return;
        codec_->goAway();
        checkForDeferredClose();
      });
      drain_timer_->enableTimer(config_->drain_timeout);
    }
  } else if (http2_) {
    final_goaway_pending_ = false;
    if (drain_timer_) drain_timer_->disableTimer();
    codec_->goAway();
  }
  if (streams_head_ == nullptr && close_idle) {
    stats_.downstream_cx_drain_close.inc();
    closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
  }
}

void ConnectionManagerImpl::onIdleTimeout() {
  if (streams_head_ != nullptr) return;
  stats_.downstream_cx_idle_timeout.inc();
  closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
}

void ConnectionManagerImpl::closeConnection(network::ConnectionCloseType type) {
  if (closed_) return;
  connection_->close(type);
}

void ConnectionManagerImpl::resetAllStreams(StreamResetReason reason) {
  while (streams_head_ != nullptr) {
    ActiveStream& s = *streams_head_;
    if (reason == StreamResetReason::ConnectionTermination) {
      s.info.setResponseFlag(ResponseFlag::DownstreamConnectionTermination);
      if (s.info.response_code_details.empty()) {
        s.info.response_code_details = "downstream_remote_disconnect";
      }
      stats_.downstream_rq_rx_reset.inc();
    }
    s.read_disabled = 0;
    doEndStream(s);
  }
}

void ConnectionManagerImpl::onEvent(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::Connected) return;
  const bool had_streams = streams_head_ != nullptr;
  closed_ = true;
  disableListTimer();
  stats_.downstream_cx_destroy.inc();
  if (event == network::ConnectionEvent::RemoteClose) {
    stats_.downstream_cx_destroy_remote.inc();
    if (had_streams) stats_.downstream_cx_destroy_remote_active_rq.inc();
  } else {
    stats_.downstream_cx_destroy_local.inc();
    if (had_streams) stats_.downstream_cx_destroy_local_active_rq.inc();
  }
  if (had_streams) stats_.downstream_cx_destroy_active_rq.inc();
  stats_.downstream_cx_active.dec();
  if (http2_ || http1_) {
    (http2_ ? stats_.downstream_cx_http2_active : stats_.downstream_cx_http1_active).dec();
  }
  if (codec_) codec_->onConnectionClosed();
  stats_.downstream_cx_length_ms.recordValue(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          connection_->dispatcher().timeSource().monotonicTime() - connected_at_)
          .count());
  resetAllStreams(StreamResetReason::ConnectionTermination);
}

void ConnectionManagerImpl::onAboveWriteBufferHighWatermark() {
  if (codec_) codec_->onUnderlyingConnectionAboveWriteBufferHighWatermark();
}

void ConnectionManagerImpl::onBelowWriteBufferLowWatermark() {
  if (codec_) codec_->onUnderlyingConnectionBelowWriteBufferLowWatermark();
}

}  // namespace sluice::http
