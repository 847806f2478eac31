// SDS secrets from files: the SecretManager's subscriptions, shared by the TLS contexts that
// name the same (file, secret); a new version rebuilds and swaps their contexts, a bad one is
// refused with the field's path and changes nothing. Certificates come from
// test/tls/gen_certs.sh. Updates are applied directly (the file watch itself is driven end to
// end by test/integration/sds_file_test.py).

#include "config/sds_api.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "config/bootstrap_loader.h"
#include "config/tls_config.h"
#include "event/dispatcher_impl.h"
#include "event/simulated_time_system.h"
#include "stats/stats.h"
#include "tls/tls_socket.h"

namespace sluice::config {
namespace {

const std::string& certDir() {
  static const std::string dir = [] {
    std::string d = ::testing::TempDir() + "sluice_sds_certs_" + std::to_string(getpid());
    const std::string cmd = std::string(SLUICE_SOURCE_DIR) + "/test/tls/gen_certs.sh " + d;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return d;
  }();
  return dir;
}
std::string certPath(const std::string& name) { return certDir() + "/" + name; }

// A DiscoveryResponse with one tls_certificate secret naming its files.
std::string certSecret(const std::string& name, const std::string& cert, const std::string& key,
                       const std::string& version) {
  return "version_info: '" + version + "'" +
         "\nresources:\n"
         "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
         "  name: " + name + "\n"
         "  tls_certificate:\n"
         "    certificate_chain: {filename: " + certPath(cert) + "}\n"
         "    private_key: {filename: " + certPath(key) + "}\n";
}

std::string commonName(const tls::TlsContext& ctx) {
  tls::SslPtr ssl = ctx.newSsl();
  X509* x = SSL_get_certificate(ssl.get());
  if (!x) return "";
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf));
  return buf;
}

class SdsApiTest : public testing::Test {
 protected:
  SdsApiTest() {
    dir_ = ::testing::TempDir() + "sluice_sds_" + std::to_string(getpid()) + "_" +
           testing::UnitTest::GetInstance()->current_test_info()->name();
    std::system(("mkdir -p " + dir_).c_str());
    setSecretManager(&manager_);
  }
  ~SdsApiTest() override { setSecretManager(nullptr); }

  std::string writeFile(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // A DownstreamTlsContext (server) or UpstreamTlsContext whose certificate is the SDS
  // secret `name` in `path`.
  network::TransportSocketFactoryConstSharedPtr build(const std::string& path,
                                                      const std::string& name, bool server,
                                                      std::vector<std::string>& errors,
                                                      const std::string& sds_config = "") {
    const std::string type = server ? "DownstreamTlsContext" : "UpstreamTlsContext";
    const std::string yaml =
        "static_resources:\n"
        "  clusters:\n"
        "  - name: c\n"
        "    transport_socket:\n"
        "      name: envoy.transport_sockets.tls\n"
        "      typed_config:\n"
        "        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3." +
        type +
        "\n"
        "        common_tls_context:\n"
        "          tls_certificate_sds_secret_configs:\n"
        "          - name: " + name + "\n"
        "            sds_config: " +
        (sds_config.empty() ? "{path_config_source: {path: " + path + "}}" : sds_config) + "\n";
    envoy::config::bootstrap::v3::Bootstrap bootstrap;
    if (!loadBootstrap({"", yaml}, bootstrap, errors)) return nullptr;
    SecretMap none;
    return buildTransportSocketFactory(bootstrap.static_resources().clusters(0).transport_socket(),
                                       server, none, store_, "cluster.c.", "ts", errors);
  }

  SdsApi* api(const std::string& path, const std::string& name) {
    SourceSpec source;
    source.path = path;
    std::string error;
    SdsApi* a = manager_.get(source, name, error);
    EXPECT_NE(a, nullptr) << error;
    return a;
  }

  bool apply(SdsApi& a, const std::string& text, std::vector<std::string>& errors) {
    DiscoveryUpdate update;
    return decodeDiscoveryResponseText(text, kSecretType, update, errors) &&
           a.onConfigUpdate(update, errors);
  }

  static const tls::TlsTransportSocketFactory& tlsFactory(
      const network::TransportSocketFactoryConstSharedPtr& f) {
    return dynamic_cast<const tls::TlsTransportSocketFactory&>(*f);
  }

  event::SimulatedTimeSystem time_;
  event::DispatcherImpl main_{"main", time_};
  stats::Store store_;
  SecretManager manager_{main_, store_};
  std::string dir_;
};

TEST_F(SdsApiTest, NewVersionSwapsTheContextForNewConnectionsOnly) {
  const std::string path = writeFile("cert.yaml", certSecret("edge", "server.pem", "server.key", "1"));
  std::vector<std::string> errors;
  auto factory = build(path, "edge", true, errors);
  ASSERT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
  const auto& tls = tlsFactory(factory);
  auto before = tls.current();
  EXPECT_EQ(commonName(*before), "server");
  SdsApi* a = api(path, "edge");
  EXPECT_EQ(a->versionInfo(), "1");

  ASSERT_TRUE(apply(*a, certSecret("edge", "client.pem", "client.key", "2"), errors))
      << (errors.empty() ? "" : errors[0]);
  EXPECT_EQ(a->versionInfo(), "2");
  auto after = tls.current();
  EXPECT_NE(after, before);
  EXPECT_EQ(commonName(*after), "client");
  // A connection made before the rotation holds its own context, which still works.
  EXPECT_EQ(commonName(*before), "server");

  // The same secret again (a new version_info only) builds nothing new.
  ASSERT_TRUE(apply(*a, certSecret("edge", "client.pem", "client.key", "3"), errors));
  EXPECT_EQ(tls.current(), after);
  EXPECT_EQ(a->versionInfo(), "3");
}

TEST_F(SdsApiTest, BadVersionIsRefusedWithTheFieldAndTheOldContextStays) {
  const std::string path = writeFile("cert.yaml", certSecret("edge", "server.pem", "server.key", "1"));
  std::vector<std::string> errors;
  auto factory = build(path, "edge", true, errors);
  ASSERT_NE(factory, nullptr);
  auto before = tlsFactory(factory).current();
  SdsApi* a = api(path, "edge");

  // The key of another certificate.
  EXPECT_FALSE(apply(*a, certSecret("edge", "server.pem", "client.key", "2"), errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back(), "resources[0].tls_certificate.private_key: does not match the certificate");
  EXPECT_NE(a->lastError().find("private_key"), std::string::npos);

  // A chain that is not PEM.
  errors.clear();
  const std::string garbage =
      "version_info: '3'\nresources:\n"
      "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
      "  name: edge\n"
      "  tls_certificate:\n"
      "    certificate_chain: {inline_string: 'not a certificate'}\n"
      "    private_key: {filename: " + certPath("server.key") + "}\n";
  EXPECT_FALSE(apply(*a, garbage, errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back(), "resources[0].tls_certificate.certificate_chain: no PEM certificate found");

  // A file named by the secret that is missing.
  errors.clear();
  EXPECT_FALSE(apply(*a, certSecret("edge", "nope.pem", "server.key", "4"), errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back().rfind("resources[0].tls_certificate.certificate_chain.filename: cannot read", 0), 0u)
      << errors.back();

  // No secret of that name.
  errors.clear();
  EXPECT_FALSE(apply(*a, certSecret("other", "client.pem", "client.key", "5"), errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back(), "resources: no Secret named 'edge'");

  EXPECT_EQ(tlsFactory(factory).current(), before);
  EXPECT_EQ(a->versionInfo(), "1");
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
}

TEST_F(SdsApiTest, ContextsNamingTheSameSecretShareOneSubscription) {
  const std::string path = writeFile("cert.yaml", certSecret("edge", "server.pem", "server.key", "1"));
  std::vector<std::string> errors;
  auto listener = build(path, "edge", true, errors);
  auto cluster = build(path, "edge", false, errors);
  ASSERT_NE(listener, nullptr);
  ASSERT_NE(cluster, nullptr);
  SdsApi* a = api(path, "edge");
  EXPECT_EQ(api(path, "edge"), a);
  // The same name from another file is another subscription.
  const std::string path2 = writeFile("cert2.yaml", certSecret("edge", "client.pem", "client.key", "1"));
  auto other = build(path2, "edge", true, errors);
  ASSERT_NE(other, nullptr);
  EXPECT_NE(api(path2, "edge"), a);

  ASSERT_TRUE(apply(*a, certSecret("edge", "client2.pem", "client2.key", "2"), errors));
  EXPECT_EQ(commonName(*tlsFactory(listener).current()), "client2");
  EXPECT_EQ(commonName(*tlsFactory(cluster).current()), "client2");
  EXPECT_EQ(commonName(*tlsFactory(other).current()), "client");
  // The cluster's new context counts under the cluster's stats.
  EXPECT_EQ(&tlsFactory(cluster).current()->stats().handshake,
            &store_.counter("cluster.c.ssl.handshake"));

  // A context that is gone (its cluster removed) is dropped from the secret's users.
  cluster.reset();
  ASSERT_TRUE(apply(*a, certSecret("edge", "server.pem", "server.key", "3"), errors));
  EXPECT_EQ(commonName(*tlsFactory(listener).current()), "server");
}

TEST_F(SdsApiTest, MissingFileOrSecretRefusesTheConfigWithThePath) {
  std::vector<std::string> errors;
  EXPECT_EQ(build(dir_ + "/missing.yaml", "edge", true, errors), nullptr);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("tls_certificate_sds_secret_configs[0].sds_config: secret 'edge' not "
                           "loaded from '" + dir_ + "/missing.yaml'"),
            std::string::npos)
      << errors[0];
  errors.clear();
  const std::string path = writeFile("cert.yaml", certSecret("edge", "server.pem", "server.key", "1"));
  EXPECT_EQ(build(path, "nope", true, errors), nullptr);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("resources: no Secret named 'nope'"), std::string::npos) << errors[0];
}

TEST_F(SdsApiTest, ValidateModeReadsTheFileOnce) {
  setSecretManager(nullptr);
  const std::string path = writeFile("cert.yaml", certSecret("edge", "server.pem", "server.key", "1"));
  std::vector<std::string> errors;
  auto factory = build(path, "edge", true, errors);
  ASSERT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
  errors.clear();
  const std::string bad = writeFile("bad.yaml", certSecret("edge", "server.pem", "client.key", "1"));
  EXPECT_EQ(build(bad, "edge", true, errors), nullptr);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("resources[0].tls_certificate.private_key: does not match"),
            std::string::npos)
      << errors[0];
}

TEST_F(SdsApiTest, ValidationContextFromAFileRotatesTheTrustedCa) {
  auto caSecret = [](const std::string& ca, const std::string& version) {
    return "version_info: '" + version +
           "'\nresources:\n"
           "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
           "  name: ca\n"
           "  validation_context: {trusted_ca: {filename: " + certPath(ca) + "}}\n";
  };
  const std::string path = writeFile("ca.yaml", caSecret("ca.pem", "1"));
  const std::string yaml =
      "static_resources:\n"
      "  clusters:\n"
      "  - name: c\n"
      "    transport_socket:\n"
      "      name: envoy.transport_sockets.tls\n"
      "      typed_config:\n"
      "        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n"
      "        common_tls_context:\n"
      "          validation_context_sds_secret_config:\n"
      "            name: ca\n"
      "            sds_config: {path: " + path + "}\n";
  std::vector<std::string> errors;
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  ASSERT_TRUE(loadBootstrap({"", yaml}, bootstrap, errors)) << errors[0];
  SecretMap none;
  auto factory = buildTransportSocketFactory(
      bootstrap.static_resources().clusters(0).transport_socket(), false, none, store_,
      "cluster.c.", "ts", errors);
  ASSERT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
  auto readFile = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  EXPECT_EQ(tlsFactory(factory).current()->config().validation->trusted_ca_pem,
            readFile(certPath("ca.pem")));
  envoy::config::core::v3::ConfigSource cs;
  cs.set_path(path);  // the older field names the same subscription
  SourceSpec source;
  ASSERT_TRUE(parseConfigSource(cs, "sds_config", source, errors));
  std::string error;
  SdsApi* a = manager_.get(source, "ca", error);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(apply(*a, caSecret("other_ca.pem", "2"), errors));
  EXPECT_EQ(tlsFactory(factory).current()->config().validation->trusted_ca_pem,
            readFile(certPath("other_ca.pem")));
  // A certificate where a validation context is needed is refused.
  EXPECT_FALSE(apply(*a, certSecret("ca", "server.pem", "server.key", "3"), errors));
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors.back().find("not a validation_context"), std::string::npos) << errors.back();
}

// `ads` needs the bootstrap's ads_config (other kinds of source are refused as unsupported
// fields when the bootstrap loads).
TEST_F(SdsApiTest, AdsWithoutAdsConfigIsRefused) {
  std::vector<std::string> errors;
  EXPECT_EQ(build("", "x", false, errors, "{ads: {}}"), nullptr);
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0], "ts.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]"
                       ".sds_config.ads: needs dynamic_resources.ads_config");
}

// The files a secret names are watched: replacing them rotates the contexts with no new SDS
// version; a pair that does not load is counted in key_rotation_failed and changes nothing.
class SdsFileWatchTest : public SdsApiTest {
 protected:
  static std::string readFile(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Replaces `name` in dir_ with a copy of the generated file `from`, by a rename.
  void replace(const std::string& name, const std::string& from) {
    const std::string tmp = writeFile("." + name + ".tmp", readFile(certPath(from)));
    ASSERT_EQ(std::rename(tmp.c_str(), (dir_ + "/" + name).c_str()), 0);
  }
  // Runs the main loop's ready events (inotify queues an event when the rename returns).
  void runLoop() {
    for (int i = 0; i < 3; ++i) main_.run(event::Dispatcher::RunType::NonBlock);
  }
  // A secret naming live.pem / live.key in dir_ (copies of `cert`).
  SdsApi* start(const std::string& cert, network::TransportSocketFactoryConstSharedPtr& factory) {
    replace("live.pem", cert + ".pem");
    replace("live.key", cert + ".key");
    const std::string path = writeFile(
        "cert.yaml", "version_info: '1'\nresources:\n"
                     "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
                     "  name: edge\n"
                     "  tls_certificate:\n"
                     "    certificate_chain: {filename: " + dir_ + "/live.pem}\n"
                     "    private_key: {filename: " + dir_ + "/live.key}\n");
    std::vector<std::string> errors;
    factory = build(path, "edge", true, errors);
    EXPECT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
    return api(path, "edge");
  }
  uint64_t rotationFailures() { return store_.counter("sds.edge.key_rotation_failed").value(); }
};

TEST_F(SdsFileWatchTest, ChangedFilesRotateTheContextWithoutANewVersion) {
  network::TransportSocketFactoryConstSharedPtr factory;
  SdsApi* a = start("server", factory);
  ASSERT_NE(factory, nullptr);
  auto before = tlsFactory(factory).current();
  EXPECT_EQ(commonName(*before), "server");
  // Files that read the same change nothing.
  EXPECT_TRUE(a->onFileChanged(dir_ + "/live.pem"));
  EXPECT_EQ(tlsFactory(factory).current(), before);

  replace("live.pem", "client.pem");
  replace("live.key", "client.key");
  EXPECT_TRUE(a->onFileChanged(dir_ + "/live.key"));
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "client");
  EXPECT_EQ(commonName(*before), "server");  // an open connection's context is untouched
  EXPECT_EQ(a->versionInfo(), "1");
  EXPECT_EQ(rotationFailures(), 0u);
}

TEST_F(SdsFileWatchTest, MismatchedOrHalfWrittenFilesAreCountedAndTheOldContextServes) {
  network::TransportSocketFactoryConstSharedPtr factory;
  SdsApi* a = start("server", factory);
  ASSERT_NE(factory, nullptr);
  auto before = tlsFactory(factory).current();
  EXPECT_EQ(rotationFailures(), 0u);
  // Only the key replaced so far: it does not match the certificate.
  replace("live.key", "client.key");
  EXPECT_FALSE(a->onFileChanged(dir_ + "/live.key"));
  EXPECT_EQ(rotationFailures(), 1u);
  EXPECT_EQ(tlsFactory(factory).current(), before);
  // A certificate file cut short.
  const std::string pem = readFile(certPath("client.pem"));
  writeFile("live.pem", pem.substr(0, pem.size() / 2));
  EXPECT_FALSE(a->onFileChanged(dir_ + "/live.pem"));
  EXPECT_EQ(rotationFailures(), 2u);
  EXPECT_EQ(tlsFactory(factory).current(), before);
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
  // The rest of the pair arrives: it is taken.
  replace("live.pem", "client.pem");
  EXPECT_TRUE(a->onFileChanged(dir_ + "/live.pem"));
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "client");
  EXPECT_EQ(rotationFailures(), 2u);
}

TEST_F(SdsFileWatchTest, RenameAndWriteInPlaceAreSeenByTheWatch) {
  network::TransportSocketFactoryConstSharedPtr factory;
  start("server", factory);
  ASSERT_NE(factory, nullptr);
  // One file holding the certificate and its key stands for a pair replaced at once.
  const std::string both = writeFile("both.pem", readFile(certPath("client.pem")) +
                                                     readFile(certPath("client.key")));
  const std::string path = writeFile(
      "both.yaml", "version_info: '1'\nresources:\n"
                   "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
                   "  name: pair\n"
                   "  tls_certificate:\n"
                   "    certificate_chain: {filename: " + both + "}\n"
                   "    private_key: {filename: " + both + "}\n");
  std::vector<std::string> errors;
  auto pair = build(path, "pair", true, errors);
  ASSERT_NE(pair, nullptr) << (errors.empty() ? "" : errors[0]);
  EXPECT_EQ(commonName(*tlsFactory(pair).current()), "client");

  // A rename onto the path.
  const std::string tmp = writeFile(".both.tmp", readFile(certPath("client2.pem")) +
                                                     readFile(certPath("client2.key")));
  ASSERT_EQ(std::rename(tmp.c_str(), both.c_str()), 0);
  runLoop();
  EXPECT_EQ(commonName(*tlsFactory(pair).current()), "client2");
  // A write in place (open, truncate, write, close).
  writeFile("both.pem", readFile(certPath("server.pem")) + readFile(certPath("server.key")));
  runLoop();
  EXPECT_EQ(commonName(*tlsFactory(pair).current()), "server");
  EXPECT_EQ(store_.counter("sds.pair.key_rotation_failed").value(), 0u);
  // The other secret's files were not touched.
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
}

TEST_F(SdsFileWatchTest, WatchedDirectoryFiresOnARenameInIt) {
  // Kubernetes' layout: live.pem -> ..data/live.pem, ..data -> ..v1; a new version is a new
  // ..v2 and an atomic rename of a new ..data link.
  const std::string mount = dir_ + "/mount";
  auto version = [&](const std::string& v, const std::string& cert) {
    std::system(("mkdir -p " + mount + "/" + v).c_str());
    std::ofstream(mount + "/" + v + "/tls.crt") << readFile(certPath(cert + ".pem"));
    std::ofstream(mount + "/" + v + "/tls.key") << readFile(certPath(cert + ".key"));
    ::unlink((mount + "/..data_tmp").c_str());
    ASSERT_EQ(::symlink(v.c_str(), (mount + "/..data_tmp").c_str()), 0);
    ASSERT_EQ(std::rename((mount + "/..data_tmp").c_str(), (mount + "/..data").c_str()), 0);
  };
  version("..v1", "server");
  ASSERT_EQ(::symlink("..data/tls.crt", (mount + "/tls.crt").c_str()), 0);
  ASSERT_EQ(::symlink("..data/tls.key", (mount + "/tls.key").c_str()), 0);
  const std::string path = writeFile(
      "k8s.yaml", "version_info: '1'\nresources:\n"
                  "- '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n"
                  "  name: k8s\n"
                  "  tls_certificate:\n"
                  "    certificate_chain: {filename: " + mount + "/tls.crt}\n"
                  "    private_key: {filename: " + mount + "/tls.key}\n"
                  "    watched_directory: {path: " + mount + "}\n");
  std::vector<std::string> errors;
  auto factory = build(path, "k8s", true, errors);
  ASSERT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
  version("..v2", "client");
  runLoop();
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "client");
  EXPECT_EQ(store_.counter("sds.k8s.key_rotation_failed").value(), 0u);
}

TEST_F(SdsFileWatchTest, StaticSecretFilesAreWatchedToo) {
  replace("live.pem", "server.pem");
  replace("live.key", "server.key");
  const std::string yaml =
      "static_resources:\n"
      "  secrets:\n"
      "  - name: edge\n"
      "    tls_certificate:\n"
      "      certificate_chain: {filename: " + dir_ + "/live.pem}\n"
      "      private_key: {filename: " + dir_ + "/live.key}\n"
      "  clusters:\n"
      "  - name: c\n"
      "    transport_socket:\n"
      "      name: envoy.transport_sockets.tls\n"
      "      typed_config:\n"
      "        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n"
      "        common_tls_context:\n"
      "          tls_certificate_sds_secret_configs: [{name: edge}]\n";
  std::vector<std::string> errors;
  envoy::config::bootstrap::v3::Bootstrap bootstrap;
  ASSERT_TRUE(loadBootstrap({"", yaml}, bootstrap, errors)) << errors[0];
  SecretMap secrets;
  ASSERT_TRUE(indexSecrets(bootstrap.static_resources().secrets(), secrets, errors));
  auto factory = buildTransportSocketFactory(
      bootstrap.static_resources().clusters(0).transport_socket(), true, secrets, store_,
      "cluster.c.", "ts", errors);
  ASSERT_NE(factory, nullptr) << (errors.empty() ? "" : errors[0]);
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
  ASSERT_EQ(manager_.all().count({"static", "edge"}), 1u);
  replace("live.key", "client.key");
  runLoop();
  EXPECT_EQ(store_.counter("sds.edge.key_rotation_failed").value(), 1u);
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "server");
  replace("live.pem", "client.pem");
  runLoop();
  EXPECT_EQ(commonName(*tlsFactory(factory).current()), "client");
}

// Workers read the current context while the main thread swaps it: each read is a context
// that was current at some point, never a torn or freed one (ASan checks the last part).
TEST(TlsFactoryRotationTest, ReadersOnOtherThreadsSeeWholeContexts) {
  std::string error;
  auto make = [&](const std::string& cert, const std::string& key) {
    tls::TlsContextConfig c = tls::TlsContextConfig::serverDefaults();
    std::ifstream a(certPath(cert)), b(certPath(key));
    std::stringstream sa, sb;
    sa << a.rdbuf();
    sb << b.rdbuf();
    c.cert_chain_pem = sa.str();
    c.private_key_pem = sb.str();
    auto ctx = tls::TlsContext::create(c, std::nullopt, &error);
    EXPECT_NE(ctx, nullptr) << error;
    return ctx;
  };
  auto a = make("server.pem", "server.key");
  auto b = make("client.pem", "client.key");
  auto factory = std::make_shared<tls::TlsTransportSocketFactory>(a);
  factory->makeRotatable();
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      stats::ThreadSlot::registerCurrentThread();
      while (!stop.load()) {
        auto c = factory->current();
        if (c != a && c != b) bad++;
      }
      stats::ThreadSlot::unregisterCurrentThread();
    });
  }
  for (int i = 0; i < 2000; ++i) factory->setContext(i % 2 ? a : b);
  factory->setContext(b);
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(factory->current(), b);
}

}  // namespace
}  // namespace sluice::config
