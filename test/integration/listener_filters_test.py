"""Listener filters end to end: envoy.filters.listener.proxy_protocol (v1 and v2 headers from
a real socket; the connection's remote address becomes the header's) and
envoy.filters.listener.http_inspector (filter chains chosen by application_protocols)."""

import json
import os
import socket
import struct
import subprocess
import tempfile

import harness
from harness import Proxy, bootstrap, cluster, hcm
from tcp_proxy_test import TCP_TYPE, TcpUpstream, read_all, read_line, tcp_proxy
from upstream import Upstream

PP_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"
HI_TYPE = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"


def with_listener_filters(cfg, *filters):
    cfg["static_resources"]["listeners"][0]["listener_filters"] = list(filters)
    return cfg


def proxy_protocol(**cfg):
    tc = {"@type": PP_TYPE}
    tc.update(cfg)
    return {"name": "envoy.filters.listener.proxy_protocol", "typed_config": tc}


def v2_header(src, sport, dst, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body += b"\x04\x00\x01\x00"  # a NOOP TLV, skipped
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def http_get(port, prefix=b"", path="/"):
    """A raw HTTP/1.1 GET after `prefix`; the response's status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(prefix + ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        try:
            data = read_all(s)
        except ConnectionResetError:
            data = b""  # closed with our bytes unread: a reset

    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, body


class ProxyProtocolTest(harness.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.app = Upstream("app")

    @classmethod
    def tearDownClass(cls):
        cls.app.close()

    def stat(self, p, name):
        return p.stat(name) or 0

    def http_proxy(self, **pp):
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "app"}}],
                            use_remote_address=True),
                        [cluster("app", self.app.port)])
        return with_listener_filters(cfg, proxy_protocol(**pp))

    def test_v1_header_sets_the_remote_address(self):
        with Proxy(self.http_proxy()) as p:
            status, body = http_get(p.port, b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 80\r\n")
            self.assertEqual(status, 200)
            # use_remote_address: x-forwarded-for is the connection's remote address.
            self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], "192.0.2.10")
            self.assertEqual(self.stat(p, "proxy_proto.versions.v1.found"), 1)
            p.stop()

    def test_v2_header_sets_the_remote_address(self):
        with Proxy(self.http_proxy()) as p:
            status, body = http_get(p.port, v2_header("203.0.113.7", 4000, "10.0.0.1", 443))
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], "203.0.113.7")
            self.assertEqual(self.stat(p, "proxy_proto.versions.v2.found"), 1)
            p.stop()

    def test_header_split_across_writes(self):
        # The header arrives in pieces, and the request right behind its end.
        with Proxy(self.http_proxy()) as p:
            with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(b"PROXY TCP4 192.0.2.")
                s.sendall(b"11 198.51.100.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = read_all(s)
            head, _, body = data.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], "192.0.2.11")
            p.stop()

    def test_connection_without_header_is_refused_unless_allowed(self):
        with Proxy(self.http_proxy()) as p:
            self.assertEqual(http_get(p.port), (0, b""))
            harness.wait_until(lambda: self.stat(p, "proxy_proto.not_found_disallowed") == 1,
                               what="not_found_disallowed")
            # A malformed header is an error, also closed.
            self.assertEqual(http_get(p.port, b"PROXY TCP4 nonsense\r\n"), (0, b""))
            harness.wait_until(lambda: self.stat(p, "proxy_proto.versions.v1.error") == 1,
                               what="v1 error")
            self.assertEqual(self.stat(p, "listener.127.0.0.1_%d.downstream_cx_total" % p.port), 0)
            p.stop()
        with Proxy(self.http_proxy(allow_requests_without_proxy_protocol=True)) as p:
            status, body = http_get(p.port)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], "127.0.0.1")
            status, body = http_get(p.port, b"PROXY TCP4 192.0.2.12 198.51.100.1 1 80\r\n")
            self.assertEqual(json.loads(body)["headers"]["x-forwarded-for"], "192.0.2.12")
            self.assertEqual(self.stat(p, "proxy_proto.not_found_allowed"), 1)
            p.stop()

    def test_tcp_proxy_access_log_sees_the_original_client(self):
        up = TcpUpstream("a")
        log = os.path.join(tempfile.mkdtemp(prefix="sluice-pp-log-"), "access.log")
        al = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": log, "log_format": {"text_format_source": {
                "inline_string": "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%\n"}}}}]
        cfg = with_listener_filters(tcp_proxy([cluster("a", up.port)], cluster="a", access_log=al),
                                    proxy_protocol())
        with Proxy(cfg) as p:
            with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
                s.sendall(v2_header("203.0.113.9", 5555, "10.1.2.3", 8443) + b"payload")
                self.assertEqual(read_line(s), b"a\n")
                s.shutdown(socket.SHUT_WR)
                # The header was consumed: the upstream got only the payload.
                self.assertEqual(read_all(s), b"payloadend 7\n")

            def lines():
                try:
                    with open(log) as f:
                        return f.read().splitlines()
                except FileNotFoundError:
                    return []
            harness.wait_until(lambda: lines(), what="access log line")
            self.assertEqual(lines()[0], "203.0.113.9:5555 10.1.2.3:8443")
            p.stop()
        up.close()


class HttpInspectorTest(harness.unittest.TestCase):
    def test_chain_by_application_protocol(self):
        up = TcpUpstream("raw")

        def direct(body):
            return {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                 "typed_config": hcm([{"match": {"prefix": "/"}, "direct_response": {
                                     "status": 200, "body": {"inline_string": body}}}])}]}
        h1 = direct("chain-h1")
        h1["filter_chain_match"] = {"application_protocols": ["http/1.1", "http/1.0"]}
        h2 = direct("chain-h2c")
        h2["filter_chain_match"] = {"application_protocols": ["h2c"]}
        raw = {"filters": [{"name": "envoy.filters.network.tcp_proxy",
                            "typed_config": {"@type": TCP_TYPE, "stat_prefix": "raw", "cluster": "raw"}}]}
        cfg = tcp_proxy([cluster("raw", up.port)], cluster="raw")
        cfg["static_resources"]["listeners"][0]["filter_chains"] = [h1, h2, raw]
        with_listener_filters(cfg, {"name": "envoy.filters.listener.http_inspector",
                                    "typed_config": {"@type": HI_TYPE}})
        with Proxy(cfg) as p:
            self.assertEqual(http_get(p.port), (200, b"chain-h1"))
            r = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                "http://127.0.0.1:%d/" % p.port],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.stdout, "chain-h2c", r.stderr)
            with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
                s.sendall(b"hello there, not http\n")
                self.assertEqual(read_line(s), b"raw\n")
            self.assertEqual(p.stat("tcp.raw.downstream_cx_total"), 1)
            p.stop()
        up.close()


if __name__ == "__main__":
    harness.main()
