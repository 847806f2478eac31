#pragma once

// Watches files for replacement, as Envoy's path-based config sources expect: a config file
// is updated by writing a new file beside it and renaming it into place (atomic). Writes in
// place are not watched by default (as with Envoy's config files): a reader could see half a
// file. A watch that asks for them (a secret's certificate files) fires when the writer
// closes the file. inotify watches the file's directory, so a rename onto the path is seen
// although the old inode goes away.

#include <cstdint>
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

  // What fires a watch: a file renamed onto the path (the default), and optionally a writer
  // closing the file after writing it in place (not each write(): a reader woken per write
  // would see half a file).
  enum Events : uint32_t { MovedTo = 1, Written = 2 };

  // Runs `cb` each time a file is renamed onto `path` (or, with Written, written in place).
  // A `path` ending in '/' watches the directory: any name renamed into it fires. False with
  // `error` when the directory cannot be watched (it must exist).
  bool addWatch(const std::string& path, OnChange cb, std::string& error,
                uint32_t events = MovedTo);

 private:
  void onReadable();

  struct Watch {
    std::string file;  // the name within the directory ("": any)
    OnChange cb;
    uint32_t mask;  // inotify events that fire it
  };
  Dispatcher& dispatcher_;
  int fd_{-1};
  FileEventPtr event_;
  std::unordered_map<int, std::vector<Watch>> watches_;  // by inotify watch descriptor
};

}  // namespace sluice::event
