#include "access_log/file_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sluice::access_log {
namespace {

// Regular files are opened blocking: they are written only by the flush thread, and
// O_NONBLOCK means nothing to a regular file. The standard streams are duplicated, not
// reopened (open("/dev/stdout") fails when stdout is a socket), and left as they are: their
// file description is shared with whoever started us.
int openPath(const std::string& path, bool& standard_stream, std::string* error) {
  int fd = -1;
  standard_stream = path == "/dev/stdout" || path == "/dev/stderr";
  if (standard_stream) {
    fd = ::fcntl(path == "/dev/stdout" ? STDOUT_FILENO : STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  } else {
    do {
      fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
  }
  if (fd < 0 && error != nullptr) {
    *error = "cannot open access log '" + path + "': " + std::strerror(errno);
  }
  return fd;
}

}  // namespace

std::shared_ptr<FileSink> FileSink::open(const std::string& path,
                                         std::chrono::milliseconds flush_interval,
                                         std::string* error) {
  if (path.empty()) {
    if (error != nullptr) *error = "access log path is empty";
    return nullptr;
  }
  bool standard_stream = false;
  const int fd = openPath(path, standard_stream, error);
  if (fd < 0) return nullptr;
  if (flush_interval <= std::chrono::milliseconds::zero()) flush_interval = kDefaultFlushInterval;
  return std::shared_ptr<FileSink>(new FileSink(path, fd, standard_stream, flush_interval));
}

FileSink::FileSink(std::string path, int fd, bool standard_stream,
                   std::chrono::milliseconds interval)
    : path_(std::move(path)),
      standard_stream_(standard_stream),
      flush_interval_(interval),
      fd_(fd),
      thread_([this] { flushThreadMain(); }) {}

FileSink::~FileSink() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shutdown_ = true;
  }
  wake_.notify_one();
  thread_.join();
  flushNow();
  if (fd_ >= 0) ::close(fd_);
}

void FileSink::write(std::string_view line) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    buffer_.append(line);
    if (buffer_.size() > kFlushThreshold && !flush_requested_) {
      flush_requested_ = true;
      wake = true;
    }
  }
  if (wake) wake_.notify_one();
}

void FileSink::flush() {
  flushNow();
}

void FileSink::reopen() {
  if (standard_stream_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    reopen_requested_ = true;
    flush_requested_ = true;
  }
  wake_.notify_one();
}

void FileSink::flushThreadMain() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!shutdown_) {
    const bool woken =
        wake_.wait_for(lock, flush_interval_, [this] { return flush_requested_ || shutdown_; });
    if (shutdown_) break;  // the destructor does the last flush
    if (!woken) flushed_by_timer_.fetch_add(1, std::memory_order_relaxed);
    flush_requested_ = false;
    lock.unlock();
    flushNow();
    lock.lock();
  }
}

void FileSink::flushNow() {
  std::lock_guard<std::mutex> write_lock(write_mutex_);
  bool reopen = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    write_buffer_.swap(buffer_);
    reopen = reopen_requested_;
    reopen_requested_ = false;
  }
  if (reopen) {
    bool standard_stream = false;
    std::string error;
    const int fd = openPath(path_, standard_stream, &error);
    if (fd >= 0) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = fd;
    } else {
      // Keep writing to the old file rather than lose lines.
      reopen_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!write_buffer_.empty()) writeAll(write_buffer_);
  write_buffer_.clear();
  // Give memory back after a burst; keep a buffer's worth for the next round.
  if (write_buffer_.capacity() > 4 * kFlushThreshold) write_buffer_.shrink_to_fit();
}

void FileSink::writeAll(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      write_failures_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

FileSinkSharedPtr FileSinkManager::get(const std::string& path,
                                       std::chrono::milliseconds flush_interval,
                                       std::string* error) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = sinks_.find(path); it != sinks_.end()) {
    if (FileSinkSharedPtr sink = it->second.lock()) return sink;
  }
  FileSinkSharedPtr sink = FileSink::open(path, flush_interval, error);
  if (sink) sinks_[path] = sink;
  return sink;
}

void FileSinkManager::reopenAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = sinks_.begin(); it != sinks_.end();) {
    if (FileSinkSharedPtr sink = it->second.lock()) {
      sink->reopen();
      ++it;
    } else {
      it = sinks_.erase(it);
    }
  }
}

}  // namespace sluice::access_log
