#pragma once

// SDS: TLS secrets (a certificate and key, or a validation context) from a config source,
// today a watched file holding a DiscoveryResponse of Secret resources. Each accepted version
// is read whole (files it names included) and checked (the certificate parses, the key
// matches it), then every TLS context built from the secret is rebuilt and swapped in for new
// handshakes; established connections keep their context. A bad version is refused whole,
// logged with the path of the bad field, and the contexts in use keep serving.
//
// Stats under `sds.<secret name>.`: update_attempt, update_success, update_rejected,
// update_failure, version, update_time (the subscription's).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/filesystem_subscription.h"
#include "envoy/config/core/v3/config_source.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "event/dispatcher.h"
#include "tls/context.h"

namespace sluice::config {


// What a TLS context takes from a secret, its files read.
struct SecretMaterial {
  bool has_certificate{false};
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::optional<tls::ValidationConfig> validation;
};

class SdsApi;

// A user of a secret (a TLS context built from it): on a new version, prepare() builds its
// new context (false with errors refuses the version for every user), then commit() swaps it
// in. Main thread.
class SecretWatcher {
 public:
  virtual ~SecretWatcher() = default;
  // True once the user is gone (its listener or cluster was removed).
  virtual bool expired() const = 0;
  virtual bool prepare(const SdsApi& changing, const SecretMaterial& candidate,
                       std::vector<std::string>& errors) = 0;
  virtual void commit() = 0;
};

// One secret from one config source.
class SdsApi {
 public:
  SdsApi(std::string name, std::string source) : name_(std::move(name)), source_(std::move(source)) {}

  // Checks and applies one update; false with "resources[i]...: message" errors.
  bool onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors);

  const std::string& name() const { return name_; }
  // The config source, as a user reads it (the file's path).
  const std::string& source() const { return source_; }
  bool loaded() const { return loaded_; }
  const SecretMaterial& material() const { return material_; }
  const std::string& versionInfo() const { return version_info_; }
  // Why the last version was refused ("" if none was).
  const std::string& lastError() const { return last_error_; }
  void addWatcher(std::shared_ptr<SecretWatcher> watcher);

  std::unique_ptr<FilesystemSubscription> subscription;

 private:
  const std::string name_;
  const std::string source_;
  bool loaded_{false};
  SecretMaterial material_;
  std::string bytes_;
  std::string version_info_;
  std::string last_error_;
  std::vector<std::shared_ptr<SecretWatcher>> watchers_;
};

// The proxy's secret subscriptions (main thread): one per (config source, secret name),
// shared by every TLS context that names it.
class SecretManager {
 public:
  SecretManager(event::Dispatcher& main, stats::Store& store) : main_(main), store_(store) {}

  // The secret, subscribing on first use (a file is read now). Null with `error` ("field:
  // message", the field under sds_config) if the source is not supported or cannot be watched.
  SdsApi* get(const envoy::config::core::v3::ConfigSource& source, const std::string& name,
              std::string& error);

 private:
  bool subscribe(SdsApi& api, const envoy::config::core::v3::ConfigSource& source,
                 std::string& error);

  event::Dispatcher& main_;
  stats::Store& store_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<SdsApi>> secrets_;  // source, name
};

// The key of a supported config source ("path:/etc/sds/cert.yaml"); "" with `error` ("field:
// message", the field under sds_config) for one that is not supported.
std::string secretSourceKey(const envoy::config::core::v3::ConfigSource& source,
                            std::string& error);

// Reads the secret's file once, without watching it (--mode validate, and config tests):
// false with `error` when it cannot be read or its version is refused.
bool readSecretOnce(const envoy::config::core::v3::ConfigSource& source, const std::string& name,
                    SecretMaterial& out, std::string& error);

// The running proxy's manager (null in --mode validate).
SecretManager* secretManager();
void setSecretManager(SecretManager* manager);

}  // namespace sluice::config
