"""gRPC behaviour of the proxy end to end, with Debian's python3-grpcio on both sides: local
replies to gRPC requests are gRPC errors (HTTP 200, grpc-status, grpc-message), grpc-timeout
sets the deadline (route max_stream_duration, legacy max_grpc_timeout), retries on gRPC
status, deadlines and cancellation through the proxy."""

import json
import re
import socket
import subprocess
import threading
import time

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until

FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

SERVER = r'''
import json, sys, threading, time, grpc
from concurrent import futures

lock = threading.Lock()
calls = {}      # key -> number of calls seen
cancelled = []  # keys of calls the server saw cancelled

def count(key):
    with lock:
        calls[key] = calls.get(key, 0) + 1
        return calls[key]

def slow(request, context):
    # "<ms>[:key]": sleeps, then answers with the deadline it was given (ms, or -1).
    ms, _, key = request.decode().partition(":")
    if key:
        count(key)
    remaining = context.time_remaining()
    deadline = time.monotonic() + int(ms) / 1000.0
    while time.monotonic() < deadline and context.is_active():
        time.sleep(0.01)
    if key and time.monotonic() < deadline:
        with lock:
            cancelled.append(key)  # the call ended before its sleep did
    return b"%d" % (-1 if remaining is None else int(remaining * 1000))

def flaky(request, context):
    # "<key>:<n>:<code>": the first n calls with this key fail with status <code>.
    key, n, code = request.decode().split(":")
    seen = count(key)
    if seen <= int(n):
        context.abort(grpc.StatusCode[code], "flaky %d" % seen)
    return b"ok after %d" % seen

def stats(request, context):
    with lock:
        key = request.decode()
        return b"%d,%d" % (calls.get(key, 0), cancelled.count(key))

# grpc.health.v1.Health/Check, hand-encoded: HealthCheckResponse{status = 1 (varint)}.
health = {"status": 1, "requests": []}

def health_check(request, context):
    with lock:
        health["requests"].append(request)
        health["metadata"] = [list(m) for m in context.invocation_metadata()]
        return b"\x08" + bytes([health["status"]])

def last_health_metadata(request, context):
    with lock:
        return json.dumps(health.get("metadata", [])).encode()

def set_health(request, context):
    with lock:
        health["status"] = int(request)
        return b"%d" % len(health["requests"])

def last_health(request, context):
    with lock:
        return health["requests"][-1] if health["requests"] else b""

ident = lambda b: b
handlers = {
    "SetHealth": grpc.unary_unary_rpc_method_handler(set_health, ident, ident),
    "LastHealth": grpc.unary_unary_rpc_method_handler(last_health, ident, ident),
    "LastHealthMetadata": grpc.unary_unary_rpc_method_handler(last_health_metadata, ident, ident),
    "Slow": grpc.unary_unary_rpc_method_handler(slow, ident, ident),
    "Flaky": grpc.unary_unary_rpc_method_handler(flaky, ident, ident),
    "Stats": grpc.unary_unary_rpc_method_handler(stats, ident, ident),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
server.add_generic_rpc_handlers((
    grpc.method_handlers_generic_handler("test.T", handlers),
    grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(health_check, ident, ident)}),
))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("listening on %d" % port, flush=True)
server.wait_for_termination()
'''


def h2_cluster(name, *ports):
    return cluster(name, *ports, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}})


def percent(n):
    return {"numerator": n, "denominator": "HUNDRED"}


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def route(prefix, cluster_name="grpc", per_filter=None, **action):
    a = {"cluster": cluster_name}
    a.update(action)
    r = {"match": {"prefix": prefix}, "route": a}
    if per_filter:
        r["typed_per_filter_config"] = per_filter
    return r


class GrpcProxyTest(harness.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc  # Debian's python3-grpcio
        cls.grpc = grpc
        cls.server = subprocess.Popen(["/usr/bin/python3", "-c", SERVER],
                                      stdout=subprocess.PIPE, text=True)
        cls.server_port = int(re.search(r"listening on (\d+)",
                                        cls.server.stdout.readline()).group(1))
        # Each test reaches the server through a path prefix of its own: /<prefix>/test.T/...
        # is rewritten to /test.T/... on the way.
        def r(prefix, **action):
            per_filter = action.pop("per_filter", None)
            return route("/" + prefix + "/", prefix_rewrite="/", per_filter=per_filter,
                         **action)
        routes = [
            r("plain"),
            r("down", cluster="down"),
            r("timeout", timeout="0.3s"),
            r("abort", per_filter={"envoy.filters.http.fault": {
                "@type": FAULT, "abort": {"http_status": 503, "percentage": percent(100)}}}),
            r("grpcabort", per_filter={"envoy.filters.http.fault": {
                "@type": FAULT, "abort": {"grpc_status": 8, "percentage": percent(100)}}}),
            r("limited", per_filter={"envoy.filters.http.local_ratelimit": {
                "@type": LRL, "stat_prefix": "grpc_rl",
                "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"},
                "filter_enabled": {"runtime_key": "a", "default_value": percent(100)},
                "filter_enforced": {"runtime_key": "b", "default_value": percent(100)}}}),
            # grpc-timeout, Envoy's v3 way: capped at 10s, less 0.5s.
            r("deadline", max_stream_duration={"grpc_timeout_header_max": "10s",
                                               "grpc_timeout_header_offset": "0.5s"}),
            # No grpc-timeout cap at all, and the route timeout no longer applies.
            r("nocap", timeout="0.2s", max_stream_duration={"grpc_timeout_header_max": "0s"}),
            # A request without grpc-timeout: the route's max_stream_duration.
            r("maxdur", max_stream_duration={"max_stream_duration": "0.4s",
                                             "grpc_timeout_header_max": "0s"}),
            # The legacy fields: the grpc-timeout less 0.3s is the route timeout.
            r("legacy", max_grpc_timeout="0s", grpc_timeout_offset="0.3s"),
            r("legacycap", max_grpc_timeout="0.5s"),
            r("retry", retry_policy={"retry_on": "unavailable,resource-exhausted",
                                     "num_retries": 3,
                                     "retry_back_off": {"base_interval": "0.01s"}}),
            r("noretry", retry_policy={"retry_on": "5xx", "num_retries": 3}),
            {"match": {"prefix": "/direct/"},
             "direct_response": {"status": 403, "body": {"inline_string": "go away"}}},
        ]
        http_filters = [
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT}},
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": LRL, "stat_prefix": "global_rl"}},
            ROUTER,
        ]
        cls.proxy = Proxy(bootstrap(hcm(routes, http_filters=http_filters),
                                    [h2_cluster("grpc", cls.server_port),
                                     h2_cluster("down", closed_port())]))
        cls.channel = grpc.insecure_channel("127.0.0.1:%d" % cls.proxy.port)
        cls.direct = grpc.insecure_channel("127.0.0.1:%d" % cls.server_port)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.direct.close()
        cls.proxy.stop()
        cls.server.kill()
        cls.server.wait()

    def call(self, prefix, method, request, timeout=10, metadata=None, channel=None):
        ident = lambda b: b
        path = ("/%s/test.T/%s" % (prefix, method)) if prefix else "/test.T/" + method
        stub = (channel or self.channel).unary_unary(path, ident, ident)
        return stub(request, timeout=timeout, metadata=metadata)

    def error(self, prefix, method, request, **kw):
        with self.assertRaises(self.grpc.RpcError) as e:
            self.call(prefix, method, request, **kw)
        return e.exception

    def server_stats(self, key):
        calls, cancelled = self.call(None, "Stats", key.encode(), channel=self.direct).split(b",")
        return int(calls), int(cancelled)

    # ---- Local replies are gRPC errors

    def test_sanity_plain_call(self):
        self.assertGreater(int(self.call("plain", "Slow", b"0", timeout=10)), 9000)

    def test_no_route_is_unimplemented(self):
        e = self.error("nowhere", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(e.details(), "")

    def test_upstream_connect_failure_is_unavailable_with_the_reason(self):
        e = self.error("down", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE)
        self.assertTrue(e.details().startswith(
            "upstream connect error or disconnect/reset before headers. reset reason: "
            "connection failure"), e.details())

    def test_route_timeout_is_unavailable_upstream_request_timeout(self):
        # Envoy maps its 504 to UNAVAILABLE (gRPC's HTTP mapping).
        e = self.error("timeout", "Slow", b"3000", timeout=10)
        self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(e.details(), "upstream request timeout")

    def test_fault_aborts(self):
        e = self.error("abort", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(e.details(), "fault filter abort")
        e = self.error("grpcabort", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(e.details(), "fault filter abort")

    def test_local_rate_limit_is_unavailable(self):
        self.call("limited", "Slow", b"0")
        e = self.error("limited", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(e.details(), "local_rate_limited")

    def test_direct_response_error_is_permission_denied(self):
        e = self.error("direct", "Slow", b"0")
        self.assertEqual(e.code(), self.grpc.StatusCode.PERMISSION_DENIED)
        self.assertEqual(e.details(), "go away")

    def test_wire_format_is_http_200_trailers_only(self):
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                            "-H", "content-type: application/grpc", "-H", "te: trailers",
                            "--data-binary", "", "http://127.0.0.1:%d/down/test.T/Slow" %
                            self.proxy.port], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        head = r.stdout.lower()
        self.assertTrue(head.startswith("http/2 200"), head)
        self.assertIn("content-type: application/grpc\n", head)
        self.assertIn("grpc-status: 14\n", head)
        self.assertIn("grpc-message: upstream connect error", head)
        self.assertNotIn("content-length", head)

    # ---- grpc-timeout

    def test_grpc_timeout_less_the_offset_reaches_the_server(self):
        got = int(self.call("deadline", "Slow", b"0", timeout=3))
        # 3s less 0.5s (a few ms over: the server rounds its deadline up).
        self.assertLessEqual(got, 2600)
        self.assertGreater(got, 1500)

    def proxy_deadline(self, prefix, **kw):
        """Calls until the proxy's own DEADLINE_EXCEEDED comes (at most 3 tries) and returns
        the seconds the call took. The upstream learns the same deadline from the grpc-timeout
        the proxy sends, a moment later; on a loaded machine the proxy's worker may wake only
        when both are due, and then the upstream's answer, read first, is passed through."""
        for _ in range(3):
            before = self.proxy.stat("http.ingress_http.downstream_rq_max_duration_reached") or 0
            start = time.monotonic()
            e = self.error(prefix, "Slow", b"5000", **kw)
            elapsed = time.monotonic() - start
            self.assertEqual(e.code(), self.grpc.StatusCode.DEADLINE_EXCEEDED)
            if e.details() == "downstream duration timeout":
                self.assertEqual(
                    self.proxy.stat("http.ingress_http.downstream_rq_max_duration_reached"),
                    before + 1)
                return elapsed
            self.assertEqual(e.details(), "Deadline Exceeded")  # the upstream's own
        self.fail("the proxy never answered the deadline itself")

    def test_grpc_timeout_expiry_is_deadline_exceeded_from_the_proxy(self):
        # The proxy's own answer (0.5s before the client would give up), not the client's.
        self.assertLess(self.proxy_deadline("deadline", timeout=2), 1.9)

    def test_grpc_timeout_header_max_zero_means_no_cap_and_no_route_timeout(self):
        # The route timeout (0.2s) no longer applies once the route has max_stream_duration.
        got = int(self.call("nocap", "Slow", b"600", timeout=5))
        self.assertGreater(got, 4000)  # the whole grpc-timeout: no offset, no cap

    def test_grpc_timeout_past_the_clocks_end_is_no_deadline(self):
        # 99999999 hours (the most grpc-timeout's 8 digits say) with no cap: a deadline past
        # the end of the proxy's 64-bit clock waits forever, it does not wrap into the past.
        before = self.proxy.stat("http.ingress_http.downstream_rq_max_duration_reached") or 0
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                            "-H", "content-type: application/grpc", "-H", "te: trailers",
                            "-H", "grpc-timeout: 99999999H", "--data-binary", "@-",
                            "http://127.0.0.1:%d/nocap/test.T/Slow" % self.proxy.port],
                           input=b"\x00\x00\x00\x00\x010", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        head = r.stdout.decode().lower().replace("\r\n", "\n")  # the headers, then trailers
        self.assertTrue(head.startswith("http/2 200"), head)
        self.assertIn("\ngrpc-status: 0\n", head)
        self.assertEqual(self.proxy.stat("http.ingress_http.downstream_rq_max_duration_reached")
                         or 0, before)

    def test_max_stream_duration_without_grpc_timeout(self):
        self.proxy_deadline("maxdur", timeout=None)
        # The server learns the deadline too (grpc-timeout set by the proxy).
        got = int(self.call("maxdur", "Slow", b"0", timeout=None))
        self.assertGreater(got, 0)
        self.assertLessEqual(got, 500)

    def test_legacy_max_grpc_timeout_and_offset(self):
        got = int(self.call("legacy", "Slow", b"0", timeout=2))
        self.assertLessEqual(got, 1800)  # 2s less 0.3s, give or take the server's rounding
        self.assertGreater(got, 1000)
        # The route timeout (1.2s) and the server's own deadline (the grpc-timeout it was
        # sent) end together: either answers, both before the client's 1.5s.
        start = time.monotonic()
        e = self.error("legacy", "Slow", b"5000", timeout=1.5)
        self.assertLess(time.monotonic() - start, 1.45)
        self.assertIn((e.code(), e.details()),
                      [(self.grpc.StatusCode.UNAVAILABLE, "upstream request timeout"),
                       (self.grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")])
        # The cap: a client with a long deadline (or none) gets 0.5s.
        got = int(self.call("legacycap", "Slow", b"0", timeout=30))
        self.assertLessEqual(got, 600)
        e = self.error("legacycap", "Slow", b"5000", timeout=None)
        self.assertIn((e.code(), e.details()),
                      [(self.grpc.StatusCode.UNAVAILABLE, "upstream request timeout"),
                       (self.grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")])

    # ---- Deadlines and cancellation from the client

    def test_client_deadline_and_cancellation_reach_the_server(self):
        e = self.error("plain", "Slow", b"5000:dl", timeout=0.5)
        self.assertEqual(e.code(), self.grpc.StatusCode.DEADLINE_EXCEEDED)
        wait_until(lambda: self.server_stats("dl") == (1, 1), what="the server sees the cancel")
        ident = lambda b: b
        fut = self.channel.unary_unary("/plain/test.T/Slow", ident, ident).future(
            b"5000:cx", timeout=30)
        wait_until(lambda: self.server_stats("cx")[0] == 1, what="the call at the server")
        fut.cancel()
        self.assertTrue(fut.cancelled())
        wait_until(lambda: self.server_stats("cx") == (1, 1), what="the server sees the cancel")
        wait_until(lambda: (self.proxy.stat("cluster.grpc.upstream_rq_tx_reset") or 0) >= 1,
                   what="the upstream stream reset")

    # ---- Retries on gRPC status

    def test_retry_on_unavailable_and_resource_exhausted(self):
        before = self.proxy.stat("cluster.grpc.upstream_rq_retry") or 0
        self.assertEqual(self.call("retry", "Flaky", b"r1:2:UNAVAILABLE"), b"ok after 3")
        self.assertEqual(self.call("retry", "Flaky", b"r2:1:RESOURCE_EXHAUSTED"), b"ok after 2")
        self.assertEqual(self.proxy.stat("cluster.grpc.upstream_rq_retry"), before + 3)
        # Not a listed status: the error goes to the client after one try.
        e = self.error("retry", "Flaky", b"r3:1:INTERNAL")
        self.assertEqual(e.code(), self.grpc.StatusCode.INTERNAL)
        self.assertEqual(e.details(), "flaky 1")
        self.assertEqual(self.server_stats("r3"), (1, 0))
        # Retries run out: the last error goes to the client.
        e = self.error("retry", "Flaky", b"r4:9:UNAVAILABLE")
        self.assertEqual(e.details(), "flaky 4")

    def test_retry_grpc_on_header(self):
        e = self.error("noretry", "Flaky", b"h1:1:CANCELLED")
        self.assertEqual(e.code(), self.grpc.StatusCode.CANCELLED)
        md = (("x-envoy-retry-grpc-on", "cancelled,deadline-exceeded,internal"),)
        self.assertEqual(self.call("noretry", "Flaky", b"h2:1:CANCELLED", metadata=md),
                         b"ok after 2")
        self.assertEqual(self.call("noretry", "Flaky", b"h3:2:INTERNAL", metadata=md),
                         b"ok after 3")
        self.assertEqual(self.call("noretry", "Flaky", b"h4:1:DEADLINE_EXCEEDED", metadata=md),
                         b"ok after 2")


def health_flags(proxy, cluster_name, port):
    _, data = proxy.admin("/clusters")
    key = "%s::127.0.0.1:%d::health_flags::" % (cluster_name, port)
    for line in data.decode().splitlines():
        if line.startswith(key):
            return line[len(key):]
    return None


# Sent on each Check call, as a route's request headers are added: appended, added if
# absent, a formatter.
INITIAL_METADATA = [
    {"header": {"key": "x-hc-token", "value": "abc"}},
    {"header": {"key": "x-hc-multi", "value": "1"}},
    {"header": {"key": "x-hc-multi", "value": "2"}},
    {"header": {"key": "user-agent", "value": "custom"}, "append_action": "ADD_IF_ABSENT"},
    {"header": {"key": "x-hc-year", "value": "%START_TIME(%Y)%"}},
]


class GrpcHealthCheckTest(harness.unittest.TestCase):
    """grpc_health_check against a python gRPC server's grpc.health.v1.Health/Check."""

    def setUp(self):
        import grpc
        self.grpc = grpc
        self.server = subprocess.Popen(["/usr/bin/python3", "-c", SERVER],
                                       stdout=subprocess.PIPE, text=True)
        self.port = int(re.search(r"listening on (\d+)", self.server.stdout.readline()).group(1))
        self.direct = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        c = h2_cluster("grpc", self.port)
        c["health_checks"] = [{"timeout": "1s", "interval": "0.1s", "unhealthy_threshold": 1,
                               "healthy_threshold": 1, "no_traffic_interval": "0.1s",
                               "grpc_health_check": {"service_name": "pkg.Svc",
                                                     "authority": "hc.example",
                                                     "initial_metadata": INITIAL_METADATA}}]
        self.proxy = Proxy(bootstrap(hcm([route("/", "grpc")]), [c]))
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % self.proxy.port)

    def tearDown(self):
        self.channel.close()
        self.direct.close()
        self.proxy.stop()
        self.server.kill()
        self.server.wait()

    def call(self, channel, method, request):
        ident = lambda b: b
        return channel.unary_unary("/test.T/" + method, ident, ident)(request, timeout=10)

    def test_serving_then_not_serving_then_back(self):
        wait_until(lambda: health_flags(self.proxy, "grpc", self.port) == "healthy",
                   what="the host healthy")
        self.assertEqual(self.call(self.direct, "LastHealth", b""), b"\x0a\x07pkg.Svc")
        self.assertGreaterEqual(self.proxy.stat("cluster.grpc.health_check.success"), 1)
        self.assertEqual(self.call(self.channel, "Slow", b"0:through")[:1].isdigit(), True)

        self.call(self.direct, "SetHealth", b"2")  # NOT_SERVING
        wait_until(lambda: health_flags(self.proxy, "grpc", self.port) == "/failed_active_hc",
                   what="the host failed")
        # Its only host failed: the balancer is in panic and still uses it (as Envoy).
        panic = self.proxy.stat("cluster.grpc.lb_healthy_panic") or 0
        self.call(self.channel, "Slow", b"0")
        self.assertEqual(self.proxy.stat("cluster.grpc.lb_healthy_panic"), panic + 1)
        self.assertGreaterEqual(self.proxy.stat("cluster.grpc.health_check.failure"), 1)

        self.call(self.direct, "SetHealth", b"1")
        wait_until(lambda: health_flags(self.proxy, "grpc", self.port) == "healthy",
                   what="the host back")

    def test_initial_metadata_is_sent_on_each_check(self):
        wait_until(lambda: health_flags(self.proxy, "grpc", self.port) == "healthy",
                   what="the host healthy")
        md = json.loads(self.call(self.direct, "LastHealthMetadata", b""))
        self.assertIn(["x-hc-token", "abc"], md)
        self.assertEqual([v for k, v in md if k == "x-hc-multi"], ["1", "2"])
        # The checker's own user-agent is there: ADD_IF_ABSENT adds nothing.
        self.assertEqual([v for k, v in md if k == "user-agent"], ["Envoy/HC"])
        self.assertRegex(dict(md)["x-hc-year"], r"^20\d\d$")

    def test_initial_metadata_may_not_set_pseudo_headers(self):
        c = h2_cluster("grpc", self.port)
        c["health_checks"] = [{"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
                               "healthy_threshold": 1, "grpc_health_check": {
                                   "initial_metadata": [{"header": {"key": ":path",
                                                                    "value": "/x"}}]}}]
        cfg = bootstrap(hcm([route("/", "grpc")]), [c])
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(cfg, f)
            f.flush()
            r = harness.run("proxy", "-c", f.name, "--mode", "validate")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("static_resources.clusters[0].health_checks[0].grpc_health_check."
                      "initial_metadata[0].header.key", r.stdout + r.stderr)

    def test_a_cluster_without_http2_is_refused(self):
        c = cluster("plain", self.port)
        c["health_checks"] = [{"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
                               "healthy_threshold": 1, "grpc_health_check": {}}]
        cfg = bootstrap(hcm([route("/", "plain")]), [c])
        import json, tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(cfg, f)
            f.flush()
            r = harness.run("proxy", "-c", f.name, "--mode", "validate")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("static_resources.clusters[0].health_checks[0].grpc_health_check: the "
                      "cluster must use HTTP/2", r.stdout + r.stderr)


class UpstreamProtocolTest(harness.unittest.TestCase):
    """use_downstream_protocol_config: the upstream protocol follows the client's."""

    def test_use_downstream_protocol_config(self):
        direct = [{"match": {"prefix": "/"},
                   "direct_response": {"status": 200, "body": {"inline_string": "back"}}}]
        back = Proxy(bootstrap(hcm(direct), []))  # codec_type AUTO: both protocols
        try:
            front = Proxy(bootstrap(hcm([route("/", "b")]), [cluster("b", back.port,
                typed_extension_protocol_options={
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/"
                                 "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "use_downstream_protocol_config": {
                            "http_protocol_options": {},
                            "http2_protocol_options": {"max_concurrent_streams": 10}}}})]))
            try:
                url = "http://127.0.0.1:%d/x" % front.port
                for args in (["--http1.1"], ["--http2-prior-knowledge"], ["--http1.1"]):
                    r = subprocess.run(["curl", "-sS", *args, url], capture_output=True,
                                       timeout=30)
                    self.assertEqual(r.stdout, b"back", r.stderr)
                self.assertEqual(back.stat("http.ingress_http.downstream_rq_http1_total"), 2)
                self.assertEqual(back.stat("http.ingress_http.downstream_rq_http2_total"), 1)
                self.assertEqual(front.stat("cluster.b.upstream_cx_http2_total"), 1)
            finally:
                front.stop()
        finally:
            back.stop()


class MaxRequestsPerConnectionTest(harness.unittest.TestCase):
    """common_http_protocol_options.max_requests_per_connection on the connection manager."""

    def test_http1_closes_and_http2_sends_goaway(self):
        import grpc
        import http.client
        server = subprocess.Popen(["/usr/bin/python3", "-c", SERVER], stdout=subprocess.PIPE,
                                  text=True)
        port = int(re.search(r"listening on (\d+)", server.stdout.readline()).group(1))
        proxy = Proxy(bootstrap(hcm([route("/", "grpc")], common_http_protocol_options={
            "max_requests_per_connection": 2}), [h2_cluster("grpc", port)]))
        try:
            # HTTP/1.1: the second response on the connection says close, and it closes.
            c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            heads = []
            for _ in range(2):
                c.request("GET", "/x")
                r = c.getresponse()
                r.read()
                heads.append(r.getheader("connection"))
            self.assertEqual(heads, [None, "close"])
            c.close()
            self.assertEqual(proxy.stat("http.ingress_http.downstream_cx_max_requests_reached"), 1)
            # HTTP/2 (gRPC): GOAWAY after the second call; the client carries on over a new
            # connection.
            ch = grpc.insecure_channel("127.0.0.1:%d" % proxy.port)
            ident = lambda b: b
            stub = ch.unary_unary("/test.T/Slow", ident, ident)
            for _ in range(3):
                self.assertTrue(stub(b"0", timeout=10).isdigit())
            ch.close()
            self.assertEqual(proxy.stat("http.ingress_http.downstream_cx_http2_total"), 2)
            self.assertEqual(proxy.stat("http.ingress_http.downstream_cx_max_requests_reached"), 2)
        finally:
            proxy.stop()
            server.kill()
            server.wait()


if __name__ == "__main__":
    harness.main()
