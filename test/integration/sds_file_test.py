"""SDS secrets from files, end to end: a TLS listener's certificate and a cluster's client
certificate come from a path config source (a DiscoveryResponse of Secret resources naming
certificate files). A new version moved into place rotates the certificate for new
handshakes while connections opened before keep theirs; under load, rotations fail no
request; a bad version is refused with the field's path and the old certificate keeps
serving. Certificates are made for the run by test/tls/gen_certs.sh."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = None
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
SECRET_TYPE = TLS_TYPE + "Secret"


def setUpModule():
    global CERTS
    CERTS = tempfile.mkdtemp(prefix="sluice-sds-certs-")
    subprocess.run([os.path.join(HERE, "..", "tls", "gen_certs.sh"), CERTS], check=True)


def cert(name):
    return os.path.join(CERTS, name)


def cert_secret(name, which):
    """A tls_certificate secret naming the files of certificate `which` (server, client2...)."""
    return {"name": name, "tls_certificate": {
        "certificate_chain": {"filename": cert(which + ".pem")},
        "private_key": {"filename": cert(which + ".key")}}}


def sds(name, path):
    return {"name": name, "sds_config": {"path_config_source": {"path": path},
                                         "resource_api_version": "V3"}}


def client_context():
    """Trusts the test CA; the certificates rotated in have other names than localhost."""
    ctx = ssl.create_default_context(cafile=cert("ca.pem"))
    ctx.check_hostname = False
    return ctx


def peer_cn(sock):
    return dict(x[0] for x in sock.getpeercert()["subject"])["commonName"]


def handshake_cn(port):
    """The common name of the certificate a new TLS connection to the listener gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context().wrap_socket(raw, server_hostname="localhost") as s:
            return peer_cn(s)


class SdsCase(harness.unittest.TestCase):
    """A TLS listener whose certificate is the SDS secret `server_cert` of self.secret."""

    def setUp(self):
        self.app = Upstream("app")
        self.dir = tempfile.mkdtemp(prefix="sluice-sds-")
        self.secret = harness.DiscoveryFile(self.dir, "server_cert.yaml", SECRET_TYPE)
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.app.close()

    def start(self, concurrency=1):
        common = {"tls_certificate_sds_secret_configs": [sds("server_cert", self.secret.path)],
                  "alpn_protocols": ["http/1.1"]}
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]),
                        [cluster("app", self.app.port)])
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_TYPE + "DownstreamTlsContext",
                             "common_tls_context": common}}
        self.proxy = Proxy(cfg, concurrency=concurrency)
        return self.proxy

    def https(self):
        c = http.client.HTTPSConnection("127.0.0.1", self.proxy.port, timeout=10,
                                        context=client_context())
        c.connect()
        return c

    def get(self, c, path="/"):
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body


class SdsFileTest(SdsCase):
    def test_rotation_reaches_new_handshakes_and_keeps_old_connections(self):
        self.secret.write([cert_secret("server_cert", "server")], version="a")
        p = self.start()
        self.assertEqual(handshake_cn(p.port), "server")
        old = self.https()
        self.assertEqual(self.get(old)[0], 200)
        self.assertEqual(peer_cn(old.sock), "server")

        self.secret.write([cert_secret("server_cert", "client2")], version="b")
        wait_until(lambda: handshake_cn(p.port) == "client2", what="the rotated certificate")
        # The connection opened before the rotation keeps its session and serves on.
        status, body = self.get(old, "/after")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["path"], "/after")
        self.assertEqual(peer_cn(old.sock), "server")
        old.close()
        # A full HTTPS request on a new connection, with the new certificate.
        c = self.https()
        self.assertEqual(self.get(c)[0], 200)
        self.assertEqual(peer_cn(c.sock), "client2")
        c.close()
        self.assertEqual(p.stat("sds.server_cert.update_success"), 2)
        # Envoy's names for a secret subscription, present at 0 too.
        self.assertEqual(p.stat("sds.server_cert.update_attempt"), 2)
        self.assertEqual(p.stat("sds.server_cert.update_rejected"), 0)
        self.assertEqual(p.stat("sds.server_cert.update_failure"), 0)
        self.assertEqual(p.stat("sds.server_cert.config_reload"), 2)
        self.assertEqual(p.stat("sds.server_cert.key_rotation_failed"), 0)
        self.assertGreater(p.stat("sds.server_cert.config_reload_time_ms"), 0)
        self.assertGreater(p.stat("sds.server_cert.update_time"), 0)
        p.wait_for_line(r"sds: secret 'server_cert' version 'b' applied")

    def test_rotations_under_load_fail_no_request(self):
        self.secret.write([cert_secret("server_cert", "server")], version="0")
        p = self.start(concurrency=2)
        with harness.HandshakeLoad(p.port, client_context()) as load:
            for i in range(1, 7):
                which = "client2" if i % 2 else "server"
                before = load.seen(which)
                self.secret.write([cert_secret("server_cert", which)], version=str(i))
                wait_until(lambda: load.seen(which) > before + 20, timeout=30,
                           what="handshakes with " + which)
        print("sds rotations under load: %s" % load.counts)
        self.assertEqual(load.counts["failed"], 0, load.errors)
        self.assertEqual(p.stat("sds.server_cert.update_success"), 7)

    def test_bad_version_is_refused_and_the_old_certificate_serves(self):
        self.secret.write([cert_secret("server_cert", "server")], version="good")
        p = self.start()
        # A key that does not match the certificate.
        bad = cert_secret("server_cert", "server")
        bad["tls_certificate"]["private_key"]["filename"] = cert("client.key")
        self.secret.write([bad], version="bad-key")
        p.wait_for_line(r"update rejected: resources\[0\]\.tls_certificate\.private_key: "
                        r"does not match the certificate")
        wait_until(lambda: p.stat("sds.server_cert.update_rejected") == 1, what="update_rejected")
        self.assertEqual(handshake_cn(p.port), "server")
        # A chain that is no certificate at all.
        self.secret.write([{"name": "server_cert", "tls_certificate": {
            "certificate_chain": {"inline_string": "garbage"},
            "private_key": {"filename": cert("server.key")}}}], version="bad-chain")
        p.wait_for_line(r"update rejected: resources\[0\]\.tls_certificate\.certificate_chain: "
                        r"no PEM certificate found")
        wait_until(lambda: p.stat("sds.server_cert.update_rejected") == 2, what="update_rejected")
        c = self.https()
        self.assertEqual(self.get(c)[0], 200)
        self.assertEqual(peer_cn(c.sock), "server")
        c.close()
        self.assertEqual(p.stat("sds.server_cert.update_success"), 1)
        # A good version after the bad ones is taken.
        self.secret.write([cert_secret("server_cert", "client2")], version="good2")
        wait_until(lambda: handshake_cn(p.port) == "client2", what="the rotated certificate")

    def test_missing_secret_file_is_an_error_naming_the_path(self):
        missing = os.path.join(self.dir, "nope.yaml")
        common = {"tls_certificate_sds_secret_configs": [sds("server_cert", missing)]}
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]),
                        [cluster("app", self.app.port)])
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_TYPE + "DownstreamTlsContext",
                             "common_tls_context": common}}
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        for mode in ("serve", "validate"):
            r = harness.run("proxy", "-c", path, "--mode", mode)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("static_resources.listeners[0].filter_chains[0].transport_socket."
                          "typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]"
                          ".sds_config", r.stderr)
            self.assertIn(missing, r.stderr)


def read(path):
    with open(path) as f:
        return f.read()


def pair_text(which):
    """Certificate `which` and its key in one PEM file: a secret that names the file for both
    certificate_chain and private_key sees the pair change at once."""
    return read(cert(which + ".pem")) + read(cert(which + ".key"))


def replace(path, text):
    """Writes `text` beside `path` and renames it into place."""
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def files_secret(name, chain, key):
    return {"name": name, "tls_certificate": {"certificate_chain": {"filename": chain},
                                              "private_key": {"filename": key}}}


class SdsWatchedFilesTest(SdsCase):
    """The files a secret names are watched: no new SDS version is needed to rotate."""

    def test_replaced_files_rotate_new_handshakes_and_keep_old_connections(self):
        both = os.path.join(self.dir, "both.pem")
        replace(both, pair_text("server"))
        self.secret.write([files_secret("server_cert", both, both)], version="only")
        p = self.start()
        self.assertEqual(handshake_cn(p.port), "server")
        old = self.https()
        self.assertEqual(self.get(old)[0], 200)
        # Renamed into place.
        replace(both, pair_text("client2"))
        wait_until(lambda: handshake_cn(p.port) == "client2", what="the renamed certificate")
        p.wait_for_line(r"sds: secret 'server_cert' reloaded after '%s' changed" % both)
        status, _ = self.get(old, "/after-rename")
        self.assertEqual(status, 200)
        self.assertEqual(peer_cn(old.sock), "server")
        # Written in place.
        with open(both, "w") as f:
            f.write(pair_text("server"))
        wait_until(lambda: handshake_cn(p.port) == "server", what="the certificate written in place")
        self.assertEqual(self.get(old, "/after-write")[0], 200)
        old.close()
        c = self.https()
        self.assertEqual(self.get(c)[0], 200)
        c.close()
        self.assertEqual(p.stat("sds.server_cert.key_rotation_failed"), 0)
        # No SDS version was needed: the subscription saw only the first.
        self.assertEqual(p.stat("sds.server_cert.update_success"), 1)

    def test_failed_key_rotation_is_counted_logged_and_the_old_pair_serves(self):
        chain = os.path.join(self.dir, "tls.crt")
        key = os.path.join(self.dir, "tls.key")
        replace(chain, read(cert("server.pem")))
        replace(key, read(cert("server.key")))
        self.secret.write([files_secret("server_cert", chain, key)], version="1")
        p = self.start()
        self.assertEqual(p.stat("sds.server_cert.key_rotation_failed"), 0)
        # Half a rotation: the new key, the old certificate.
        replace(key, read(cert("client2.key")))
        wait_until(lambda: p.stat("sds.server_cert.key_rotation_failed") == 1,
                   what="key_rotation_failed")
        p.wait_for_line(r"sds: secret 'server_cert': key rotation after '%s' changed failed, the "
                        r"previous version keeps serving: tls_certificate\.private_key: does not "
                        r"match the certificate" % key)
        self.assertEqual(handshake_cn(p.port), "server")
        # A certificate file written in place, cut short.
        with open(chain, "w") as f:
            f.write(read(cert("client2.pem"))[:200])
        wait_until(lambda: p.stat("sds.server_cert.key_rotation_failed") == 2,
                   what="key_rotation_failed")
        self.assertEqual(handshake_cn(p.port), "server")
        # The rest of the rotation: taken.
        replace(chain, read(cert("client2.pem")))
        wait_until(lambda: handshake_cn(p.port) == "client2", what="the completed rotation")
        self.assertEqual(p.stat("sds.server_cert.key_rotation_failed"), 2)
        self.assertEqual(p.stat("sds.server_cert.update_rejected"), 0)

    def test_static_secret_files_are_watched(self):
        both = os.path.join(self.dir, "static.pem")
        replace(both, pair_text("server"))
        common = {"tls_certificate_sds_secret_configs": [{"name": "static_cert"}]}
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]),
                        [cluster("app", self.app.port)])
        cfg["static_resources"]["secrets"] = [files_secret("static_cert", both, both)]
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_TYPE + "DownstreamTlsContext",
                             "common_tls_context": common}}
        self.proxy = p = Proxy(cfg)
        self.assertEqual(handshake_cn(p.port), "server")
        replace(both, pair_text("client2"))
        wait_until(lambda: handshake_cn(p.port) == "client2", what="the rotated static secret")
        self.assertEqual(p.stat("sds.static_cert.key_rotation_failed"), 0)


class SdsConfigDumpTest(SdsCase):
    def dump(self, p, query=""):
        r, body = p.admin("/config_dump" + query)
        self.assertEqual(r.status, 200, body)
        return json.loads(body)["configs"]

    def test_secrets_are_dumped_with_private_keys_redacted(self):
        self.secret.write([cert_secret("server_cert", "server")], version="v1")
        inline_key = read(cert("client.key"))
        common = {"tls_certificate_sds_secret_configs": [sds("server_cert", self.secret.path)]}
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]),
                        [cluster("app", self.app.port)])
        cfg["static_resources"]["secrets"] = [{"name": "static_cert", "tls_certificate": {
            "certificate_chain": {"inline_string": read(cert("client.pem"))},
            "private_key": {"inline_string": inline_key}}}]
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_TYPE + "DownstreamTlsContext",
                             "common_tls_context": common}}
        self.proxy = p = Proxy(cfg)
        r, body = p.admin("/config_dump")
        text = body.decode()
        # No private key anywhere: not in the secrets, not in the bootstrap.
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn(inline_key.splitlines()[1], text)
        configs = json.loads(text)["configs"]
        secrets = [c for c in configs
                   if c["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump"]
        self.assertEqual(len(secrets), 1)
        dump = secrets[0]
        static = dump["static_secrets"]
        self.assertEqual([s["name"] for s in static], ["static_cert"])
        self.assertEqual(static[0]["secret"]["@type"], SECRET_TYPE)
        self.assertEqual(static[0]["secret"]["tls_certificate"]["private_key"],
                         {"inline_string": "[redacted]"})
        self.assertIn("BEGIN CERTIFICATE",
                      static[0]["secret"]["tls_certificate"]["certificate_chain"]["inline_string"])
        active = dump["dynamic_active_secrets"]
        self.assertEqual(len(active), 1)
        self.assertEqual(active[0]["name"], "server_cert")
        self.assertEqual(active[0]["version_info"], "v1")
        self.assertRegex(active[0]["last_updated"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        tls = active[0]["secret"]["tls_certificate"]
        self.assertEqual(tls["private_key"], {"filename": "[redacted]"})
        self.assertEqual(tls["certificate_chain"], {"filename": cert("server.pem")})
        self.assertNotIn("dynamic_warming_secrets", dump)
        boot = [c for c in configs if c["@type"].endswith("BootstrapConfigDump")][0]
        self.assertEqual(boot["bootstrap"]["static_resources"]["secrets"][0]["tls_certificate"]
                         ["private_key"], {"inline_string": "[redacted]"})

        # A new version shows in the dump.
        self.secret.write([cert_secret("server_cert", "client2")], version="v2")
        wait_until(lambda: self.dump(p, "?resource=dynamic_active_secrets")[0]["version_info"]
                   == "v2", what="version v2 in the dump")

        # ?resource= lists the secrets, each with its own type; ?mask= trims them.
        res = self.dump(p, "?resource=dynamic_active_secrets&mask=name,version_info")
        self.assertEqual(res, [{"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump."
                                         "DynamicSecret",
                                "name": "server_cert", "version_info": "v2"}])
        res = self.dump(p, "?resource=static_secrets&mask=secret.tls_certificate.private_key")
        self.assertEqual(res, [{"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump."
                                         "StaticSecret",
                                "secret": {"@type": SECRET_TYPE, "tls_certificate": {
                                    "private_key": {"inline_string": "[redacted]"}}}}])
        # ?mask= alone applies to every dump, the other dumps included.
        masked = self.dump(p, "?mask=static_secrets.name,static_clusters.cluster.name")
        self.assertIn({"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                       "static_secrets": [{"name": "static_cert"}]}, masked)
        self.assertIn({"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                       "static_clusters": [{"cluster": {
                           "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                           "name": "app"}}]}, masked)
        r, body = p.admin("/config_dump?resource=no_such_field")
        self.assertEqual(r.status, 404, body)


class RecordingSocket(ssl.SSLSocket):
    """A test upstream's TLS socket that records the client certificate of each handshake."""
    seen = []

    def do_handshake(self, *args, **kwargs):
        super().do_handshake(*args, **kwargs)
        cert_ = self.getpeercert()
        RecordingSocket.seen.append(dict(x[0] for x in cert_["subject"])["commonName"]
                                    if cert_ else None)


class SdsUpstreamTest(harness.unittest.TestCase):
    def test_client_certificate_from_sds_rotates(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert("server.pem"), cert("server.key"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cert("ca.pem"))
        ctx.sslsocket_class = RecordingSocket
        RecordingSocket.seen = []
        up = Upstream("tls-app", tls=ctx)
        d = tempfile.mkdtemp(prefix="sluice-sds-up-")
        secret = harness.DiscoveryFile(d, "client_cert.yaml", SECRET_TYPE)
        secret.write([cert_secret("client_cert", "client")], version="1")
        tls_ctx = {"@type": TLS_TYPE + "UpstreamTlsContext", "sni": "upstream.test",
                   "common_tls_context": {
                       "tls_certificate_sds_secret_configs": [sds("client_cert", secret.path)],
                       "validation_context": {"trusted_ca": {"filename": cert("ca.pem")}}}}
        # One request per upstream connection: each request is a new handshake.
        c = cluster("secure", up.port,
                    transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": tls_ctx},
                    typed_extension_protocol_options={
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "common_http_protocol_options": {"max_requests_per_connection": 1},
                            "explicit_http_config": {"http_protocol_options": {}}}})
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]), [c])
        with Proxy(cfg) as p:
            r, body = p.request("GET", "/one")
            self.assertEqual(r.status, 200, body)
            self.assertEqual(RecordingSocket.seen[-1], "client")
            # A client certificate from a CA the upstream does not trust: refused upstream.
            secret.write([cert_secret("client_cert", "untrusted_client")], version="2")
            wait_until(lambda: p.request("GET", "/two")[0].status == 503,
                       what="the untrusted client certificate in use")
            # And one it trusts, with another name.
            secret.write([cert_secret("client_cert", "client2")], version="3")
            wait_until(lambda: p.request("GET", "/three")[0].status == 200,
                       what="the rotated client certificate in use")
            self.assertEqual(RecordingSocket.seen[-1], "client2")
            self.assertEqual(p.stat("sds.client_cert.update_success"), 3)
            self.assertGreaterEqual(p.stat("cluster.secure.ssl.handshake"), 2)
            p.stop()
        up.close()


if __name__ == "__main__":
    harness.main()
