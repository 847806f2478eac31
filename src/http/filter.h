#pragma once

// The HTTP filter API. Each request runs through a chain of decoder filters (request side,
// in order) and encoder filters (response side, in reverse order); the router is the last
// decoder filter. The rules are Envoy's filter manager's:
//
// - A filter that returns a Stop status stops iteration at itself: the filters after it get
//   nothing more until it continues, by calling continueDecoding()/continueEncoding() or by
//   returning Continue from a later decodeData()/encodeData() or trailers callback. It keeps
//   getting what arrives meanwhile (data, trailers) and decides again for each part.
// - On continue, the filters after it get in order what they have not had: the headers, the
//   data it kept, the trailers, each with the right end_stream.
// - A continue called from inside the filter's own callback takes effect when the callback
//   returns.
// - Any filter can answer the request itself with sendLocalReply().

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "http/codec.h"
#include "http/header_map.h"
#include "http/route.h"
#include "http/stream_info.h"

namespace sluice::buffer {
class Buffer;
}
namespace sluice::event {
class Dispatcher;
}
namespace sluice::network {
class Connection;
}

namespace sluice::http {

enum class FilterHeadersStatus { Continue, StopIteration };
enum class FilterDataStatus {
  // Pass the data on. From a stopped filter: continue iteration (what it kept goes first).
  Continue,
  // Keep the data and wait. Kept data over the connection's buffer limit fails the stream:
  // 413 for a request; for a response 500, or a reset once its headers went out.
  StopIterationAndBuffer,
  // Keep the data and wait; over the buffer limit, push back on the sender (the downstream
  // connection for a request, the upstream for a response) instead of failing.
  StopIterationAndWatermark,
  // Wait; the filter took the data itself.
  StopIterationNoBuffer,
};
enum class FilterTrailersStatus { Continue, StopIteration };

// Downstream back-pressure reaches the router (and from it the upstream) through these.
class DownstreamWatermarkCallbacks {
 public:
  virtual ~DownstreamWatermarkCallbacks() = default;
  virtual void onAboveWriteBufferHighWatermark() = 0;
  virtual void onBelowWriteBufferLowWatermark() = 0;
};

using ModifyHeadersCb = std::function<void(ResponseHeaderMap&)>;

class StreamFilterCallbacks {
 public:
  virtual ~StreamFilterCallbacks() = default;
  virtual const network::Connection* connection() = 0;
  virtual event::Dispatcher& dispatcher() = 0;
  // Resets the downstream stream; the filter chain is destroyed.
  virtual void resetStream() = 0;
  // The route for this request (resolved once, cached until clearRouteCache()).
  virtual RouteConstSharedPtr route() = 0;
  virtual void clearRouteCache() = 0;
  virtual StreamInfo& streamInfo() = 0;
  virtual uint64_t streamId() const = 0;
  // Answers the request from here; `details` is the response code details and
  // `modify_headers` runs on the reply's headers before this returns. If no response has
  // started, the reply runs through all encoder filters (asked from inside a decoder
  // callback: once that callback returns, and no decoder filter runs after it). If response
  // headers are in the encoder filters but not sent yet, the reply replaces them and goes
  // straight to the client. If headers were sent, the stream is reset.
  virtual void sendLocalReply(uint32_t code, std::string_view body,
                              const ModifyHeadersCb& modify_headers, std::string_view details) = 0;
};

class StreamDecoderFilterCallbacks : public StreamFilterCallbacks {
 public:
  virtual void continueDecoding() = 0;
  // What this filter kept with StopIterationAndBuffer/AndWatermark (null when nothing).
  virtual const buffer::Buffer* decodingBuffer() = 0;
  // The response, from the upstream (the router uses these). They do nothing once another
  // response (a local reply) is on its way.
  virtual void encode1xxHeaders(HeaderMapPtr&& headers) = 0;
  virtual void encodeHeaders(HeaderMapPtr&& headers, bool end_stream, std::string_view details) = 0;
  virtual void encodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual void encodeTrailers(HeaderMapPtr&& trailers) = 0;
  // The upstream is slow to take the request body: stop reading downstream, and resume.
  virtual void onDecoderFilterAboveWriteBufferHighWatermark() = 0;
  virtual void onDecoderFilterBelowWriteBufferLowWatermark() = 0;
  virtual void addDownstreamWatermarkCallbacks(DownstreamWatermarkCallbacks& cb) = 0;
  virtual void removeDownstreamWatermarkCallbacks(DownstreamWatermarkCallbacks& cb) = 0;
  virtual uint32_t decoderBufferLimit() = 0;
  // Replaces the stream idle timeout for this stream (a route's idle_timeout); 0 disables.
  virtual void setStreamIdleTimeout(std::chrono::milliseconds timeout) = 0;
  // The request headers (valid for the life of the stream once decoded).
  virtual const RequestHeaderMap* requestHeaders() = 0;
};

class StreamEncoderFilterCallbacks : public StreamFilterCallbacks {
 public:
  virtual void continueEncoding() = 0;
  // What this filter kept with StopIterationAndBuffer/AndWatermark (null when nothing).
  virtual const buffer::Buffer* encodingBuffer() = 0;
  // Sends `data` on to the filters after this one (and the client), as if this filter had
  // passed it: for a filter that keeps the response body itself (StopIterationNoBuffer) and
  // lets it out in pieces, e.g. paced by a timer. Only after the headers went past it.
  virtual void injectEncodedDataToFilterChain(buffer::Buffer& data, bool end_stream) = 0;
  // Such a filter keeps more than encoderBufferLimit(): the upstream should stop sending the
  // response (through the DownstreamWatermarkCallbacks); and it may resume. In pairs.
  virtual void onEncoderFilterAboveWriteBufferHighWatermark() = 0;
  virtual void onEncoderFilterBelowWriteBufferLowWatermark() = 0;
  virtual uint32_t encoderBufferLimit() = 0;
};

class StreamDecoderFilter {
 public:
  virtual ~StreamDecoderFilter() = default;
  virtual void setDecoderFilterCallbacks(StreamDecoderFilterCallbacks& callbacks) = 0;
  virtual FilterHeadersStatus decodeHeaders(RequestHeaderMap& headers, bool end_stream) = 0;
  virtual FilterDataStatus decodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual FilterTrailersStatus decodeTrailers(RequestTrailerMap& trailers) = 0;
  // The stream is going away (complete or reset): cancel timers and upstream work.
  virtual void onDestroy() {}
};
using StreamDecoderFilterSharedPtr = std::shared_ptr<StreamDecoderFilter>;

class StreamEncoderFilter {
 public:
  virtual ~StreamEncoderFilter() = default;
  virtual void setEncoderFilterCallbacks(StreamEncoderFilterCallbacks& callbacks) = 0;
  virtual FilterHeadersStatus encodeHeaders(ResponseHeaderMap& headers, bool end_stream) = 0;
  virtual FilterDataStatus encodeData(buffer::Buffer& data, bool end_stream) = 0;
  virtual FilterTrailersStatus encodeTrailers(ResponseTrailerMap& trailers) = 0;
  virtual void onDestroy() {}
};
using StreamEncoderFilterSharedPtr = std::shared_ptr<StreamEncoderFilter>;

// A filter that sees both directions.
class StreamFilter : public StreamDecoderFilter, public StreamEncoderFilter {
 public:
  void onDestroy() override {}
};
using StreamFilterSharedPtr = std::shared_ptr<StreamFilter>;

// Adds one stream's filters, in order; built per stream from an immutable per-config
// factory list.
class FilterChainFactoryCallbacks {
 public:
  virtual ~FilterChainFactoryCallbacks() = default;
  virtual void addStreamDecoderFilter(StreamDecoderFilterSharedPtr filter) = 0;
  virtual void addStreamEncoderFilter(StreamEncoderFilterSharedPtr filter) = 0;
  virtual void addStreamFilter(StreamFilterSharedPtr filter) = 0;
};
using FilterFactoryCb = std::function<void(FilterChainFactoryCallbacks&)>;

}  // namespace sluice::http
