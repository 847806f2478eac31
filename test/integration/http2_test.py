"""HTTP/2 end to end: h2c with prior knowledge (curl, nghttp, h2load) into sluice, AUTO
serving HTTP/1.1 and HTTP/2 on one port, an HTTP/2 upstream (a second sluice answering with
direct responses, and a python gRPC server), trailers, large bodies both ways, and gRPC
unary and streaming calls through the proxy."""

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream


def catch_all(cluster_name="u", **action):
    a = {"cluster": cluster_name}
    a.update(action)
    return [{"match": {"prefix": "/"}, "route": a}]


def h2_cluster(name, port, **h2_options):
    return cluster(name, port, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": h2_options}}})


def with_idle_timeout(h2, timeout):
    """The h2_cluster `h2` with the upstream connections' idle_timeout set."""
    h2["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "common_http_protocol_options"] = {"idle_timeout": timeout}
    return h2


def curl(*args, timeout=60):
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)
    return r


def h2load(url, *args):
    r = subprocess.run(["h2load", *args, url], capture_output=True, text=True, timeout=120)
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", r.stdout)
    assert m, r.stdout + r.stderr
    status = re.search(r"status codes: (\d+) 2xx", r.stdout)
    return [int(x) for x in m.groups()], int(status.group(1)) if status else 0, r.stdout


class Http2DownstreamTest(harness.unittest.TestCase):
    def setUp(self):
        self.u = Upstream("u")
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.u.close()

    def start(self, routes=None, **hcm_extra):
        self.proxy = Proxy(bootstrap(hcm(routes or catch_all(), **hcm_extra),
                                     [cluster("u", self.u.port)]))
        return self.proxy

    def test_prior_knowledge_request_reaches_an_http1_upstream(self):
        p = self.start(codec_type="HTTP2")
        r = curl("--http2-prior-knowledge", "-D", "-", "-H", "x-hello: h2",
                 "http://127.0.0.1:%d/some/path?q=1" % p.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/2 200"), head)
        echo = json.loads(body)
        self.assertEqual(echo["path"], "/some/path?q=1")
        self.assertEqual(echo["headers"]["x-hello"], "h2")
        self.assertEqual(echo["headers"]["host"], "127.0.0.1:%d" % p.port)
        self.assertEqual(echo["headers"]["x-forwarded-proto"], "http")
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_http2_total"), 1)
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_http2_total"), 1)

    def test_auto_serves_http1_and_http2_on_one_port(self):
        p = self.start()  # codec_type defaults to AUTO
        h2 = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
                  "http://127.0.0.1:%d/a" % p.port)
        h1 = curl("--http1.1", "-o", "/dev/null", "-w", "%{http_version}",
                  "http://127.0.0.1:%d/b" % p.port)
        self.assertEqual((h2.stdout, h1.stdout), (b"2", b"1.1"), h2.stderr + h1.stderr)
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_http2_total"), 1)
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_http1_total"), 1)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_2xx"), 2)

    def test_many_concurrent_streams_with_nghttp(self):
        p = self.start(codec_type="AUTO")
        r = subprocess.run(["nghttp", "-ns", "-m", "100", "http://127.0.0.1:%d/m" % p.port],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_2xx"), 100)
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_http2_total"), 1)

    def test_h2load_thousand_requests_no_failures(self):
        direct = [{"match": {"prefix": "/"},
                   "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]
        p = self.start(direct, codec_type="HTTP2")
        counts, ok, out = h2load("http://127.0.0.1:%d/load" % p.port, "-n", "1000", "-c", "4",
                                 "-m", "20")
        self.assertEqual(counts[:5], [1000, 1000, 1000, 1000, 0], out)
        self.assertEqual(ok, 1000, out)

    def test_large_bodies_both_ways(self):
        p = self.start(codec_type="HTTP2")
        with tempfile.NamedTemporaryFile() as f:
            f.write(os.urandom(5 * 1024 * 1024))
            f.flush()
            r = curl("--http2-prior-knowledge", "--data-binary", "@" + f.name,
                     "http://127.0.0.1:%d/up" % p.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["body_len"], 5 * 1024 * 1024)
        r = curl("--http2-prior-knowledge", "-H", "x-test-body-size: 7000000",
                 "http://127.0.0.1:%d/down" % p.port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 7000000)
        self.assertEqual(r.stdout[:3], bytes([0, 7, 14]))

    def test_http2_protocol_options_are_advertised(self):
        p = self.start(codec_type="HTTP2", http2_protocol_options={
            "max_concurrent_streams": 7, "initial_stream_window_size": 131072,
            "initial_connection_window_size": 1048576})
        r = subprocess.run(["nghttp", "-nv", "http://127.0.0.1:%d/s" % p.port],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7", r.stdout)
        self.assertIn("SETTINGS_INITIAL_WINDOW_SIZE(0x04):131072", r.stdout)
        # The connection window grows to 1 MiB: a WINDOW_UPDATE on stream 0 of the difference.
        self.assertRegex(r.stdout, r"WINDOW_UPDATE frame <length=4, flags=0x00, stream_id=0>\s+"
                                   r"\(window_size_increment=983041\)")

    def test_drain_sends_goaway_and_lets_the_stream_finish(self):
        p = self.start(codec_type="HTTP2")
        client = subprocess.Popen(["nghttp", "-nv", "-H", "x-test-delay-ms: 800",
                                   "http://127.0.0.1:%d/slow" % p.port],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: self.u.requests >= 1, what="the request at the upstream")
        p.proc.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=30)
        self.assertEqual(client.returncode, 0, out)
        self.assertRegex(out, r"recv GOAWAY frame <length=8, flags=0x00, stream_id=0>\s+"
                              r"\(last_stream_id=13, error_code=NO_ERROR")
        self.assertIn(":status: 200", out)

    def test_the_last_response_before_a_drain_close_arrives_whole(self):
        # max_requests_per_connection 1: the connection drains after its first stream. The
        # response is far over the client's 64 KiB windows, so when the stream's end has
        # been handed to the codec most of it still waits in nghttp2 for WINDOW_UPDATEs; the
        # connection closes only when all of it has been sent.
        p = self.start(codec_type="HTTP2",
                       common_http_protocol_options={"max_requests_per_connection": 1})
        r = subprocess.run(["nghttp", "-w", "16", "-W", "16", "-H", "x-test-body-size: 3000000",
                            "http://127.0.0.1:%d/down" % p.port],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 3000000, r.stderr)
        self.assertEqual(r.stdout[:3], bytes([0, 7, 14]))
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_max_requests_reached"), 1)

    def test_bad_http2_protocol_options_are_refused_with_the_path(self):
        cfg = bootstrap(hcm(catch_all(), http2_protocol_options={"initial_stream_window_size": 100}),
                        [cluster("u", self.u.port)])
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(cfg, f)
            f.flush()
            r = harness.run("proxy", "-c", f.name, "--mode", "validate")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("typed_config.http2_protocol_options.initial_stream_window_size: value must "
                      "be inside range [65535, 2147483647]", r.stdout + r.stderr)


class RawH2:
    """A hand-built HTTP/2 client on a raw socket, for peers that misbehave on purpose: it
    answers nothing (no PING ACK, no WINDOW_UPDATE) unless told to."""

    def __init__(self, port, settings=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        payload = b"".join(ident.to_bytes(2, "big") + value.to_bytes(4, "big")
                           for ident, value in settings)
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(4, 0, 0, payload))

    @staticmethod
    def frame(ftype, flags, stream, payload=b""):
        return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
                stream.to_bytes(4, "big") + payload)

    def send(self, ftype, flags, stream, payload=b""):
        self.sock.sendall(self.frame(ftype, flags, stream, payload))

    def get(self, stream, path):
        # HPACK without the dynamic table: literal, never indexed, new names.
        def lit(name, value):
            return b"\x10" + bytes([len(name)]) + name + bytes([len(value)]) + value
        block = (lit(b":method", b"GET") + lit(b":scheme", b"http") +
                 lit(b":authority", b"example.com") + lit(b":path", path.encode()))
        self.send(1, 0x5, stream, block)  # HEADERS, END_STREAM | END_HEADERS

    def read_frame(self):
        """(type, flags, stream, payload), or None once the peer closed the connection."""
        while True:
            if len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + n:
                    f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                         self.buf[9:9 + n])
                    self.buf = self.buf[9 + n:]
                    return f
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data

    def close(self):
        self.sock.close()


class BigBodyUpstream:
    """An HTTP/1.1 upstream that answers every request with a `size`-byte body, written as
    fast as the proxy reads it; `sent` counts the body bytes the socket took."""

    def __init__(self, size):
        self.size = size
        self.sent = 0
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        chunk = b"x" * (256 * 1024)
        try:
            while True:
                req = b""
                while b"\r\n\r\n" not in req:
                    data = conn.recv(65536)
                    if not data:
                        return
                    req += data
                size = self.size if b"/big" in req.split(b"\r\n", 1)[0] else 2
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
                left = size
                while left > 0:
                    n = conn.send(chunk[:min(left, len(chunk))])
                    left -= n
                    with self.lock:
                        self.sent += n
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.listener.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Http2PeerTest(harness.unittest.TestCase):
    """Downstream HTTP/2 peers that do not keep their side: no PING ACK, a window never opened."""

    def setUp(self):
        self.u = Upstream("u")
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.u.close()

    def test_a_peer_that_never_acks_a_keepalive_ping_is_closed(self):
        keepalive = {"interval": "0.2s", "timeout": "0.3s"}
        self.proxy = Proxy(bootstrap(hcm(catch_all(), codec_type="HTTP2", http2_protocol_options={
            "connection_keepalive": keepalive}), [cluster("u", self.u.port)]))
        c = RawH2(self.proxy.port)
        pings = 0
        while True:
            f = c.read_frame()
            if f is None:
                break
            if f[0] == 6 and not f[1] & 1:
                pings += 1  # and no ACK goes back
        c.close()
        self.assertEqual(pings, 1)
        wait_until(lambda: self.proxy.stat("http2.keepalive_timeout") == 1, what="keepalive_timeout")
        # A client that answers keeps its connection across several intervals.
        ok = RawH2(self.proxy.port)
        acked = 0
        while acked < 4:
            f = ok.read_frame()
            self.assertIsNotNone(f, "closed though every PING was answered")
            if f[0] == 6 and not f[1] & 1:
                ok.send(6, 1, 0, f[3])
                acked += 1
        ok.get(1, "/still-here")
        while True:
            f = ok.read_frame()
            self.assertIsNotNone(f)
            if f[0] == 1 and f[2] == 1:
                break
        ok.close()
        self.assertEqual(self.proxy.stat("http2.keepalive_timeout"), 1)

    def test_zero_window_client_stays_bounded_and_is_timed_out(self):
        # The client opens streams with SETTINGS_INITIAL_WINDOW_SIZE 0 and never sends a
        # WINDOW_UPDATE while the upstream sends large bodies: the proxy must not buffer them
        # (the upstream reads pause at the buffer limit), must keep serving others, and
        # stream_idle_timeout ends the stalled streams.
        body = 256 * 1024 * 1024
        streams = 8
        up = BigBodyUpstream(body)
        self.addCleanup(up.close)
        self.proxy = Proxy(bootstrap(hcm(catch_all(), codec_type="AUTO", stream_idle_timeout="2s"),
                                     [cluster("u", up.port)]))
        pid = self.proxy.proc.pid
        self.assertEqual(self.proxy.request("GET", "/warm")[0].status, 200)
        before = rss_kb(pid)
        c = RawH2(self.proxy.port, settings=[(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE 0
        for i in range(streams):
            c.get(1 + 2 * i, "/big%d" % i)
        headers, data, resets = set(), 0, {}
        c.sock.settimeout(30)
        # Response headers arrive (HEADERS are not flow controlled), DATA cannot.
        while len(headers) < streams:
            f = c.read_frame()
            self.assertIsNotNone(f)
            if f[0] == 1:
                headers.add(f[2])
            elif f[0] == 0:
                data += len(f[3])
        # While stalled: others are served, and what the proxy read is bounded: the reads
        # stop at the buffer limits (1 MiB a connection) and the upstream's sends stall.
        r, b = self.proxy.request("GET", "/other")
        self.assertEqual(r.status, 200)
        wait_until(lambda: self.proxy.stat("cluster.u.upstream_cx_rx_bytes_total") > streams * 1024 * 1024,
                   what="the upstream's bodies began")
        rx = self.proxy.stat("cluster.u.upstream_cx_rx_bytes_total")
        self.assertLess(rx, streams * 4 * 1024 * 1024, "the proxy kept reading the upstream")
        self.assertLess(up.sent, streams * 16 * 1024 * 1024, "the upstream was not paused")
        grown = rss_kb(pid) - before
        self.assertLess(grown, 100 * 1024, "RSS grew by %d kB" % grown)
        # stream_idle_timeout resets every stalled stream (the response began: RST_STREAM).
        while len(resets) < streams:
            f = c.read_frame()
            self.assertIsNotNone(f, "connection closed before the streams were reset")
            if f[0] == 3:
                resets[f[2]] = int.from_bytes(f[3], "big")
            elif f[0] == 0:
                data += len(f[3])
        self.assertEqual(data, 0)
        self.assertEqual(self.proxy.stat("http.ingress_http.downstream_rq_idle_timeout"), streams)
        self.assertLess(rss_kb(pid) - before, 100 * 1024)
        c.close()


class Http2UpstreamTest(harness.unittest.TestCase):
    """sluice in front of a second sluice that speaks HTTP/2 only: it answers /direct itself
    and passes the rest to an HTTP/1.1 test upstream."""

    def setUp(self):
        self.u = Upstream("u")
        routes = [{"match": {"prefix": "/direct"},
                   "direct_response": {"status": 200, "body": {"inline_string": "from-h2"}}},
                  {"match": {"prefix": "/"}, "route": {"cluster": "u"}}]
        self.back = Proxy(bootstrap(hcm(routes, codec_type="HTTP2"), [cluster("u", self.u.port)]))
        self.front = Proxy(bootstrap(hcm(catch_all("h2")),
                                     [h2_cluster("h2", self.back.port, max_concurrent_streams=50)]))

    def tearDown(self):
        self.front.stop()
        self.back.stop()
        self.u.close()

    def test_http1_and_http2_clients_through_an_http2_upstream(self):
        r = curl("--http1.1", "http://127.0.0.1:%d/direct" % self.front.port)
        self.assertEqual(r.stdout, b"from-h2", r.stderr)
        r = curl("--http2-prior-knowledge", "-H", "x-test-body-size: 3000000",
                 "http://127.0.0.1:%d/big" % self.front.port)
        self.assertEqual(len(r.stdout), 3000000, r.stderr)
        self.assertEqual(r.stdout[:3], bytes([0, 7, 14]))
        with tempfile.NamedTemporaryFile() as f:
            f.write(os.urandom(2 * 1024 * 1024))
            f.flush()
            r = curl("--http1.1", "--data-binary", "@" + f.name,
                     "http://127.0.0.1:%d/up" % self.front.port)
        echo = json.loads(r.stdout)
        self.assertEqual(echo["body_len"], 2 * 1024 * 1024)
        self.assertEqual(echo["path"], "/up")
        self.assertEqual(self.front.stat("cluster.h2.upstream_cx_http2_total"), 1)
        self.assertEqual(self.back.stat("http.ingress_http.downstream_rq_http2_total"), 3)

    def test_many_streams_share_few_connections(self):
        counts, ok, out = h2load("http://127.0.0.1:%d/direct" % self.front.port, "-n", "1000",
                                 "-c", "4", "-m", "20")
        self.assertEqual(counts[:5], [1000, 1000, 1000, 1000, 0], out)
        self.assertEqual(ok, 1000, out)
        # 80 streams at most in flight, 50 per upstream connection: a handful of connections.
        cx = self.front.stat("cluster.h2.upstream_cx_http2_total")
        self.assertGreaterEqual(cx, 1)
        self.assertLessEqual(cx, 4)
        self.assertEqual(self.back.stat("http.ingress_http.downstream_rq_http2_total"), 1000)
        self.assertLessEqual(self.back.stat("http.ingress_http.downstream_cx_http2_total"), 4)

    def test_idle_timeout_closes_pooled_http2_connections(self):
        c = with_idle_timeout(h2_cluster("h2", self.back.port), "0.2s")
        front = Proxy(bootstrap(hcm(catch_all("h2")), [c]))
        try:
            url = "http://127.0.0.1:%d/direct" % front.port
            self.assertEqual(curl(url).stdout, b"from-h2")
            wait_until(lambda: front.stat("cluster.h2.upstream_cx_idle_timeout") == 1,
                       what="the idle timeout")
            self.assertEqual(front.stat("cluster.h2.upstream_cx_active"), 0)
            self.assertEqual(curl(url).stdout, b"from-h2")
            self.assertEqual(front.stat("cluster.h2.upstream_cx_http2_total"), 2)
        finally:
            front.stop()


    def test_an_idle_connection_times_out_while_another_carries_streams(self):
        # One stream per connection, so a slow request holds connection A while a second
        # request opens B and leaves it idle. Then requests keep A busy: each lands on A (the
        # first with room) and its end must not restart B's idle timer. (Margins: the slow
        # request leaves 1 s for B to open, and B falls due 0.5 s after A is free.)
        c = with_idle_timeout(h2_cluster("h2", self.back.port, max_concurrent_streams=1), "1.5s")
        front = Proxy(bootstrap(hcm(catch_all("h2")), [c]))
        slow = None
        try:
            base = "http://127.0.0.1:%d" % front.port
            slow = subprocess.Popen(["curl", "-sS", "-H", "x-test-delay-ms: 1000", base + "/slow"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_until(lambda: front.stat("cluster.h2.upstream_rq_active") == 1,
                       what="the slow request on the first connection")
            self.assertEqual(curl(base + "/direct").stdout, b"from-h2")  # opens B
            self.assertEqual(front.stat("cluster.h2.upstream_cx_http2_total"), 2)
            slow.communicate(timeout=30)
            self.assertEqual(slow.returncode, 0)
            sent = 0

            def busy_until_b_times_out():
                nonlocal sent
                self.assertEqual(curl(base + "/direct").stdout, b"from-h2")
                sent += 1
                return front.stat("cluster.h2.upstream_cx_idle_timeout") >= 1

            wait_until(busy_until_b_times_out, timeout=10, what="B's idle timeout")
            self.assertGreater(sent, 1)
            # B alone timed out; A carried every one of them and is still open.
            self.assertEqual(front.stat("cluster.h2.upstream_cx_idle_timeout"), 1)
            self.assertEqual(front.stat("cluster.h2.upstream_cx_active"), 1)
            self.assertEqual(front.stat("cluster.h2.upstream_cx_http2_total"), 2)
        finally:
            if slow is not None and slow.poll() is None:
                slow.kill()
                slow.communicate()
            front.stop()

GRPC_SERVER = r'''
import sys, grpc
from concurrent import futures

def unary(request, context):
    if request == b"fail":
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
    context.set_trailing_metadata((("x-trailer", "t1"),))
    return b"echo:" + request

def server_stream(request, context):
    for i in range(int(request)):
        yield b"m%d:" % i + b"z" * 100000

def client_stream(it, context):
    return b"%d" % sum(len(m) for m in it)

def bidi(it, context):
    for m in it:
        yield m[::-1]

ident = lambda b: b
handlers = {
    "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("listening on %d" % port, flush=True)
server.wait_for_termination()
'''


class GrpcTest(harness.unittest.TestCase):
    """A python gRPC server behind sluice (HTTP/2 both sides), a python gRPC client."""

    @classmethod
    def setUpClass(cls):
        import grpc  # Debian's python3-grpcio
        cls.grpc = grpc
        cls.server = subprocess.Popen(["/usr/bin/python3", "-c", GRPC_SERVER],
                                      stdout=subprocess.PIPE, text=True)
        cls.server_port = int(re.search(r"listening on (\d+)", cls.server.stdout.readline()).group(1))
        cls.proxy = Proxy(bootstrap(hcm(catch_all("grpc")), [h2_cluster("grpc", cls.server_port)]))
        cls.channel = grpc.insecure_channel("127.0.0.1:%d" % cls.proxy.port)
        ident = lambda b: b
        cls.unary = cls.channel.unary_unary("/test.Echo/Unary", ident, ident)
        cls.server_stream = cls.channel.unary_stream("/test.Echo/ServerStream", ident, ident)
        cls.client_stream = cls.channel.stream_unary("/test.Echo/ClientStream", ident, ident)
        cls.bidi = cls.channel.stream_stream("/test.Echo/Bidi", ident, ident)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proxy.stop()
        cls.server.kill()
        cls.server.wait()

    def test_unary_with_trailers(self):
        resp, call = self.unary.with_call(b"hello", timeout=10)
        self.assertEqual(resp, b"echo:hello")
        self.assertEqual(call.code(), self.grpc.StatusCode.OK)
        self.assertIn(("x-trailer", "t1"), tuple(call.trailing_metadata()))

    def test_error_status_and_message_pass_through(self):
        with self.assertRaises(self.grpc.RpcError) as e:
            self.unary(b"fail", timeout=10)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(e.exception.details(), "asked to fail")

    def test_server_streaming_large_messages(self):
        msgs = list(self.server_stream(b"50", timeout=30))
        self.assertEqual(len(msgs), 50)
        self.assertTrue(all(m.startswith(b"m%d:" % i) and len(m) > 100000
                            for i, m in enumerate(msgs)))

    def test_client_streaming(self):
        resp = self.client_stream(iter([b"a" * 1000] * 300), timeout=30)
        self.assertEqual(resp, b"300000")

    def test_bidi_streaming(self):
        out = list(self.bidi(iter([b"abc", b"hello", b"xyz" * 1000]), timeout=30))
        self.assertEqual(out, [b"cba", b"olleh", (b"xyz" * 1000)[::-1]])

    def test_many_concurrent_calls(self):
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
            results = list(ex.map(lambda i: self.unary(b"%d" % i, timeout=30), range(200)))
        self.assertEqual(results, [b"echo:%d" % i for i in range(200)])


if __name__ == "__main__":
    harness.main()
