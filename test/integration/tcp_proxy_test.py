"""envoy.filters.network.tcp_proxy end to end: the real binary between real sockets and
small TCP upstreams (echo, and a sink that reads only when told)."""

import hashlib
import os
import socket
import ssl
import subprocess
import tempfile
import threading

import harness
from harness import Proxy, cluster

TCP_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


class TcpUpstream:
    """A TCP server on 127.0.0.1:0. Each connection first gets "<name>\\n"; then what the
    client sends is echoed. On the client's FIN it writes "end <bytes>\\n" and closes (the
    half-close came through). With `hold`, nothing is read until release()."""

    def __init__(self, name, greet=True, hold=False):
        self.name = name
        self.greet = greet
        self.connections = 0
        self.received = 0
        self.digest = hashlib.sha256()
        self._release = threading.Event()
        if not hold:
            self._release.set()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self):
        self._release.set()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.greet:
                c.sendall(self.name.encode() + b"\n")
            self._release.wait()
            n = 0
            while True:
                data = c.recv(1 << 16)
                if not data:
                    break
                n += len(data)
                with self.lock:
                    self.received += len(data)
                    self.digest.update(data)
                if self.greet:
                    c.sendall(data)
            c.sendall(b"end %d\n" % n)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


class TlsUpstream:
    """A TLS server (the test CA's server certificate): after the handshake it writes
    "<name> <sni>\n", then echoes."""

    def __init__(self, name, certs):
        self.name = name
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(certs, "server.pem"), os.path.join(certs, "server.key"))
        self.sni = {}
        self.ctx.sni_callback = self._on_sni
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _on_sni(self, sslsock, name, ctx):
        self.sni[id(sslsock)] = name

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
            t.sendall(("%s %s\n" % (self.name, self.sni.get(id(t)))).encode())
            while True:
                data = t.recv(65536)
                if not data:
                    break
                t.sendall(data)
            t.close()
        except (OSError, ssl.SSLError):
            c.close()

    def close(self):
        self.sock.close()


def tcp_proxy(clusters, **extra):
    tp = {"@type": TCP_TYPE, "stat_prefix": "tcp_test"}
    tp.update(extra)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "listener_0",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                                                "typed_config": tp}]}],
            }],
            "clusters": clusters,
        },
    }


def connect(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
    return s


def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_all(s):
    out = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            return out
        out += chunk


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TcpProxyTest(harness.unittest.TestCase):
    def stat(self, p, name):
        return p.stat(name) or 0

    def test_bytes_both_ways_and_half_close(self):
        up = TcpUpstream("a")
        with Proxy(tcp_proxy([cluster("a", up.port)], cluster="a")) as p:
            s = connect(p)
            self.assertEqual(read_line(s), b"a\n")
            s.sendall(b"hello")
            got = b""
            while len(got) < 5:
                got += s.recv(16)
            self.assertEqual(got, b"hello")
            # Our FIN reaches the upstream, which still answers on its open side.
            s.sendall(b"more")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), b"moreend 9\n")
            s.close()
            harness.wait_until(lambda: self.stat(p, "cluster.a.upstream_cx_destroy") == 1,
                               what="upstream closed")
            self.assertEqual(self.stat(p, "tcp.tcp_test.downstream_cx_total"), 1)
            self.assertEqual(self.stat(p, "tcp.tcp_test.downstream_cx_rx_bytes_total"), 9)
            # The last bytes to the client are counted when their write completes, which can
            # come after the upstream's close is seen.
            harness.wait_until(
                lambda: self.stat(p, "tcp.tcp_test.downstream_cx_tx_bytes_total") == 2 + 9 + 6,
                what="downstream tx bytes counted")
            self.assertEqual(self.stat(p, "cluster.a.upstream_cx_total"), 1)
            self.assertEqual(self.stat(p, "cluster.a.upstream_cx_active"), 0)
            self.assertEqual(self.stat(p, "cluster.a.upstream_cx_tx_bytes_total"), 9)
            harness.wait_until(lambda: self.stat(p, "listener.127.0.0.1_%d.downstream_cx_active" % p.port) == 0,
                               what="downstream closed")
            p.stop()
        up.close()

    def test_large_transfer_with_flow_control(self):
        # The upstream reads nothing until released: the proxy's buffer toward it fills, and
        # reading from the client pauses instead of buffering 32 MiB.
        up = TcpUpstream("sink", greet=False, hold=True)
        cfg = tcp_proxy([cluster("sink", up.port, per_connection_buffer_limit_bytes=65536)],
                        cluster="sink")
        cfg["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 65536
        payload = os.urandom(1 << 20) * 32
        with Proxy(cfg) as p:
            s = connect(p)
            sender = threading.Thread(target=s.sendall, args=(payload,))
            sender.start()
            harness.wait_until(
                lambda: self.stat(p, "tcp.tcp_test.downstream_flow_control_paused_reading_total") >= 1,
                what="downstream reads paused")
            buffered = self.stat(p, "cluster.sink.upstream_cx_tx_bytes_buffered")
            self.assertLess(buffered, 1 << 20)
            up.release()
            sender.join(60)
            self.assertFalse(sender.is_alive())
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), b"end %d\n" % len(payload))
            self.assertEqual(up.digest.hexdigest(), hashlib.sha256(payload).hexdigest())
            self.assertGreaterEqual(
                self.stat(p, "tcp.tcp_test.downstream_flow_control_resumed_reading_total"), 1)
            s.close()
            p.stop()
        up.close()

    def test_large_transfer_both_ways(self):
        up = TcpUpstream("echo")
        payload = os.urandom(1 << 20) * 16
        with Proxy(tcp_proxy([cluster("echo", up.port)], cluster="echo")) as p:
            s = connect(p)
            self.assertEqual(read_line(s), b"echo\n")
            threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)),
                             daemon=True).start()
            got = read_all(s)
            self.assertEqual(len(got), len(payload) + len(b"end %d\n" % len(payload)))
            self.assertEqual(hashlib.sha256(got[:len(payload)]).hexdigest(),
                             hashlib.sha256(payload).hexdigest())
            s.close()
            p.stop()
        up.close()

    def test_idle_timeout_closes(self):
        up = TcpUpstream("a")
        with Proxy(tcp_proxy([cluster("a", up.port)], cluster="a", idle_timeout="0.3s")) as p:
            s = connect(p)
            self.assertEqual(read_line(s), b"a\n")
            s.sendall(b"x")
            self.assertEqual(s.recv(1), b"x")
            # Nothing more either way: the proxy closes both sides.
            self.assertEqual(read_all(s), b"")
            self.assertEqual(self.stat(p, "tcp.tcp_test.idle_timeout"), 1)
            harness.wait_until(lambda: self.stat(p, "cluster.a.upstream_cx_destroy") == 1,
                               what="upstream closed")
            p.stop()
        up.close()

    def test_connect_failure_is_retried_up_to_max_connect_attempts(self):
        dead = free_port()
        with Proxy(tcp_proxy([cluster("dead", dead)], cluster="dead", max_connect_attempts=3)) as p:
            s = connect(p)
            self.assertEqual(read_all(s), b"")
            s.close()
            self.assertEqual(self.stat(p, "cluster.dead.upstream_cx_connect_fail"), 3)
            self.assertEqual(self.stat(p, "cluster.dead.upstream_cx_total"), 3)
            self.assertEqual(self.stat(p, "cluster.dead.upstream_cx_connect_attempts_exceeded"), 1)
            p.stop()

    def test_a_retry_can_reach_another_host(self):
        up = TcpUpstream("alive")
        dead = free_port()
        c = cluster("mixed", dead, up.port)
        with Proxy(tcp_proxy([c], cluster="mixed", max_connect_attempts=2)) as p:
            for _ in range(6):
                s = connect(p)
                self.assertEqual(read_line(s), b"alive\n")
                s.close()
            # Round robin alternates (from a random start): a connection that met the dead
            # host first got the live one on its second attempt.
            fails = self.stat(p, "cluster.mixed.upstream_cx_connect_fail")
            self.assertGreaterEqual(fails, 1)
            self.assertLessEqual(fails, 6)
            self.assertEqual(up.connections, 6)
            self.assertEqual(self.stat(p, "cluster.mixed.upstream_cx_connect_attempts_exceeded"), 0)
            p.stop()
        up.close()

    def test_weighted_clusters(self):
        a, b = TcpUpstream("a"), TcpUpstream("b")
        cfg = tcp_proxy([cluster("a", a.port), cluster("b", b.port)],
                        weighted_clusters={"clusters": [{"name": "a", "weight": 3},
                                                        {"name": "b", "weight": 1}]})
        with Proxy(cfg) as p:
            seen = {b"a\n": 0, b"b\n": 0}
            n = 400
            for _ in range(n):
                s = connect(p)
                seen[read_line(s)] += 1
                s.close()
            # 3:1 -> 300 expected; 5 standard deviations (~8.7 each) either way.
            self.assertGreater(seen[b"a\n"], 300 - 45)
            self.assertLess(seen[b"a\n"], 300 + 45)
            self.assertEqual(seen[b"a\n"] + seen[b"b\n"], n)
            p.stop()
        a.close()
        b.close()

    def test_max_connections_circuit_breaker(self):
        up = TcpUpstream("a")
        c = cluster("a", up.port, circuit_breakers={"thresholds": [{"max_connections": 1}]})
        with Proxy(tcp_proxy([c], cluster="a")) as p:
            first = connect(p)
            self.assertEqual(read_line(first), b"a\n")
            second = connect(p)
            self.assertEqual(read_all(second), b"")
            self.assertEqual(self.stat(p, "cluster.a.upstream_cx_overflow"), 1)
            first.sendall(b"still")
            self.assertEqual(first.recv(5), b"still")
            first.close()
            p.stop()
        up.close()

    def test_unknown_cluster_closes(self):
        with Proxy(tcp_proxy([], cluster="nowhere")) as p:
            s = connect(p)
            self.assertEqual(read_all(s), b"")
            self.assertEqual(self.stat(p, "tcp.tcp_test.downstream_cx_no_route"), 1)
            p.stop()

    def test_access_log(self):
        up = TcpUpstream("a")
        log = os.path.join(tempfile.mkdtemp(prefix="sluice-tcp-log-"), "access.log")
        fmt = "%UPSTREAM_CLUSTER% %BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS% %UPSTREAM_HOST%\n"
        al = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": log, "log_format": {"text_format_source": {"inline_string": fmt}}}}]
        dead = free_port()
        cfg = tcp_proxy([cluster("a", up.port), cluster("dead", dead)], cluster="a", access_log=al)
        with Proxy(cfg) as p:
            s = connect(p)
            self.assertEqual(read_line(s), b"a\n")
            s.sendall(b"abc")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_all(s), b"abcend 3\n")
            s.close()

            def lines():
                try:
                    with open(log) as f:
                        return f.read().splitlines()
                except FileNotFoundError:
                    return []
            harness.wait_until(lambda: len(lines()) == 1, what="access log line")
            self.assertEqual(lines()[0], "a 3 11 - 127.0.0.1:%d" % up.port)
            p.stop()
        up.close()

    def test_tls_passthrough_routed_by_sni(self):
        # The proxy does not terminate TLS: tls_inspector reads the ClientHello's SNI, the
        # chain whose server_names match forwards the bytes to its cluster untouched, and the
        # client's handshake is with the upstream (verified against the test CA).
        certs = tempfile.mkdtemp(prefix="sluice-tcp-certs-")
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tls",
                                     "gen_certs.sh"), certs], check=True)
        a, b = TlsUpstream("a", certs), TlsUpstream("b", certs)

        def chain(names, cluster_name):
            return {"filter_chain_match": {"server_names": names},
                    "filters": [{"name": "envoy.filters.network.tcp_proxy",
                                 "typed_config": {"@type": TCP_TYPE, "stat_prefix": cluster_name,
                                                  "cluster": cluster_name}}]}
        cfg = tcp_proxy([cluster("a", a.port), cluster("b", b.port)], cluster="a")
        listener = cfg["static_resources"]["listeners"][0]
        listener["listener_filters"] = [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}]
        listener["filter_chains"] = [chain(["a.test"], "a"), chain(["*.b.test"], "b")]
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        ctx.check_hostname = False  # the test certificate names localhost, not a.test

        def hello(sni):
            with socket.create_connection(("127.0.0.1", p.port), timeout=20) as raw:
                with ctx.wrap_socket(raw, server_hostname=sni) as t:
                    line = read_line(t)
                    t.sendall(b"ping")
                    self.assertEqual(t.recv(4), b"ping")
                    return line

        with Proxy(cfg) as p:
            self.assertEqual(hello("a.test"), b"a a.test\n")
            self.assertEqual(hello("x.b.test"), b"b x.b.test\n")
            self.assertEqual(hello("a.test"), b"a a.test\n")
            # No chain for this name: the connection is closed before any byte goes out.
            with socket.create_connection(("127.0.0.1", p.port), timeout=20) as raw:
                with self.assertRaises((ssl.SSLError, OSError)):
                    ctx.wrap_socket(raw, server_hostname="c.test")
            self.assertEqual(self.stat(p, "tcp.a.downstream_cx_total"), 2)
            self.assertEqual(self.stat(p, "tcp.b.downstream_cx_total"), 1)
            self.assertEqual(
                self.stat(p, "listener.127.0.0.1_%d.no_filter_chain_match" % p.port), 1)
            # openssl s_client too: the certificate it verifies is the upstream's (the proxy
            # has none).
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port,
                                "-servername", "y.b.test", "-CAfile", os.path.join(certs, "ca.pem")],
                               input="", capture_output=True, text=True, timeout=30)
            self.assertIn("Verify return code: 0 (ok)", r.stdout)
            self.assertIn("subject=O = Sluice, CN = server", r.stdout)
            harness.wait_until(lambda: self.stat(p, "tcp.b.downstream_cx_total") == 2,
                               what="s_client through chain b")
            p.stop()
        a.close()
        b.close()

    def test_bad_config_is_refused_with_the_path(self):
        cfg = tcp_proxy([], cluster="a", tunneling_config={"hostname": "x"})
        path = os.path.join(tempfile.mkdtemp(prefix="sluice-tcp-cfg-"), "bad.json")
        with open(path, "w") as f:
            import json
            json.dump(cfg, f)
        r = harness.run("proxy", "--mode", "validate", "-c", path)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                      "tunneling_config", r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()
