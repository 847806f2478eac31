#include "config/sds_api.h"

#include <fstream>
#include <sstream>

#include "common/logger.h"
#include "config/tls_config.h"

namespace sluice::config {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;

namespace {
SecretManager* g_manager = nullptr;

// Finds the secret `name` in an update and reads its material; false with errors.
bool materialFromUpdate(DiscoveryUpdate& update, const std::string& name, SecretMaterial& out,
                        std::string* bytes, std::vector<std::string>& errors) {
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
  return resolveSecret(secret, "resources[" + std::to_string(found) + "]", out, errors);
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
  if (!materialFromUpdate(update, name_, candidate, &bytes, errors)) return refuse();
  // A version whose secret is unchanged (and whose files read the same) changes nothing.
  const std::string key = bytes + '\0' + candidate.cert_chain_pem + '\0' +
                          candidate.private_key_pem + '\0' +
                          (candidate.validation ? candidate.validation->trusted_ca_pem +
                                                      candidate.validation->crl_pem
                                                : std::string());
  if (loaded_ && key == bytes_) {
    version_info_ = update.version_info;
    return true;
  }
  // Every context that uses the secret is rebuilt before any is swapped: one that cannot
  // take the new version refuses it for all.
  std::erase_if(watchers_, [](const auto& w) { return w->expired(); });
  for (const auto& w : watchers_) {
    if (!w->prepare(*this, candidate, errors)) return refuse();
  }
  material_ = std::move(candidate);
  bytes_ = key;
  loaded_ = true;
  version_info_ = update.version_info;
  last_error_.clear();
  for (const auto& w : watchers_) w->commit();
  SLUICE_LOG(info, config, "sds: secret '{}' version '{}' applied ({} TLS context(s) updated)",
             name_, update.version_info, watchers_.size());
  return true;
}

SdsApi* SecretManager::get(const SourceSpec& source, const std::string& name,
                           std::string& error) {
  auto key = std::make_pair(source.key(), name);
  if (auto it = secrets_.find(key); it != secrets_.end()) return it->second.get();
  auto api = std::make_unique<SdsApi>(name, source);
  SdsApi* raw = api.get();
  api->subscription = factory_.create(
      source, kSecretType, name, "sds." + name + ".",
      [raw](DiscoveryUpdate& u, std::vector<std::string>& errors) {
        return raw->onConfigUpdate(u, errors);
      },
      [target = raw->initTarget()] { target->setReady(); });
  if (!api->subscription) {
    error = "ads: the ADS stream is not configured";
    return nullptr;
  }
  std::string start_error;
  if (!api->subscription->start(start_error)) {
    error = "path_config_source.path: " + start_error;
    return nullptr;
  }
  secrets_.emplace(std::move(key), std::move(api));
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
