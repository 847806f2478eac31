#include "common/init_target.h"

#include <algorithm>
#include <utility>

namespace sluice::init {

namespace {
thread_local Scope* t_scope = nullptr;
}  // namespace

void Target::setReady() {
  if (ready_) return;
  ready_ = true;
  // A callback may drop other watchers, or add targets elsewhere: work on a copy.
  auto watchers = std::move(watchers_);
  watchers_.clear();
  for (auto& weak : watchers) {
    if (auto w = weak.lock()) w->targetReady();
  }
}

std::shared_ptr<Watcher> Watcher::create(std::vector<TargetSharedPtr> targets,
                                         std::function<void()> done) {
  std::erase_if(targets, [](const TargetSharedPtr& t) { return !t || t->ready(); });
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  if (targets.empty()) return nullptr;
  auto w = std::make_shared<Watcher>();
  w->targets_ = std::move(targets);
  w->pending_ = w->targets_.size();
  w->done_ = std::move(done);
  for (auto& t : w->targets_) t->watchers_.push_back(w);
  return w;
}

std::vector<std::string> Watcher::pending() const {
  std::vector<std::string> out;
  for (const auto& t : targets_) {
    if (!t->ready()) out.push_back(t->name());
  }
  return out;
}

void Watcher::targetReady() {
  if (pending_ == 0 || --pending_ > 0) return;
  if (auto done = std::exchange(done_, nullptr)) done();
}

Scope::Scope() : outer_(t_scope) { t_scope = this; }
Scope::~Scope() { t_scope = outer_; }

void Scope::add(const TargetSharedPtr& target) {
  if (t_scope && target && !target->ready()) t_scope->targets_.push_back(target);
}

}  // namespace sluice::init
