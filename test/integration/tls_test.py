"""TLS end to end: the real binary with envoy.transport_sockets.tls on listeners and clusters,
driven by curl and openssl s_client, against HTTP and HTTPS test upstreams. The certificates
are made for this run by test/tls/gen_certs.sh (never committed keys)."""

import base64
import hashlib
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm
from upstream import Upstream

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS = None

TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."


def setUpModule():
    global CERTS
    CERTS = tempfile.mkdtemp(prefix="sluice-tls-certs-")
    subprocess.run([os.path.join(HERE, "..", "tls", "gen_certs.sh"), CERTS], check=True)


def cert(name):
    return os.path.join(CERTS, name)


def read(name):
    with open(cert(name)) as f:
        return f.read()


def downstream_tls(**common_extra):
    common = {
        "tls_certificates": [{"certificate_chain": {"filename": cert("server.pem")},
                              "private_key": {"filename": cert("server.key")}}],
        "alpn_protocols": ["http/1.1"],
    }
    common.update(common_extra)
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": TLS_TYPE + "DownstreamTlsContext", "common_tls_context": common}}


def ticket_keys(n):
    return {"keys": [{"inline_bytes": base64.b64encode(os.urandom(80)).decode()}
                     for _ in range(n)]}


SESSION_CLIENT = None  # one client context: Python resumes a session only on its own


def session_from(port, session=None):
    """A request over a new TLS connection: (the session it leaves, whether it resumed)."""
    global SESSION_CLIENT
    if SESSION_CLIENT is None:
        SESSION_CLIENT = ssl.create_default_context(cafile=cert("ca.pem"))
    ctx = SESSION_CLIENT
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(4096):  # the whole response: a TLS 1.3 ticket comes after it
                pass
            return s.session, s.session_reused


def with_tickets(**extra):
    """A TLS proxy whose DownstreamTlsContext has `extra` (session resumption settings)."""
    t = downstream_tls()
    t["typed_config"].update(extra)
    return tls_proxy(t)


def tls_proxy(transport_socket, clusters=None, secrets=None, **hcm_extra):
    cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}], **hcm_extra),
                    clusters or [cluster("app", TlsTest.app.port)])
    cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = transport_socket
    if secrets:
        cfg["static_resources"]["secrets"] = secrets
    return cfg


def curl(port, *args, path="/hello"):
    """curl over HTTPS to localhost:port trusting the test CA; (exit code, status, body)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", cert("ca.pem"),
                        "-o", "-", "-w", "\n%{http_code}", *args,
                        "https://localhost:%d%s" % (port, path)],
                       capture_output=True, text=True, timeout=30)
    body, _, code = r.stdout.rpartition("\n")
    return r.returncode, code, body


def s_client(port, *args):
    """openssl s_client: the handshake's summary (stdout) and whether it completed."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "localhost", "-CAfile", cert("ca.pem"), *args],
                       input="", capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr, r.returncode == 0 and "Verify return code: 0 (ok)" in r.stdout


class TlsTest(harness.unittest.TestCase):
    app = None

    @classmethod
    def setUpClass(cls):
        cls.app = Upstream("app")

    def stat(self, proxy, name):
        return proxy.stat(name) or 0

    def listener_stat(self, proxy, name):
        return self.stat(proxy, "listener.127.0.0.1_%d.ssl.%s" % (proxy.port, name))

    # Downstream.

    def test_curl_https_through_the_proxy(self):
        with Proxy(tls_proxy(downstream_tls())) as p:
            rc, code, body = curl(p.port, "-H", "x-forwarded-client-cert: By=spoofed")
            self.assertEqual((rc, code), (0, "200"), body)
            self.assertEqual(json.loads(body)["path"], "/hello")
            # SANITIZE, Envoy's default: a client's own x-forwarded-client-cert is dropped.
            self.assertNotIn("x-forwarded-client-cert", json.loads(body)["headers"])
            harness.wait_until(lambda: self.listener_stat(p, "handshake") == 1, what="handshake stat")
            self.assertEqual(self.listener_stat(p, "connection_error"), 0)
            p.stop()

    def test_plain_http_to_a_tls_listener_is_refused(self):
        with Proxy(tls_proxy(downstream_tls())) as p:
            with self.assertRaises(Exception):
                p.request("GET", "/hello")
            harness.wait_until(lambda: self.listener_stat(p, "connection_error") == 1,
                               what="connection_error")
            # The listener goes on serving TLS clients.
            self.assertEqual(curl(p.port)[1], "200")
            p.stop()

    def test_curl_http2_by_alpn(self):
        # ALPN picks h2; the connection manager (codec_type AUTO) then reads the preface.
        with Proxy(tls_proxy(downstream_tls(alpn_protocols=["h2", "http/1.1"]))) as p:
            rc, code, body = curl(p.port, "--http2", "-w", "\n%{http_code} %{http_version}")
            self.assertEqual(rc, 0, body)
            self.assertEqual(code, "200 2")
            self.assertEqual(json.loads(body)["path"], "/hello")
            rc, code, body = curl(p.port, "--http1.1", "-w", "\n%{http_code} %{http_version}")
            self.assertEqual(code, "200 1.1")
            self.assertEqual(p.stat("http.ingress_http.downstream_rq_http2_total"), 1)
            self.assertEqual(p.stat("http.ingress_http.downstream_rq_http1_total"), 1)
            p.stop()

    def test_alpn(self):
        ts = downstream_tls(alpn_protocols=["h2", "http/1.1"])
        with Proxy(tls_proxy(ts)) as p:
            out, ok = s_client(p.port, "-alpn", "foo,http/1.1")
            self.assertTrue(ok, out)
            self.assertIn("ALPN protocol: http/1.1", out)
            out, ok = s_client(p.port, "-alpn", "h2,http/1.1")
            self.assertIn("ALPN protocol: h2", out)
            out, ok = s_client(p.port, "-alpn", "foo")
            self.assertTrue(ok, out)
            self.assertIn("No ALPN negotiated", out)
            p.stop()

    def test_tls_versions(self):
        only13 = downstream_tls(tls_params={"tls_minimum_protocol_version": "TLSv1_3"})
        with Proxy(tls_proxy(only13)) as p:
            out, ok = s_client(p.port, "-tls1_2")
            self.assertFalse(ok, out)
            out, ok = s_client(p.port, "-tls1_3")
            self.assertTrue(ok, out)
            self.assertIn("TLSv1.3", out)
            rc, code, _ = curl(p.port, "--tls-max", "1.2")
            self.assertNotEqual(rc, 0)
            harness.wait_until(lambda: self.listener_stat(p, "connection_error") >= 2,
                               what="connection_error")
            p.stop()
        only12 = downstream_tls(tls_params={"tls_maximum_protocol_version": "TLSv1_2",
                                            "cipher_suites": ["[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"],
                                            "ecdh_curves": ["P-256"]})
        with Proxy(tls_proxy(only12)) as p:
            out, ok = s_client(p.port, "-tls1_3")
            self.assertFalse(ok, out)
            out, ok = s_client(p.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
            self.assertTrue(ok, out)
            out, ok = s_client(p.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
            self.assertFalse(ok, out)
            p.stop()

    def test_filter_chain_by_sni_with_tls_inspector(self):
        def direct(body):
            return hcm([{"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": {"inline_string": body}}}])

        def chain(match, body, tls=True):
            c = {"filter_chain_match": match,
                 "filters": [{"name": "envoy.filters.network.http_connection_manager",
                              "typed_config": direct(body)}]}
            if tls:
                c["transport_socket"] = downstream_tls()
            return c

        cfg = bootstrap(direct("unused"), [cluster("app", TlsTest.app.port)])
        listener = cfg["static_resources"]["listeners"][0]
        listener["listener_filters"] = [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]
        listener["filter_chains"] = [
            chain({"server_names": ["a.test"]}, "chain-a"),
            chain({"server_names": ["*.b.test"]}, "chain-b"),
            chain({"transport_protocol": "tls"}, "chain-tls-default"),
            chain({}, "chain-plain", tls=False),
        ]
        with Proxy(cfg) as p:
            def get(host):
                r = subprocess.run(["curl", "-sS", "-k", "--max-time", "10", "--resolve",
                                    "%s:%d:127.0.0.1" % (host, p.port),
                                    "https://%s:%d/" % (host, p.port)],
                                   capture_output=True, text=True, timeout=30)
                return r.stdout
            self.assertEqual(get("a.test"), "chain-a")
            self.assertEqual(get("x.b.test"), "chain-b")
            self.assertEqual(get("c.test"), "chain-tls-default")
            # Plain HTTP on the same port takes the chain without TLS.
            r, body = p.request("GET", "/")
            self.assertEqual(body, b"chain-plain")
            p.stop()

    # Mutual TLS, with static secrets and inline PEM.

    def mtls_proxy(self):
        secrets = [
            {"name": "server_cert", "tls_certificate": {
                "certificate_chain": {"inline_string": read("server.pem")},
                "private_key": {"inline_string": read("server.key")}}},
            {"name": "mesh_ca", "validation_context": {
                "trusted_ca": {"filename": cert("ca.pem")},
                "crl": {"filename": cert("ca.crl")},
                "match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/ns/default/"}}]}},
        ]
        ts = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_TYPE + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificate_sds_secret_configs": [{"name": "server_cert"}],
                "validation_context_sds_secret_config": {"name": "mesh_ca"}}}}
        self.log_path = os.path.join(tempfile.mkdtemp(), "access.log")
        access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": self.log_path,
            "log_format": {"text_format_source": {"inline_string":
                "%REQ(:PATH)%|%DOWNSTREAM_TLS_VERSION%|%DOWNSTREAM_PEER_URI_SAN%|"
                "%DOWNSTREAM_LOCAL_URI_SAN%|%DOWNSTREAM_PEER_SUBJECT%\n"}}}}]
        return Proxy(tls_proxy(ts, secrets=secrets, access_log=access_log,
                               forward_client_cert_details="SANITIZE_SET",
                               set_current_client_cert_details={"subject": True, "uri": True}))

    def test_mtls_accepted_and_refused(self):
        with self.mtls_proxy() as p:
            rc, code, body = curl(p.port, "--cert", cert("client.pem"), "--key", cert("client.key"),
                                  "--tlsv1.3", path="/mtls")
            self.assertEqual((rc, code), (0, "200"), body)
            headers = json.loads(body)["headers"]
            self.assertEqual(headers["x-forwarded-proto"], "https")
            digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(read("client.pem"))).hexdigest()
            self.assertEqual(headers["x-forwarded-client-cert"],
                             'By=spiffe://cluster.local/ns/default/sa/server;Hash=%s;'
                             'Subject="CN=client,O=Sluice";'
                             'URI=spiffe://cluster.local/ns/default/sa/client' % digest)

            def logged():
                if not os.path.exists(self.log_path):
                    return None
                with open(self.log_path) as f:
                    return [l for l in f.read().splitlines() if l.startswith("/mtls|")]
            line = harness.wait_until(logged, what="access log line")[0]
            self.assertEqual(line, "/mtls|TLSv1.3|spiffe://cluster.local/ns/default/sa/client|"
                                   "spiffe://cluster.local/ns/default/sa/server|CN=client,O=Sluice")
            cases = [
                ([], "fail_verify_no_cert"),
                (["--cert", cert("untrusted_client.pem"), "--key", cert("untrusted_client.key")],
                 "fail_verify_error"),
                (["--cert", cert("client2.pem"), "--key", cert("client2.key")], "fail_verify_san"),
                (["--cert", cert("revoked.pem"), "--key", cert("revoked.key")], "fail_verify_error"),
            ]
            expected = {"fail_verify_no_cert": 0, "fail_verify_error": 0, "fail_verify_san": 0}
            for n, (args, counter) in enumerate(cases, 1):
                rc, code, _ = curl(p.port, *args)
                self.assertNotEqual(code, "200", counter)
                expected[counter] += 1
                harness.wait_until(lambda: self.listener_stat(p, "connection_error") == n,
                                   what="connection_error %d" % n)
                for k, v in expected.items():
                    self.assertEqual(self.listener_stat(p, k), v, k)
            # Refusals closed only their own connections.
            rc, code, _ = curl(p.port, "--cert", cert("client.pem"), "--key", cert("client.key"))
            self.assertEqual(code, "200")
            self.assertEqual(self.listener_stat(p, "handshake"), 2)
            # Handshake failures are not logged above debug.
            self.assertNotIn("handshake failed", p.output())
            p.stop()

    # Upstream.

    def upstream_server(self, certname="server", require_client_cert=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert(certname + ".pem"), cert(certname + ".key"))
        seen_sni = []
        ctx.sni_callback = lambda sock, name, c: seen_sni.append(name)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cert("ca.pem"))
        up = Upstream("tls-app", tls=ctx)
        return up, seen_sni

    def upstream_proxy(self, port, **upstream_tls):
        c = cluster("secure", port, transport_socket=self.upstream_tls(**upstream_tls))
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]), [c])
        return Proxy(cfg)

    def upstream_tls(self, **upstream_tls):
        ctx = {"@type": TLS_TYPE + "UpstreamTlsContext",
               "sni": "upstream.test",
               "common_tls_context": {"validation_context": {
                   "trusted_ca": {"filename": cert("ca.pem")},
                   "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "upstream.test"}}]}}}
        for k, v in upstream_tls.items():
            if k == "common":
                ctx["common_tls_context"].update(v)
            else:
                ctx[k] = v
        return {"name": "envoy.transport_sockets.tls", "typed_config": ctx}

    def test_session_resumption_by_ticket_keys_across_proxies(self):
        """Two proxies with the same session_ticket_keys resume each other's sessions; one
        with its own (OpenSSL's random) key does not; with both kinds of resumption disabled
        no session resumes, even on the same proxy."""
        keys = ticket_keys(2)

        with Proxy(with_tickets(session_ticket_keys=keys)) as a, \
                Proxy(with_tickets(session_ticket_keys=keys)) as b, \
                Proxy(with_tickets()) as own, \
                Proxy(with_tickets(disable_stateless_session_resumption=True,
                                   disable_stateful_session_resumption=True)) as none:
            session, reused = session_from(a.port)
            self.assertFalse(reused)
            self.assertTrue(session_from(b.port, session)[1], "B resumes A's session")
            self.assertFalse(session_from(own.port, session)[1], "another key: a full handshake")
            self.assertEqual(self.listener_stat(b, "session_reused"), 1)
            self.assertEqual(self.listener_stat(own, "session_reused"), 0)
            # Without keys of its own configured a proxy resumes its own sessions.
            own_session, _ = session_from(own.port)
            self.assertTrue(session_from(own.port, own_session)[1])
            none_session, _ = session_from(none.port)
            self.assertFalse(session_from(none.port, none_session)[1])
            for p in (a, b, own, none):
                p.stop()

    def test_a_session_does_not_resume_where_clients_are_verified_otherwise(self):
        """Contexts that share ticket keys open each other's tickets, but a session made
        without a client certificate must not resume on a listener that requires one."""
        keys = ticket_keys(1)
        mtls = with_tickets(session_ticket_keys=keys, require_client_certificate=True)
        mtls["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"][
            "typed_config"]["common_tls_context"]["validation_context"] = {
                "trusted_ca": {"filename": cert("ca.pem")}}
        with Proxy(with_tickets(session_ticket_keys=keys)) as open_, Proxy(mtls) as strict:
            session, _ = session_from(open_.port)
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                session_from(strict.port, session)
            self.assertEqual(self.listener_stat(strict, "session_reused"), 0)
            open_.stop()
            strict.stop()

    def test_bad_session_ticket_key_is_refused_with_the_path(self):
        t = downstream_tls()
        t["typed_config"]["session_ticket_keys"] = {"keys": [{"inline_string": "short"}]}
        path = os.path.join(tempfile.mkdtemp(prefix="sluice-tls-"), "bad.json")
        with open(path, "w") as f:
            json.dump(tls_proxy(t), f)
        r = harness.run("proxy", "--mode", "validate", "-c", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("transport_socket.typed_config.session_ticket_keys.keys[0]: must be 80 "
                      "bytes, not 5", r.stderr)

    def test_upstream_connections_resume_their_session(self):
        up, _ = self.upstream_server()
        one_request_each = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "common_http_protocol_options": {"max_requests_per_connection": 1},
            "explicit_http_config": {"http_protocol_options": {}}}}
        for keys, want in ((None, 2), (0, 0)):
            extra = {} if keys is None else {"max_session_keys": keys}
            c = cluster("secure", up.port, transport_socket=self.upstream_tls(**extra),
                        typed_extension_protocol_options=one_request_each)
            with Proxy(bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]),
                                 [c])) as p:
                for _ in range(3):  # a new upstream connection (and handshake) each
                    r, body = p.request("GET", "/")
                    self.assertEqual(r.status, 200, body)
                self.assertEqual(self.stat(p, "cluster.secure.ssl.handshake"), 3)
                self.assertEqual(self.stat(p, "cluster.secure.ssl.session_reused"), want)
                p.stop()

    def test_upstream_tls_with_sni_and_san(self):
        up, sni = self.upstream_server()
        with self.upstream_proxy(up.port) as p:
            r, body = p.request("GET", "/up")
            self.assertEqual(r.status, 200, body)
            self.assertEqual(json.loads(body)["path"], "/up")
            self.assertEqual(sni[0], "upstream.test")
            self.assertEqual(self.stat(p, "cluster.secure.ssl.handshake"), 1)
            p.stop()

    def test_http2_upstream_over_tls(self):
        # A cluster with both an UpstreamTlsContext and HTTP/2 speaks h2 inside TLS (ALPN h2):
        # here to a second sluice whose TLS listener (codec AUTO) serves HTTP/2.
        inner_cfg = tls_proxy(downstream_tls(alpn_protocols=["h2", "http/1.1"]))
        with Proxy(inner_cfg) as inner:
            ctx = {"@type": TLS_TYPE + "UpstreamTlsContext", "sni": "upstream.test",
                   "common_tls_context": {"validation_context": {
                       "trusted_ca": {"filename": cert("ca.pem")}}}}
            c = cluster("secure", inner.port,
                        transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": ctx},
                        typed_extension_protocol_options={
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                "explicit_http_config": {"http2_protocol_options": {}}}})
            with Proxy(bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]),
                                 [c])) as outer:
                for _ in range(3):
                    r, body = outer.request("GET", "/h2tls")
                    self.assertEqual(r.status, 200, body)
                    self.assertEqual(json.loads(body)["path"], "/h2tls")
                self.assertEqual(self.stat(outer, "cluster.secure.ssl.handshake"), 1)
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_http2_total"), 1)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_cx_http2_total"), 1)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_rq_http2_total"), 3)
                outer.stop()
            inner.stop()

    # auto_config: ALPN h2,http/1.1 and the protocol the upstream picked.

    def auto_cluster(self, port, **auto):
        ctx = {"@type": TLS_TYPE + "UpstreamTlsContext", "sni": "upstream.test",
               "common_tls_context": {"validation_context": {
                   "trusted_ca": {"filename": cert("ca.pem")}}}}
        return cluster("secure", port,
                       transport_socket={"name": "envoy.transport_sockets.tls", "typed_config": ctx},
                       typed_extension_protocol_options={
                           "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                               "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                               "auto_config": auto}})

    def test_auto_config_speaks_http2_to_an_upstream_that_picks_h2(self):
        # The upstream is a second sluice whose TLS listener offers h2: it picks h2 and serves
        # HTTP/2 (codec AUTO reads the preface).
        inner_cfg = tls_proxy(downstream_tls(alpn_protocols=["h2", "http/1.1"]))
        with Proxy(inner_cfg) as inner:
            c = self.auto_cluster(inner.port, http2_protocol_options={"max_concurrent_streams": 10})
            with Proxy(bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]),
                                 [c])) as outer:
                for _ in range(3):
                    r, body = outer.request("GET", "/auto2")
                    self.assertEqual(r.status, 200, body)
                    self.assertEqual(json.loads(body)["path"], "/auto2")
                # One connection (the one that negotiated) carried the three requests.
                self.assertEqual(self.stat(outer, "cluster.secure.ssl.handshake"), 1)
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_total"), 1)
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_http2_total"), 1)
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_http1_total"), 0)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_cx_http2_total"), 1)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_rq_http2_total"), 3)
                outer.stop()
            inner.stop()

    def test_auto_config_speaks_http1_to_an_upstream_that_picks_http11(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert("server.pem"), cert("server.key"))
        ctx.set_alpn_protocols(["http/1.1"])  # the upstream knows only HTTP/1.1
        up = Upstream("tls-h1", tls=ctx)
        c = self.auto_cluster(up.port)
        with Proxy(bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]),
                             [c])) as p:
            for _ in range(3):
                r, body = p.request("GET", "/auto1")
                self.assertEqual(r.status, 200, body)
                self.assertEqual(json.loads(body)["path"], "/auto1")
            self.assertEqual(up.requests, 3)
            # The negotiating connection is kept and reused (HTTP/1.1 keep-alive).
            self.assertEqual(self.stat(p, "cluster.secure.upstream_cx_total"), 1)
            self.assertEqual(self.stat(p, "cluster.secure.upstream_cx_http1_total"), 1)
            self.assertEqual(self.stat(p, "cluster.secure.upstream_cx_http2_total"), 0)
            p.stop()

    def test_auto_config_remembers_http1_for_later_connections(self):
        # An inner sluice that offers only http/1.1: the first connection negotiates it; with
        # two requests at once the second connection goes straight to the HTTP/1.1 pool.
        inner_cfg = tls_proxy(downstream_tls(alpn_protocols=["http/1.1"]))
        with Proxy(inner_cfg) as inner:
            c = self.auto_cluster(inner.port)
            with Proxy(bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "secure"}}]),
                                 [c])) as outer:
                r, body = outer.request("GET", "/first")
                self.assertEqual(r.status, 200, body)
                results = []

                def get():
                    results.append(outer.request("GET", "/slow", headers={"x-test-delay-ms": "300"})[0].status)
                threads = [threading.Thread(target=get) for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.assertEqual(results, [200, 200])
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_http1_total"), 2)
                self.assertEqual(self.stat(outer, "cluster.secure.upstream_cx_http2_total"), 0)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_cx_http2_total"), 0)
                self.assertEqual(self.stat(inner, "http.ingress_http.downstream_rq_http1_total"), 3)
                outer.stop()
            inner.stop()

    def test_auto_config_without_tls_is_refused(self):
        c = cluster("plain", 1, typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "auto_config": {}}})
        rc, err = self.validate(bootstrap(hcm([{"match": {"prefix": "/"},
                                                "route": {"cluster": "plain"}}]), [c]))
        self.assertEqual(rc, 1)
        self.assertIn("static_resources.clusters[0].typed_extension_protocol_options.auto_config: "
                      "ALPN configured for cluster 'plain' which has a non-ALPN transport socket",
                      err)

    def test_upstream_san_mismatch_is_refused(self):
        up, _ = self.upstream_server()
        bad_san = {"validation_context": {
            "trusted_ca": {"filename": cert("ca.pem")},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "other.test"}}]}}
        with self.upstream_proxy(up.port, common=bad_san) as p:
            r, body = p.request("GET", "/up")
            self.assertEqual(r.status, 503)
            self.assertGreaterEqual(self.stat(p, "cluster.secure.ssl.fail_verify_san"), 1)
            self.assertEqual(up.requests, 0)
            p.stop()

    def test_expired_upstream_certificate_is_refused(self):
        up, _ = self.upstream_server("expired")
        with self.upstream_proxy(up.port, common={"validation_context": {
                "trusted_ca": {"filename": cert("ca.pem")}}}) as p:
            r, body = p.request("GET", "/up")
            self.assertEqual(r.status, 503)
            self.assertGreaterEqual(self.stat(p, "cluster.secure.ssl.fail_verify_error"), 1)
            self.assertEqual(self.stat(p, "cluster.secure.ssl.handshake"), 0)
            p.stop()

    def test_upstream_mtls(self):
        up, _ = self.upstream_server(require_client_cert=True)
        client_cert = {"tls_certificates": [{"certificate_chain": {"filename": cert("client.pem")},
                                             "private_key": {"filename": cert("client.key")}}]}
        with self.upstream_proxy(up.port, common=client_cert) as p:
            r, body = p.request("GET", "/up")
            self.assertEqual(r.status, 200, body)
            p.stop()
        with self.upstream_proxy(up.port) as p:  # no client certificate
            r, body = p.request("GET", "/up")
            self.assertEqual(r.status, 503)
            p.stop()

    # Config refused at load, with the field's path.

    def validate(self, cfg):
        d = tempfile.mkdtemp(prefix="sluice-tls-")
        path = os.path.join(d, "envoy.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = harness.run("proxy", "--mode", "validate", "-c", path)
        return r.returncode, r.stderr

    def test_bad_config_is_refused_with_the_path(self):
        fc = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config"
        ts = downstream_tls()
        ts["typed_config"]["common_tls_context"]["tls_certificates"][0]["private_key"] = {
            "filename": "/nonexistent/key.pem"}
        rc, err = self.validate(tls_proxy(ts))
        self.assertEqual(rc, 1)
        self.assertIn(fc + ".common_tls_context.tls_certificates[0].private_key.filename: cannot read", err)

        ts = downstream_tls()
        ts["typed_config"]["common_tls_context"]["tls_certificates"][0]["private_key"] = {
            "filename": cert("client.key")}
        rc, err = self.validate(tls_proxy(ts))
        self.assertIn(fc + ".common_tls_context.tls_certificates[0].private_key: does not match", err)

        ts = downstream_tls()
        ts["typed_config"]["common_tls_context"]["tls_certificates"][0]["certificate_chain"] = {
            "inline_string": "garbage"}
        rc, err = self.validate(tls_proxy(ts))
        self.assertIn(fc + ".common_tls_context.tls_certificates[0].certificate_chain: no PEM", err)

        ts = downstream_tls()
        ts["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"] = [{"name": "nope"}]
        del ts["typed_config"]["common_tls_context"]["tls_certificates"]
        rc, err = self.validate(tls_proxy(ts))
        self.assertIn(fc + ".common_tls_context.tls_certificate_sds_secret_configs[0].name: unknown secret 'nope'", err)

        ts = downstream_tls()
        ts["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"] = [
            {"name": "x", "sds_config": {"path_config_source": {"path": "/tmp/x.yaml"}}}]
        del ts["typed_config"]["common_tls_context"]["tls_certificates"]
        rc, err = self.validate(tls_proxy(ts))
        self.assertEqual(rc, 1)
        self.assertIn("sds_config", err)

        ok_rc, ok_err = self.validate(tls_proxy(downstream_tls()))
        self.assertEqual(ok_rc, 0, ok_err)


if __name__ == "__main__":
    harness.main()
