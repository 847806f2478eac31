"""`sluice proxy` end to end: real configs, a real test upstream, real clients."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import Proxy, bootstrap, cluster, hcm
from upstream import Upstream


def route(match, **action):
    r = {"match": match}
    r.update(action)
    return r


class ProxyTest(harness.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Upstream("a")
        cls.b = Upstream("b")
        routes = [
            route({"path": "/exact"}, route={"cluster": "b"}),
            route({"prefix": "/hdr", "headers": [{"name": "x-version", "string_match": {"exact": "v2"}}]},
                  route={"cluster": "b"}),
            route({"prefix": "/query", "query_parameters": [{"name": "canary", "string_match": {"exact": "yes"}}]},
                  route={"cluster": "b"}),
            route({"safe_regex": {"regex": "/re/[0-9]+"}}, route={"cluster": "b"}),
            route({"prefix": "/rewrite/"}, route={"cluster": "a", "prefix_rewrite": "/new/"}),
            route({"prefix": "/direct"}, direct_response={"status": 418, "body": {"inline_string": "teapot"}}),
            route({"prefix": "/redirect"}, redirect={"host_redirect": "example.com", "path_redirect": "/moved"}),
            route({"prefix": "/weighted"}, route={"weighted_clusters": {"clusters": [
                {"name": "a", "weight": 75}, {"name": "b", "weight": 25}]}}),
            route({"prefix": "/slow"}, route={"cluster": "a", "timeout": "0.3s"}),
            # The longest Duration there is: a timeout meant as "never".
            route({"prefix": "/forever"}, route={"cluster": "a", "timeout": "315576000000s"}),
            route({"prefix": "/dead"}, route={"cluster": "dead"}),
            route({"prefix": "/hdrs"}, route={"cluster": "a"},
                  request_headers_to_add=[{"header": {"key": "x-added", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}],
                  response_headers_to_add=[{"header": {"key": "x-resp", "value": "yes"}}],
                  response_headers_to_remove=["x-upstream"]),
            route({"prefix": "/"}, route={"cluster": "a"}),
        ]
        cls.log_path = os.path.join(harness.tempfile.mkdtemp(), "access.log")
        # A port nobody listens on, for connect failures.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
        s.close()
        config = bootstrap(
            # A long delayed close: a client that waited for it would time out (see
            # test_connection_close_ends_with_the_proxys_fin).
            hcm(routes, upgrade_configs=[{"upgrade_type": "websocket"}], delayed_close_timeout="30s",
                access_log=[{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": cls.log_path}}]),
            [cluster("a", cls.a.port), cluster("b", cls.b.port), cluster("dead", dead_port)])
        cls.proxy = Proxy(config)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.a.close()
        cls.b.close()

    def get(self, path, headers=None):
        r, data = self.proxy.request("GET", path, headers)
        return r, data

    def echo(self, path, headers=None):
        r, data = self.get(path, headers)
        self.assertEqual(r.status, 200, data)
        return json.loads(data)

    def test_prefix_routes_to_a(self):
        e = self.echo("/anything?x=1")
        self.assertEqual(e["upstream"], "a")
        self.assertEqual(e["path"], "/anything?x=1")

    def test_exact_path(self):
        self.assertEqual(self.echo("/exact")["upstream"], "b")
        self.assertEqual(self.echo("/exact/more")["upstream"], "a")

    def test_header_match(self):
        self.assertEqual(self.echo("/hdr", {"x-version": "v2"})["upstream"], "b")
        self.assertEqual(self.echo("/hdr", {"x-version": "v1"})["upstream"], "a")

    def test_query_parameter_match(self):
        self.assertEqual(self.echo("/query?canary=yes")["upstream"], "b")
        self.assertEqual(self.echo("/query?canary=no")["upstream"], "a")

    def test_regex_match(self):
        self.assertEqual(self.echo("/re/123")["upstream"], "b")
        self.assertEqual(self.echo("/re/abc")["upstream"], "a")

    def test_prefix_rewrite_sets_original_path(self):
        e = self.echo("/rewrite/x?q=1")
        self.assertEqual(e["path"], "/new/x?q=1")
        self.assertEqual(e["headers"]["x-envoy-original-path"], "/rewrite/x?q=1")

    def test_direct_response(self):
        r, data = self.get("/direct")
        self.assertEqual(r.status, 418)
        self.assertEqual(data, b"teapot")

    def test_redirect(self):
        r, data = self.get("/redirect/x")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.getheader("location"), "http://example.com/moved")

    def test_weighted_clusters_within_bounds(self):
        n = 400
        counts = {"a": 0, "b": 0}
        for _ in range(n):
            counts[self.echo("/weighted")["upstream"]] += 1
        # 25% to b: mean 100, sd ~8.7; 4 sd either side.
        self.assertGreater(counts["b"], 100 - 35)
        self.assertLess(counts["b"], 100 + 35)

    def test_headers_envoy_sets(self):
        e = self.echo("/")
        h = e["headers"]
        self.assertRegex(h["x-request-id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertEqual(h["x-envoy-expected-rq-timeout-ms"], "15000")
        r, _ = self.get("/")
        self.assertEqual(r.getheader("server"), "envoy")
        self.assertIsNotNone(r.getheader("x-envoy-upstream-service-time"))

    def test_header_mutations(self):
        r, data = self.get("/hdrs")
        self.assertEqual(json.loads(data)["headers"]["x-added"], "127.0.0.1")
        self.assertEqual(r.getheader("x-resp"), "yes")
        self.assertIsNone(r.getheader("x-upstream"))

    def test_timeout_is_504_ut(self):
        r, data = self.get("/slow", {"x-test-delay-ms": "2000"})
        self.assertEqual(r.status, 504)
        self.assertEqual(data, b"upstream request timeout")

    def test_a_timeout_of_ten_thousand_years_waits(self):
        r, data = self.get("/forever", {"x-test-delay-ms": "200"})
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(data)["path"], "/forever")

    def test_connect_failure_is_503_uf(self):
        r, data = self.get("/dead")
        self.assertEqual(r.status, 503)
        self.assertIn(b"upstream connect error or disconnect/reset before headers", data)

    def test_upstream_reset_is_503(self):
        r, data = self.get("/", {"x-test-reset": "1"})
        self.assertEqual(r.status, 503)
        self.assertIn(b"reset reason: connection termination", data)

    def test_upstream_status_passes_through(self):
        r, _ = self.get("/", {"x-test-status": "404"})
        self.assertEqual(r.status, 404)

    def test_keep_alive_reuses_one_upstream_connection(self):
        c = harness.http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=10)
        before = self.proxy.stat("cluster.a.upstream_cx_total")
        for i in range(5):
            c.request("GET", "/ka%d" % i)
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            r.read()
        c.close()
        after = self.proxy.stat("cluster.a.upstream_cx_total")
        self.assertLessEqual(after - before, 1)

    def test_large_chunked_upload_streams_through(self):
        body = bytes((i * 13) % 256 for i in range(5 * 1024 * 1024))

        def gen():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        c = harness.http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=60)
        c.request("POST", "/upload", body=gen(), encode_chunked=True,
                  headers={"transfer-encoding": "chunked"})
        r = c.getresponse()
        e = json.loads(r.read())
        self.assertEqual(e["body_len"], len(body))
        c.close()

    def test_large_download(self):
        r, data = self.get("/big", {"x-test-body-size": str(8 * 1024 * 1024)})
        self.assertEqual(r.status, 200)
        self.assertEqual(len(data), 8 * 1024 * 1024)
        self.assertTrue(data == bytes((i * 7) % 251 for i in range(8 * 1024 * 1024)))

    def raw(self, data, read_all=True):
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all and b"\r\n\r\n" in out:
                break
        s.close()
        return out

    def test_bad_requests(self):
        cases = [
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", b"400"),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
            (b"GET / HTTP/1.1\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n", b"431"),
        ]
        before = self.a.requests + self.b.requests
        for raw, status in cases:
            out = self.raw(raw)
            self.assertTrue(out.startswith(b"HTTP/1.1 " + status), (raw[:60], out[:100]))
        self.assertEqual(self.a.requests + self.b.requests, before, "a bad request reached an upstream")

    def keepalive_exchange(self, s):
        """One keep-alive request on `s`, read to the end of its response: the connection is
        idle (its HTTP/1 codec let go) before what the test sends next on it."""
        s.sendall(b"GET /before HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            self.assertTrue(chunk, buf)
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        m = re.search(rb"content-length: (\d+)", head.lower())
        self.assertTrue(head.startswith(b"HTTP/1.1 200") and m, head)
        while len(body) < int(m.group(1)):
            chunk = s.recv(65536)
            self.assertTrue(chunk, body)
            body += chunk
        self.assertEqual(len(body), int(m.group(1)))

    def test_websocket_upgrade_tunnels_bytes_both_ways(self):
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        self.keepalive_exchange(s)  # the upgrade comes on a connection that served a request
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            self.assertTrue(chunk, head)
            head += chunk
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        self.assertIn(b"upgrade: websocket", head.lower())
        rest = head.split(b"\r\n\r\n", 1)[1]
        for msg in (b"frame one", b"\x00\x01binary\xff", b"x" * 100000):
            s.sendall(msg)
            got = rest
            rest = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                self.assertTrue(chunk)
                got += chunk
            self.assertEqual(got, msg)
        s.close()

    def test_upgrade_other_than_websocket_is_refused(self):
        out = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c-ish\r\n\r\n",
                       read_all=False)
        self.assertTrue(out.startswith(b"HTTP/1.1 403"), out)

    def test_expect_100_continue(self):
        body = b"y" * 3000
        out = b""
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        self.keepalive_exchange(s)  # the request comes on a connection that served one
        s.sendall(b"POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        while b"\r\n\r\n" not in out:
            out += s.recv(4096)
        self.assertTrue(out.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), out)
        s.sendall(body)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        s.close()
        final = out.split(b"\r\n\r\n", 1)[1]
        self.assertTrue(final.startswith(b"HTTP/1.1 200"), final[:100])
        e = json.loads(final.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(e["body_len"], 3000)
        self.assertNotIn("expect", e["headers"])

    def test_http_10_is_refused_by_default(self):
        out = self.raw(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 426"), out)

    def test_curl_sees_what_envoy_sends(self):
        p = subprocess.run(["curl", "-s", "-i", "http://127.0.0.1:%d/curl" % self.proxy.port],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertTrue(p.stdout.startswith(b"HTTP/1.1 200 OK"), p.stdout[:100])
        self.assertIn(b"server: envoy", p.stdout)

    def test_pipelined_requests(self):
        try:
            out = self.raw(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        except socket.timeout:
            self.fail("timed out; proxy log:\n" + self.proxy.output()[-20000:])
        self.assertEqual(out.count(b"HTTP/1.1 200"), 3)
        self.assertLess(out.index(b'"/p1"'), out.index(b'"/p2"'))
        self.assertLess(out.index(b'"/p2"'), out.index(b'"/p3"'))

    def test_connection_close_ends_with_the_proxys_fin(self):
        # After a response with "connection: close" the proxy half-closes at once (RFC 9112's
        # staged close), then waits for the client's close: a client that reads to the end
        # of the stream has its answer now. Waiting for the client to close first would
        # show here as a socket timeout (delayed_close_timeout is 30 s in this config).
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)
        s.sendall(b"GET /fin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            self.fail("no end of stream after the response: %r" % out[:200])
        finally:
            s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:100])
        self.assertIn(b"connection: close", out.lower())
        self.assertIn(b'"/fin"', out)

    def test_access_log_lines(self):
        self.get("/logged-path", {"user-agent": "sluice-test"})
        # The log is flushed within a second; wait on the file, not the clock.
        harness.wait_until(lambda: os.path.exists(self.log_path) and
                           b"/logged-path" in open(self.log_path, "rb").read(),
                           what="the access log line")
        line = [l for l in open(self.log_path).read().splitlines() if "/logged-path" in l][-1]
        self.assertRegex(line, r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /logged-path HTTP/1.1" 200 - 0 \d+ \d+ \d+ "-" "sluice-test" "[0-9a-f-]{36}" "127.0.0.1:\d+" "127.0.0.1:\d+"$')

    def test_admin_endpoints(self):
        r, data = self.proxy.admin("/ready")
        self.assertEqual((r.status, data), (200, b"LIVE\n"))
        r, data = self.proxy.admin("/server_info")
        info = json.loads(data)
        self.assertEqual(info["state"], "LIVE")
        r, data = self.proxy.admin("/clusters")
        self.assertIn(b"a::127.0.0.1:%d::health_flags::healthy" % self.a.port, data)
        r, data = self.proxy.admin("/clusters?format=json")
        self.assertEqual({c["name"] for c in json.loads(data)["cluster_statuses"]}, {"a", "b", "dead"})
        r, data = self.proxy.admin("/listeners")
        self.assertIn(b"listener_0::127.0.0.1:%d" % self.proxy.port, data)
        r, data = self.proxy.admin("/config_dump")
        dump = json.loads(data)
        types = [c["@type"] for c in dump["configs"]]
        self.assertIn("type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", types)
        r, _ = self.proxy.admin("/healthcheck/fail")  # GET on a mutating endpoint
        self.assertEqual(r.status, 405)
        r, _ = self.proxy.admin("/nope")
        self.assertEqual(r.status, 404)

    def test_stats_after_known_traffic(self):
        before = self.proxy.stat("http.ingress_http.downstream_rq_2xx")
        before_b = self.proxy.stat("cluster.b.upstream_rq_200") or 0
        for _ in range(3):
            self.echo("/exact")
        self.assertEqual(self.proxy.stat("http.ingress_http.downstream_rq_2xx") - before, 3)
        self.assertEqual(self.proxy.stat("cluster.b.upstream_rq_200") - before_b, 3)

    def test_prometheus_output_passes_promtool(self):
        self.echo("/")
        r, data = self.proxy.admin("/stats/prometheus")
        self.assertEqual(r.status, 200)
        self.assertIn(b'envoy_cluster_upstream_rq_total{envoy_cluster_name="a"}', data)
        p = subprocess.run(["promtool", "check", "metrics"], input=data, capture_output=True)
        # Exit 3 is promtool's lint findings, which Envoy's own names always raise (counters
        # without "_total", no HELP text); anything else (exit 1) is a format error.
        self.assertIn(p.returncode, (0, 3), p.stdout + p.stderr)
        lint = ('should have "_total" suffix', "no help text", 'should not have "_total" suffix',
                "should not contain abbreviated units")
        for line in (p.stdout + p.stderr).decode().splitlines():
            self.assertTrue(any(x in line for x in lint), line)


class ValidateModeTest(harness.unittest.TestCase):
    def test_good_config(self):
        u_port = 1  # never contacted in validate mode
        d = harness.tempfile.mkdtemp()
        path = os.path.join(d, "good.json")
        json.dump(bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "a"})]),
                            [cluster("a", u_port)]), open(path, "w"))
        r = harness.run("proxy", "--mode", "validate", "-c", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK", r.stdout)

    def test_bad_config_names_the_field(self):
        d = harness.tempfile.mkdtemp()
        path = os.path.join(d, "bad.json")
        cfg = bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "a"})]), [cluster("a", 1)])
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].insert(
            0, {"name": "envoy.filters.http.lua", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"}})
        json.dump(cfg, open(path, "w"))
        r = harness.run("proxy", "--mode", "validate", "-c", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: "
                      "envoy.filters.http.lua is not supported", r.stderr)


class NoRouteTest(harness.unittest.TestCase):
    def test_no_route_is_404_and_counts_no_upstream_request(self):
        u = Upstream("only")
        try:
            proxy = Proxy(bootstrap(hcm([route({"prefix": "/only"}, route={"cluster": "o"})]),
                                    [cluster("o", u.port)]))
            with proxy:
                r, _ = proxy.request("GET", "/other")
                self.assertEqual(r.status, 404)
                r, _ = proxy.request("GET", "/only/x")
                self.assertEqual(r.status, 200)
                self.assertEqual(u.requests, 1)
                self.assertEqual(proxy.stat("http.ingress_http.downstream_rq_4xx"), 1)
                self.assertEqual(proxy.stop(), 0)
        finally:
            u.close()


class KeepAliveRaceTest(harness.unittest.TestCase):
    def test_a_request_on_a_connection_the_upstream_just_closed_is_retried_once(self):
        u = Upstream("race")
        try:
            proxy = Proxy(bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "r"})]),
                                    [cluster("r", u.port)]))
            with proxy:
                c = harness.http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
                c.request("GET", "/first", headers={"x-test-close-next": "1"})
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                # The pool reuses the one upstream connection; the upstream drops it when the
                # request arrives, without a byte of response.
                c.request("GET", "/second")
                r = c.getresponse()
                e = json.loads(r.read())
                self.assertEqual(r.status, 200)
                self.assertEqual(e["path"], "/second")
                self.assertEqual(u.server.closed_on_arrival, 1)
                self.assertEqual(proxy.stat("cluster.r.upstream_rq_retry"), 1)
                self.assertEqual(proxy.stat("cluster.r.upstream_cx_total"), 2)
                c.close()
                self.assertEqual(proxy.stop(), 0)
        finally:
            u.close()


def dns_cluster(name, kind, port):
    c = cluster(name, port)
    c["type"] = kind
    c["dns_lookup_family"] = "V4_ONLY"
    c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"] = "localhost"
    return c


class RequireTlsTest(harness.unittest.TestCase):
    def test_require_tls_all_redirects_plain_requests_to_https(self):
        cfg = bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "c"})]), [cluster("c", 1)])
        vh = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        vh["require_tls"] = "ALL"
        proxy = Proxy(cfg)
        with proxy:
            r, _ = proxy.request("GET", "/a?b=1", {"host": "example.com"})
            self.assertEqual(r.status, 301)
            self.assertEqual(r.getheader("location"), "https://example.com/a?b=1")
            self.assertEqual(proxy.stop(), 0)


class DnsAndAdminTest(harness.unittest.TestCase):
    def test_dns_clusters_resolve_before_serving(self):
        u = Upstream("dns")
        try:
            proxy = Proxy(bootstrap(
                hcm([route({"prefix": "/strict"}, route={"cluster": "strict"}),
                     route({"prefix": "/logical"}, route={"cluster": "logical", "auto_host_rewrite": True})]),
                [dns_cluster("strict", "STRICT_DNS", u.port), dns_cluster("logical", "LOGICAL_DNS", u.port)]))
            with proxy:
                r, data = proxy.request("GET", "/strict")
                self.assertEqual(r.status, 200, data)
                r, data = proxy.request("GET", "/logical")
                self.assertEqual(json.loads(data)["headers"]["host"], "localhost")
                r, data = proxy.admin("/clusters")
                self.assertIn(b"strict::127.0.0.1:%d::hostname::localhost" % u.port, data)
                self.assertEqual(proxy.stat("cluster.strict.membership_total"), 1)
                self.assertGreaterEqual(proxy.stat("cluster.strict.update_success"), 1)
                self.assertEqual(proxy.stop(), 0)
        finally:
            u.close()

    def test_logging_healthcheck_and_drain_listeners(self):
        u = Upstream("adm")
        try:
            proxy = Proxy(bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "u"})]),
                                    [cluster("u", u.port)]))
            with proxy:
                r, data = proxy.admin("/logging?upstream=debug", method="POST")
                self.assertEqual(r.status, 200)
                self.assertIn(b"upstream: debug", data)
                r, data = proxy.admin("/logging?level=loud", method="POST")
                self.assertEqual(r.status, 400)
                r, _ = proxy.admin("/healthcheck/fail", method="POST")
                self.assertEqual(r.status, 200)
                r, data = proxy.admin("/ready")
                self.assertEqual((r.status, data), (503, b"DRAINING\n"))
                proxy.admin("/healthcheck/ok", method="POST")
                self.assertEqual(proxy.admin("/ready")[0].status, 200)
                # Stop the listeners: new connections are refused, the process stays up.
                self.assertEqual(proxy.request("GET", "/")[0].status, 200)
                r, _ = proxy.admin("/drain_listeners", method="POST")
                self.assertEqual(r.status, 200)
                def refused():
                    try:
                        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
                        return False
                    except ConnectionRefusedError:
                        return True
                harness.wait_until(refused, what="the listener to refuse connections")
                self.assertEqual(proxy.admin("/ready")[0].status, 200)
                r, _ = proxy.admin("/quitquitquit", method="POST")
                self.assertEqual(r.status, 200)
                proxy.proc.wait(20)
                self.assertEqual(proxy.proc.returncode, 0)
        finally:
            u.close()


class NginxUpstreamTest(harness.unittest.TestCase):
    def test_proxy_to_nginx(self):
        d = harness.tempfile.mkdtemp()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        os.makedirs(os.path.join(d, "html"))
        with open(os.path.join(d, "html", "index.html"), "w") as f:
            f.write("hello from nginx\n")
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("""
daemon off; worker_processes 1; pid %(d)s/nginx.pid; error_log %(d)s/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path %(d)s; proxy_temp_path %(d)s;
  fastcgi_temp_path %(d)s; uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
  server { listen 127.0.0.1:%(port)d; root %(d)s/html; keepalive_requests 1000; } }
""" % {"d": d, "port": port})
        nginx = subprocess.Popen(["/usr/sbin/nginx", "-c", os.path.join(d, "nginx.conf"), "-p", d],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def listening():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    return False
            harness.wait_until(listening, what="nginx to listen")
            proxy = Proxy(bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "nginx"})]),
                                    [cluster("nginx", port)]))
            with proxy:
                for _ in range(20):
                    r, data = proxy.request("GET", "/index.html")
                    self.assertEqual((r.status, data), (200, b"hello from nginx\n"))
                r, _ = proxy.request("GET", "/missing")
                self.assertEqual(r.status, 404)
                self.assertEqual(proxy.stat("cluster.nginx.upstream_rq_200"), 20)
                self.assertEqual(proxy.stop(), 0)
        finally:
            nginx.terminate()
            nginx.wait(10)


class BackPressureTest(harness.unittest.TestCase):
    def test_slow_client_pauses_the_upstream_and_the_connection_is_reusable_after(self):
        u = Upstream("bp")
        try:
            cfg = bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "u"})]),
                            [cluster("u", u.port, per_connection_buffer_limit_bytes=32768)],
                            listener_extra={"per_connection_buffer_limit_bytes": 32768})
            proxy = Proxy(cfg)
            with proxy:
                size = 16 * 1024 * 1024
                s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nx-test-body-size: %d\r\n\r\n" % size)
                got = b""
                while b"\r\n\r\n" not in got:
                    got += s.recv(4096)
                body_len = len(got.split(b"\r\n\r\n", 1)[1])
                # Read slowly at first: the proxy must stop reading the upstream meanwhile.
                paused = False
                for _ in range(200):
                    body_len += len(s.recv(1024))
                    if proxy.stat("cluster.u.upstream_cx_rx_bytes_buffered") is not None and \
                            proxy.stat("http.ingress_http.downstream_cx_tx_bytes_buffered") <= 4 * 32768 + 65536:
                        paused = True
                self.assertTrue(paused, "the proxy buffered the response without bound")
                while body_len < size:
                    chunk = s.recv(1 << 20)
                    self.assertTrue(chunk)
                    body_len += len(chunk)
                # The same upstream connection serves the next request (not left paused).
                s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                out = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
                self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:200])
                self.assertIn(b'"/next"', out)
                self.assertEqual(proxy.stat("cluster.u.upstream_cx_total"), 1)
                self.assertEqual(proxy.stop(), 0)
        finally:
            u.close()


class DrainTest(harness.unittest.TestCase):
    def test_sigterm_finishes_in_flight_requests(self):
        u = Upstream("slow")
        try:
            proxy = Proxy(bootstrap(hcm([route({"prefix": "/"}, route={"cluster": "s"})]),
                                    [cluster("s", u.port)]), concurrency=2)
            result = {}

            def slow():
                r, data = proxy.request("GET", "/", {"x-test-delay-ms": "500"})
                result["status"] = r.status
                result["conn"] = r.getheader("connection")

            t = threading.Thread(target=slow)
            t.start()
            harness.wait_until(lambda: u.requests > 0, what="the slow request upstream")
            self.assertEqual(u.requests, 1)
            proxy.proc.send_signal(signal.SIGTERM)
            t.join(20)
            self.assertEqual(result.get("status"), 200)
            self.assertEqual(result.get("conn"), "close")
            # It exits by itself once the request is done (a second SIGTERM from stop() could
            # land while it tears down, with the default action: failed once under ASan).
            proxy.proc.wait(timeout=20)
            self.assertEqual(proxy.stop(), 0)
        finally:
            u.close()


if __name__ == "__main__":
    harness.main()
