#pragma once

// TLS contexts on OpenSSL: one immutable SSL_CTX per listener filter chain (server) or
// cluster (client), built once from a plain config at load, shared by every worker, and the
// per-connection checks that OpenSSL does not do itself (SAN matching). Counters use Envoy's
// names under the owner's prefix (`listener.<addr>.ssl.`, `cluster.<name>.ssl.`).

#include <openssl/ssl.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::stats {
class Store;
class Counter;
}  // namespace sluice::stats

namespace sluice::tls {

#define ALL_SSL_STATS(COUNTER) \
  COUNTER(connection_error)    \
  COUNTER(handshake)           \
  COUNTER(session_reused)      \
  COUNTER(no_certificate)      \
  COUNTER(fail_verify_no_cert) \
  COUNTER(fail_verify_error)   \
  COUNTER(fail_verify_san)

struct SslStats {
#define SLUICE_DECLARE_COUNTER(name) stats::Counter& name;
  ALL_SSL_STATS(SLUICE_DECLARE_COUNTER)
#undef SLUICE_DECLARE_COUNTER
  // `prefix` ends with "ssl." ("listener.127.0.0.1_443.ssl.").
  static SslStats create(stats::Store& store, const std::string& prefix);
};

// One entry of match_typed_subject_alt_names: a SAN of `type` whose value matches.
struct SanMatcher {
  enum class Type { Dns, Uri, Email, IpAddress };
  enum class Kind { Exact, Prefix, Suffix, Contains };
  Type type{Type::Uri};
  Kind kind{Kind::Exact};
  std::string value;
  bool ignore_case{false};
  bool matches(std::string_view san) const;
};

struct ValidationConfig {
  std::string trusted_ca_pem;  // one or more CA certificates
  std::string crl_pem;         // empty: no revocation check
  std::vector<SanMatcher> san_matchers;  // empty: any SAN
  bool allow_expired_certificate{false};
};

// TLS protocol versions as OpenSSL numbers (TLS1_2_VERSION, ...).
struct TlsContextConfig {
  bool is_server{true};
  // PEM; both empty: no certificate (a client without mTLS).
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::optional<ValidationConfig> validation;
  bool require_client_certificate{false};
  std::vector<std::string> alpn;  // in preference order
  int min_version{TLS1_2_VERSION};
  int max_version{TLS1_3_VERSION};
  std::string cipher_suites;  // OpenSSL cipher list for TLS <= 1.2 ("A:B:C")
  std::string ecdh_curves;    // OpenSSL groups list ("X25519:P-256")
  std::string sni;            // client: the server name to send
  // Session resumption. Server: session_ticket_keys (80 bytes each: a 16-byte name, a 32-byte
  // HMAC key, a 32-byte AES key; the first encrypts new tickets, any decrypts; none: OpenSSL's
  // own random key), the two disable_* switches, and session_timeout (0: OpenSSL's default).
  // Client: max_session_keys, the sessions kept to resume with (Envoy's default 1; 0: none).
  std::vector<std::string> session_ticket_keys;
  bool disable_stateless_session_resumption{false};
  bool disable_stateful_session_resumption{false};
  long session_timeout_seconds{0};
  uint32_t max_session_keys{1};
  // A server whose certificate has not come yet (SDS over ADS): create() checks the rest.
  bool certificate_to_come{false};
  // Envoy's defaults for each side.
  static TlsContextConfig serverDefaults();
  static TlsContextConfig clientDefaults();
};

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// What certificate verification decided for one connection; the socket owns it and the
// verify callback fills it in (through SSL_get_app_data), so that a failed handshake is
// counted under the right fail_verify_* counter.
struct VerifyOutcome {
  enum class Failure { None, Error, San };
  Failure failure{Failure::None};
  int x509_error{0};
};

class TlsContext {
 public:
  // Null with `error` set ("private_key: does not match the certificate") when the config
  // cannot be loaded; error messages name the config field. Without stats, bindStats() must
  // be called before the first connection (a listener names its stats by its bound address,
  // known only once it is bound).
  static std::shared_ptr<const TlsContext> create(const TlsContextConfig& config,
                                                  std::optional<SslStats> stats,
                                                  std::string* error);
  // A context whose secret has not come yet (SDS over ADS): every handshake with it fails
  // (counted as ssl.connection_error) until the factory swaps in a real one.
  static std::shared_ptr<const TlsContext> createUnready(const TlsContextConfig& config,
                                                         std::optional<SslStats> stats);
  // Once, before the context is shared with the workers.
  void bindStats(SslStats stats) const { stats_.emplace(stats); }

  bool isServer() const { return config_.is_server; }
  const TlsContextConfig& config() const { return config_; }
  SslStats& stats() const { return *stats_; }
  // A new SSL for one connection, in the right (connect/accept) state.
  SslPtr newSsl() const;
  // ALPN protocols in wire format (length-prefixed), for the client to offer.
  static std::string alpnWire(const std::vector<std::string>& protocols);

 ~TlsContext();

 private:
  TlsContext(TlsContextConfig config, std::optional<SslStats> stats)
      : config_(std::move(config)), stats_(stats) {}
  static int onNewSession(SSL* ssl, SSL_SESSION* session);
  static int onTicketKey(SSL* ssl, unsigned char* name, unsigned char* iv,
                         EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt);

  const TlsContextConfig config_;
  mutable std::optional<SslStats> stats_;
  SslCtxPtr ctx_;
  std::string alpn_wire_;
  // Client: the newest sessions the servers gave, to resume with (any worker's connections).
  mutable std::mutex sessions_mutex_;
  mutable std::deque<SSL_SESSION*> sessions_;  // newest last; owned
};
using TlsContextConstSharedPtr = std::shared_ptr<const TlsContext>;

// Checks that `pem` holds at least one certificate / a private key; "" when it does.
std::string checkCertificatesPem(std::string_view pem);

}  // namespace sluice::tls
