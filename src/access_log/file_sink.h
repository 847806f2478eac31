#pragma once

// An access log file shared by every worker. write() appends the line to an in-memory buffer
// under a short lock: no syscall, no disk, no waiting on the writer. A flush thread swaps the
// buffer out and writes it to the file at least every flush interval (Envoy's default: 1s), or
// as soon as the buffer holds more than 64 KiB. Lines written by one call never interleave with
// another's. "/dev/stdout" and "/dev/stderr" write to the process's stdout and stderr.
//
// Several access logs naming the same path should share one sink (FileSinkManager does that),
// or their lines may interleave in the file.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace sluice::access_log {

class FileSink {
 public:
  static constexpr std::chrono::milliseconds kDefaultFlushInterval{1000};
  static constexpr size_t kFlushThreshold = 64 * 1024;

  // Opens (creating, appending) `path` on the calling thread, so that a bad path is a config
  // error: null and `error` set ("cannot open access log '/x/y.log': No such file or
  // directory"). A flush interval <= 0 means the default.
  static std::shared_ptr<FileSink> open(const std::string& path,
                                        std::chrono::milliseconds flush_interval,
                                        std::string* error);

  // Flushes what was written and stops the flush thread.
  ~FileSink();

  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  // Thread-safe and cheap: appends `line` (which carries its own "\n") to the buffer.
  void write(std::string_view line);

  // Writes out everything written so far, on the calling thread; returns when it is in the
  // file (written, not fsync'ed). For shutdown and tests; the request path never calls it.
  void flush();

  // Thread-safe. Asks for the file to be reopened by path (after log rotation renamed it); the
  // next flush closes the old file and opens the path again before writing. Lines still
  // buffered at that point go to the new file. A no-op for /dev/stdout and /dev/stderr.
  void reopen();

  const std::string& path() const { return path_; }

  // Counters, in the spirit of Envoy's access_log_file.* stats.
  uint64_t writeFailures() const { return write_failures_.load(std::memory_order_relaxed); }
  uint64_t reopenFailures() const { return reopen_failures_.load(std::memory_order_relaxed); }
  uint64_t flushedByTimer() const { return flushed_by_timer_.load(std::memory_order_relaxed); }

 private:
  FileSink(std::string path, int fd, bool standard_stream, std::chrono::milliseconds interval);

  void flushThreadMain();
  // Swaps the buffer out and writes it (reopening first if asked). Serialized by write_mutex_.
  void flushNow();
  // Writes all of `data` to fd_, retrying short writes and EINTR. On error the data is dropped.
  void writeAll(std::string_view data);

  const std::string path_;
  const bool standard_stream_;  // /dev/stdout or /dev/stderr: never reopened
  const std::chrono::milliseconds flush_interval_;

  // Guards buffer_ and the flags; held only to append, swap, or set a flag.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string buffer_;
  bool flush_requested_{false};
  bool reopen_requested_{false};
  bool shutdown_{false};

  // Serializes writers of the file (the flush thread and flush()); guards fd_ and
  // write_buffer_.
  std::mutex write_mutex_;
  int fd_;
  std::string write_buffer_;

  std::atomic<uint64_t> write_failures_{0};
  std::atomic<uint64_t> reopen_failures_{0};
  std::atomic<uint64_t> flushed_by_timer_{0};

  std::thread thread_;  // last: started once everything above is built
};
using FileSinkSharedPtr = std::shared_ptr<FileSink>;

// One FileSink per path for the whole process (main thread, config load): two access logs on
// the same file share its sink. reopenAll() serves log rotation (admin /reopen_logs, SIGUSR1).
class FileSinkManager {
 public:
  // The sink of `path`, opening it if no live sink has it. The flush interval of the first
  // opener wins.
  FileSinkSharedPtr get(const std::string& path, std::chrono::milliseconds flush_interval,
                        std::string* error);
  void reopenAll();

 private:
  std::mutex mutex_;
  std::map<std::string, std::weak_ptr<FileSink>> sinks_;
};

}  // namespace sluice::access_log
