#include "http/http1/codec_impl.h"

#include <llhttp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "buffer/buffer.h"
#include "http/http1/header_chars.h"
#include "common/assert.h"
#include "common/object_pool.h"
#include "common/logger.h"
#include "stats/stats.h"

namespace sluice::http::http1 {
namespace {

using buffer::Buffer;

constexpr std::string_view kCodecError = "http1.codec_error";
constexpr std::string_view kHeadersTooLarge = "http1.headers_too_large";
constexpr std::string_view kTooManyHeaders = "http1.too_many_headers";

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

char lowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) return false;
  }
  return true;
}

// True when the comma-separated list `value` holds `token` (case-insensitive).
bool hasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (equalsIgnoreCase(trimOws(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view reasonPhrase(uint32_t code) {
  switch (code) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 208:
      return "Already Reported";
    case 226:
      return "IM Used";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 305:
      return "Use Proxy";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Entity";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
    default:
      return "Unknown";
  }
}

// Puts a message head (a start line and header lines) or a last chunk with trailers
// together in a block on the stack and adds it to a buffer in one piece: a usual head is one
// Buffer::add (about 90 instructions each), where it was one per line and per part of the
// start line. A head larger than the block is added in block-sized pieces.
class HeadWriter {
 public:
  HeadWriter() = default;
  HeadWriter(const HeadWriter&) = delete;
  HeadWriter& operator=(const HeadWriter&) = delete;

  void put(std::string_view s) {
    if (s.size() > kBlockSize - used_) {
      putSlow(s);
      return;
    }
    std::memcpy(block_ + used_, s.data(), s.size());
    used_ += s.size();
  }

  void putNumber(uint64_t value, int base) {
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof(digits), value, base);
    put(std::string_view(digits, static_cast<size_t>(result.ptr - digits)));
  }

  // "key: value\r\n"
  void line(std::string_view key, std::string_view value) {
    const size_t size = key.size() + value.size() + 4;
    if (size > kBlockSize - used_) {
      put(key);
      put(": ");
      put(value);
      put("\r\n");
      return;
    }
    char* p = block_ + used_;
    std::memcpy(p, key.data(), key.size());
    p += key.size();
    p[0] = ':';
    p[1] = ' ';
    std::memcpy(p + 2, value.data(), value.size());
    p += 2 + value.size();
    p[0] = '\r';
    p[1] = '\n';
    used_ += size;
  }

  // The header lines of `headers`, pseudo-headers left out.
  void lines(const HeaderMap& headers) {
    for (const HeaderEntry& e : headers) {
      if (!e.key.empty() && e.key[0] != ':') line(e.key, e.value);
    }
  }

  // What was put, in a buffer of its own (to write to the connection).
  Buffer& take() {
    flush();
    return out_;
  }

 private:
  static constexpr size_t kBlockSize = 2048;

  void flush() {
    if (used_ == 0) return;
    out_.add(block_, used_);
    used_ = 0;
  }
  void putSlow(std::string_view s) {
    flush();
    if (s.size() > kBlockSize) {
      out_.add(s);
      return;
    }
    std::memcpy(block_, s.data(), s.size());
    used_ = s.size();
  }

  Buffer out_;
  size_t used_ = 0;
  char block_[kBlockSize];
};

// Appends `data` (moved) as one chunk; nothing for empty data (an empty chunk would end the
// body).
void addChunk(Buffer& out, Buffer& data) {
  if (data.empty()) return;
  char size_line[24];
  auto result = std::to_chars(size_line, size_line + sizeof(size_line) - 2, data.length(), 16);
  *result.ptr++ = '\r';
  *result.ptr++ = '\n';
  out.add(size_line, static_cast<size_t>(result.ptr - size_line));
  out.move(data);
  out.add("\r\n", 2);
}

// The last chunk: "0", the trailers (when given), the blank line.
void writeLastChunk(HeadWriter& head, const HeaderMap* trailers) {
  head.put("0\r\n");
  if (trailers != nullptr) head.lines(*trailers);
  head.put("\r\n");
}

// How an outgoing body is framed once its headers went out.
enum class Framing {
  None,     // no body may follow (HEAD, 204, 304, or the headers ended the message)
  Raw,      // the bytes as they are: content-length, close-delimited, or a tunnel
  Chunked,  // transfer-encoding: chunked, written by the codec
};

// Moves `data` into `out` framed for the wire: dropped (a body that must not be sent),
// as is (content-length, close-delimited, tunnels), or as a chunk (and the last chunk
// with end_stream).
// Frames `data` and writes it to `connection` (with end_stream `end_tunnel`; nothing is written
// when there is nothing to write and no end). A raw body goes to the connection as it is, with
// no buffer between (a buffer's slots are taken and given back each time one fills).
void writeBody(network::Connection& connection, Framing framing, Buffer& data, bool end_stream,
               bool end_tunnel) {
  Buffer out;
  Buffer* body = &out;
  switch (framing) {
    case Framing::None:
      data.drain(data.length());
      break;
    case Framing::Raw:
      body = &data;
      break;
    case Framing::Chunked:
      addChunk(out, data);
      if (end_stream) out.add("0\r\n\r\n", 5);
      break;
  }
  if (!body->empty() || end_tunnel) connection.write(*body, end_tunnel);
}

// What a codec needs only while a message is being parsed: llhttp's parser, the URL, the
// header being parsed, the Host, the header maps being built and the body spans (about 380
// bytes). An idle keep-alive connection holds none of it: the codec takes a block when a
// message's first bytes arrive and gives it back when the exchange ends (ParseStatePool).
struct ParseState {
  struct BodySpan {
    size_t offset;  // from slice_base
    size_t length;
  };

  llhttp_t parser;
  HeaderMapPtr headers;
  HeaderMapPtr trailers;
  std::string url;
  // The header being parsed. While all of it lies in the bytes that one llhttp_execute() call
  // parses, it is two spans into them (nothing copied: a request's headers usually come in one
  // read); when a call ends inside it, copyHeader() copies it into `header`: its name (the
  // first field_length bytes), then its value.
  std::string header;
  const char* field_at{nullptr};
  const char* value_at{nullptr};
  uint32_t field_span{0};
  uint32_t value_span{0};
  bool header_copied{false};
  // The lower-case name of a header in spans, when it fits (a longer one is copied).
  char name[48];
  std::string host;                // server: the Host header's value
  std::string_view url_authority;  // server: the authority of an absolute URL, into url
  const char* slice_base{nullptr};
  std::vector<BodySpan> spans;
  uint64_t header_bytes{0};
  uint32_t field_length{0};
  uint32_t header_count{0};
  // The stream's callbacks. Removed entries become null, so that removal from inside a
  // callback is safe.
  std::vector<StreamCallbacks*> stream_callbacks;
  ParseState* next_free{nullptr};  // on the pool's free list

  void clearHeader() {
    header.clear();
    field_length = 0;
    field_at = value_at = nullptr;
    field_span = value_span = 0;
    header_copied = false;
  }
};

// A thread's free ParseStates, so that the request path pays no allocation for them: a
// codec lives on its dispatcher's thread, and a block goes back to the thread it came from.
// Blocks keep their strings' capacity (a connection's next request usually needs the same);
// a block whose strings grew large is freed instead, and so is any beyond kMaxFree (the
// most a worker keeps at idle: kMaxFree * about 380 bytes).
class ParseStatePool {
 public:
  static constexpr size_t kMaxFree = 128;
#ifdef SLUICE_POOL_DISABLED
  static constexpr bool kPoolDisabled = true;  // under ASan: every reuse after free is seen
#else
  static constexpr bool kPoolDisabled = false;
#endif
  static constexpr size_t kMaxKeptCapacity = 1024;

  ParseStatePool() = default;
  ParseStatePool(const ParseStatePool&) = delete;
  ParseStatePool& operator=(const ParseStatePool&) = delete;
  ~ParseStatePool() {
    while (head_ != nullptr) delete pop();
    closed_ = true;
  }

  static ParseStatePool& local() {
    thread_local ParseStatePool pool;
    return pool;
  }

  ParseState* take() { return head_ != nullptr ? pop() : new ParseState; }

  void give(ParseState* state) {
    if (kPoolDisabled || closed_ || free_ >= kMaxFree || state->url.capacity() > kMaxKeptCapacity ||
        state->header.capacity() > kMaxKeptCapacity || state->host.capacity() > kMaxKeptCapacity ||
        state->spans.capacity() > 64) {
      delete state;
      return;
    }
    state->headers.reset();
    state->trailers.reset();
    state->url.clear();
    state->clearHeader();
    state->host.clear();
    state->spans.clear();
    state->stream_callbacks.clear();
    state->next_free = head_;
    head_ = state;
    ++free_;
  }

  size_t freeBlocks() const { return free_; }

 private:
  ParseState* pop() {
    ParseState* state = head_;
    head_ = state->next_free;
    state->next_free = nullptr;
    --free_;
    return state;
  }

  ParseState* head_{nullptr};
  size_t free_{0};
  bool closed_{false};  // the thread is exiting: blocks given back now are freed
};

class CodecBase;

// The stream of an HTTP/1 connection. HTTP/1 has one stream at a time, so each codec owns one
// and reuses it from request to request.
class StreamImpl : public Stream {
 public:
  explicit StreamImpl(CodecBase& codec) : codec_(codec) {}

  // The callbacks live in the codec's parse state, which an active stream always has (and
  // an idle connection does not); callbacks_() is null without it.
  void addCallbacks(StreamCallbacks& callbacks) override;
  void removeCallbacks(StreamCallbacks& callbacks) override;
  void resetStream(StreamResetReason reason) override;
  void readDisable(bool disable) override;
  uint32_t bufferLimit() const override;

  void clearCallbacks();
  // Runs (and forgets) every callback's onResetStream.
  void runResetCallbacks(StreamResetReason reason);
  void runHighWatermarkCallbacks();
  void runLowWatermarkCallbacks();

 private:
  std::vector<StreamCallbacks*>* callbacks_();

  CodecBase& codec_;
};

// What the server and client codecs share: the llhttp parser and its callbacks, the header
// checks, the body spans, and the dispatch loop.
class CodecBase {
 public:
  CodecBase(network::Connection& connection, const CodecSettings& settings, llhttp_type_t type)
      : connection_(connection),
        settings_(settings),
        server_(type == HTTP_REQUEST),
        max_header_bytes_(static_cast<uint32_t>(std::min<uint64_t>(
            static_cast<uint64_t>(settings.max_request_headers_kb) * 1024, UINT32_MAX))) {}
  // A codec that goes while it holds a parse state (a connection closed mid-exchange, or
  // after its last response) gives it back too; a codec destroyed after its thread's pool
  // (at thread exit) frees it (the pool's closed_ flag).
  virtual ~CodecBase() { releaseParseState(); }
  CodecBase(const CodecBase&) = delete;
  CodecBase& operator=(const CodecBase&) = delete;

  network::Connection& connection() { return connection_; }

  // The stream's resetStream(): its callbacks hear `reason`, then the connection closes.
  void resetStreamLocal(StreamResetReason reason) {
    if (!active_) return;
    resetActiveStream(reason);
    connection_.close(network::ConnectionCloseType::NoFlush);
  }

 protected:
  // Parses `data`, draining what was consumed, until it is empty, the parser pauses (the
  // server waits for a response), an error happens or the connection stops being open.
  CodecStatus dispatchBytes(Buffer& data) {
    while (status_.ok() && !data.empty()) {
      if (connection_.state() != network::Connection::State::Open) {
        data.drain(data.length());
        break;
      }
      if (upgraded_) {
        onUpgradeData(data);
        data.drain(data.length());
        break;
      }
      if (parser_paused_) break;
      if (ps_ == nullptr) takeParseState();
      const buffer::RawSlice slice = data.frontSlice();
      ps_->slice_base = static_cast<const char*>(slice.mem);
      ps_->spans.clear();
      const llhttp_errno_t err = llhttp_execute(&ps_->parser, ps_->slice_base, slice.len);
      // The slice goes below: a header it cut keeps a copy of its bytes.
      if (ps_ != nullptr && (ps_->field_at != nullptr || ps_->value_at != nullptr)) copyHeader();
      if (connection_.state() != network::Connection::State::Open) {
        // A callback reset the stream or closed the connection: nothing more to parse.
        data.drain(data.length());
        break;
      }
      size_t consumed = slice.len;
      if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        consumed = static_cast<size_t>(llhttp_get_error_pos(&ps_->parser) - ps_->slice_base);
      } else if (err != HPE_OK) {
        if (status_.ok()) {
          status_ = CodecStatus::protocolError(errorStatus(400), std::string(kCodecError));
        }
        SLUICE_LOG(debug, http, "[C{}] HTTP/1 parse error: {} ({}): {}", connection_.id(),
                   llhttp_errno_name(err), llhttp_get_error_reason(&ps_->parser), status_.details);
        data.drain(data.length());
        onParseError();
        break;
      }
      Buffer body;
      takeBody(data, consumed, body);
      if (err == HPE_OK) {
        if (!body.empty()) onBody(body);
      } else if (err == HPE_PAUSED_UPGRADE) {
        if (!body.empty()) onBody(body);
        upgraded_ = true;
      } else {
        // Paused by on_message_complete: the message ends here.
        parser_paused_ = true;
        message_complete_ = false;
        onMessageEnd(body);
      }
    }
    // Bytes that began no request (blank lines between requests) leave the server idle.
    if (server_ && !active_ && status_.ok()) releaseParseState();
    return status_;
  }

  // Ends the active stream abruptly: its callbacks hear `reason`.
  void resetActiveStream(StreamResetReason reason) {
    active_ = false;
    onStreamDeactivated();
    stream_.runResetCallbacks(reason);
  }

  // The status to report for a server-side error; a client reports 0.
  uint32_t errorStatus(uint32_t server_status) const { return server_ ? server_status : 0; }
  // Records an error from inside a callback; the return value makes llhttp stop.
  int fail(uint32_t server_status, std::string_view details) {
    status_ = CodecStatus::protocolError(errorStatus(server_status), std::string(details));
    return -1;
  }

  // Hooks called from llhttp's callbacks, inside llhttp_execute().
  virtual int onMessageBegin() = 0;
  virtual int onUrlComplete() { return 0; }
  // A complete header (or trailer, when in_trailers_): a lower-case token name and a value
  // without surrounding whitespace.
  virtual int onHeader(std::string_view name, std::string_view value) = 0;
  // Returns what on_headers_complete returns to llhttp (0, or 1: the message has no body).
  virtual int onHeadersComplete() = 0;

  // Hooks called after llhttp_execute() returned, in the order of the bytes.
  // Body bytes of the current message, which goes on.
  virtual void onBody(Buffer& body) = 0;
  // The current message ended; `body` holds its last body bytes. The parser is paused
  // (parser_paused_); the hook resumes it when the next message may be parsed.
  virtual void onMessageEnd(Buffer& body) = 0;
  // Bytes after an upgrade: the parser has no say over them any more.
  virtual void onUpgradeData(Buffer& data) = 0;
  // dispatch failed with status_.
  virtual void onParseError() {}
  // The stream ended (reset or finished): forget its decoder.
  virtual void onStreamDeactivated() = 0;

  void resumeParser() {
    if (parser_paused_) {
      llhttp_resume(&ps_->parser);
      parser_paused_ = false;
    }
  }

  // A message's first bytes (or a client's request) take a parse state from the pool.
  void takeParseState() {
    ps_ = ParseStatePool::local().take();
    llhttp_init(&ps_->parser, server_ ? HTTP_REQUEST : HTTP_RESPONSE, &kParserSettings);
    ps_->parser.data = this;
  }

  // The exchange is over: the parse state goes back to the pool, and the next message's
  // first bytes take a fresh one (with a parser at the start of a message).
  void releaseParseState() {
    parser_paused_ = false;
    if (ps_ == nullptr) return;
    ParseState* state = ps_;
    ps_ = nullptr;
    ParseStatePool::local().give(state);
  }

 public:
  bool holdsParseState() const { return ps_ != nullptr; }
  ParseState* parseState() { return ps_; }

 protected:
  network::Connection& connection_;
  const CodecSettings& settings_;  // outlives the codec (see the two codecs)
  // Members are ordered to leave no padding: a codec lives as long as its connection.
  const bool server_;
  bool active_{false};            // a stream exists (started and neither finished nor reset)
  bool in_trailers_{false};       // the header callbacks are parsing chunked trailers
  bool parser_paused_{false};     // llhttp is paused at the end of a message
  bool upgraded_{false};          // the parser is done: the connection carries a tunnel
  bool message_complete_{false};  // on_message_complete ran (llhttp_finish on the client)
  const uint32_t max_header_bytes_;
  // Only while a message is being parsed or its exchange is in progress; null when idle.
  ParseState* ps_{nullptr};
  CodecStatus status_;
  StreamImpl stream_{*this};

 private:
  using BodySpan = ParseState::BodySpan;

  static CodecBase& self(llhttp_t* parser) { return *static_cast<CodecBase*>(parser->data); }

  static llhttp_settings_t makeParserSettings() {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = [](llhttp_t* p) { return self(p).onMessageBeginBase(); };
    s.on_url = [](llhttp_t* p, const char* at, size_t length) {
      return self(p).onUrlData(at, length);
    };
    s.on_url_complete = [](llhttp_t* p) { return self(p).onUrlComplete(); };
    s.on_status = [](llhttp_t* p, const char*, size_t length) {
      return self(p).countHeaderBytes(length);
    };
    s.on_header_field = [](llhttp_t* p, const char* at, size_t length) {
      return self(p).onHeaderFieldData(at, length);
    };
    s.on_header_value = [](llhttp_t* p, const char* at, size_t length) {
      return self(p).onHeaderValueData(at, length);
    };
    s.on_header_value_complete = [](llhttp_t* p) { return self(p).onHeaderValueComplete(); };
    s.on_headers_complete = [](llhttp_t* p) { return self(p).onHeadersComplete(); };
    s.on_chunk_header = [](llhttp_t* p) { return self(p).onChunkHeader(); };
    s.on_body = [](llhttp_t* p, const char* at, size_t length) {
      return self(p).onBodyData(at, length);
    };
    s.on_message_complete = [](llhttp_t* p) { return self(p).onMessageCompleteBase(); };
    return s;
  }
  static const llhttp_settings_t kParserSettings;

  int onMessageBeginBase() {
    ps_->header_bytes = 0;
    ps_->header_count = 0;
    in_trailers_ = false;
    ps_->clearHeader();
    ps_->url.clear();
    ps_->headers = std::make_unique<HeaderMap>();
    ps_->trailers.reset();
    return onMessageBegin();
  }

  int countHeaderBytes(size_t length) {
    ps_->header_bytes += length;
    if (ps_->header_bytes > max_header_bytes_) return fail(431, kHeadersTooLarge);
    return 0;
  }

  int onUrlData(const char* at, size_t length) {
    if (countHeaderBytes(length) != 0) return -1;
    ps_->url.append(at, length);
    return 0;
  }

  int onHeaderFieldData(const char* at, size_t length) {
    if (countHeaderBytes(length) != 0) return -1;
    if (!ps_->header_copied && ps_->field_at == nullptr && ps_->value_at == nullptr) {
      ps_->field_at = at;
      ps_->field_span = static_cast<uint32_t>(length);
      return 0;
    }
    // The name's bytes all come before the value's.
    copyHeader();
    ps_->header.append(at, length);
    ps_->field_length = static_cast<uint32_t>(ps_->header.size());
    return 0;
  }

  int onHeaderValueData(const char* at, size_t length) {
    if (countHeaderBytes(length) != 0) return -1;
    if (!ps_->header_copied && ps_->value_at == nullptr) {
      ps_->value_at = at;
      ps_->value_span = static_cast<uint32_t>(length);
      return 0;
    }
    copyHeader();
    ps_->header.append(at, length);
    return 0;
  }

  // The header being parsed, from spans into the parsed bytes to its own copy.
  void copyHeader() {
    if (ps_->header_copied) return;
    ps_->header.assign(ps_->field_at != nullptr ? ps_->field_at : "", ps_->field_span);
    ps_->field_length = ps_->field_span;
    if (ps_->value_at != nullptr) ps_->header.append(ps_->value_at, ps_->value_span);
    ps_->field_at = ps_->value_at = nullptr;
    ps_->field_span = ps_->value_span = 0;
    ps_->header_copied = true;
  }

  int onHeaderValueComplete() {
    if (!ps_->header_copied && ps_->field_span > sizeof(ps_->name)) copyHeader();
    std::string_view field;
    std::string_view raw_value;
    char* name;
    if (ps_->header_copied) {
      field = std::string_view(ps_->header).substr(0, ps_->field_length);
      raw_value = std::string_view(ps_->header).substr(ps_->field_length);
      name = ps_->header.data();
    } else {
      field = std::string_view(ps_->field_at != nullptr ? ps_->field_at : "", ps_->field_span);
      raw_value = std::string_view(ps_->value_at != nullptr ? ps_->value_at : "", ps_->value_span);
      name = ps_->name;
    }
    // llhttp lets a name hold any non-separator byte ("Bad Header"); a name is a token.
    if (!lowerToken(field, name)) return fail(400, kCodecError);
    const std::string_view value = trimOws(raw_value);
    // llhttp rejects these already; they must never reach a header map.
    if (hasNulCrLf(value)) return fail(400, kCodecError);
    if (++ps_->header_count > settings_.max_headers_count) return fail(431, kTooManyHeaders);
    const int rc = onHeader(std::string_view(name, field.size()), value);
    ps_->clearHeader();
    return rc;
  }

  int onChunkHeader() {
    if (ps_->parser.content_length == 0) {
      // The last chunk: what follows are trailers, with limits of their own.
      in_trailers_ = true;
      ps_->header_bytes = 0;
      ps_->header_count = 0;
    }
    return 0;
  }

  int onBodyData(const char* at, size_t length) {
    const size_t offset = static_cast<size_t>(at - ps_->slice_base);
    if (!ps_->spans.empty() && ps_->spans.back().offset + ps_->spans.back().length == offset) {
      ps_->spans.back().length += length;
    } else {
      ps_->spans.push_back(BodySpan{offset, length});
    }
    return 0;
  }

  int onMessageCompleteBase() {
    message_complete_ = true;
    return onMessageComplete();
  }
  // Returns HPE_PAUSED to end the message after llhttp returns, 0 to go on (1xx, upgrade).
  virtual int onMessageComplete() = 0;

  // Moves the body spans of the bytes llhttp consumed from `data` into `body` (whole slices
  // change hands where the spans allow), and drains the framing around them.
  void takeBody(Buffer& data, size_t consumed, Buffer& body) {
    size_t cursor = 0;
    for (const BodySpan& span : ps_->spans) {
      data.drain(span.offset - cursor);
      body.move(data, span.length);
      cursor = span.offset + span.length;
    }
    data.drain(consumed - cursor);
    ps_->spans.clear();
  }
};

const llhttp_settings_t CodecBase::kParserSettings = CodecBase::makeParserSettings();

std::vector<StreamCallbacks*>* StreamImpl::callbacks_() {
  ParseState* state = codec_.parseState();
  return state != nullptr ? &state->stream_callbacks : nullptr;
}
void StreamImpl::addCallbacks(StreamCallbacks& callbacks) {
  std::vector<StreamCallbacks*>* list = callbacks_();
  SLUICE_ASSERT(list != nullptr, "HTTP/1 stream callbacks added without an active stream");
  if (list != nullptr) list->push_back(&callbacks);
}
void StreamImpl::removeCallbacks(StreamCallbacks& callbacks) {
  if (std::vector<StreamCallbacks*>* list = callbacks_()) {
    for (auto& cb : *list) {
      if (cb == &callbacks) cb = nullptr;
    }
  }
}
void StreamImpl::clearCallbacks() {
  if (std::vector<StreamCallbacks*>* list = callbacks_()) list->clear();
}
void StreamImpl::runResetCallbacks(StreamResetReason reason) {
  std::vector<StreamCallbacks*> callbacks;
  if (std::vector<StreamCallbacks*>* list = callbacks_()) callbacks.swap(*list);
  for (StreamCallbacks* cb : callbacks) {
    if (cb != nullptr) cb->onResetStream(reason, "");
  }
}
// The list is looked up again after each callback: one may end the exchange.
void StreamImpl::runHighWatermarkCallbacks() {
  for (size_t i = 0; callbacks_() != nullptr && i < callbacks_()->size(); ++i) {
    if (StreamCallbacks* cb = (*callbacks_())[i]) cb->onAboveWriteBufferHighWatermark();
  }
}
void StreamImpl::runLowWatermarkCallbacks() {
  for (size_t i = 0; callbacks_() != nullptr && i < callbacks_()->size(); ++i) {
    if (StreamCallbacks* cb = (*callbacks_())[i]) cb->onBelowWriteBufferLowWatermark();
  }
}
void StreamImpl::resetStream(StreamResetReason reason) {
  codec_.resetStreamLocal(reason);
}
void StreamImpl::readDisable(bool disable) {
  codec_.connection().readDisable(disable);
}
uint32_t StreamImpl::bufferLimit() const {
  return codec_.connection().bufferLimit();
}

// ------------------------------------------------------------------------------------------
// Server

class ServerCodecImpl final : public ServerCodec,
                              public CodecBase,
                              public Pooled<ServerCodecImpl> {
 public:
  ServerCodecImpl(network::Connection& connection, ServerConnectionCallbacks& callbacks,
                  const CodecSettings& settings, CodecStats stats)
      : CodecBase(connection, settings, HTTP_REQUEST), callbacks_(callbacks), stats_(stats) {}

  // CodecConnection
  CodecStatus dispatch(Buffer& data) override { return dispatchBytes(data); }
  Protocol protocol() const override { return protocol_; }
  void goAway() override { close_after_response_ = true; }
  bool releasableWhenIdle() const override {
    return !active_ && ps_ == nullptr && !parser_paused_ && status_.ok() && !upgraded_ &&
           !closed_ && !close_after_response_ && !codec_read_disabled_;
  }
  void onConnectionClosed() override {
    closed_ = true;
    codec_read_disabled_ = false;
    if (active_) resetActiveStream(StreamResetReason::ConnectionTermination);
  }
  void onUnderlyingConnectionAboveWriteBufferHighWatermark() override {
    if (active_) stream_.runHighWatermarkCallbacks();
  }
  void onUnderlyingConnectionBelowWriteBufferLowWatermark() override {
    if (active_) stream_.runLowWatermarkCallbacks();
  }

  void onReadEndStream() override {
    if (!active_ || !upgraded_ || request_complete_) return;
    request_complete_ = true;
    if (decoder_ != nullptr) {
      Buffer empty;
      decoder_->decodeData(empty, true);
    }
    maybeFinishStream();
  }

 private:
  class ResponseEncoderImpl : public ResponseEncoder {
   public:
    explicit ResponseEncoderImpl(ServerCodecImpl& parent) : parent_(parent) {}
    void encode1xxHeaders(const ResponseHeaderMap& headers) override {
      parent_.encode1xxHeaders(headers);
    }
    void encodeHeaders(const ResponseHeaderMap& headers, bool end_stream) override {
      parent_.encodeHeaders(headers, end_stream);
    }
    void encodeData(Buffer& data, bool end_stream) override {
      parent_.encodeData(data, end_stream);
    }
    void encodeTrailers(const ResponseTrailerMap& trailers) override {
      parent_.encodeTrailers(trailers);
    }
    Stream& getStream() override { return parent_.stream_; }

   private:
    ServerCodecImpl& parent_;
  };

  bool canEncode() const { return active_ && !closed_ && !response_complete_; }

  void encode1xxHeaders(const HeaderMap& headers) {
    // An HTTP/1.0 client knows no informational responses.
    if (!canEncode() || response_started_ || protocol_ == Protocol::Http10) return;
    HeadWriter head;
    writeStatusLine(head, headers.status());
    head.lines(headers);
    head.put("\r\n");
    connection_.write(head.take(), false);
  }

  void encodeHeaders(const HeaderMap& headers, bool end_stream) {
    if (!canEncode() || response_started_) return;
    response_started_ = true;
    const uint32_t status = headers.status();
    HeadWriter head;
    writeStatusLine(head, status);
    bool saw_content_length = false;
    bool saw_transfer_encoding = false;
    bool saw_connection = false;
    for (const HeaderEntry& e : headers) {
      if (e.key.empty() || e.key[0] == ':') continue;
      if (e.key == headers::kContentLength) {
        saw_content_length = true;
      } else if (e.key == headers::kTransferEncoding) {
        saw_transfer_encoding = true;
        // An HTTP/1.0 client knows no chunking: its body is close-delimited instead.
        if (protocol_ == Protocol::Http10) continue;
      } else if (e.key == headers::kConnection) {
        saw_connection = true;
        if (hasToken(e.value, "close")) close_after_response_ = true;
      }
      head.line(e.key, e.value);
    }

    const bool tunnel =
        upgrade_request_ && (status == 101 || (is_connect_ && status >= 200 && status < 300));
    // A refused upgrade leaves the connection in an unknown state: it ends with the response.
    if (upgrade_request_ && !tunnel) close_after_response_ = true;
    const bool body_allowed =
        !is_head_ && status != 204 && status != 304 && (status >= 200 || tunnel);
    if (tunnel) {
      framing_ = Framing::Raw;
      tunnel_response_ = true;
      // Each side of a tunnel ends on its own: the client's FIN ends the request side only.
      connection_.enableHalfClose(true);
    } else if (end_stream || !body_allowed) {
      framing_ = Framing::None;
      if (end_stream && body_allowed && !saw_content_length && !saw_transfer_encoding) {
        head.line(headers::kContentLength, "0");
      }
    } else if (saw_content_length) {
      framing_ = Framing::Raw;
    } else if (protocol_ == Protocol::Http10) {
      // Close-delimited.
      framing_ = Framing::Raw;
      close_after_response_ = true;
    } else {
      framing_ = Framing::Chunked;
      if (!saw_transfer_encoding) head.line(headers::kTransferEncoding, "chunked");
    }
    if (!saw_connection && !tunnel) {
      if (close_after_response_) {
        head.line(headers::kConnection, "close");
      } else if (protocol_ == Protocol::Http10) {
        head.line(headers::kConnection, "keep-alive");
      }
    }
    head.put("\r\n");
    connection_.write(head.take(), false);
    if (end_stream) onResponseComplete();
  }

  void encodeData(Buffer& data, bool end_stream) {
    if (!canEncode() || !response_started_) {
      data.drain(data.length());
      return;
    }
    writeBody(connection_, framing_, data, end_stream, end_stream && tunnel_response_);
    if (end_stream) onResponseComplete();
  }

  void encodeTrailers(const HeaderMap& trailers) {
    if (!canEncode() || !response_started_) return;
    if (framing_ == Framing::Chunked) {
      HeadWriter head;
      writeLastChunk(head, settings_.enable_trailers ? &trailers : nullptr);
      connection_.write(head.take(), false);
    }
    onResponseComplete();
  }

  static void writeStatusLine(HeadWriter& head, uint32_t status) {
    head.put("HTTP/1.1 ");
    head.putNumber(status, 10);
    head.put(" ");
    head.put(reasonPhrase(status));
    head.put("\r\n");
  }

  void onResponseComplete() {
    response_complete_ = true;
    // A response that ends before its request ends the request's delivery too (the caller
    // resets or closes); the codec still parses the rest of the request to keep in step.
    if (!request_complete_ && !tunnel_response_) decoder_ = nullptr;
    if (close_after_response_) {
      active_ = false;
      onStreamDeactivated();
      stream_.clearCallbacks();
      connection_.close(network::ConnectionCloseType::FlushWriteAndDelay);
      return;
    }
    maybeFinishStream();
  }

  // Ends the stream when both its request and its response are complete, and lets the next
  // pipelined request in.
  void maybeFinishStream() {
    if (!active_ || !request_complete_ || !response_complete_) return;
    active_ = false;
    onStreamDeactivated();
    stream_.clearCallbacks();
    // An idle connection holds no parse state; a pipelined request takes a fresh one.
    releaseParseState();
    if (codec_read_disabled_) {
      codec_read_disabled_ = false;
      connection_.readDisable(false);
    }
  }

  void startStream() {
    SLUICE_ASSERT(!active_, "an HTTP/1 request began while the previous one is active");
    active_ = true;
    protocol_ = Protocol::Http11;
    ps_->host.clear();
    ps_->url_authority = {};
    host_seen_ = false;
    has_url_authority_ = false;
    request_complete_ = false;
    end_stream_delivered_ = false;
    response_started_ = false;
    response_complete_ = false;
    is_head_ = false;
    is_connect_ = false;
    upgrade_request_ = false;
    tunnel_response_ = false;
    framing_ = Framing::None;
    decoder_ = &callbacks_.newStream(encoder_);
  }

  // CodecBase
  int onMessageBegin() override {
    startStream();
    return 0;
  }

  int onUrlComplete() override {
    const auto method = static_cast<llhttp_method_t>(ps_->parser.method);
    ps_->headers->add(headers::kMethod, llhttp_method_name(method));
    is_head_ = method == HTTP_HEAD;
    is_connect_ = method == HTTP_CONNECT;
    const std::string_view url = ps_->url;
    if (is_connect_) {
      // Authority-form: "CONNECT host:port".
      ps_->url_authority = url;
      has_url_authority_ = true;
      return 0;
    }
    const size_t scheme_end = url.find("://");
    if (url.empty() || url[0] == '/' || url == "*" || scheme_end == std::string_view::npos ||
        scheme_end == 0) {
      ps_->headers->add(headers::kPath, url);
      return 0;
    }
    // Absolute-form: "http://host:port/path?query".
    std::string scheme(url.substr(0, scheme_end));
    toLowerInPlace(scheme);
    ps_->headers->add(headers::kScheme, scheme);
    const std::string_view rest = url.substr(scheme_end + 3);
    const size_t authority_end = rest.find_first_of("/?");
    ps_->url_authority = rest.substr(0, authority_end);
    has_url_authority_ = true;
    if (authority_end == std::string_view::npos) {
      ps_->headers->add(headers::kPath, "/");
    } else if (rest[authority_end] == '?') {
      std::string path("/");
      path.append(rest.substr(authority_end));
      ps_->headers->add(headers::kPath, path);
    } else {
      ps_->headers->add(headers::kPath, rest.substr(authority_end));
    }
    return 0;
  }

  int onHeader(std::string_view name, std::string_view value) override {
    if (settings_.headers_with_underscores != CodecSettings::UnderscoreAction::Allow &&
        name.find('_') != std::string_view::npos) {
      if (settings_.headers_with_underscores == CodecSettings::UnderscoreAction::DropHeader) {
        if (stats_.dropped_headers_with_underscores) stats_.dropped_headers_with_underscores->inc();
        return 0;
      }
      if (stats_.requests_rejected_with_underscores_in_headers) {
        stats_.requests_rejected_with_underscores_in_headers->inc();
      }
      return fail(400, "http1.unexpected_underscore");
    }
    if (in_trailers_) {
      if (settings_.enable_trailers) {
        if (!ps_->trailers) ps_->trailers = std::make_unique<HeaderMap>();
        ps_->trailers->add(name, value);
      }
      return 0;
    }
    if (name == headers::kHost) {
      // RFC 9112 3.2: more than one Host is a bad request.
      if (host_seen_) return fail(400, kCodecError);
      host_seen_ = true;
      ps_->host.assign(value);
      return 0;
    }
    ps_->headers->add(name, value);
    return 0;
  }

  int onHeadersComplete() override {
    if (ps_->parser.http_major == 1 && ps_->parser.http_minor == 1) {
      protocol_ = Protocol::Http11;
    } else if (ps_->parser.http_major == 1 && ps_->parser.http_minor == 0) {
      protocol_ = Protocol::Http10;
      if (!settings_.accept_http_10) return fail(426, "http1.http_10_not_supported");
    } else {
      return fail(400, kCodecError);
    }
    if (has_url_authority_ && !ps_->url_authority.empty()) {
      ps_->headers->add(headers::kAuthority, ps_->url_authority);
    } else if (host_seen_) {
      ps_->headers->add(headers::kAuthority, ps_->host);
    } else if (protocol_ == Protocol::Http10) {
      if (!settings_.default_host_for_http_10.empty()) {
        ps_->headers->add(headers::kAuthority, settings_.default_host_for_http_10);
      }
    } else {
      return fail(400, "missing_host_header");
    }
    // "Connection: close", or HTTP/1.0 without keep-alive: the response ends the connection.
    if (llhttp_should_keep_alive(&ps_->parser) == 0) close_after_response_ = true;
    upgrade_request_ = ps_->parser.upgrade != 0;
    const bool has_body = (ps_->parser.flags & F_CHUNKED) != 0 || ps_->parser.content_length > 0;
    const bool end_stream = !has_body && !upgrade_request_;
    end_stream_delivered_ = end_stream;
    if (decoder_ != nullptr) decoder_->decodeHeaders(std::move(ps_->headers), end_stream);
    return 0;
  }

  int onMessageComplete() override {
    // An upgrade goes on as a tunnel: llhttp returns HPE_PAUSED_UPGRADE right after this.
    return ps_->parser.upgrade ? 0 : HPE_PAUSED;
  }

  void onBody(Buffer& body) override {
    if (decoder_ != nullptr) decoder_->decodeData(body, false);
  }

  void onMessageEnd(Buffer& body) override {
    request_complete_ = true;
    if (decoder_ != nullptr && !end_stream_delivered_) {
      end_stream_delivered_ = true;
      if (ps_->trailers) {
        if (!body.empty()) decoder_->decodeData(body, false);
        if (decoder_ != nullptr) decoder_->decodeTrailers(std::move(ps_->trailers));
      } else {
        decoder_->decodeData(body, true);
      }
    }
    maybeFinishStream();
    if (parser_paused_ && !codec_read_disabled_ &&
        connection_.state() == network::Connection::State::Open) {
      // The response is still going out: the next request waits, and so does the socket.
      codec_read_disabled_ = true;
      connection_.readDisable(true);
    }
  }

  void onUpgradeData(Buffer& data) override {
    if (decoder_ != nullptr && !request_complete_) decoder_->decodeData(data, false);
  }

  void onParseError() override {
    // The caller replies on the failed request's stream: make sure it exists.
    if (!active_ && !closed_) startStream();
    decoder_ = nullptr;
    close_after_response_ = true;
  }

  void onStreamDeactivated() override { decoder_ = nullptr; }

  ServerConnectionCallbacks& callbacks_;
  const CodecStats stats_;
  ResponseEncoderImpl encoder_{*this};
  RequestDecoder* decoder_{nullptr};
  Protocol protocol_{Protocol::Http11};
  Framing framing_{Framing::None};
  bool host_seen_{false};
  bool has_url_authority_{false};
  bool request_complete_{false};
  bool end_stream_delivered_{false};
  bool response_started_{false};
  bool response_complete_{false};
  bool is_head_{false};
  bool is_connect_{false};
  bool upgrade_request_{false};
  bool tunnel_response_{false};
  bool close_after_response_{false};  // sticky: the connection ends with this response
  bool codec_read_disabled_{false};   // our readDisable(true) awaits its readDisable(false)
  bool closed_{false};
};

// ------------------------------------------------------------------------------------------
// Client

// The client codec keeps its own copy of the settings (a base, so it is built before
// CodecBase refers to it): upstream connections are few, and a pool's client may be deleted
// after its cluster. The server codec refers to the connection manager's config, which its
// owner holds for the codec's life: a copy would cost 56 bytes per downstream connection.
struct ClientSettingsCopy {
  const CodecSettings copy;
};

class ClientCodecImpl final : private ClientSettingsCopy, public ClientCodec, public CodecBase {
 public:
  ClientCodecImpl(network::Connection& connection, ConnectionCallbacks& callbacks,
                  const CodecSettings& settings)
      : ClientSettingsCopy{settings},
        CodecBase(connection, ClientSettingsCopy::copy, HTTP_RESPONSE),
        callbacks_(callbacks) {}

  // ClientCodec
  RequestEncoder& newStream(ResponseDecoder& decoder) override {
    SLUICE_ASSERT(!active_, "an HTTP/1 client codec carries one request at a time");
    active_ = true;
    // The stream's callbacks live in the parse state: an active stream has one. A client
    // takes it with its first request and keeps it.
    if (ps_ == nullptr) takeParseState();
    decoder_ = &decoder;
    request_started_ = false;
    request_complete_ = false;
    response_headers_done_ = false;
    response_complete_ = false;
    end_stream_delivered_ = false;
    is_head_ = false;
    is_1xx_ = false;
    upgrade_sent_ = false;
    framing_ = Framing::None;
    return encoder_;
  }
  size_t activeStreams() const override { return active_ ? 1 : 0; }

  // CodecConnection
  CodecStatus dispatch(Buffer& data) override { return dispatchBytes(data); }
  Protocol protocol() const override { return Protocol::Http11; }
  void goAway() override {}
  void onConnectionClosed() override {
    if (closed_) return;
    closed_ = true;
    if (!active_) return;
    if (ps_ != nullptr && response_headers_done_ && !response_complete_ && !upgraded_ &&
        status_.ok() && llhttp_message_needs_eof(&ps_->parser)) {
      // A close-delimited body ends here.
      message_complete_ = false;
      llhttp_finish(&ps_->parser);
      if (message_complete_) {
        message_complete_ = false;
        Buffer empty;
        onMessageEnd(empty);
      }
    }
    if (active_) resetActiveStream(StreamResetReason::ConnectionTermination);
  }
  void onReadEndStream() override {
    // The upstream ended its side of a tunnel: the response ends, the request may go on.
    if (!active_ || !upgraded_ || response_complete_) return;
    response_complete_ = true;
    end_stream_delivered_ = true;
    if (decoder_ != nullptr) {
      Buffer empty;
      decoder_->decodeData(empty, true);
    }
    maybeFinishStream();
  }
  void onUnderlyingConnectionAboveWriteBufferHighWatermark() override {
    if (active_) stream_.runHighWatermarkCallbacks();
  }
  void onUnderlyingConnectionBelowWriteBufferLowWatermark() override {
    if (active_) stream_.runLowWatermarkCallbacks();
  }

 private:
  class RequestEncoderImpl : public RequestEncoder {
   public:
    explicit RequestEncoderImpl(ClientCodecImpl& parent) : parent_(parent) {}
    void encodeHeaders(const RequestHeaderMap& headers, bool end_stream) override {
      parent_.encodeHeaders(headers, end_stream);
    }
    void encodeData(Buffer& data, bool end_stream) override {
      parent_.encodeData(data, end_stream);
    }
    void encodeTrailers(const RequestTrailerMap& trailers) override {
      parent_.encodeTrailers(trailers);
    }
    Stream& getStream() override { return parent_.stream_; }

   private:
    ClientCodecImpl& parent_;
  };

  bool canEncode() const { return active_ && !closed_ && !request_complete_; }

  void encodeHeaders(const HeaderMap& headers, bool end_stream) {
    if (!canEncode() || request_started_) return;
    request_started_ = true;
    const std::string_view method = headers.method();
    const std::string_view authority = headers.authority();
    is_head_ = method == "HEAD";
    const bool is_connect = method == "CONNECT";
    HeadWriter head;
    head.put(method);
    head.put(" ");
    if (is_connect) {
      head.put(authority);
    } else {
      const std::string_view path = headers.path();
      head.put(path.empty() ? std::string_view("/") : path);
    }
    head.put(" HTTP/1.1\r\n");
    if (!authority.empty()) head.line(headers::kHost, authority);
    bool saw_content_length = false;
    bool saw_transfer_encoding = false;
    bool upgrade = is_connect;
    for (const HeaderEntry& e : headers) {
      if (e.key.empty() || e.key[0] == ':') continue;
      if (e.key == headers::kHost && !authority.empty()) continue;
      if (e.key == headers::kContentLength) {
        saw_content_length = true;
      } else if (e.key == headers::kTransferEncoding) {
        saw_transfer_encoding = true;
      } else if (e.key == headers::kUpgrade) {
        upgrade = true;
      }
      head.line(e.key, e.value);
    }
    if (end_stream) {
      framing_ = Framing::None;
      if (!saw_content_length && !saw_transfer_encoding &&
          (method == "POST" || method == "PUT" || method == "PATCH")) {
        head.line(headers::kContentLength, "0");
      }
    } else if (saw_content_length || upgrade) {
      framing_ = Framing::Raw;
    } else {
      framing_ = Framing::Chunked;
      if (!saw_transfer_encoding) head.line(headers::kTransferEncoding, "chunked");
    }
    head.put("\r\n");
    upgrade_sent_ = upgrade;
    connection_.write(head.take(), false);
    if (end_stream) onRequestComplete();
  }

  void encodeData(Buffer& data, bool end_stream) {
    if (!canEncode() || !request_started_) {
      data.drain(data.length());
      return;
    }
    // The end of an upgrade request's bytes is the end of the tunnel's request side: a FIN.
    writeBody(connection_, framing_, data, end_stream, end_stream && upgrade_sent_);
    if (end_stream) onRequestComplete();
  }

  void encodeTrailers(const HeaderMap& trailers) {
    if (!canEncode() || !request_started_) return;
    if (framing_ == Framing::Chunked) {
      HeadWriter head;
      writeLastChunk(head, settings_.enable_trailers ? &trailers : nullptr);
      connection_.write(head.take(), false);
    }
    onRequestComplete();
  }

  void onRequestComplete() {
    request_complete_ = true;
    maybeFinishStream();
  }

  void maybeFinishStream() {
    if (!active_ || !request_complete_ || !response_complete_) return;
    active_ = false;
    onStreamDeactivated();
    stream_.clearCallbacks();
    // The client keeps its parse state (and llhttp's parser goes on to the next response):
    // upstream connections are few, and this spares a take and a give per request.
  }

  // CodecBase
  int onMessageBegin() override {
    if (!active_ || response_complete_) {
      status_ = CodecStatus{CodecStatus::Code::PrematureResponse, 0,
                            std::string("http1.response_without_request")};
      return -1;
    }
    return 0;
  }

  int onHeader(std::string_view name, std::string_view value) override {
    if (in_trailers_) {
      if (settings_.enable_trailers) {
        if (!ps_->trailers) ps_->trailers = std::make_unique<HeaderMap>();
        ps_->trailers->add(name, value);
      }
      return 0;
    }
    ps_->headers->add(name, value);
    return 0;
  }

  int onHeadersComplete() override {
    const uint32_t status = ps_->parser.status_code;
    char digits[8];
    const auto result = std::to_chars(digits, digits + sizeof(digits), status);
    ps_->headers->add(headers::kStatus,
                      std::string_view(digits, static_cast<size_t>(result.ptr - digits)));
    if (status >= 100 && status < 200 && status != 101) {
      // Informational: the final response follows.
      is_1xx_ = true;
      if (decoder_ != nullptr) decoder_->decode1xxHeaders(std::move(ps_->headers));
      return 1;
    }
    if (llhttp_should_keep_alive(&ps_->parser) == 0) callbacks_.onGoAway();
    const bool no_body = is_head_ || status == 204 || status == 304 ||
                         ((ps_->parser.flags & F_CONTENT_LENGTH) != 0 &&
                          ps_->parser.content_length == 0 && (ps_->parser.flags & F_CHUNKED) == 0);
    const bool end_stream = no_body && !ps_->parser.upgrade;
    end_stream_delivered_ = end_stream;
    // Each side of a tunnel ends on its own: the upstream's FIN ends the response side only.
    if (ps_->parser.upgrade && upgrade_sent_) connection_.enableHalfClose(true);
    response_headers_done_ = true;
    if (decoder_ != nullptr) decoder_->decodeHeaders(std::move(ps_->headers), end_stream);
    // These have no body whatever their headers say (llhttp would read a 304's
    // content-length).
    return no_body ? 1 : 0;
  }

  int onMessageComplete() override {
    if (is_1xx_) {
      is_1xx_ = false;
      return 0;
    }
    return ps_->parser.upgrade ? 0 : HPE_PAUSED;
  }

  void onBody(Buffer& body) override {
    if (decoder_ != nullptr) decoder_->decodeData(body, false);
  }

  void onMessageEnd(Buffer& body) override {
    response_complete_ = true;
    if (decoder_ != nullptr && !end_stream_delivered_) {
      end_stream_delivered_ = true;
      if (ps_->trailers) {
        if (!body.empty()) decoder_->decodeData(body, false);
        if (decoder_ != nullptr) decoder_->decodeTrailers(std::move(ps_->trailers));
      } else {
        decoder_->decodeData(body, true);
      }
    }
    resumeParser();
    maybeFinishStream();
  }

  void onUpgradeData(Buffer& data) override {
    if (decoder_ != nullptr) decoder_->decodeData(data, false);
  }

  void onStreamDeactivated() override { decoder_ = nullptr; }

  ConnectionCallbacks& callbacks_;
  RequestEncoderImpl encoder_{*this};
  ResponseDecoder* decoder_{nullptr};
  Framing framing_{Framing::None};
  bool request_started_{false};
  bool request_complete_{false};
  bool response_headers_done_{false};
  bool response_complete_{false};
  bool end_stream_delivered_{false};
  bool is_head_{false};
  bool is_1xx_{false};
  bool upgrade_sent_{false};  // the request asked for an upgrade (or was a CONNECT)
  bool closed_{false};
};

}  // namespace

// The server codec refers to `settings` (the connection manager's config, which outlives it).
ServerCodecPtr createServerCodec(network::Connection& connection,
                                 ServerConnectionCallbacks& callbacks,
                                 const CodecSettings& settings, CodecStats stats) {
  return std::make_unique<ServerCodecImpl>(connection, callbacks, settings, stats);
}

ClientCodecPtr createClientCodec(network::Connection& connection, ConnectionCallbacks& callbacks,
                                 const CodecSettings& settings) {
  return std::make_unique<ClientCodecImpl>(connection, callbacks, settings);
}

bool holdsParseState(const CodecConnection& codec) {
  const auto* base = dynamic_cast<const CodecBase*>(&codec);
  return base != nullptr && base->holdsParseState();
}

size_t freeParseStates() {
  return ParseStatePool::local().freeBlocks();
}

}  // namespace sluice::http::http1
