#include "config/tls_config.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/sds_api.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "network/raw_transport_socket.h"
#include "stats/stats.h"
#include "tls/context.h"
#include "tls/tls_socket.h"

namespace sluice::config {

namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;

namespace {

constexpr std::string_view kDownstreamType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
constexpr std::string_view kUpstreamType =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

// The bytes of a DataSource (file or inline); false with an error naming `path`.
bool readDataSource(const envoy::config::core::v3::DataSource& src, const std::string& path,
                    std::string& out, std::vector<std::string>& errors) {
  switch (src.specifier_case()) {
    case envoy::config::core::v3::DataSource::kFilename: {
      std::ifstream in(src.filename(), std::ios::binary);
      if (!in) {
        errors.push_back(path + ".filename: cannot read '" + src.filename() +
                         "': " + std::strerror(errno));
        return false;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      out = ss.str();
      return true;
    }
    case envoy::config::core::v3::DataSource::kInlineString: out = src.inline_string(); return true;
    case envoy::config::core::v3::DataSource::kInlineBytes: out = src.inline_bytes(); return true;
    default: errors.push_back(path + ": one of filename, inline_string or inline_bytes is required");
  }
  return false;
}

int tlsVersion(tls_v3::TlsParameters::TlsProtocol v, int fallback) {
  switch (v) {
    case tls_v3::TlsParameters::TLSv1_0: return TLS1_VERSION;
    case tls_v3::TlsParameters::TLSv1_1: return TLS1_1_VERSION;
    case tls_v3::TlsParameters::TLSv1_2: return TLS1_2_VERSION;
    case tls_v3::TlsParameters::TLSv1_3: return TLS1_3_VERSION;
    default: return fallback;
  }
}

// BoringSSL's "[A|B]" equal-preference groups, as Envoy's docs write them, become a plain
// OpenSSL list in the same order.
std::string cipherList(const google::protobuf::RepeatedPtrField<std::string>& suites) {
  std::string out;
  for (const auto& s : suites) {
    for (char c : s) {
      if (c == '[' || c == ']') continue;
      if (!out.empty() && out.back() != ':' && c == '|') c = ':';
      out.push_back(c);
    }
    out.push_back(':');
  }
  if (!out.empty()) out.pop_back();
  return out;
}

bool buildValidation(const tls_v3::CertificateValidationContext& v, const std::string& path,
                     tls::ValidationConfig& out, std::vector<std::string>& errors) {
  if (!v.has_trusted_ca()) {
    errors.push_back(path + ".trusted_ca: is required");
    return false;
  }
  if (!readDataSource(v.trusted_ca(), path + ".trusted_ca", out.trusted_ca_pem, errors)) {
    return false;
  }
  if (v.has_crl() && !readDataSource(v.crl(), path + ".crl", out.crl_pem, errors)) return false;
  out.allow_expired_certificate = v.allow_expired_certificate();
  for (int i = 0; i < v.match_typed_subject_alt_names_size(); ++i) {
    const auto& m = v.match_typed_subject_alt_names(i);
    const std::string mp = path + ".match_typed_subject_alt_names[" + std::to_string(i) + "]";
    tls::SanMatcher sm;
    switch (m.san_type()) {
      case tls_v3::SubjectAltNameMatcher::DNS: sm.type = tls::SanMatcher::Type::Dns; break;
      case tls_v3::SubjectAltNameMatcher::URI: sm.type = tls::SanMatcher::Type::Uri; break;
      case tls_v3::SubjectAltNameMatcher::EMAIL: sm.type = tls::SanMatcher::Type::Email; break;
      case tls_v3::SubjectAltNameMatcher::IP_ADDRESS:
        sm.type = tls::SanMatcher::Type::IpAddress;
        break;
      default: errors.push_back(mp + ".san_type: is required"); return false;
    }
    const auto& sm_proto = m.matcher();
    sm.ignore_case = sm_proto.ignore_case();
    switch (sm_proto.match_pattern_case()) {
      case envoy::type::matcher::v3::StringMatcher::kExact:
        sm.kind = tls::SanMatcher::Kind::Exact;
        sm.value = sm_proto.exact();
        break;
      case envoy::type::matcher::v3::StringMatcher::kPrefix:
        sm.kind = tls::SanMatcher::Kind::Prefix;
        sm.value = sm_proto.prefix();
        break;
      case envoy::type::matcher::v3::StringMatcher::kSuffix:
        sm.kind = tls::SanMatcher::Kind::Suffix;
        sm.value = sm_proto.suffix();
        break;
      case envoy::type::matcher::v3::StringMatcher::kContains:
        sm.kind = tls::SanMatcher::Kind::Contains;
        sm.value = sm_proto.contains();
        break;
      default:
        errors.push_back(mp + ".matcher: only exact, prefix, suffix and contains are supported "
                              "for subject alt names");
        return false;
    }
    out.san_matchers.push_back(std::move(sm));
  }
  return true;
}

const tls_v3::Secret* findSecret(const SecretMap& secrets, const tls_v3::SdsSecretConfig& sds,
                                 const std::string& path, std::vector<std::string>& errors) {
  auto it = secrets.find(sds.name());
  if (it == secrets.end()) {
    errors.push_back(path + ".name: unknown secret '" + sds.name() +
                     "' (static_resources.secrets)");
    return nullptr;
  }
  return it->second;
}

// Secrets named with an sds_config, which a context follows as they rotate (null: none, or
// read once in --mode validate). `pending`: one has not arrived yet (over ADS), so the context
// cannot be built now; it is built when the secret comes.
struct DynamicSecrets {
  SdsApi* certificate{nullptr};
  SdsApi* validation{nullptr};
  bool pending{false};
};

// The current material of a secret named with an sds_config; `api` is set when the running
// proxy subscribes to it (else, in --mode validate, its file is read once). True with `pending`
// set when the secret is yet to come over ADS: the listener or cluster being built waits for
// it (its init target joins the init::Scope).
bool dynamicSecret(const tls_v3::SdsSecretConfig& sds, const std::string& sp, SecretMaterial& out,
                   SdsApi*& api, bool& pending, std::vector<std::string>& errors) {
  if (sds.name().empty()) {
    errors.push_back(sp + ".name: is required");
    return false;
  }
  SourceSpec source;
  if (!parseConfigSource(sds.sds_config(), sp + ".sds_config", source, errors)) return false;
  std::string error;
  SecretManager* manager = secretManager();
  if (!manager) {
    if (source.ads) {  // --mode validate: nothing to fetch it from
      pending = true;
      return true;
    }
    if (!readSecretOnce(source.path, sds.name(), out, error)) {
      errors.push_back(sp + ".sds_config: secret '" + sds.name() + "': " + error);
      return false;
    }
    return true;
  }
  SdsApi* a = manager->get(source, sds.name(), error);
  if (!a) {
    errors.push_back(sp + ".sds_config." + error);
    return false;
  }
  api = a;
  if (a->loaded()) {
    out = a->material();
    return true;
  }
  if (source.ads) {
    // Envoy's warming: the listener or cluster waits for the secret (or its
    // initial_fetch_timeout; then its handshakes fail until the secret comes).
    init::Scope::add(a->initTarget());
    pending = true;
    return true;
  }
  // A file is read when the subscription starts: a context starts with its secret, or the
  // config is refused.
  errors.push_back(sp + ".sds_config: secret '" + sds.name() + "' not loaded from '" +
                   a->source() + "': " +
                   (a->lastError().empty() ? "cannot read the file" : a->lastError()));
  return false;
}

bool buildCommon(const tls_v3::CommonTlsContext& common, const SecretMap& secrets,
                 const std::string& path, tls::TlsContextConfig& out, DynamicSecrets& dynamic,
                 std::vector<std::string>& errors) {
  if (common.has_tls_params()) {
    const auto& p = common.tls_params();
    out.min_version = tlsVersion(p.tls_minimum_protocol_version(), out.min_version);
    out.max_version = tlsVersion(p.tls_maximum_protocol_version(), out.max_version);
    if (p.cipher_suites_size() > 0) out.cipher_suites = cipherList(p.cipher_suites());
    if (p.ecdh_curves_size() > 0) {
      out.ecdh_curves.clear();
      for (const auto& c : p.ecdh_curves()) out.ecdh_curves += (out.ecdh_curves.empty() ? "" : ":") + c;
    }
  }
  const int certs = common.tls_certificates_size() + common.tls_certificate_sds_secret_configs_size();
  if (certs > 1) {
    errors.push_back(path + ".tls_certificates: one certificate per context is supported");
    return false;
  }
  const tls_v3::TlsCertificate* cert = nullptr;
  const tls_v3::Secret* static_cert = nullptr;
  std::string cert_path;
  if (common.tls_certificates_size() == 1) {
    cert = &common.tls_certificates(0);
    cert_path = path + ".tls_certificates[0]";
  } else if (common.tls_certificate_sds_secret_configs_size() == 1 &&
             common.tls_certificate_sds_secret_configs(0).has_sds_config()) {
    const auto& sds = common.tls_certificate_sds_secret_configs(0);
    const std::string sp = path + ".tls_certificate_sds_secret_configs[0]";
    SecretMaterial m;
    bool pending = false;
    if (!dynamicSecret(sds, sp, m, dynamic.certificate, pending, errors)) return false;
    dynamic.pending |= pending;
    if (!pending && !m.has_certificate) {
      errors.push_back(sp + ".name: secret '" + sds.name() + "' is not a tls_certificate");
      return false;
    }
    out.cert_chain_pem = std::move(m.cert_chain_pem);
    out.private_key_pem = std::move(m.private_key_pem);
  } else if (common.tls_certificate_sds_secret_configs_size() == 1) {
    const std::string sp = path + ".tls_certificate_sds_secret_configs[0]";
    const tls_v3::Secret* s = findSecret(secrets, common.tls_certificate_sds_secret_configs(0), sp, errors);
    if (!s) return false;
    if (!s->has_tls_certificate()) {
      errors.push_back(sp + ".name: secret '" + s->name() + "' is not a tls_certificate");
      return false;
    }
    cert = &s->tls_certificate();
    cert_path = sp + " (secret '" + s->name() + "')";
    static_cert = s;
  }
  if (cert) {
    if (!readDataSource(cert->certificate_chain(), cert_path + ".certificate_chain",
                        out.cert_chain_pem, errors) ||
        !readDataSource(cert->private_key(), cert_path + ".private_key", out.private_key_pem,
                        errors)) {
      return false;
    }
  }
  // A static secret's files are watched too: the context follows them as an SDS one does.
  if (static_cert && secretManager()) dynamic.certificate = secretManager()->getStatic(*static_cert);
  if (common.has_validation_context() && common.has_validation_context_sds_secret_config()) {
    errors.push_back(path + ": validation_context and validation_context_sds_secret_config "
                            "are exclusive");
    return false;
  }
  if (common.has_validation_context()) {
    out.validation.emplace();
    if (!buildValidation(common.validation_context(), path + ".validation_context",
                         *out.validation, errors)) {
      return false;
    }
  } else if (common.has_validation_context_sds_secret_config() &&
             common.validation_context_sds_secret_config().has_sds_config()) {
    const auto& sds = common.validation_context_sds_secret_config();
    const std::string sp = path + ".validation_context_sds_secret_config";
    SecretMaterial m;
    bool pending = false;
    if (!dynamicSecret(sds, sp, m, dynamic.validation, pending, errors)) return false;
    dynamic.pending |= pending;
    if (!pending && !m.validation) {
      errors.push_back(sp + ".name: secret '" + sds.name() + "' is not a validation_context");
      return false;
    }
    out.validation = std::move(m.validation);
  } else if (common.has_validation_context_sds_secret_config()) {
    const std::string sp = path + ".validation_context_sds_secret_config";
    const tls_v3::Secret* s = findSecret(secrets, common.validation_context_sds_secret_config(), sp, errors);
    if (!s) return false;
    if (!s->has_validation_context()) {
      errors.push_back(sp + ".name: secret '" + s->name() + "' is not a validation_context");
      return false;
    }
    out.validation.emplace();
    if (!buildValidation(s->validation_context(),
                         "static_resources.secrets['" + s->name() + "'].validation_context",
                         *out.validation, errors)) {
      return false;
    }
    if (secretManager()) dynamic.validation = secretManager()->getStatic(*s);
  }
  out.alpn.assign(common.alpn_protocols().begin(), common.alpn_protocols().end());
  return true;
}

// Rebuilds one transport socket factory's context when a secret it uses rotates.
class SdsContextWatcher : public SecretWatcher {
 public:
  SdsContextWatcher(tls::TlsContextConfig config, DynamicSecrets secrets,
                    std::weak_ptr<tls::TlsTransportSocketFactory> factory,
                    std::optional<tls::SslStats> stats, std::string path)
      : config_(std::move(config)), secrets_(secrets), factory_(std::move(factory)),
        stats_(stats), path_(std::move(path)) {}

  bool expired() const override { return factory_.expired(); }

  bool prepare(const SdsApi& changing, const SecretMaterial& candidate,
               std::vector<std::string>& errors) override {
    tls::TlsContextConfig config = config_;
    pending_.reset();
    // The changing secret must be of the kind this context takes from it, also while the
    // other one has not come.
    if (&changing == secrets_.certificate && !candidate.has_certificate) {
      errors.push_back("secret '" + changing.name() + "': not a tls_certificate, as " + path_ +
                       " needs");
      return false;
    }
    if (&changing == secrets_.validation && !candidate.validation) {
      errors.push_back("secret '" + changing.name() + "': not a validation_context, as " +
                       path_ + " needs");
      return false;
    }
    // Two secrets, and the other one has not come yet: the context waits for it.
    for (const SdsApi* other : {secrets_.certificate, secrets_.validation}) {
      if (other && other != &changing && !other->loaded()) return true;
    }
    if (secrets_.certificate) {
      const SecretMaterial& m =
          secrets_.certificate == &changing ? candidate : secrets_.certificate->material();
      if (!m.has_certificate) {
        errors.push_back("secret '" + secrets_.certificate->name() +
                         "': not a tls_certificate, as " + path_ + " needs");
        return false;
      }
      config.cert_chain_pem = m.cert_chain_pem;
      config.private_key_pem = m.private_key_pem;
    }
    if (secrets_.validation) {
      const SecretMaterial& m =
          secrets_.validation == &changing ? candidate : secrets_.validation->material();
      if (!m.validation) {
        errors.push_back("secret '" + secrets_.validation->name() +
                         "': not a validation_context, as " + path_ + " needs");
        return false;
      }
      config.validation = m.validation;
    }
    std::string error;
    pending_ = tls::TlsContext::create(config, stats_, &error);
    if (!pending_) {
      errors.push_back("secret '" + changing.name() + "': " + path_ + ": " + error);
      return false;
    }
    return true;
  }

  void commit() override {
    if (!pending_) return;
    if (auto factory = factory_.lock()) factory->setContext(std::move(pending_));
    pending_.reset();
  }

 private:
  const tls::TlsContextConfig config_;
  const DynamicSecrets secrets_;
  const std::weak_ptr<tls::TlsTransportSocketFactory> factory_;
  const std::optional<tls::SslStats> stats_;
  const std::string path_;
  tls::TlsContextConstSharedPtr pending_;
};

}  // namespace

bool resolveSecret(const tls_v3::Secret& secret, const std::string& path, SecretMaterial& out,
                   std::vector<std::string>& errors) {
  std::string error;
  if (secret.has_tls_certificate()) {
    const std::string cp = path + ".tls_certificate";
    const auto& cert = secret.tls_certificate();
    if (!readDataSource(cert.certificate_chain(), cp + ".certificate_chain", out.cert_chain_pem,
                        errors) ||
        !readDataSource(cert.private_key(), cp + ".private_key", out.private_key_pem, errors)) {
      return false;
    }
    out.has_certificate = true;
    // Loaded as a server's certificate would be: the chain parses, the key matches it.
    tls::TlsContextConfig c = tls::TlsContextConfig::serverDefaults();
    c.cert_chain_pem = out.cert_chain_pem;
    c.private_key_pem = out.private_key_pem;
    if (!tls::TlsContext::create(c, std::nullopt, &error)) {
      constexpr std::string_view kField = "tls_certificates[0].";
      if (error.rfind(kField, 0) == 0) error = error.substr(kField.size());
      errors.push_back(cp + "." + error);
      return false;
    }
    return true;
  }
  if (secret.has_validation_context()) {
    out.validation.emplace();
    if (!buildValidation(secret.validation_context(), path + ".validation_context",
                         *out.validation, errors)) {
      return false;
    }
    tls::TlsContextConfig c = tls::TlsContextConfig::clientDefaults();
    c.validation = out.validation;
    if (!tls::TlsContext::create(c, std::nullopt, &error)) {
      errors.push_back(path + "." + error);
      return false;
    }
    return true;
  }
  errors.push_back(path + ": a tls_certificate or a validation_context is required");
  return false;
}

bool indexSecrets(const google::protobuf::RepeatedPtrField<tls_v3::Secret>& secrets,
                  SecretMap& out, std::vector<std::string>& errors) {
  for (int i = 0; i < secrets.size(); ++i) {
    const std::string p = "static_resources.secrets[" + std::to_string(i) + "]";
    if (secrets[i].name().empty()) {
      errors.push_back(p + ".name: is required");
      return false;
    }
    if (!out.emplace(secrets[i].name(), &secrets[i]).second) {
      errors.push_back(p + ".name: duplicate secret '" + secrets[i].name() + "'");
      return false;
    }
  }
  return true;
}

network::TransportSocketFactoryConstSharedPtr buildTransportSocketFactory(
    const envoy::config::core::v3::TransportSocket& proto, bool server, const SecretMap& secrets,
    stats::Store& store, const std::string& stat_prefix, const std::string& path,
    std::vector<std::string>& errors) {
  if (proto.name() == "envoy.transport_sockets.raw_buffer" ||
      proto.typed_config().type_url() ==
          "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer") {
    return std::make_shared<network::RawTransportSocketFactory>();
  }
  const std::string tp = path + ".typed_config";
  tls::TlsContextConfig config =
      server ? tls::TlsContextConfig::serverDefaults() : tls::TlsContextConfig::clientDefaults();
  DynamicSecrets dynamic;
  if (server) {
    tls_v3::DownstreamTlsContext ctx;
    if (proto.typed_config().type_url() != kDownstreamType || !proto.typed_config().UnpackTo(&ctx)) {
      errors.push_back(tp + ": a listener needs a DownstreamTlsContext");
      return nullptr;
    }
    if (!buildCommon(ctx.common_tls_context(), secrets, tp + ".common_tls_context", config,
                     dynamic, errors)) {
      return nullptr;
    }
    config.require_client_certificate =
        ctx.has_require_client_certificate() && ctx.require_client_certificate().value();
    const auto& keys = ctx.session_ticket_keys().keys();
    for (int i = 0; i < keys.size(); ++i) {
      std::string key;
      if (!readDataSource(keys[i], tp + ".session_ticket_keys.keys[" + std::to_string(i) + "]",
                          key, errors)) {
        return nullptr;
      }
      config.session_ticket_keys.push_back(std::move(key));
    }
    config.disable_stateless_session_resumption = ctx.disable_stateless_session_resumption();
    config.disable_stateful_session_resumption = ctx.disable_stateful_session_resumption();
    if (ctx.has_session_timeout()) config.session_timeout_seconds = ctx.session_timeout().seconds();
  } else {
    tls_v3::UpstreamTlsContext ctx;
    if (proto.typed_config().type_url() != kUpstreamType || !proto.typed_config().UnpackTo(&ctx)) {
      errors.push_back(tp + ": a cluster needs an UpstreamTlsContext");
      return nullptr;
    }
    if (!buildCommon(ctx.common_tls_context(), secrets, tp + ".common_tls_context", config,
                     dynamic, errors)) {
      return nullptr;
    }
    config.sni = ctx.sni();
    if (ctx.has_max_session_keys()) config.max_session_keys = ctx.max_session_keys().value();
  }
  std::string error;
  // A listener's stats wait for its bound address (initializeStats()).
  std::optional<tls::SslStats> stats;
  if (!server) stats.emplace(tls::SslStats::create(store, stat_prefix + "ssl."));
  // A secret yet to come: a context that fails every handshake until it does. What does not
  // come with the secret (ticket keys, ciphers, curves) is checked now, as it would be with it.
  tls::TlsContextConstSharedPtr context;
  if (dynamic.pending) {
    tls::TlsContextConfig check = config;
    if (!check.validation) check.require_client_certificate = false;  // its CA is on the way
    check.certificate_to_come = check.cert_chain_pem.empty();
    if (tls::TlsContext::create(check, std::nullopt, &error)) {
      context = tls::TlsContext::createUnready(config, stats);
    }
  } else {
    context = tls::TlsContext::create(config, stats, &error);
  }
  if (!context) {
    // The context names the field below common_tls_context (or the context itself).
    const bool common_field = error.rfind("tls_", 0) == 0 || error.rfind("validation_", 0) == 0;
    errors.push_back(tp + (common_field ? ".common_tls_context." : ".") + error);
    return nullptr;
  }
  auto factory = std::make_shared<tls::TlsTransportSocketFactory>(std::move(context));
  if (dynamic.certificate || dynamic.validation) {
    factory->makeRotatable();
    auto watcher = std::make_shared<SdsContextWatcher>(std::move(config), dynamic, factory,
                                                       stats, path);
    if (dynamic.certificate) dynamic.certificate->addWatcher(watcher);
    if (dynamic.validation) dynamic.validation->addWatcher(watcher);
  }
  return factory;
}

}  // namespace sluice::config
