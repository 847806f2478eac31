#pragma once

// Watches files for replacement, as Envoy's path-based config sources expect: a config file
// is updated by writing a new file beside it and renaming it into place (atomic). Writes in
// place are not watched (as with Envoy): a reader could see half a file. inotify watches the
// file's directory, so a rename onto the path is seen although the old inode goes away.

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "event/dispatcher.h"

namespace sluice::event {

class FileWatcher {
 public:
  using OnChange = std::function<void()>;

  // `dispatcher` runs the callbacks; create, use and destroy the watcher on its thread.
  explicit FileWatcher(Dispatcher& dispatcher);
  ~FileWatcher();
  FileWatcher(const FileWatcher&) = delete;
  FileWatcher& operator=(const FileWatcher&) = delete;

  // Runs `cb` each time a file is renamed onto `path`. False with
  // `error` when the directory cannot be watched (it must exist).
  bool addWatch(const std::string& path, OnChange cb, std::string& error);

 private:
  void onReadable();

  struct Watch {
    std::string file;  // the name within the directory
    OnChange cb;
  };
  Dispatcher& dispatcher_;
  int fd_{-1};
  FileEventPtr event_;
  std::unordered_map<int, std::vector<Watch>> watches_;  // by inotify watch descriptor
};

}  // namespace sluice::event
