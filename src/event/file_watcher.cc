#include "event/file_watcher.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/assert.h"

namespace sluice::event {

FileWatcher::FileWatcher(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}

FileWatcher::~FileWatcher() {
  event_.reset();
  if (fd_ >= 0) ::close(fd_);
}

bool FileWatcher::addWatch(const std::string& path, OnChange cb, std::string& error,
                           uint32_t events) {
  SLUICE_ASSERT(dispatcher_.isThreadSafe(), "FileWatcher used off its dispatcher thread");
  if (fd_ < 0) {
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) {
      error = std::string("inotify_init1: ") + std::strerror(errno);
      return false;
    }
    event_ = dispatcher_.createFileEvent(
        fd_, [this](uint32_t) { onReadable(); }, FileTriggerType::Level, FileReadyType::Read);
  }
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string file = slash == std::string::npos ? path : path.substr(slash + 1);
  const uint32_t mask = IN_MOVED_TO | ((events & Written) ? IN_CLOSE_WRITE : 0);
  // IN_MASK_ADD: another watch in the same directory keeps the events it asked for.
  const int wd = ::inotify_add_watch(fd_, dir.c_str(), mask | IN_MASK_ADD);
  if (wd < 0) {
    error = "cannot watch directory '" + dir + "': " + std::strerror(errno);
    return false;
  }
  watches_[wd].push_back({file, std::move(cb), (events & MovedTo ? IN_MOVED_TO : 0u) |
                                                   (events & Written ? IN_CLOSE_WRITE : 0u)});
  return true;
}

void FileWatcher::onReadable() {
  alignas(inotify_event) char buf[16 * 1024];
  // (wd, index) of each watch that fired, once per wake-up however many events the writer
  // made; looked up again before each call, since a callback may add watches.
  std::vector<std::pair<int, size_t>> fired;
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof(buf));
    if (n <= 0) break;  // EAGAIN: drained
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      auto it = watches_.find(ev->wd);
      if (it == watches_.end() || ev->len == 0) continue;
      const std::string_view name(ev->name);  // NUL-padded
      for (size_t i = 0; i < it->second.size(); ++i) {
        const Watch& w = it->second[i];
        if (!(ev->mask & w.mask) || (!w.file.empty() && w.file != name)) continue;
        const std::pair<int, size_t> key{ev->wd, i};
        bool seen = false;
        for (const auto& f : fired) seen |= f == key;
        if (!seen) fired.push_back(key);
      }
    }
  }
  for (const auto& [wd, i] : fired) {
    OnChange cb = watches_[wd][i].cb;
    cb();
  }
}

}  // namespace sluice::event
