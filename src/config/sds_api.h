#pragma once

// SDS: TLS secrets (a certificate and key, or a validation context) from a config source: a
// watched file holding a DiscoveryResponse of Secret resources, or the ADS stream. Each
// accepted version is read whole (files it names included) and checked (the certificate
// parses, the key matches it), then every TLS context built from the secret is rebuilt and
// swapped in for new handshakes; established connections keep their context. A bad version is
// refused whole, logged with the path of the bad field, and the contexts in use keep serving.
// A file's first version is read as the first TLS context naming it is built; over ADS the
// secret comes later, and the listener or cluster whose context names it warms until it does
// (its init target).
//
// The files a secret names (certificate_chain, private_key, trusted_ca, crl) are watched too,
// as Envoy does for secrets delivered by SDS: a file renamed onto its path or written in place
// (or, with watched_directory, any rename into that directory) re-reads the secret's files,
// and a consistent new pair rotates the contexts the same way. A rotation that fails there
// (a half-written file, a key that does not match the certificate) is logged with the file
// and the error, counted in key_rotation_failed, and the previous material keeps serving.
// Secrets of static_resources.secrets are watched the same way (SecretManager::getStatic).
//
// Stats under `sds.<secret name>.`: update_attempt, update_success, update_rejected,
// update_failure, version, update_time (the subscription's); config_reload and
// config_reload_time_ms (a version that changed the secret); key_rotation_failed.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/init_target.h"
#include "config/subscription.h"
#include "envoy/config/core/v3/config_source.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "event/dispatcher.h"
#include "event/file_watcher.h"
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
  SdsApi(std::string name, SourceSpec source)
      : name_(std::move(name)),
        source_(std::move(source)),
        init_target_(std::make_shared<init::Target>("secret '" + name_ + "'")) {}

  // Checks and applies one update; false with "resources[i]...: message" errors.
  bool onConfigUpdate(DiscoveryUpdate& update, std::vector<std::string>& errors);

  const std::string& name() const { return name_; }
  // The config source, as a user reads it (the file's path, or "ads").
  std::string source() const { return source_.ads ? "ads" : source_.path; }
  bool loaded() const { return loaded_; }
  // Ready once the first version was offered (taken or not) or initial_fetch_timeout passed.
  const init::TargetSharedPtr& initTarget() const { return init_target_; }
  const SecretMaterial& material() const { return material_; }
  const std::string& versionInfo() const { return version_info_; }
  // Why the last version was refused ("" if none was).
  const std::string& lastError() const { return last_error_; }
  void addWatcher(std::shared_ptr<SecretWatcher> watcher);

  // The secret as last accepted (its files unread), and when (config_dump).
  const envoy::extensions::transport_sockets::tls::v3::Secret& secret() const { return secret_; }
  event::SystemTime lastUpdated() const { return last_updated_; }

  // Watches the files of each accepted version from now on (main thread); without it (unit
  // tests, --mode validate) nothing is watched.
  void enableFileWatch(event::Dispatcher& dispatcher, stats::Store& store);
  // Takes a static_resources.secrets entry as the secret's only version; false with errors.
  bool setStatic(const envoy::extensions::transport_sockets::tls::v3::Secret& secret,
                 std::vector<std::string>& errors);
  // A file of the secret changed (`changed` names it, for the log): re-reads the secret's
  // files and rotates the contexts if they read differently. False when the new files are
  // refused (counted in key_rotation_failed); the previous material keeps serving.
  bool onFileChanged(const std::string& changed);

  std::unique_ptr<Subscription> subscription;

 private:
  // Rebuilds every user's context from `candidate` and swaps them in, or none; false with
  // errors.
  bool apply(SecretMaterial& candidate, std::string key, std::vector<std::string>& errors);
  void watchFiles();

  const std::string name_;
  const SourceSpec source_;
  init::TargetSharedPtr init_target_;
  bool loaded_{false};
  SecretMaterial material_;
  std::string bytes_;
  std::string version_info_;
  std::string last_error_;
  std::vector<std::shared_ptr<SecretWatcher>> watchers_;
  envoy::extensions::transport_sockets::tls::v3::Secret secret_;
  event::SystemTime last_updated_{};
  event::Dispatcher* dispatcher_{nullptr};
  stats::Store* store_{nullptr};
  std::unique_ptr<event::FileWatcher> file_watcher_;
  std::set<std::string> watched_;  // paths given to file_watcher_ (a watch is never removed)
};

// The proxy's secret subscriptions (main thread): one per (config source, secret name),
// shared by every TLS context that names it. Subscriptions come from `factory` (the running
// proxy's, which has the ADS stream), or from the manager's own (files only) without one.
class SecretManager {
 public:
  SecretManager(event::Dispatcher& main, stats::Store& store,
                SubscriptionFactory* factory = nullptr)
      : main_(main), store_(store), own_factory_(main, store),
        factory_(factory ? *factory : own_factory_) {}

  // The secret, subscribing on first use (a file is read now). Null with `error` ("field:
  // message", the field under sds_config) if the subscription cannot start.
  SdsApi* get(const SourceSpec& source, const std::string& name, std::string& error);
  // The static_resources.secrets entry `secret`, read and its files watched, for the contexts
  // that name it to follow rotations of those files. Null (no rotation) if it cannot be read.
  SdsApi* getStatic(const envoy::extensions::transport_sockets::tls::v3::Secret& secret);
  // Every secret, by (source key, name): "static" for static_resources.secrets (config_dump).
  const std::map<std::pair<std::string, std::string>, std::unique_ptr<SdsApi>>& all() const {
    return secrets_;
  }

 private:
  event::Dispatcher& main_;
  stats::Store& store_;
  SubscriptionFactory own_factory_;
  SubscriptionFactory& factory_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<SdsApi>> secrets_;  // source, name
};

// Reads a secret's file once, without watching it (--mode validate): false with `error` when it
// cannot be read or its version is refused.
bool readSecretOnce(const std::string& path, const std::string& name, SecretMaterial& out,
                    std::string& error);

// The running proxy's manager (null in --mode validate).
SecretManager* secretManager();
void setSecretManager(SecretManager* manager);

}  // namespace sluice::config
