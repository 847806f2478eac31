#include "config/sds_api.h"

#include <fstream>
#include <sstream>

#include "common/logger.h"
#include "config/tls_config.h"
#include "stats/stats.h"

namespace sluice::config {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;

namespace {
SecretManager* g_manager = nullptr;

// Finds the secret `name` in an update and reads its material; false with errors.
bool materialFromUpdate(DiscoveryUpdate& update, const std::string& name, SecretMaterial& out,
                        std::string* bytes, std::vector<std::string>& errors,
                        tls_v3::Secret* secret_out = nullptr) {
  int found = -1;
  tls_v3::Secret secret;
  for (size_t i = 0; i < update.resources.size(); ++i) {
    tls_v3::Secret s;
    const std::string path = "resources[" + std::to_string(i) + "]";
    if (!copyMessage(*update.resources[i], s)) {
      errors.push_back(path + ": does not parse as a Secret");
      return false;
    }
    if (s.name() != name) continue;  // another subscription's
    if (found >= 0) {
      errors.push_back(path + ".name: duplicate secret '" + name + "'");
      return false;
    }
    found = static_cast<int>(i);
    secret = std::move(s);
  }
  if (found < 0) {
    errors.push_back("resources: no Secret named '" + name + "'");
    return false;
  }
  if (bytes) *bytes = deterministicBytes(secret);
  if (!resolveSecret(secret, "resources[" + std::to_string(found) + "]", out, errors)) return false;
  if (secret_out) *secret_out = std::move(secret);
  return true;
}

// What identifies a version: the secret's bytes and what its files read.
std::string materialKey(const std::string& bytes, const SecretMaterial& m) {
  return bytes + '\0' + m.cert_chain_pem + '\0' + m.private_key_pem + '\0' +
         (m.validation ? m.validation->trusted_ca_pem + m.validation->crl_pem : std::string());
}

// The paths to watch for a secret: each file it names ("/dir/cert.pem"), or the
// watched_directory ("/dir/") that replaces them for its part.
std::vector<std::string> watchPaths(const tls_v3::Secret& s) {
  std::vector<std::string> out;
  auto file = [&out](const envoy::config::core::v3::DataSource& d) {
    if (d.specifier_case() == envoy::config::core::v3::DataSource::kFilename) {
      out.push_back(d.filename());
    }
  };
  auto directory = [&out](const envoy::config::core::v3::WatchedDirectory& w) {
    out.push_back(w.path().ends_with('/') ? w.path() : w.path() + "/");
  };
  if (s.has_tls_certificate()) {
    const auto& c = s.tls_certificate();
    if (c.has_watched_directory()) {
      directory(c.watched_directory());
    } else {
      file(c.certificate_chain());
      file(c.private_key());
    }
  }
  if (s.has_validation_context()) {
    const auto& v = s.validation_context();
    if (v.has_watched_directory()) {
      directory(v.watched_directory());
    } else {
      file(v.trusted_ca());
      file(v.crl());
    }
  }
  return out;
}
}  // namespace

SecretManager* secretManager() { return g_manager; }
void setSecretManager(SecretManager* manager) { g_manager = manager; }

void SdsApi::addWatcher(std::shared_ptr<SecretWatcher> watcher) {
  std::erase_if(watchers_, [](const auto& w) { return w->expired(); });
  watchers_.push_back(std::move(watcher));
}

bool SdsApi::onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors) {
  const size_t first_error = errors.size();
  auto refuse = [&] {
    last_error_.clear();
    for (size_t i = first_error; i < errors.size(); ++i) {
      last_error_ += (last_error_.empty() ? "" : "; ") + errors[i];
    }
    return false;
  };
  SecretMaterial candidate;
  std::string bytes;
  tls_v3::Secret secret;
  if (!materialFromUpdate(update, name_, candidate, &bytes, errors, &secret)) return refuse();
  // A version whose secret is unchanged (and whose files read the same) changes nothing.
  const std::string key = materialKey(bytes, candidate);
  if (loaded_ && key == bytes_) {
    version_info_ = update.version_info;
    return true;
  }
  if (!apply(candidate, key, errors)) return refuse();
  version_info_ = update.version_info;
  secret_ = std::move(secret);
  if (dispatcher_) {
    last_updated_ = dispatcher_->timeSource().systemTime();
    // Envoy's: an update that changed the config, and when the last one did.
    store_->counter("sds." + name_ + ".config_reload").inc();
    store_->gauge("sds." + name_ + ".config_reload_time_ms")
        .set(std::chrono::duration_cast<std::chrono::milliseconds>(
                 last_updated_.time_since_epoch()).count());
  }
  last_error_.clear();
  watchFiles();
  SLUICE_LOG(info, config, "sds: secret '{}' version '{}' applied ({} TLS context(s) updated)",
             name_, update.version_info, watchers_.size());
  return true;
}

bool SdsApi::apply(SecretMaterial& candidate, std::string key, std::vector<std::string>& errors) {
  // Every context that uses the secret is rebuilt before any is swapped: one that cannot
  // take the new version refuses it for all.
  std::erase_if(watchers_, [](const auto& w) { return w->expired(); });
  for (const auto& w : watchers_) {
    if (!w->prepare(*this, candidate, errors)) return false;
  }
  material_ = std::move(candidate);
  bytes_ = std::move(key);
  loaded_ = true;
  for (const auto& w : watchers_) w->commit();
  return true;
}

void SdsApi::enableFileWatch(event::Dispatcher& dispatcher, stats::Store& store) {
  dispatcher_ = &dispatcher;
  store_ = &store;
  store.counter("sds." + name_ + ".key_rotation_failed");  // shown from the start, at 0
}

bool SdsApi::setStatic(const tls_v3::Secret& secret, std::vector<std::string>& errors) {
  SecretMaterial candidate;
  if (!resolveSecret(secret, "static_resources.secrets['" + name_ + "']", candidate, errors)) {
    return false;
  }
  if (!apply(candidate, materialKey(deterministicBytes(secret), candidate), errors)) return false;
  secret_ = secret;
  if (dispatcher_) last_updated_ = dispatcher_->timeSource().systemTime();
  watchFiles();
  return true;
}

void SdsApi::watchFiles() {
  if (!dispatcher_) return;
  if (!file_watcher_) file_watcher_ = std::make_unique<event::FileWatcher>(*dispatcher_);
  for (const std::string& path : watchPaths(secret_)) {
    if (!watched_.insert(path).second) continue;
    const bool directory = path.ends_with('/');
    std::string error;
    // A watched_directory fires on renames only (its files are swapped together, as a
    // Kubernetes volume's "..data" link is); a named file also when written in place.
    if (!file_watcher_->addWatch(
            path, [this, path] { onFileChanged(path); }, error,
            directory ? event::FileWatcher::MovedTo
                      : event::FileWatcher::MovedTo | event::FileWatcher::Written)) {
      watched_.erase(path);
      SLUICE_LOG(warn, config, "sds: secret '{}': '{}' is not watched, its changes will not "
                               "rotate the secret: {}", name_, path, error);
    }
  }
}

bool SdsApi::onFileChanged(const std::string& changed) {
  if (!loaded_) return true;  // nothing serves yet; the next SDS version reads the files
  SecretMaterial candidate;
  std::vector<std::string> errors;
  if (resolveSecret(secret_, "", candidate, errors)) {
    std::string key = materialKey(deterministicBytes(secret_), candidate);
    if (key == bytes_) return true;  // the files read as before
    if (apply(candidate, std::move(key), errors)) {
      SLUICE_LOG(info, config, "sds: secret '{}' reloaded after '{}' changed ({} TLS context(s) "
                               "updated)", name_, changed, watchers_.size());
      return true;
    }
  }
  if (store_) store_->counter("sds." + name_ + ".key_rotation_failed").inc();
  std::string why;
  for (const auto& e : errors) {
    why += (why.empty() ? "" : "; ") + (e.starts_with('.') ? e.substr(1) : e);
  }
  SLUICE_LOG(warn, config, "sds: secret '{}': key rotation after '{}' changed failed, the "
                           "previous version keeps serving: {}", name_, changed, why);
  return false;
}

SdsApi* SecretManager::get(const SourceSpec& source, const std::string& name,
                           std::string& error) {
  auto key = std::make_pair(source.key(), name);
  if (auto it = secrets_.find(key); it != secrets_.end()) return it->second.get();
  auto api = std::make_unique<SdsApi>(name, source);
  api->enableFileWatch(main_, store_);
  // The subscription's stats exist (at 0) from the start, as Envoy's do.
  for (const char* c : {"update_attempt", "update_success", "update_rejected", "update_failure",
                        "config_reload"}) {
    store_.counter("sds." + name + "." + c);
  }
  SdsApi* raw = api.get();
  std::string start_error;
  api->subscription = factory_.startNamed(
      source, kSecretType, name, "sds." + name + ".",
      [raw](DiscoveryUpdate& u, std::vector<std::string>& errors) {
        return raw->onConfigUpdate(u, errors);
      },
      raw->initTarget(), start_error);
  if (!api->subscription) {
    error = source.ads ? start_error : "path_config_source.path: " + start_error;
    return nullptr;
  }
  secrets_.emplace(std::move(key), std::move(api));
  return raw;
}

SdsApi* SecretManager::getStatic(const tls_v3::Secret& secret) {
  auto map_key = std::make_pair(std::string("static"), secret.name());
  if (auto it = secrets_.find(map_key); it != secrets_.end()) return it->second.get();
  SourceSpec source;
  source.path = "static_resources.secrets";
  auto api = std::make_unique<SdsApi>(secret.name(), source);
  api->enableFileWatch(main_, store_);
  std::vector<std::string> errors;
  if (!api->setStatic(secret, errors)) return nullptr;
  SdsApi* raw = api.get();
  secrets_.emplace(std::move(map_key), std::move(api));
  return raw;
}

bool readSecretOnce(const std::string& path, const std::string& name, SecretMaterial& out,
                    std::string& error) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (!in || !(text << in.rdbuf())) {
    error = "cannot read '" + path + "'";
    return false;
  }
  DiscoveryUpdate update;
  std::vector<std::string> errors;
  if (!decodeDiscoveryResponseText(text.str(), kSecretType, update, errors) ||
      !materialFromUpdate(update, name, out, nullptr, errors)) {
    error = "'" + path + "': " + (errors.empty() ? std::string("refused") : errors[0]);
    return false;
  }
  return true;
}

}  // namespace sluice::config
