#include "http/conn_manager_impl.h"

#include <algorithm>

#include "buffer/watermark_buffer.h"
#include "common/assert.h"
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
  return ConnectionManagerStats{ALL_HTTP_CONN_MAN_STATS(SLUICE_MAKE_COUNTER, SLUICE_MAKE_GAUGE)
                                    store.histogram(p + "downstream_rq_time"),
                                store.histogram(p + "downstream_cx_length_ms")};
#undef SLUICE_MAKE_COUNTER
#undef SLUICE_MAKE_GAUGE
}

// ---------------------------------------------------------------------------------------
// One request/response exchange and its filter chain.

struct ConnectionManagerImpl::ActiveStream : public RequestDecoder,
                                             public StreamCallbacks,
                                             public FilterChainFactoryCallbacks,
                                             public event::DeferredDeletable {
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

    ActiveStream& stream;
    size_t index;  // place in its chain (decode order, or encode order)
  };

  struct DecoderEntry : public FilterEntryBase<StreamDecoderFilterCallbacks> {
    DecoderEntry(ActiveStream& s, StreamDecoderFilterSharedPtr f, size_t i)
        : FilterEntryBase(s, i), filter(std::move(f)) {}
    // StreamDecoderFilterCallbacks
    void continueDecoding() override { stream.continueDecoding(index); }
    const buffer::Buffer* decodingBuffer() override {
      return stream.decode_buffer && !stream.decode_buffer->empty() ? stream.decode_buffer.get()
                                                                    : nullptr;
    }
    void sendLocalReply(uint32_t code, std::string_view body, const ModifyHeadersCb& modify,
                        std::string_view details) override {
      stream.sendLocalReply(code, body, modify, details);
    }
    void encode1xxHeaders(HeaderMapPtr&& headers) override {
      stream.encode1xxHeaders(std::move(headers));
    }
    void encodeHeaders(HeaderMapPtr&& headers, bool end_stream,
                       std::string_view details) override {
      stream.info.response_code_details = details;
      stream.encodeHeaders(0, std::move(headers), end_stream);
    }
    void encodeData(buffer::Buffer& data, bool end_stream) override {
      stream.encodeData(0, data, end_stream);
    }
    void encodeTrailers(HeaderMapPtr&& trailers) override {
      stream.encodeTrailers(0, std::move(trailers));
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

    StreamDecoderFilterSharedPtr filter;
    void setStreamIdleTimeout(std::chrono::milliseconds timeout) override {
      stream.idle_timeout = timeout;
      if (timeout.count() == 0) {
        stream.idle_timer.reset();
        return;
      }
      if (!stream.idle_timer) {
        stream.idle_timer = stream.parent.connection_->dispatcher().createTimer(
            [s = &stream] { s->onIdleTimeout(); });
      }
      stream.idle_timer->enableTimer(timeout);
    }

  };

  struct EncoderEntry : public FilterEntryBase<StreamEncoderFilterCallbacks> {
    EncoderEntry(ActiveStream& s, StreamEncoderFilterSharedPtr f, size_t i)
        : FilterEntryBase(s, i), filter(std::move(f)) {}
    void continueEncoding() override { stream.continueEncoding(index); }
    const buffer::Buffer* encodingBuffer() override {
      return stream.encode_buffer && !stream.encode_buffer->empty() ? stream.encode_buffer.get()
                                                                    : nullptr;
    }

    StreamEncoderFilterSharedPtr filter;
  };


  ActiveStream(ConnectionManagerImpl& p, ResponseEncoder& e)
      : parent(p),
        encoder(e),
        info(p.connection_->dispatcher().timeSource()),
        id(randomU64()) {
    info.downstream_local_address = p.connection_->localAddress();
    info.downstream_remote_address = p.connection_->remoteAddress();
    info.downstream_direct_remote_address = p.connection_->remoteAddress();
    info.connection_id = p.connection_->id();
    encoder.getStream().addCallbacks(*this);
    for (const auto& factory : p.config_->filter_factories) factory(*this);
    // Encoder filters run in reverse order of their place in the chain.
    std::reverse(encoders.begin(), encoders.end());
    for (size_t i = 0; i < encoders.size(); ++i) encoders[i]->index = i;
    const auto& cfg = *p.config_;
    auto& dispatcher = p.connection_->dispatcher();
    idle_timeout = cfg.stream_idle_timeout;
    if (idle_timeout.count() > 0) {
      idle_timer = dispatcher.createTimer([this] { onIdleTimeout(); });
      idle_timer->enableTimer(idle_timeout);
    }
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
      duration_timer = dispatcher.createTimer([this] {
        parent.stats_.downstream_rq_max_duration_reached.inc();
        timeoutReply(408, "max_duration_timeout", 0);
      });
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
  }

  std::chrono::nanoseconds sinceStart() {
    return parent.connection_->dispatcher().timeSource().monotonicTime() - info.start_monotonic;
  }

  void resetIdleTimer() {
    if (idle_timer) idle_timer->enableTimer(idle_timeout);
  }

  RouteConstSharedPtr route() {
    if (!route_resolved) {
      route_resolved = true;
      cached_route = (request_headers && parent.config_->route_table)
                         ? parent.config_->route_table->route(*request_headers, id)
                         : nullptr;
      if (cached_route) info.route_name = std::string(cached_route->name());
    }
    return cached_route;
  }

  // ---- RequestDecoder (from the codec)

  void decodeHeaders(HeaderMapPtr&& headers, bool end_stream) override {
    if (headers_timer) headers_timer->disableTimer();
    request_headers = std::move(headers);
    remote_complete = end_stream;
    SLUICE_LOG(debug, http, "[C{}][S{}] request {} {} (end_stream={})", parent.connection_->id(), id,
               request_headers->method(), request_headers->path(), end_stream);
    resetIdleTimer();
    info.protocol = parent.codec_->protocol();
    parent.stats_.downstream_rq_http1_total.inc();
    if (end_stream) onRequestComplete();
    if (!prepareRequest()) return;
    if (!decodeHeadersFrom(0)) return;
  }

  void decodeData(buffer::Buffer& data, bool end_stream) override {
    if (local_complete && !upgrade) {
      // The response went out already: the rest of the request is not needed.
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
    if (local_complete) {
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
    if (protocol == Protocol::Http11 && headerHasToken(h.getValue(headers::kExpect), "100-continue")) {
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
    if (!h.has(headers::kScheme)) h.add(headers::kScheme, "http");

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
      internal = !xff.empty() && xff.find(',') == std::string::npos && trusted &&
                 trusted->isInternal();
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

    // x-request-id.
    if (cfg.generate_request_id) {
      const bool keep = h.has(headers::kXRequestId) &&
                        (!edge_request || cfg.preserve_external_request_id);
      if (!keep) h.set(headers::kXRequestId, randomUuid());
    }
    info.request_id = std::string(h.getValue(headers::kXRequestId));

    if (!cfg.via.empty()) h.append(headers::kVia, cfg.via);
    return true;
  }

  // ---- Decoder filter iteration

  // Runs headers through decoder filters [from, end). False if iteration stopped.
  bool decodeHeadersFrom(size_t from) {
    for (size_t i = from; i < decoders.size(); ++i) {
      decode_headers_at = i + 1;
      const bool end = remote_complete && !hasPendingDecode();
      if (decoders[i]->filter->decodeHeaders(*request_headers, end) ==
          FilterHeadersStatus::StopIteration) {
        decode_stopped = i;
        return false;
      }
      if (destroyed || local_complete) return false;
    }
    return true;
  }

  bool hasPendingDecode() const {
    return (decode_buffer && !decode_buffer->empty()) || request_trailers != nullptr;
  }

  void bufferForDecode(buffer::Buffer& data) {
    if (!decode_buffer) {
      decode_buffer = std::make_unique<buffer::WatermarkBuffer>(
          [this] { readDisableDownstream(false); }, [this] { readDisableDownstream(true); });
      decode_buffer->setWatermarks(parent.connection_->bufferLimit());
    }
    decode_buffer->move(data);
  }

  // Data goes to every filter that has seen the headers, in order (a filter that stopped
  // the headers still sees the body); filters after it get it, buffered, on continue.
  void decodeDataFrom(size_t from, buffer::Buffer& data, bool end_stream) {
    for (size_t i = from; i < decoders.size(); ++i) {
      if (i >= decode_headers_at || (decode_stopped != kNone && decode_stopped < i)) {
        bufferForDecode(data);
        return;
      }
      const FilterDataStatus s = decoders[i]->filter->decodeData(data, end_stream);
      if (destroyed || local_complete) return;
      if (s == FilterDataStatus::StopIterationAndBuffer) {
        bufferForDecode(data);
        decode_stopped = i;
        return;
      }
      if (s == FilterDataStatus::StopIterationNoBuffer) return;
    }
  }

  void decodeTrailersFrom(size_t from) {
    if (decode_buffer && !decode_buffer->empty()) return;  // after the data, on continue
    for (size_t i = from; i < decoders.size(); ++i) {
      if (i >= decode_headers_at || (decode_stopped != kNone && decode_stopped < i)) return;
      if (decoders[i]->filter->decodeTrailers(*request_trailers) ==
          FilterTrailersStatus::StopIteration) {
        decode_stopped = i;
        return;
      }
      if (destroyed || local_complete) return;
    }
  }

  void continueDecoding(size_t index) {
    if (destroyed || local_complete) return;
    const size_t next = index + 1;
    if (decode_stopped == index) decode_stopped = kNone;
    if (decode_headers_at == next) {
      // The headers stopped at `index`: pass them on first.
      if (!decodeHeadersFrom(next)) return;
    }
    if (decode_buffer && !decode_buffer->empty()) {
      buffer::Buffer data;
      data.move(*decode_buffer);
      const bool end = remote_complete && request_trailers == nullptr;
      decodeDataFrom(next, data, end);
      if (destroyed || local_complete || decode_stopped != kNone) return;
    }
    if (request_trailers) decodeTrailersFrom(next);
  }

  // ---- Encoding (from the router or a local reply)

  void encode1xxHeaders(HeaderMapPtr&& headers) {
    if (local_complete || response_started) return;
    encoder.encode1xxHeaders(*headers);
  }

  void encodeHeaders(size_t from, HeaderMapPtr&& headers, bool end_stream) {
    if (destroyed || local_complete) return;
    response_headers = std::move(headers);
    for (size_t i = from; i < encoders.size(); ++i) {
      encode_headers_at = i + 1;
      if (encoders[i]->filter->encodeHeaders(*response_headers, end_stream) ==
          FilterHeadersStatus::StopIteration) {
        encode_stopped = i;
        encode_end_with_headers = end_stream;
        return;
      }
      if (destroyed) return;
    }
    encode_headers_at = encoders.size() + 1;
    finalEncodeHeaders(end_stream);
  }

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
      case ServerHeaderTransformation::Overwrite: h.set(headers::kServer, cfg.server_name); break;
      case ServerHeaderTransformation::AppendIfAbsent:
        if (!h.has(headers::kServer)) h.add(headers::kServer, cfg.server_name);
        break;
      case ServerHeaderTransformation::PassThrough: break;
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
        case 1: parent.stats_.downstream_rq_1xx.inc(); break;
        case 2: parent.stats_.downstream_rq_2xx.inc(); break;
        case 3: parent.stats_.downstream_rq_3xx.inc(); break;
        case 4: parent.stats_.downstream_rq_4xx.inc(); break;
        case 5: parent.stats_.downstream_rq_5xx.inc(); break;
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
    if (end_stream) onResponseComplete();
  }

  void encodeData(size_t from, buffer::Buffer& data, bool end_stream) {
    if (destroyed || local_complete) return;
    resetIdleTimer();
    for (size_t i = from; i < encoders.size(); ++i) {
      if (i >= encode_headers_at || encode_stopped != kNone) {
        if (!encode_buffer) encode_buffer = std::make_unique<buffer::Buffer>();
        encode_buffer->move(data);
        encode_end_pending = end_stream;
        return;
      }
      const FilterDataStatus s = encoders[i]->filter->encodeData(data, end_stream);
      if (destroyed) return;
      if (s == FilterDataStatus::StopIterationAndBuffer) {
        if (!encode_buffer) encode_buffer = std::make_unique<buffer::Buffer>();
        encode_buffer->move(data);
        encode_end_pending = end_stream;
        encode_stopped = i;
        return;
      }
      if (s == FilterDataStatus::StopIterationNoBuffer) return;
    }
    info.bytes_sent += data.length();
    encoder.encodeData(data, end_stream);
    if (end_stream) onResponseComplete();
  }

  void encodeTrailers(size_t from, HeaderMapPtr&& trailers) {
    if (destroyed || local_complete) return;
    response_trailers = std::move(trailers);
    for (size_t i = from; i < encoders.size(); ++i) {
      if (encoders[i]->filter->encodeTrailers(*response_trailers) ==
          FilterTrailersStatus::StopIteration) {
        encode_stopped = i;
        return;
      }
      if (destroyed) return;
    }
    encoder.encodeTrailers(*response_trailers);
    onResponseComplete();
  }

  void continueEncoding(size_t index) {
    if (destroyed || local_complete || encode_stopped != index) return;
    encode_stopped = kNone;
    const size_t next = index + 1;
    if (encode_headers_at == index + 1) {
      const bool end = encode_end_with_headers;
      encode_headers_at = next;
      for (size_t i = next; i < encoders.size(); ++i) {
        encode_headers_at = i + 1;
        if (encoders[i]->filter->encodeHeaders(*response_headers, end) ==
            FilterHeadersStatus::StopIteration) {
          encode_stopped = i;
          return;
        }
        if (destroyed) return;
      }
      encode_headers_at = encoders.size() + 1;
      finalEncodeHeaders(end);
      if (end) return;
    }
    if (encode_buffer && (!encode_buffer->empty() || encode_end_pending)) {
      buffer::Buffer data;
      data.move(*encode_buffer);
      encodeData(next, data, encode_end_pending);
    }
  }

  void sendLocalReply(uint32_t code, std::string_view body, const ModifyHeadersCb& modify,
                      std::string_view details) {
    if (destroyed || local_complete) return;
    info.response_code_details = details;
    if (response_started) {
      // Too late for a reply: the client has seen part of a response.
      resetStream(StreamResetReason::LocalReset);
      return;
    }
    auto h = std::make_unique<HeaderMap>();
    h->add(headers::kStatus, std::to_string(code));
    const bool is_head = request_headers && request_headers->method() == "HEAD";
    if (!body.empty()) {
      h->add(headers::kContentLength, std::to_string(body.size()));
      h->add(headers::kContentType, "text/plain");
    }
    if (modify) modify(*h);
    // A local reply does not run the request's remaining decoder filters.
    const bool end = body.empty() || is_head;
    encodeHeaders(0, std::move(h), end);
    if (!end && !destroyed && !local_complete) {
      buffer::Buffer b;
      b.add(body);
      encodeData(0, b, true);
    }
  }

  void timeoutReply(uint32_t code, std::string_view details, uint32_t flag) {
    if (flag) info.setResponseFlag(static_cast<ResponseFlag>(flag));
    if (response_started) {
      resetStream(StreamResetReason::LocalReset);
    } else {
      close_after = true;  // the request may be incomplete: the connection cannot be reused
      sendLocalReply(code, "", nullptr, details);
    }
  }

  void onIdleTimeout() {
    parent.stats_.downstream_rq_idle_timeout.inc();
    timeoutReply(408, "stream_idle_timeout", ResponseFlag::StreamIdleTimeout);
  }

  void onResponseComplete() {
    local_complete = true;
    info.last_downstream_tx_byte = sinceStart();
    if (idle_timer) idle_timer->disableTimer();
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
    if (info.response_code_details.empty()) info.response_code_details = "downstream_remote_disconnect";
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
    for (auto& e : encoders) e->filter->onDestroy();
    idle_timer.reset();
    request_timer.reset();
    headers_timer.reset();
    duration_timer.reset();
  }

  static constexpr size_t kNone = static_cast<size_t>(-1);

  ConnectionManagerImpl& parent;
  ResponseEncoder& encoder;
  StreamInfo info;
  const uint64_t id;
  HeaderMapPtr request_headers;
  HeaderMapPtr request_trailers;
  HeaderMapPtr response_headers;
  HeaderMapPtr response_trailers;
  std::vector<std::unique_ptr<DecoderEntry>> decoders;
  std::vector<std::unique_ptr<EncoderEntry>> encoders;
  std::vector<DownstreamWatermarkCallbacks*> watermark_callbacks;
  std::unique_ptr<buffer::WatermarkBuffer> decode_buffer;
  std::unique_ptr<buffer::Buffer> encode_buffer;
  event::TimerPtr idle_timer;
  std::chrono::milliseconds idle_timeout{0};
  event::TimerPtr request_timer;
  event::TimerPtr headers_timer;
  event::TimerPtr duration_timer;
  RouteConstSharedPtr cached_route;
  size_t decode_headers_at{0};  // decoder filters [0, this) have seen the headers
  size_t decode_stopped{kNone};
  size_t encode_headers_at{0};
  size_t encode_stopped{kNone};
  uint32_t read_disabled{0};
  bool encode_end_with_headers{false};
  bool encode_end_pending{false};
  bool route_resolved{false};
  bool remote_complete{false};
  bool local_complete{false};
  bool response_started{false};
  bool close_after{false};
  bool upgrade{false};
  bool upgrade_counted{false};
  bool edge_request{false};
  bool destroyed{false};
  std::list<std::unique_ptr<ActiveStream>>::iterator self;
};

// ---------------------------------------------------------------------------------------

ConnectionManagerImpl::ConnectionManagerImpl(ConnectionManagerConfigConstSharedPtr config)
    : config_(std::move(config)), stats_(*config_->stats) {}

ConnectionManagerImpl::~ConnectionManagerImpl() = default;

void ConnectionManagerImpl::initializeReadFilterCallbacks(network::ReadFilterCallbacks& callbacks) {
  read_callbacks_ = &callbacks;
  connection_ = &callbacks.connection();
  connection_->addConnectionCallbacks(*this);
  connected_at_ = connection_->dispatcher().timeSource().monotonicTime();
  connection_->setDelayedCloseTimeout(config_->delayed_close_timeout);
  stats_.downstream_cx_total.inc();
  stats_.downstream_cx_active.inc();
  stats_.downstream_cx_http1_total.inc();
  stats_.downstream_cx_http1_active.inc();
  connection_->setConnectionStats({&stats_.downstream_cx_rx_bytes_total,
                                   &stats_.downstream_cx_tx_bytes_total,
                                   &stats_.downstream_cx_rx_bytes_buffered,
                                   &stats_.downstream_cx_tx_bytes_buffered});
  http1::CodecStats codec_stats;
  codec_ = http1::createServerCodec(*connection_, *this, config_->http1_settings, codec_stats);
  if (config_->idle_timeout.count() > 0) {
    idle_timer_ = connection_->dispatcher().createTimer([this] { onIdleTimeout(); });
    idle_timer_->enableTimer(config_->idle_timeout);
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
  CodecStatus status = codec_->dispatch(data);
  if (!status.ok()) {
    stats_.downstream_cx_protocol_error.inc();
    // Answer the request that broke, if its response has not started; then close.
    if (!streams_.empty()) {
      ActiveStream& s = *streams_.back();
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
  if (end_stream) {
    // Only with half-close enabled: the client ended its side (a tunnel passes it on).
    codec_->onReadEndStream();
  }
  return network::FilterStatus::StopIteration;
}

RequestDecoder& ConnectionManagerImpl::newStream(ResponseEncoder& encoder) {
  if (idle_timer_) idle_timer_->disableTimer();
  stats_.downstream_rq_total.inc();
  stats_.downstream_rq_active.inc();
  auto stream = std::make_unique<ActiveStream>(*this, encoder);
  ActiveStream& ref = *stream;
  streams_.push_front(std::move(stream));
  ref.self = streams_.begin();
  return ref;
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
  std::unique_ptr<ActiveStream> owned = std::move(*stream.self);
  streams_.erase(stream.self);
  connection_->dispatcher().deferredDelete(std::move(owned));
  checkForDeferredClose();
}

void ConnectionManagerImpl::checkForDeferredClose() {
  if (closed_ || !streams_.empty()) return;
  if (close_after_stream_ || draining_) {
    closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
    return;
  }
  if (idle_timer_) idle_timer_->enableTimer(config_->idle_timeout);
}

void ConnectionManagerImpl::startDrain() {
  draining_ = true;
  if (streams_.empty()) {
    stats_.downstream_cx_drain_close.inc();
    closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
  }
}

void ConnectionManagerImpl::onIdleTimeout() {
  if (!streams_.empty()) return;
  stats_.downstream_cx_idle_timeout.inc();
  closeConnection(network::ConnectionCloseType::FlushWriteAndDelay);
}

void ConnectionManagerImpl::closeConnection(network::ConnectionCloseType type) {
  if (closed_) return;
  connection_->close(type);
}

void ConnectionManagerImpl::resetAllStreams(StreamResetReason reason) {
  while (!streams_.empty()) {
    ActiveStream& s = *streams_.front();
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
  const bool had_streams = !streams_.empty();
  closed_ = true;
  idle_timer_.reset();
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
  stats_.downstream_cx_http1_active.dec();
  codec_->onConnectionClosed();
  stats_.downstream_cx_length_ms.recordValue(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 connection_->dispatcher().timeSource().monotonicTime() -
                                                 connected_at_)
                                                 .count());
  resetAllStreams(StreamResetReason::ConnectionTermination);
}

void ConnectionManagerImpl::onAboveWriteBufferHighWatermark() {
  codec_->onUnderlyingConnectionAboveWriteBufferHighWatermark();
}

void ConnectionManagerImpl::onBelowWriteBufferLowWatermark() {
  codec_->onUnderlyingConnectionBelowWriteBufferLowWatermark();
}

}  // namespace sluice::http
