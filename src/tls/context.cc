#include "tls/context.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "stats/stats.h"

namespace sluice::tls {

namespace {
// Envoy's session ticket key: a 16-byte name, a 32-byte HMAC key, a 32-byte AES key.
constexpr size_t kTicketKeySize = 80;


struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct X509CrlDeleter {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

BioPtr memBio(std::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The last OpenSSL error as text, and the queue cleared.
std::string sslError() {
  unsigned long e = ERR_peek_last_error();
  std::string out;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    out = buf;
  }
  ERR_clear_error();
  return out;
}

std::vector<X509Ptr> readCertificates(std::string_view pem) {
  std::vector<X509Ptr> out;
  BioPtr bio = memBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  ERR_clear_error();  // the end of the input reads as an error
  return out;
}

bool equalsMaybeIgnoreCase(std::string_view a, std::string_view b, bool ignore_case) {
  if (a.size() != b.size()) return false;
  if (!ignore_case) return a == b;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The SANs of `type` in the certificate, as text (an IP address in its usual notation).
std::vector<std::string> subjectAltNames(X509* cert, SanMatcher::Type type) {
  std::vector<std::string> out;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    const ASN1_STRING* s = nullptr;
    switch (type) {
      case SanMatcher::Type::Dns:
        if (n->type == GEN_DNS) s = n->d.dNSName;
        break;
      case SanMatcher::Type::Uri:
        if (n->type == GEN_URI) s = n->d.uniformResourceIdentifier;
        break;
      case SanMatcher::Type::Email:
        if (n->type == GEN_EMAIL) s = n->d.rfc822Name;
        break;
      case SanMatcher::Type::IpAddress:
        if (n->type == GEN_IPADD) {
          char buf[64] = {0};
          const ASN1_OCTET_STRING* ip = n->d.iPAddress;
          if (ip->length == 4 || ip->length == 16) {
            inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, buf, sizeof(buf));
            out.emplace_back(buf);
          }
        }
        break;
    }
    if (s) {
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  return out;
}

// Called by OpenSSL for each certificate of the peer's chain, deepest first. Chain errors
// fail the handshake (unless only the expiry is at fault and that is allowed); on the leaf,
// the SAN matchers are checked.
int verifyCallback(int preverify_ok, X509_STORE_CTX* store_ctx) {
  SSL* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* outcome = static_cast<VerifyOutcome*>(SSL_get_app_data(ssl));
  const auto* ctx = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!preverify_ok) {
    const int err = X509_STORE_CTX_get_error(store_ctx);
    if ((err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CRL_HAS_EXPIRED) && ctx &&
        ctx->config().validation && ctx->config().validation->allow_expired_certificate) {
      return 1;
    }
    if (outcome && outcome->failure == VerifyOutcome::Failure::None) {
      outcome->failure = VerifyOutcome::Failure::Error;
      outcome->x509_error = err;
    }
    return 0;
  }
  if (X509_STORE_CTX_get_error_depth(store_ctx) != 0 || !ctx || !ctx->config().validation) {
    return 1;
  }
  const auto& matchers = ctx->config().validation->san_matchers;
  if (matchers.empty()) return 1;
  X509* leaf = X509_STORE_CTX_get_current_cert(store_ctx);
  for (const auto& m : matchers) {
    for (const auto& san : subjectAltNames(leaf, m.type)) {
      if (m.matches(san)) return 1;
    }
  }
  if (outcome) outcome->failure = VerifyOutcome::Failure::San;
  X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_SUBJECT_ISSUER_MISMATCH);
  return 0;
}

// Server side: the first of our protocols (in our order) that the client offers; none in
// common goes on without ALPN, as Envoy does.
int alpnSelect(SSL* ssl, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  const auto* ctx = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  for (const auto& proto : ctx->config().alpn) {
    for (unsigned int i = 0; i < inlen;) {
      const unsigned int len = in[i];
      if (i + 1 + len > inlen) break;
      if (len == proto.size() && std::equal(proto.begin(), proto.end(), in + i + 1)) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

SslStats SslStats::create(stats::Store& store, const std::string& prefix) {
  return SslStats{
#define SLUICE_MAKE_COUNTER(name) store.counter(prefix + #name),
      ALL_SSL_STATS(SLUICE_MAKE_COUNTER)
#undef SLUICE_MAKE_COUNTER
  };
}

bool SanMatcher::matches(std::string_view san) const {
  switch (kind) {
    case Kind::Exact: return equalsMaybeIgnoreCase(san, value, ignore_case);
    case Kind::Prefix:
      return san.size() >= value.size() &&
             equalsMaybeIgnoreCase(san.substr(0, value.size()), value, ignore_case);
    case Kind::Suffix:
      return san.size() >= value.size() &&
             equalsMaybeIgnoreCase(san.substr(san.size() - value.size()), value, ignore_case);
    case Kind::Contains:
      for (size_t i = 0; i + value.size() <= san.size(); ++i) {
        if (equalsMaybeIgnoreCase(san.substr(i, value.size()), value, ignore_case)) return true;
      }
      return false;
  }
  return false;
}

namespace {
// Envoy's default cipher list for TLS <= 1.2 (both sides), without BoringSSL's
// equal-preference brackets, which OpenSSL does not know.
constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
constexpr const char* kDefaultCurves = "X25519:P-256";
}  // namespace

TlsContextConfig TlsContextConfig::serverDefaults() {
  TlsContextConfig c;
  c.is_server = true;
  c.min_version = TLS1_2_VERSION;
  c.max_version = TLS1_3_VERSION;
  c.cipher_suites = kDefaultCiphers;
  c.ecdh_curves = kDefaultCurves;
  return c;
}

TlsContextConfig TlsContextConfig::clientDefaults() {
  TlsContextConfig c = serverDefaults();
  c.is_server = false;
  c.max_version = TLS1_2_VERSION;  // Envoy's client default
  return c;
}

std::string TlsContext::alpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

std::string checkCertificatesPem(std::string_view pem) {
  if (readCertificates(pem).empty()) return "no PEM certificate found";
  return "";
}

std::shared_ptr<const TlsContext> TlsContext::create(const TlsContextConfig& config,
                                                     std::optional<SslStats> stats,
                                                     std::string* error) {
  std::shared_ptr<TlsContext> out(new TlsContext(config, stats));
  SSL_CTX* ctx = SSL_CTX_new(config.is_server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    *error = "cannot create an SSL context: " + sslError();
    return nullptr;
  }
  out->ctx_.reset(ctx);
  SSL_CTX_set_app_data(ctx, out.get());
  // A peer that closes without close_notify reads as an end of stream, not an error.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  // Writes are retried from the connection's buffer, which may have moved.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (!SSL_CTX_set_min_proto_version(ctx, config.min_version) ||
      !SSL_CTX_set_max_proto_version(ctx, config.max_version)) {
    *error = "tls_params: invalid protocol version range";
    return nullptr;
  }
  if (config.min_version > config.max_version) {
    *error = "tls_params: tls_minimum_protocol_version is above tls_maximum_protocol_version";
    return nullptr;
  }
  if (!config.cipher_suites.empty() &&
      !SSL_CTX_set_cipher_list(ctx, config.cipher_suites.c_str())) {
    *error = "tls_params.cipher_suites: no usable cipher in '" + config.cipher_suites + "'";
    ERR_clear_error();
    return nullptr;
  }
  if (!config.ecdh_curves.empty() && !SSL_CTX_set1_groups_list(ctx, config.ecdh_curves.c_str())) {
    *error = "tls_params.ecdh_curves: unknown curve in '" + config.ecdh_curves + "'";
    ERR_clear_error();
    return nullptr;
  }

  if (!config.cert_chain_pem.empty() || !config.private_key_pem.empty()) {
    std::vector<X509Ptr> chain = readCertificates(config.cert_chain_pem);
    if (chain.empty()) {
      *error = "tls_certificates[0].certificate_chain: no PEM certificate found";
      return nullptr;
    }
    if (!SSL_CTX_use_certificate(ctx, chain[0].get())) {
      *error = "tls_certificates[0].certificate_chain: " + sslError();
      return nullptr;
    }
    for (size_t i = 1; i < chain.size(); ++i) {
      // add0 takes ownership on success.
      if (!SSL_CTX_add0_chain_cert(ctx, chain[i].get())) {
        *error = "tls_certificates[0].certificate_chain: " + sslError();
        return nullptr;
      }
      chain[i].release();
    }
    BioPtr bio = memBio(config.private_key_pem);
    std::unique_ptr<EVP_PKEY, PkeyDeleter> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
      ERR_clear_error();
      *error = "tls_certificates[0].private_key: no PEM private key found";
      return nullptr;
    }
    if (!SSL_CTX_use_PrivateKey(ctx, key.get()) || !SSL_CTX_check_private_key(ctx)) {
      ERR_clear_error();
      *error = "tls_certificates[0].private_key: does not match the certificate";
      return nullptr;
    }
  } else if (config.is_server && !config.certificate_to_come) {
    *error = "tls_certificates: a server needs a certificate";
    return nullptr;
  }

  int verify_mode = SSL_VERIFY_NONE;
  if (config.validation) {
    const ValidationConfig& v = *config.validation;
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    std::vector<X509Ptr> cas = readCertificates(v.trusted_ca_pem);
    if (cas.empty()) {
      *error = "validation_context.trusted_ca: no PEM certificate found";
      return nullptr;
    }
    for (auto& ca : cas) {
      if (!X509_STORE_add_cert(store, ca.get())) {
        *error = "validation_context.trusted_ca: " + sslError();
        return nullptr;
      }
    }
    if (!v.crl_pem.empty()) {
      BioPtr bio = memBio(v.crl_pem);
      int n = 0;
      while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
        std::unique_ptr<X509_CRL, X509CrlDeleter> owned(crl);
        X509_STORE_add_crl(store, crl);
        ++n;
      }
      ERR_clear_error();
      if (n == 0) {
        *error = "validation_context.crl: no PEM CRL found";
        return nullptr;
      }
      X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    verify_mode = SSL_VERIFY_PEER;
    if (config.is_server && config.require_client_certificate) {
      verify_mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
  } else if (config.require_client_certificate) {
    *error = "require_client_certificate: needs a validation_context with trusted_ca";
    return nullptr;
  }
  SSL_CTX_set_verify(ctx, verify_mode, verify_mode == SSL_VERIFY_NONE ? nullptr : verifyCallback);
  if (config.is_server) {
    if (!config.alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, alpnSelect, nullptr);
    // A session resumes only on a context that would accept its peer as it stands: the id
    // context hashes the certificate and everything that verifies the client. (Contexts that
    // share session_ticket_keys can open each other's tickets; without this a client that
    // skipped a certificate on one chain could resume on an mTLS chain, or after its CA was
    // rotated out.)
    std::string what = config.cert_chain_pem;
    what += '\0';
    what += config.require_client_certificate ? '1' : '0';
    if (config.validation) {
      const ValidationConfig& v = *config.validation;
      what += '\0' + v.trusted_ca_pem + '\0' + v.crl_pem + '\0' +
              (v.allow_expired_certificate ? '1' : '0');
      for (const SanMatcher& m : v.san_matchers) {
        what += '\0' + std::to_string(static_cast<int>(m.type)) + ':' +
                std::to_string(static_cast<int>(m.kind)) + ':' + (m.ignore_case ? '1' : '0') +
                ':' + m.value;
      }
    }
    unsigned char id[EVP_MAX_MD_SIZE];
    unsigned int id_len = 0;
    if (!EVP_Digest(what.data(), what.size(), id, &id_len, EVP_sha256(), nullptr) ||
        !SSL_CTX_set_session_id_context(ctx, id, std::min<unsigned int>(id_len,
                                                                        SSL_MAX_SID_CTX_LENGTH))) {
      *error = "cannot set the session id context: " + sslError();
      return nullptr;
    }
    for (size_t i = 0; i < config.session_ticket_keys.size(); ++i) {
      if (config.session_ticket_keys[i].size() != kTicketKeySize) {
        *error = "session_ticket_keys.keys[" + std::to_string(i) + "]: must be " +
                 std::to_string(kTicketKeySize) + " bytes, not " +
                 std::to_string(config.session_ticket_keys[i].size());
        return nullptr;
      }
    }
    if (config.disable_stateless_session_resumption) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    } else if (!config.session_ticket_keys.empty()) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, onTicketKey);
    }
    if (config.disable_stateful_session_resumption) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (config.session_timeout_seconds > 0) SSL_CTX_set_timeout(ctx, config.session_timeout_seconds);
  } else {
    out->alpn_wire_ = alpnWire(config.alpn);
    if (config.max_session_keys > 0) {
      // Sessions are kept by the context (not OpenSSL's cache, which a client does not look
      // up): the newest resumes the next connection to the cluster.
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
      SSL_CTX_sess_set_new_cb(ctx, onNewSession);
    }
  }
  return out;
}

TlsContext::~TlsContext() {
  for (SSL_SESSION* s : sessions_) SSL_SESSION_free(s);
}

int TlsContext::onNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  std::lock_guard lock(self->sessions_mutex_);
  self->sessions_.push_back(session);  // 1: the reference is ours
  while (self->sessions_.size() > self->config_.max_session_keys) {
    SSL_SESSION_free(self->sessions_.front());
    self->sessions_.pop_front();
  }
  return 1;
}

int TlsContext::onTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv,
                            EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  auto* self = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const auto& keys = self->config_.session_ticket_keys;
  // Each key: its name, then the HMAC key, then the AES key.
  auto init = [&](const std::string& key, bool enc) {
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(k + 16),
                                          32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
        OSSL_PARAM_construct_end()};
    return EVP_MAC_CTX_set_params(mac, params) == 1 &&
           EVP_CipherInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k + 48, iv, enc ? 1 : 0) == 1;
  };
  if (encrypt) {
    const std::string& key = keys.front();
    std::memcpy(name, key.data(), 16);
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    return init(key, true) ? 1 : -1;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    if (std::memcmp(name, keys[i].data(), 16) != 0) continue;
    if (!init(keys[i], false)) return -1;
    return i == 0 ? 1 : 2;  // 2: an older key, the client gets a ticket under the first
  }
  return 0;  // unknown key: a full handshake
}

std::shared_ptr<const TlsContext> TlsContext::createUnready(const TlsContextConfig& config,
                                                           std::optional<SslStats> stats) {
  return std::shared_ptr<const TlsContext>(new TlsContext(config, stats));
}

SslPtr TlsContext::newSsl() const {
  if (!ctx_) return nullptr;  // unready: no certificate (or CA) yet
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return ssl;
  if (!config_.is_server && config_.max_session_keys > 0) {
    std::lock_guard lock(sessions_mutex_);
    if (!sessions_.empty()) SSL_set_session(ssl.get(), sessions_.back());
  }
  if (config_.is_server) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
    if (!alpn_wire_.empty()) {
      SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(alpn_wire_.data()),
                          static_cast<unsigned int>(alpn_wire_.size()));
    }
    if (!config_.sni.empty()) SSL_set_tlsext_host_name(ssl.get(), config_.sni.c_str());
  }
  return ssl;
}

}  // namespace sluice::tls
