#pragma once

// What a listener or a cluster waits for before it serves: Envoy's init manager, reduced to
// what the proxy needs. A Target is one thing that arrives later, such as the first version of
// an RDS route table or of an SDS secret over ADS. It becomes ready once: when that first
// version is offered (taken or refused), or when its initial_fetch_timeout passes. A Watcher
// waits for a set of targets and runs its callback once, when the last of them is ready; its
// owner (a warming listener or cluster) cancels the wait by dropping it. A Scope collects the
// targets that the config being built names, so that the code that reads a listener or a
// cluster need not pass them up by hand. Main thread only.

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sluice::init {

class Watcher;

class Target {
 public:
  explicit Target(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  bool ready() const { return ready_; }
  // Once; later calls do nothing. Runs the callback of each watcher this was the last for.
  void setReady();

 private:
  friend class Watcher;
  const std::string name_;
  bool ready_{false};
  std::vector<std::weak_ptr<Watcher>> watchers_;
};
using TargetSharedPtr = std::shared_ptr<Target>;

class Watcher {
 public:
  // Null, and `done` never runs, when every target is ready now: the caller goes on at once.
  // Otherwise `done` runs once, when the last target becomes ready, unless the watcher was
  // dropped before.
  static std::shared_ptr<Watcher> create(std::vector<TargetSharedPtr> targets,
                                         std::function<void()> done);
  bool done() const { return pending_ == 0; }
  // The names of the targets not ready yet (for logs and /config_dump).
  std::vector<std::string> pending() const;

 private:
  friend class Target;
  void targetReady();

  std::vector<TargetSharedPtr> targets_;
  size_t pending_{0};
  std::function<void()> done_;
};

// While a Scope lives, add() puts targets into it: the innermost Scope of the thread collects.
class Scope {
 public:
  Scope();
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  // A target the config being built waits for; nothing without a Scope, or when it is ready.
  static void add(const TargetSharedPtr& target);
  std::vector<TargetSharedPtr> take() { return std::move(targets_); }

 private:
  Scope* outer_;
  std::vector<TargetSharedPtr> targets_;
};

}  // namespace sluice::init
