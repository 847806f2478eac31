// loadgen: an open-loop HTTP/1.1 load generator for the Sluice benchmark.
//
// Requests are scheduled at fixed intervals (request i at t0 + i/R, CLOCK_MONOTONIC)
// regardless of how fast the server answers.  Each request's latency is measured from its
// *scheduled* send time to the moment its response is fully read, so time spent waiting in
// the local queue for a free connection (because the server is slow) is counted.  That is
// what avoids "coordinated omission": a server stall shows up in every request scheduled
// during the stall, not just the one request that was on the wire.
//
// Single thread, Linux epoll, nonblocking sockets, a timerfd armed with absolute ns
// deadlines for scheduling (no busy-spinning unless --spin-us asks for it).  Standard library
// and libc only.
//
// Build: g++ -std=c++20 -O2 -Wall -Wextra -o loadgen bench/loadgen/loadgen.cc

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Nanos = int64_t;

constexpr Nanos kNsPerUs = 1'000;
constexpr Nanos kNsPerMs = 1'000'000;
constexpr Nanos kNsPerSec = 1'000'000'000;

Nanos MonoNow() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<Nanos>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

// ---------------------------------------------------------------------------------------
// Log-linear ("HDR-style") histogram of nanosecond values.
//
// Layout, with S = 2^kSubBits = 256 sub-buckets:
//   * values v in [0, 2S) get one bucket each (index = v, exact);
//   * a value v >= 2S with most-significant bit m (2^m <= v < 2^(m+1)) is shifted right by
//     shift = m - kSubBits, which leaves a number in [S, 2S): the top kSubBits+1 bits of v.
//     Each power of two [2^m, 2^(m+1)) therefore gets S buckets of width 2^shift, and
//       index = 2S + (m - kSubBits - 1) * S + ((v >> shift) - S).
//     (At v = 2S: m = kSubBits+1, shift = 1, index = 2S, so the two regions join up.)
// A bucket's width relative to any value in it is at most 2^shift / (S * 2^shift) = 1/256,
// so reporting the bucket midpoint is within 0.2% of the true value (the spec asks <= 1%).
// Values are clamped to kMaxValue (60 s); with ns storage 1 us is far inside the exact
// region, so the whole 1 us .. 60 s range is covered at that precision.
// ---------------------------------------------------------------------------------------
class LogLinearHistogram {
 public:
  static constexpr int kSubBits = 8;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr uint64_t kMaxValue = 60ULL * kNsPerSec;

  LogLinearHistogram() : counts_(IndexOf(kMaxValue) + 1, 0) {}

  static size_t IndexOf(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    const int msb = static_cast<int>(std::bit_width(v)) - 1;  // 2^msb <= v < 2^(msb+1)
    const int shift = msb - kSubBits;       // >= 1 here
    return static_cast<size_t>(2 * kSub + static_cast<uint64_t>(msb - kSubBits - 1) * kSub +
                               ((v >> shift) - kSub));
  }
  // Inverse of IndexOf: smallest value mapping to `idx`, and the bucket width.
  static uint64_t LowerBound(size_t idx) {
    if (idx < 2 * kSub) return idx;
    const uint64_t j = idx - 2 * kSub;
    const int shift = static_cast<int>(j / kSub) + 1;
    return (kSub + j % kSub) << shift;
  }
  static uint64_t Width(size_t idx) {
    if (idx < 2 * kSub) return 1;
    return uint64_t{1} << (static_cast<int>((idx - 2 * kSub) / kSub) + 1);
  }

  void Record(Nanos value) {
    uint64_t v = value < 0 ? 0 : static_cast<uint64_t>(value);
    if (v > kMaxValue) {
      v = kMaxValue;
      ++clamped_;
    }
    ++counts_[IndexOf(v)];
    ++count_;
    sum_ += static_cast<double>(v);
    if (count_ == 1 || v < min_) min_ = v;
    if (v > max_) max_ = v;
  }

  uint64_t count() const { return count_; }
  uint64_t clamped() const { return clamped_; }
  double MinNs() const { return count_ ? static_cast<double>(min_) : 0.0; }
  double MaxNs() const { return count_ ? static_cast<double>(max_) : 0.0; }
  double MeanNs() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }

  // Value at percentile p (0..100]: the smallest recorded value such that at least p% of
  // samples are <= it, reported as its bucket midpoint and clamped to the observed
  // [min, max] (so p100 == max exactly and tiny samples stay exact).
  double PercentileNs(double p) const {
    if (count_ == 0) return 0.0;
    if (p >= 100.0) return MaxNs();
    uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const double mid = static_cast<double>(LowerBound(i)) +
                           (static_cast<double>(Width(i)) - 1.0) / 2.0;
        return std::clamp(mid, MinNs(), MaxNs());
      }
    }
    return MaxNs();
  }

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t clamped_ = 0;
  uint64_t min_ = 0;
  uint64_t max_ = 0;
  double sum_ = 0;
};

// ---------------------------------------------------------------------------------------
// Incremental HTTP/1.x response parser.  Bytes are fed as they arrive; it reports when one
// complete (final, non-1xx) response has been consumed.  Bodies are skipped, not stored.
// Framing: chunked transfer coding (sizes parsed, extensions and trailers ignored), else
// Content-Length, else read until the peer closes (OnEof()).
// ---------------------------------------------------------------------------------------
class ResponseParser {
 public:
  enum class Result { kNeedMore, kDone, kError };

  void Reset() {
    state_ = State::kStatusLine;
    line_.clear();
    status_ = 0;
    keep_alive_ = true;
    content_length_ = -1;
    chunked_ = false;
    until_close_ = false;
    remaining_ = 0;
  }

  // Consumes bytes from [data, data+len).  Stops right after the end of a response
  // (*consumed tells how far it got); bytes after that belong to nobody.
  Result Feed(const char* data, size_t len, size_t* consumed) {
    size_t pos = 0;
    Result r = Result::kNeedMore;
    while (pos < len && r == Result::kNeedMore) {
      switch (state_) {
        case State::kBodyLength:
        case State::kChunkData: {
          const uint64_t take = std::min<uint64_t>(remaining_, len - pos);
          pos += static_cast<size_t>(take);
          remaining_ -= take;
          if (remaining_ == 0) {
            if (state_ == State::kBodyLength) {
              state_ = State::kDone;
              r = Result::kDone;
            } else {
              state_ = State::kChunkDataEnd;
            }
          }
          break;
        }
        case State::kBodyUntilClose:
          pos = len;  // everything until EOF is body
          break;
        case State::kDone:
          r = Result::kDone;
          break;
        default: {  // a line-oriented state: gather up to '\n'
          const char* nl = static_cast<const char*>(memchr(data + pos, '\n', len - pos));
          const size_t end = nl ? static_cast<size_t>(nl - data) : len;
          if (line_.size() + (end - pos) > kMaxLine) return Result::kError;
          line_.append(data + pos, end - pos);
          pos = nl ? end + 1 : len;
          if (nl) {
            if (!line_.empty() && line_.back() == '\r') line_.pop_back();
            r = OnLine(line_);
            line_.clear();
          }
          break;
        }
      }
    }
    if (r == Result::kNeedMore && state_ == State::kDone) r = Result::kDone;
    *consumed = pos;
    return r;
  }

  // The peer closed the connection: that ends a read-until-close body; anything else
  // unfinished is an error.
  Result OnEof() {
    if (state_ == State::kBodyUntilClose || state_ == State::kDone) {
      state_ = State::kDone;
      return Result::kDone;
    }
    return Result::kError;
  }

  int status() const { return status_; }
  // Whether the connection may carry another request after this response.
  bool keep_alive() const { return keep_alive_ && state_ == State::kDone && !until_close_; }

 private:
  enum class State {
    kStatusLine,
    kHeaderLine,
    kBodyLength,
    kBodyUntilClose,
    kChunkSize,
    kChunkData,
    kChunkDataEnd,
    kTrailerLine,
    kDone,
  };
  static constexpr size_t kMaxLine = 64 * 1024;

  static bool IEquals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i])))
        return false;
    }
    return true;
  }
  static std::string_view Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }
  // Calls fn(token) for each comma-separated, trimmed, non-empty token.
  template <typename Fn>
  static void ForEachToken(std::string_view s, Fn fn) {
    while (!s.empty()) {
      const size_t comma = s.find(',');
      const std::string_view tok = Trim(s.substr(0, comma));
      if (!tok.empty()) fn(tok);
      if (comma == std::string_view::npos) break;
      s.remove_prefix(comma + 1);
    }
  }

  Result OnLine(std::string_view line) {
    switch (state_) {
      case State::kStatusLine: return OnStatusLine(line);
      case State::kHeaderLine: return line.empty() ? OnHeadersEnd() : OnHeader(line);
      case State::kChunkSize: return OnChunkSize(line);
      case State::kChunkDataEnd:
        if (!line.empty()) return Result::kError;  // chunk data must be followed by CRLF
        state_ = State::kChunkSize;
        return Result::kNeedMore;
      case State::kTrailerLine:  // trailers are ignored; an empty line ends the message
        if (line.empty()) {
          state_ = State::kDone;
          return Result::kDone;
        }
        return Result::kNeedMore;
      default: return Result::kError;
    }
  }

  // "HTTP/1.x SSS reason"
  Result OnStatusLine(std::string_view line) {
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') {
      return Result::kError;
    }
    if (line[7] != '0' && line[7] != '1') return Result::kError;
    int code = 0;
    for (int i = 9; i < 12; ++i) {
      if (line[i] < '0' || line[i] > '9') return Result::kError;
      code = code * 10 + (line[i] - '0');
    }
    if (line.size() > 12 && line[12] != ' ') return Result::kError;
    if (code < 100) return Result::kError;
    status_ = code;
    keep_alive_ = line[7] == '1';  // HTTP/1.0 closes unless it says keep-alive
    content_length_ = -1;
    chunked_ = false;
    until_close_ = false;
    state_ = State::kHeaderLine;
    return Result::kNeedMore;
  }

  Result OnHeader(std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return Result::kNeedMore;  // obs-fold
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Result::kError;
    const std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return Result::kError;
    const std::string_view value = Trim(line.substr(colon + 1));
    if (IEquals(name, "content-length")) {
      if (value.empty() || value.size() > 18) return Result::kError;
      int64_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return Result::kError;
        n = n * 10 + (c - '0');
      }
      if (content_length_ >= 0 && content_length_ != n) return Result::kError;
      content_length_ = n;
    } else if (IEquals(name, "transfer-encoding")) {
      // Chunked only if it is the final coding; any other coding means read-until-close.
      std::string_view last;
      ForEachToken(value, [&](std::string_view tok) { last = tok; });
      chunked_ = IEquals(last, "chunked");
      if (!chunked_) until_close_ = true;
    } else if (IEquals(name, "connection")) {
      // "close" ends persistence; "keep-alive" turns it on (for HTTP/1.0); close wins.
      bool has_close = false, has_keep_alive = false;
      ForEachToken(value, [&](std::string_view tok) {
        has_close = has_close || IEquals(tok, "close");
        has_keep_alive = has_keep_alive || IEquals(tok, "keep-alive");
      });
      if (has_close) keep_alive_ = false;
      else if (has_keep_alive) keep_alive_ = true;
    }
    return Result::kNeedMore;
  }

  Result OnHeadersEnd() {
    if (status_ < 200) {
      if (status_ == 101) return Result::kError;  // we never ask to upgrade
      state_ = State::kStatusLine;                // 1xx interim response: the real one follows
      return Result::kNeedMore;
    }
    if (status_ == 204 || status_ == 304) {  // never have a body
      state_ = State::kDone;
      return Result::kDone;
    }
    if (chunked_) {
      state_ = State::kChunkSize;
      return Result::kNeedMore;
    }
    if (!until_close_ && content_length_ >= 0) {
      remaining_ = static_cast<uint64_t>(content_length_);
      state_ = remaining_ == 0 ? State::kDone : State::kBodyLength;
      return state_ == State::kDone ? Result::kDone : Result::kNeedMore;
    }
    until_close_ = true;  // no framing: body runs to EOF
    state_ = State::kBodyUntilClose;
    return Result::kNeedMore;
  }

  // "1a2b[;ext=val]" (hex size, optional extensions which are ignored)
  Result OnChunkSize(std::string_view line) {
    line = Trim(line.substr(0, line.find(';')));
    if (line.empty() || line.size() > 15) return Result::kError;
    uint64_t n = 0;
    for (char c : line) {
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return Result::kError;
      n = n * 16 + static_cast<uint64_t>(d);
    }
    if (n == 0) {
      state_ = State::kTrailerLine;
    } else {
      remaining_ = n;
      state_ = State::kChunkData;
    }
    return Result::kNeedMore;
  }

  State state_ = State::kStatusLine;
  std::string line_;
  int status_ = 0;
  bool keep_alive_ = true;
  bool chunked_ = false;
  bool until_close_ = false;
  int64_t content_length_ = -1;
  uint64_t remaining_ = 0;
};

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------
struct Options {
  std::string target;  // host:port as given
  std::string path = "/";
  std::string host;    // Host header; defaults to target
  double rate = 0;
  double duration_s = 0;
  double warmup_s = 0;
  int connections = 64;
  int64_t timeout_ms = 10000;
  int64_t spin_us = 0;  // opt-in: wake this early and poll until the send time
  std::vector<std::string> headers;
  bool json = false;
};

constexpr const char* kUsage =
    "usage: loadgen --target HOST:PORT --rate R --duration SECONDS\n"
    "               [--path /small] [--host HOSTHEADER] [--connections C]\n"
    "               [--warmup SECONDS] [--timeout-ms MS] [--header 'Name: value']... "
    "[--spin-us US] [--json]\n"
    "\n"
    "  --target       server address, e.g. 127.0.0.1:8080 or [::1]:8080\n"
    "  --path         request path (default /)\n"
    "  --host         Host header (default: the --target string)\n"
    "  --rate         requests per second in total, sent open-loop at fixed intervals\n"
    "  --duration     measured seconds (after warmup)\n"
    "  --connections  keep-alive connections, one request in flight each (default 64)\n"
    "  --warmup       seconds run at the rate first, samples discarded (default 0)\n"
    "  --timeout-ms   per-request (and connect) timeout (default 10000)\n"
    "  --header       extra request header, repeatable\n"
    "  --spin-us      wake this many us before each send and poll (epoll, zero timeout)\n"
    "                 until it is due; trades CPU for send precision (default 0: off)\n"
    "  --json         print one JSON object instead of text\n";

[[noreturn]] void UsageError(const std::string& msg) {
  if (!msg.empty()) fprintf(stderr, "loadgen: %s\n", msg.c_str());
  fputs(kUsage, stderr);
  exit(2);
}

bool ParseDouble(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double v = strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool ParseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long v = strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  *out = v;
  return true;
}

bool HasCtl(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == 0; });
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  bool have_rate = false, have_duration = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    }
    if (arg == "--json") {
      if (has_inline) UsageError("--json takes no value");
      o.json = true;
      continue;
    }
    static const char* const kWithValue[] = {"--target", "--path", "--host", "--rate",
                                             "--duration", "--connections", "--warmup",
                                             "--timeout-ms", "--header", "--spin-us"};
    if (std::find_if(std::begin(kWithValue), std::end(kWithValue),
                     [&](const char* f) { return arg == f; }) == std::end(kWithValue)) {
      UsageError("unknown argument: " + arg);
    }
    if (!has_inline) {
      if (i + 1 >= argc) UsageError(arg + " needs a value");
      value = argv[++i];
    }
    int64_t n = 0;
    if (arg == "--target") {
      o.target = value;
    } else if (arg == "--path") {
      if (value.empty() || value[0] != '/' || HasCtl(value) ||
          value.find(' ') != std::string::npos) {
        UsageError("--path must start with '/' and contain no spaces");
      }
      o.path = value;
    } else if (arg == "--host") {
      if (value.empty() || HasCtl(value)) UsageError("bad --host");
      o.host = value;
    } else if (arg == "--rate") {
      if (!ParseDouble(value, &o.rate) || o.rate <= 0 || o.rate > 1e8) UsageError("bad --rate");
      have_rate = true;
    } else if (arg == "--duration") {
      if (!ParseDouble(value, &o.duration_s) || o.duration_s <= 0 || o.duration_s > 1e6)
        UsageError("bad --duration");
      have_duration = true;
    } else if (arg == "--warmup") {
      if (!ParseDouble(value, &o.warmup_s) || o.warmup_s < 0 || o.warmup_s > 1e6)
        UsageError("bad --warmup");
    } else if (arg == "--connections") {
      if (!ParseInt(value, &n) || n < 1 || n > 100000) UsageError("bad --connections");
      o.connections = static_cast<int>(n);
    } else if (arg == "--timeout-ms") {
      if (!ParseInt(value, &n) || n < 1 || n > 3'600'000) UsageError("bad --timeout-ms");
      o.timeout_ms = n;
    } else if (arg == "--spin-us") {
      if (!ParseInt(value, &n) || n < 0 || n > 10'000) UsageError("bad --spin-us");
      o.spin_us = n;
    } else if (arg == "--header") {
      const size_t colon = value.find(':');
      if (colon == std::string::npos || colon == 0 || HasCtl(value))
        UsageError("bad --header (want 'Name: value'): " + value);
      o.headers.push_back(value);
    }
  }
  if (o.target.empty()) UsageError("--target is required");
  if (!have_rate) UsageError("--rate is required");
  if (!have_duration) UsageError("--duration is required");
  if (o.host.empty()) o.host = o.target;
  return o;
}

// Resolves "host:port" / "[v6]:port" to a socket address.
bool ResolveTarget(const std::string& target, sockaddr_storage* addr, socklen_t* len) {
  std::string host, port;
  if (!target.empty() && target[0] == '[') {
    const size_t close = target.find(']');
    if (close == std::string::npos || close + 1 >= target.size() || target[close + 1] != ':')
      return false;
    host = target.substr(1, close - 1);
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) return false;
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
  }
  if (host.empty() || port.empty()) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) return false;
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// ---------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------
struct Stats {
  uint64_t scheduled = 0;       // measured requests whose scheduled time came
  uint64_t sent = 0;            // ...that were written to a connection (first attempt)
  uint64_t completed = 0;       // ...that got a full response (recorded in the histogram)
  uint64_t errors = 0;          // ...that failed: malformed response, reset, EOF mid-response
  uint64_t timeouts = 0;        // ...that had no response within --timeout-ms
  uint64_t unfinished = 0;      // ...still queued or in flight when the run ended
  uint64_t status_non_2xx = 0;  // completed with a status outside 200..299
  uint64_t retries = 0;         // resent once after a reused connection died before any byte
  uint64_t reconnects = 0;      // connections re-opened during measurement
  uint64_t connect_errors = 0;  // failed connect attempts during measurement
  uint64_t protocol_errors = 0; // unsolicited / trailing bytes from the server
  Nanos max_send_lag = 0;       // max(actual send - scheduled), measured requests
  Nanos max_timer_lag = 0;      // max(loop noticed the schedule - scheduled)
  LogLinearHistogram latency;   // scheduled send -> response fully read
  LogLinearHistogram send_lag;  // scheduled send -> send() call
};

class LoadGen {
 public:
  explicit LoadGen(const Options& opts) : opts_(opts) {}

  ~LoadGen() {
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    if (timer_fd_ >= 0) close(timer_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  // Returns the process exit code.
  int Run() {
    if (!ResolveTarget(opts_.target, &addr_, &addr_len_)) {
      fprintf(stderr, "loadgen: cannot resolve target '%s'\n", opts_.target.c_str());
      return 2;
    }
    request_ = "GET " + opts_.path + " HTTP/1.1\r\nHost: " + opts_.host + "\r\n";
    for (const std::string& h : opts_.headers) request_ += h + "\r\n";
    request_ += "\r\n";
    timeout_ns_ = opts_.timeout_ms * kNsPerMs;
    spin_ns_ = opts_.spin_us * kNsPerUs;
    interval_ns_ = static_cast<long double>(kNsPerSec) / static_cast<long double>(opts_.rate);

    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0) {
      perror("loadgen: epoll/timerfd");
      return 1;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTimerTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);

    // Phase 1: open every connection before the clock starts (bounded by the timeout).
    conns_.resize(static_cast<size_t>(opts_.connections));
    for (size_t i = 0; i < conns_.size(); ++i) StartConnect(i);
    const Nanos connect_deadline = MonoNow() + std::min<Nanos>(timeout_ns_, 5 * kNsPerSec);
    while (connecting_ > 0 && MonoNow() < connect_deadline) {
      ExpireDeadlines(MonoNow());
      WaitAndDispatch(std::min(connect_deadline, NextDeadline()));
    }
    if (idle_.empty()) {
      fprintf(stderr, "loadgen: cannot connect to %s: %s\n", opts_.target.c_str(),
              last_connect_error_ ? strerror(last_connect_error_) : "timed out");
      return 1;
    }
    if (idle_.size() < conns_.size() && !opts_.json) {
      fprintf(stderr, "loadgen: warning: only %zu of %zu connections up; retrying the rest\n",
              idle_.size(), conns_.size());
    }

    // Phase 2: the run.  Request i is due at t0 + i * interval.
    t0_ = MonoNow() + kNsPerMs;  // a little slack so request 0 is on time
    t_measure_ = t0_ + static_cast<Nanos>(opts_.warmup_s * static_cast<double>(kNsPerSec));
    t_end_ = t_measure_ + static_cast<Nanos>(opts_.duration_s * static_cast<double>(kNsPerSec));
    const Nanos drain_deadline = t_end_ + 2 * kNsPerSec;
    running_ = true;
    for (;;) {
      const Nanos now = MonoNow();
      GenerateDue(now);
      Dispatch();
      ExpireDeadlines(now);
      RetryConnects(now);
      const bool scheduling_done = ScheduledAt(next_index_) >= t_end_;
      if (scheduling_done && ((queue_.empty() && inflight_ == 0) || now >= drain_deadline)) break;
      Nanos wake = std::min(NextDeadline(), drain_deadline);
      if (!scheduling_done) {
        // Sleep until the next send is due.  With --spin-us, sleep until spin_ns before it
        // and then poll without sleeping (epoll_wait timeout 0, so responses that arrive
        // meanwhile are still read and timestamped at once) until it is due: the kernel's
        // wake-up latency from idle (tens of us on VMs) then no longer delays the send.
        const Nanos next_send = ScheduledAt(next_index_);
        if (spin_ns_ > 0 && next_send - now <= spin_ns_) {
          WaitAndDispatch(now);  // poll once and go round again
          continue;
        }
        wake = std::min(wake, next_send - spin_ns_);
      }
      WaitAndDispatch(wake);
    }
    running_ = false;

    // Whatever is still queued or on the wire did not finish within the drain window.
    for (const Pending& p : queue_) {
      if (IsMeasured(p.sched)) ++stats_.unfinished;
    }
    for (const Conn& c : conns_) {
      if (c.st == ConnState::kBusy && IsMeasured(c.sched)) ++stats_.unfinished;
    }
    Report();
    return 0;
  }

 private:
  enum class ConnState { kDown, kConnecting, kIdle, kBusy, kRetryWait };

  struct Conn {
    int fd = -1;
    uint32_t gen = 0;         // bumped per socket; stale epoll events are ignored
    ConnState st = ConnState::kDown;
    uint64_t op = 0;          // id of the current connect or request (matches deadlines)
    Nanos sched = 0;          // scheduled time of the request in flight
    bool retried = false;     // the request in flight is already a retry
    bool got_bytes = false;   // any response bytes seen for the request in flight
    uint64_t responses = 0;   // responses completed on this socket (0 => fresh socket)
    size_t write_off = 0;     // bytes of request_ written so far
    uint32_t events = 0;      // epoll events currently registered
    ResponseParser parser;
  };
  struct Pending {  // a request whose time has come, waiting for an idle connection
    Nanos sched;
    bool retried;
  };
  struct Deadline {  // timeout of a connect or request; pushed in time order (FIFO)
    Nanos at;
    size_t conn;
    uint64_t op;
  };
  struct Retry {  // reconnect attempt after a failed connect
    Nanos at;
    size_t conn;
    uint32_t gen;
  };

  static constexpr uint64_t kTimerTag = ~uint64_t{0};
  static constexpr Nanos kRetryDelay = 100 * kNsPerMs;
  static constexpr Nanos kNever = std::numeric_limits<Nanos>::max();

  Nanos ScheduledAt(uint64_t i) const {
    // Computed from i (not by accumulating the interval) so there is no drift.
    return t0_ + static_cast<Nanos>(static_cast<long double>(i) * interval_ns_);
  }
  bool IsMeasured(Nanos sched) const { return sched >= t_measure_ && sched < t_end_; }
  bool InMeasureWindow(Nanos now) const { return running_ && now >= t_measure_; }

  // Moves every request whose scheduled time has passed into the FIFO queue.
  void GenerateDue(Nanos now) {
    for (;;) {
      const Nanos sched = ScheduledAt(next_index_);
      if (sched > now || sched >= t_end_) break;
      ++next_index_;
      queue_.push_back(Pending{sched, false});
      if (IsMeasured(sched)) {
        ++stats_.scheduled;
        stats_.max_timer_lag = std::max(stats_.max_timer_lag, now - sched);
      }
    }
  }

  // Pairs queued requests (oldest first) with idle connections.
  void Dispatch() {
    while (!queue_.empty() && !idle_.empty()) {
      const size_t idx = idle_.back();  // LIFO: keeps the hottest connections busy
      idle_.pop_back();
      const Pending p = queue_.front();
      queue_.pop_front();
      SendRequest(idx, p);
    }
  }

  void SendRequest(size_t idx, const Pending& p) {
    Conn& c = conns_[idx];
    c.st = ConnState::kBusy;
    c.sched = p.sched;
    c.retried = p.retried;
    c.got_bytes = false;
    c.write_off = 0;
    c.parser.Reset();
    c.op = ++op_counter_;
    ++inflight_;
    const Nanos now = MonoNow();
    if (IsMeasured(p.sched) && !p.retried) {
      ++stats_.sent;
      stats_.send_lag.Record(now - p.sched);
      stats_.max_send_lag = std::max(stats_.max_send_lag, now - p.sched);
    }
    deadlines_.push_back(Deadline{now + timeout_ns_, idx, c.op});
    WriteRequest(idx);
  }

  // Writes (the rest of) the request; normally one send() does it all.
  void WriteRequest(size_t idx) {
    Conn& c = conns_[idx];
    while (c.write_off < request_.size()) {
      const ssize_t n = send(c.fd, request_.data() + c.write_off, request_.size() - c.write_off,
                             MSG_NOSIGNAL);
      if (n > 0) {
        c.write_off += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        SetEvents(c, EPOLLIN | EPOLLOUT);  // finish when writable
        return;
      } else {
        FailRequest(idx);
        return;
      }
    }
    SetEvents(c, EPOLLIN);
  }

  void SetEvents(Conn& c, uint32_t events) {
    if (c.events == events) return;  // avoid a syscall per request
    c.events = events;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (static_cast<uint64_t>(c.gen) << 32) | static_cast<uint64_t>(&c - conns_.data());
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void StartConnect(size_t idx) {
    Conn& c = conns_[idx];
    ++c.gen;
    c.responses = 0;
    c.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      OnConnectFailed(idx, errno);
      return;
    }
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int rc = connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
    if (rc < 0 && errno != EINPROGRESS) {
      const int err = errno;
      close(c.fd);
      c.fd = -1;
      OnConnectFailed(idx, err);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;  // writable == connect finished (check SO_ERROR)
    ev.data.u64 = (static_cast<uint64_t>(c.gen) << 32) | idx;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev);
    c.events = EPOLLOUT;
    c.st = ConnState::kConnecting;
    c.op = ++op_counter_;
    ++connecting_;
    deadlines_.push_back(Deadline{MonoNow() + timeout_ns_, idx, c.op});
  }

  void OnConnectFailed(size_t idx, int err) {
    Conn& c = conns_[idx];
    last_connect_error_ = err;
    if (InMeasureWindow(MonoNow())) ++stats_.connect_errors;
    c.st = ConnState::kRetryWait;
    c.op = 0;
    retries_.push_back(Retry{MonoNow() + kRetryDelay, idx, c.gen});
  }

  void OnConnectEvent(size_t idx) {
    Conn& c = conns_[idx];
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    --connecting_;
    if (err != 0) {
      CloseSocket(c);
      OnConnectFailed(idx, err);
      return;
    }
    c.st = ConnState::kIdle;
    c.op = 0;
    SetEvents(c, EPOLLIN);
    idle_.push_back(idx);
  }

  void CloseSocket(Conn& c) {
    if (c.fd >= 0) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
    if (c.st == ConnState::kIdle) {
      const size_t idx = static_cast<size_t>(&c - conns_.data());
      idle_.erase(std::remove(idle_.begin(), idle_.end(), idx), idle_.end());
    }
    if (c.st == ConnState::kBusy) --inflight_;
    if (c.st == ConnState::kConnecting) --connecting_;
    c.st = ConnState::kDown;
    c.op = 0;
  }

  // Closes the socket and opens a fresh one (server closed, error, timeout, ...).
  void Reconnect(size_t idx) {
    CloseSocket(conns_[idx]);
    if (InMeasureWindow(MonoNow())) ++stats_.reconnects;
    StartConnect(idx);
  }

  // The request in flight on `idx` failed (reset, EOF, malformed).  A request that died on
  // a *reused* connection before any response byte arrived is most likely the server
  // closing an idle keep-alive connection as we wrote: it is re-queued once, at the head of
  // the queue, still carrying its original scheduled time.  Everything else is an error.
  void FailRequest(size_t idx) {
    Conn& c = conns_[idx];
    if (!c.got_bytes && c.responses > 0 && !c.retried) {
      queue_.push_front(Pending{c.sched, true});
      if (IsMeasured(c.sched)) ++stats_.retries;
    } else if (IsMeasured(c.sched)) {
      ++stats_.errors;
    }
    Reconnect(idx);
  }

  void CompleteRequest(size_t idx, Nanos now) {
    Conn& c = conns_[idx];
    if (IsMeasured(c.sched)) {
      ++stats_.completed;
      stats_.latency.Record(now - c.sched);
      const int s = c.parser.status();
      if (s < 200 || s > 299) ++stats_.status_non_2xx;
    }
    ++c.responses;
    c.st = ConnState::kIdle;  // caller decides: back to idle_ or reconnect
    c.op = 0;
    --inflight_;
  }

  void OnReadable(size_t idx) {
    Conn& c = conns_[idx];
    for (;;) {
      const ssize_t n = recv(c.fd, rbuf_, sizeof rbuf_, 0);
      if (n > 0) {
        const Nanos now = MonoNow();
        if (c.st != ConnState::kBusy) {  // bytes nobody asked for
          if (InMeasureWindow(now)) ++stats_.protocol_errors;
          Reconnect(idx);
          return;
        }
        c.got_bytes = true;
        size_t used = 0;
        const auto r = c.parser.Feed(rbuf_, static_cast<size_t>(n), &used);
        if (r == ResponseParser::Result::kError) {
          FailRequest(idx);
          return;
        }
        if (r == ResponseParser::Result::kDone) {
          CompleteRequest(idx, now);
          if (used < static_cast<size_t>(n)) {  // trailing garbage after the response
            if (InMeasureWindow(now)) ++stats_.protocol_errors;
            Reconnect(idx);
          } else if (!c.parser.keep_alive()) {  // "Connection: close" or HTTP/1.0
            Reconnect(idx);
          } else {
            idle_.push_back(idx);
          }
          return;
        }
        if (static_cast<size_t>(n) < sizeof rbuf_) return;  // drained for now
        continue;                                           // buffer was full: read on
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // EOF or error.
      if (c.st == ConnState::kBusy) {
        if (n == 0 && c.parser.OnEof() == ResponseParser::Result::kDone) {
          CompleteRequest(idx, MonoNow());  // body delimited by close
          Reconnect(idx);
        } else {
          FailRequest(idx);
        }
      } else {
        Reconnect(idx);  // idle connection closed by the server
      }
      return;
    }
  }

  void OnEvent(const epoll_event& ev) {
    if (ev.data.u64 == kTimerTag) {
      uint64_t ticks;
      [[maybe_unused]] ssize_t r = read(timer_fd_, &ticks, sizeof ticks);
      armed_at_ = kNever;
      return;
    }
    const size_t idx = static_cast<size_t>(ev.data.u64 & 0xffffffffu);
    const uint32_t gen = static_cast<uint32_t>(ev.data.u64 >> 32);
    if (idx >= conns_.size() || conns_[idx].gen != gen || conns_[idx].fd < 0) return;  // stale
    Conn& c = conns_[idx];
    if (c.st == ConnState::kConnecting) {
      OnConnectEvent(idx);
      return;
    }
    if ((ev.events & EPOLLOUT) && c.st == ConnState::kBusy && c.write_off < request_.size()) {
      WriteRequest(idx);
      if (conns_[idx].gen != gen) return;
    }
    if (ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnReadable(idx);
  }

  // Deadlines are pushed in time order (now + fixed timeout), so the FIFO front is always
  // the earliest.  Entries whose op no longer matches the connection are stale (the request
  // finished or the socket was replaced) and are simply dropped.
  void ExpireDeadlines(Nanos now) {
    while (!deadlines_.empty()) {
      const Deadline d = deadlines_.front();
      Conn& c = conns_[d.conn];
      if (c.op != d.op) {
        deadlines_.pop_front();
        continue;
      }
      if (d.at > now) break;
      deadlines_.pop_front();
      if (c.st == ConnState::kBusy) {
        if (IsMeasured(c.sched)) ++stats_.timeouts;
        Reconnect(d.conn);
      } else if (c.st == ConnState::kConnecting) {
        CloseSocket(c);
        OnConnectFailed(d.conn, ETIMEDOUT);
      }
    }
  }

  void RetryConnects(Nanos now) {
    while (!retries_.empty() && retries_.front().at <= now) {
      const Retry r = retries_.front();
      retries_.pop_front();
      Conn& c = conns_[r.conn];
      if (c.gen == r.gen && c.st == ConnState::kRetryWait) StartConnect(r.conn);
    }
  }

  Nanos NextDeadline() const {
    Nanos t = kNever;
    if (!deadlines_.empty()) t = deadlines_.front().at;  // may be stale: an early wake is harmless
    if (!retries_.empty()) t = std::min(t, retries_.front().at);
    return t;
  }

  // Sleeps until `wake` (absolute CLOCK_MONOTONIC ns) or until a socket is ready, then
  // handles the ready sockets.  The wake-up comes from a timerfd armed with an absolute
  // time: hrtimer precision, and unlike epoll_wait's timeout it is not rounded to ms nor
  // stretched by timer slack.  The timerfd is only re-armed when the target changes.
  void WaitAndDispatch(Nanos wake) {
    int timeout = -1;
    if (wake <= MonoNow()) {
      timeout = 0;  // already due: just poll
    } else if (wake != armed_at_ && wake != kNever) {
      itimerspec its{};
      its.it_value.tv_sec = wake / kNsPerSec;
      its.it_value.tv_nsec = wake % kNsPerSec;
      timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
      armed_at_ = wake;
    }
    epoll_event events[256];
    const int n = epoll_wait(epoll_fd_, events, 256, timeout);
    for (int i = 0; i < n; ++i) OnEvent(events[i]);
    // Responses just freed connections: hand them queued work right away.
    if (running_) Dispatch();
  }

  static std::string JsonEscape(const std::string& s) {
    std::string out;
    for (char ch : s) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += ch;
      } else if (c < 0x20) {
        char buf[8];
        snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += ch;
      }
    }
    return out;
  }

  void Report() {
    const Stats& s = stats_;
    const double achieved = static_cast<double>(s.completed) / opts_.duration_s;
    auto us = [](double ns) { return ns / static_cast<double>(kNsPerUs); };
    const LogLinearHistogram& h = s.latency;
    if (opts_.json) {
      printf(
          "{\"target\":\"%s\",\"path\":\"%s\",\"rate\":%g,\"duration_s\":%.1f,\"warmup_s\":%.1f,"
          "\"connections\":%d,\"scheduled\":%llu,\"sent\":%llu,\"completed\":%llu,"
          "\"errors\":%llu,\"timeouts\":%llu,\"unfinished\":%llu,\"reconnects\":%llu,"
          "\"status_non_2xx\":%llu,\"retries\":%llu,\"connect_errors\":%llu,"
          "\"protocol_errors\":%llu,\"achieved_rate\":%.1f,\"max_send_lag_us\":%.1f,"
          "\"max_timer_lag_us\":%.1f,\"send_lag_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f},"
          "\"latency_us\":{\"min\":%.1f,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
          "\"p999\":%.1f,\"p9999\":%.1f,\"max\":%.1f}}\n",
          JsonEscape(opts_.target).c_str(), JsonEscape(opts_.path).c_str(), opts_.rate,
          opts_.duration_s, opts_.warmup_s, opts_.connections,
          static_cast<unsigned long long>(s.scheduled), static_cast<unsigned long long>(s.sent),
          static_cast<unsigned long long>(s.completed), static_cast<unsigned long long>(s.errors),
          static_cast<unsigned long long>(s.timeouts),
          static_cast<unsigned long long>(s.unfinished),
          static_cast<unsigned long long>(s.reconnects),
          static_cast<unsigned long long>(s.status_non_2xx),
          static_cast<unsigned long long>(s.retries),
          static_cast<unsigned long long>(s.connect_errors),
          static_cast<unsigned long long>(s.protocol_errors), achieved,
          us(static_cast<double>(s.max_send_lag)), us(static_cast<double>(s.max_timer_lag)),
          us(s.send_lag.PercentileNs(50)), us(s.send_lag.PercentileNs(99)),
          us(s.send_lag.PercentileNs(99.9)), us(h.MinNs()), us(h.MeanNs()),
          us(h.PercentileNs(50)), us(h.PercentileNs(90)), us(h.PercentileNs(99)),
          us(h.PercentileNs(99.9)), us(h.PercentileNs(99.99)), us(h.MaxNs()));
      return;
    }
    printf("target        %s  path %s\n", opts_.target.c_str(), opts_.path.c_str());
    printf("load          %g req/s for %.1f s (warmup %.1f s), %d connections\n", opts_.rate,
           opts_.duration_s, opts_.warmup_s, opts_.connections);
    printf("requests      scheduled %llu  sent %llu  completed %llu  achieved %.1f req/s\n",
           static_cast<unsigned long long>(s.scheduled), static_cast<unsigned long long>(s.sent),
           static_cast<unsigned long long>(s.completed), achieved);
    printf("problems      errors %llu  timeouts %llu  unfinished %llu  non-2xx %llu\n",
           static_cast<unsigned long long>(s.errors), static_cast<unsigned long long>(s.timeouts),
           static_cast<unsigned long long>(s.unfinished),
           static_cast<unsigned long long>(s.status_non_2xx));
    printf("connections   reconnects %llu  connect errors %llu  retries %llu  protocol errors %llu\n",
           static_cast<unsigned long long>(s.reconnects),
           static_cast<unsigned long long>(s.connect_errors),
           static_cast<unsigned long long>(s.retries),
           static_cast<unsigned long long>(s.protocol_errors));
    printf("send lag (us) p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (timer lag max %.1f)\n",
           us(s.send_lag.PercentileNs(50)), us(s.send_lag.PercentileNs(99)),
           us(s.send_lag.PercentileNs(99.9)), us(static_cast<double>(s.max_send_lag)),
           us(static_cast<double>(s.max_timer_lag)));
    printf("latency (us)  min %.1f  mean %.1f  max %.1f\n", us(h.MinNs()), us(h.MeanNs()),
           us(h.MaxNs()));
    printf("              p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  p99.99 %.1f\n",
           us(h.PercentileNs(50)), us(h.PercentileNs(90)), us(h.PercentileNs(99)),
           us(h.PercentileNs(99.9)), us(h.PercentileNs(99.99)));
  }

  const Options& opts_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  std::string request_;
  Nanos timeout_ns_ = 0;
  Nanos spin_ns_ = 0;
  long double interval_ns_ = 0;

  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  Nanos armed_at_ = kNever;

  std::vector<Conn> conns_;
  std::vector<size_t> idle_;
  std::deque<Pending> queue_;
  std::deque<Deadline> deadlines_;
  std::deque<Retry> retries_;
  uint64_t op_counter_ = 0;
  int connecting_ = 0;
  int inflight_ = 0;
  int last_connect_error_ = 0;

  bool running_ = false;
  Nanos t0_ = 0, t_measure_ = 0, t_end_ = 0;
  uint64_t next_index_ = 0;

  Stats stats_;
  char rbuf_[64 * 1024];
};

}  // namespace

int main(int argc, char** argv) {
  const Options opts = ParseArgs(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // 1 ns slack for any sleeping syscalls
  // Allow many connections if the hard limit does.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max &&
      rl.rlim_cur < static_cast<rlim_t>(opts.connections) + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(opts.connections) + 64);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto gen = std::make_unique<LoadGen>(opts);  // heap: it holds a 64 KiB read buffer
  return gen->Run();
}
