"""Resilience end to end: retries (retry_on, previous_hosts, back-off, URX), per-try timeouts,
hedging, circuit breakers (x-envoy-overloaded, UO) and request mirroring, with the real
binary and real test upstreams."""

import json
import os
import socket
import threading
import time

import harness
from harness import Proxy, bootstrap, cluster
from upstream import Upstream

RETRY_FAST = {"base_interval": "0.005s", "max_interval": "0.02s"}


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_log(path):
    with open(path) as f:
        return f.read()


def weighted_cluster(name, ports_weights, **extra):
    c = cluster(name, *[p for p, _ in ports_weights], **extra)
    for ep, (_, w) in zip(c["load_assignment"]["endpoints"][0]["lb_endpoints"], ports_weights):
        ep["load_balancing_weight"] = w
    return c


def route(prefix, cluster_name, **action):
    a = {"cluster": cluster_name}
    a.update(action)
    return {"match": {"prefix": prefix}, "route": a}


class ResilienceTest(harness.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.heavy = Upstream("heavy")    # weight 3
        cls.light = Upstream("light")    # weight 1
        cls.single = Upstream("single")
        cls.slow = Upstream("slow")
        cls.fast = Upstream("fast")
        cls.cb = Upstream("cb")
        cls.cbpool = Upstream("cbpool")
        cls.primary = Upstream("primary")
        cls.mirror = Upstream("mirror")
        cls.budget = Upstream("budget")
        cls.budget100 = Upstream("budget100")
        cls.cbprio = Upstream("cbprio")
        dead = dead_port()
        routes = [
            route("/prev", "weighted", retry_policy={
                "retry_on": "5xx", "num_retries": 1, "retry_back_off": RETRY_FAST,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}],
                "host_selection_retry_max_attempts": 5}),
            route("/connect", "half_dead", retry_policy={
                "retry_on": "connect-failure", "num_retries": 1, "retry_back_off": RETRY_FAST,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts"}]}),
            route("/exhaust", "single", retry_policy={
                "retry_on": "gateway-error", "num_retries": 2, "retry_back_off": RETRY_FAST}),
            route("/dead", "dead", retry_policy={
                "retry_on": "connect-failure", "num_retries": 1, "retry_back_off": RETRY_FAST}),
            route("/codes", "single", retry_policy={
                "retry_on": "retriable-status-codes", "retriable_status_codes": [418],
                "num_retries": 1, "retry_back_off": RETRY_FAST}),
            route("/pertry-noretry", "single", timeout="5s", retry_policy={
                "retry_on": "connect-failure", "per_try_timeout": "0.2s"}),
            route("/pertry", "slowfast", timeout="5s", retry_policy={
                "retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.2s",
                "retry_back_off": RETRY_FAST}),
            route("/hedge", "slowfast", timeout="5s", hedge_policy={"hedge_on_per_try_timeout": True},
                  retry_policy={"retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.2s",
                                "retry_back_off": RETRY_FAST}),
            route("/header-retry", "single"),
            route("/big", "single", retry_policy={"retry_on": "5xx", "num_retries": 1,
                                                  "retry_back_off": RETRY_FAST}),
            route("/cbpool", "cbpool"),
            route("/budget100", "budget100", retry_policy={
                "retry_on": "5xx", "num_retries": 1, "retry_back_off": RETRY_FAST}),
            route("/budget", "budget", retry_policy={
                "retry_on": "5xx", "num_retries": 1, "retry_back_off": RETRY_FAST}),
            route("/cbprio-high", "cbprio", priority="HIGH"),
            route("/cbprio", "cbprio"),
            route("/cb", "cb"),
            route("/mirror-dead", "primary", request_mirror_policies=[{"cluster": "dead"}]),
            route("/mirror", "primary", request_mirror_policies=[{"cluster": "mirror"}]),
        ]
        cls.log_path = os.path.join(harness.tempfile.mkdtemp(), "access.log")
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress_http",
            "route_config": {"name": "local_route", "virtual_hosts": [{
                "name": "backend", "domains": ["*"], "routes": routes,
                "include_request_attempt_count": True,
                "include_attempt_count_in_response": True,
                "per_request_buffer_limit_bytes": 4096}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": cls.log_path,
                "log_format": {"text_format_source": {"inline_string":
                    "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%\n"}}}}],
        }
        clusters = [
            weighted_cluster("weighted", [(cls.heavy.port, 3), (cls.light.port, 1)]),
            cluster("half_dead", dead, cls.single.port),
            cluster("single", cls.single.port),
            cluster("dead", dead),
            cluster("slowfast", cls.slow.port, cls.fast.port),
            cluster("cb", cls.cb.port, circuit_breakers={"thresholds": [
                {"priority": "DEFAULT", "max_requests": 2, "track_remaining": True}]}),
            cluster("cbpool", cls.cbpool.port, circuit_breakers={"thresholds": [
                {"max_connections": 1, "max_pending_requests": 1}]}),
            cluster("budget", cls.budget.port, circuit_breakers={"thresholds": [
                {"retry_budget": {"budget_percent": {"value": 20}, "min_retry_concurrency": 1}}]}),
            cluster("budget100", cls.budget100.port, circuit_breakers={"thresholds": [
                {"retry_budget": {"budget_percent": {"value": 100}, "min_retry_concurrency": 1}}]}),
            cluster("primary", cls.primary.port),
            cluster("mirror", cls.mirror.port),
            cluster("cbprio", cls.cbprio.port, circuit_breakers={"thresholds": [
                {"priority": "DEFAULT", "max_requests": 1},
                {"priority": "HIGH", "max_requests": 2, "track_remaining": True}]}),
        ]
        cls.proxy = Proxy(bootstrap(hcm, clusters))

    @classmethod
    def tearDownClass(cls):
        # A clean exit (under ASan: no leak, no error report).
        rc = cls.proxy.stop()
        if rc != 0:
            raise AssertionError("sluice exited with %s:\n%s" % (rc, cls.proxy.output()[-4000:]))
        for u in (cls.heavy, cls.light, cls.single, cls.slow, cls.fast, cls.cb, cls.cbpool, cls.primary, cls.mirror, cls.budget, cls.budget100, cls.cbprio):
            u.close()

    def setUp(self):
        for u in (self.heavy, self.light, self.single, self.slow, self.fast, self.cb, self.cbpool, self.primary, self.mirror, self.budget, self.budget100, self.cbprio):
            u.clear()

    def log_lines(self, path, count=1):
        def lines():
            if not os.path.exists(self.log_path):
                return None
            got = [l for l in read_log(self.log_path).splitlines() if l.split(" ")[0] == path]
            return got if len(got) >= count else None
        return harness.wait_until(lines, what="access log lines for " + path)

    def test_retry_goes_to_another_host(self):
        # Smooth round robin over weights 3:1 picks heavy, heavy, light: without the
        # previous_hosts predicate the retry would go back to heavy, which fails twice.
        self.heavy.fail(503, 2)
        r, body = self.proxy.request("GET", "/prev")
        self.assertEqual(r.status, 200, body)
        self.assertEqual(r.getheader("x-upstream"), "light")
        self.assertEqual(r.getheader("x-envoy-attempt-count"), "2")
        self.assertEqual(len(self.heavy.seen), 1)
        self.assertEqual(len(self.light.seen), 1)
        # The retry carried its attempt number upstream.
        self.assertEqual(json.loads(body)["headers"]["x-envoy-attempt-count"], "2")
        self.assertGreaterEqual(self.proxy.stat("cluster.weighted.upstream_rq_retry"), 1)
        self.assertGreaterEqual(self.proxy.stat("cluster.weighted.upstream_rq_retry_success"), 1)
        self.assertIn("/prev 200 - 2", self.log_lines("/prev"))

    def test_no_request_lost_or_duplicated(self):
        # 20 requests, 5 of which meet a 503 once: 25 tries upstream, 20 answers, all 200.
        codes = []
        for i in range(20):
            if i % 4 == 0:
                self.single.fail(503, 1)
            codes.append(self.proxy.request("GET", "/exhaust?i=%d" % i)[0].status)
        self.assertEqual(codes, [200] * 20)
        seen = self.single.seen
        self.assertEqual(len(seen), 25)
        paths = sorted(s["path"] for s in seen)
        for i in range(20):
            n = paths.count("/exhaust?i=%d" % i)
            self.assertEqual(n, 2 if i % 4 == 0 else 1, i)

    def test_connect_failure_is_retried(self):
        codes = [self.proxy.request("GET", "/connect")[0].status for _ in range(4)]
        self.assertEqual(codes, [200] * 4)
        self.assertEqual(len(self.single.seen), 4)
        self.assertGreaterEqual(self.proxy.stat("cluster.half_dead.upstream_rq_retry"), 1)
        self.assertGreaterEqual(self.proxy.stat("cluster.half_dead.upstream_cx_connect_fail"), 1)

    def test_exhausted_retries_give_the_last_response_and_urx(self):
        self.single.fail(503, 3)
        before = self.proxy.stat("cluster.single.upstream_rq_retry_limit_exceeded") or 0
        r, body = self.proxy.request("GET", "/exhaust")
        self.assertEqual(r.status, 503)
        self.assertEqual(body, b"failing on purpose")
        self.assertEqual(len(self.single.seen), 3)  # the try and num_retries: 2
        self.assertEqual(self.proxy.stat("cluster.single.upstream_rq_retry_limit_exceeded"), before + 1)
        self.assertIn("/exhaust 503 URX 3", self.log_lines("/exhaust"))

    def test_exhausted_connect_failure_is_503_uf_urx(self):
        r, body = self.proxy.request("GET", "/dead")
        self.assertEqual(r.status, 503)
        line = self.log_lines("/dead")[-1]
        self.assertIn("UF", line)
        self.assertIn("URX", line)
        self.assertTrue(line.endswith(" 2"), line)

    def test_retriable_status_codes(self):
        self.single.fail(418, 1)
        r, _ = self.proxy.request("GET", "/codes")
        self.assertEqual(r.status, 200)
        self.single.fail(503, 1)
        r, _ = self.proxy.request("GET", "/codes")
        self.assertEqual(r.status, 503)  # not in the list: no retry
        self.assertEqual(len(self.single.seen), 3)

    def test_retry_headers_from_the_request(self):
        # No policy on the route: x-envoy-retry-on and x-envoy-max-retries ask for one.
        self.single.fail(502, 2)
        r, body = self.proxy.request("GET", "/header-retry",
                                     headers={"x-envoy-retry-on": "gateway-error", "x-envoy-max-retries": "2"})
        self.assertEqual(r.status, 200, body)
        self.assertEqual(len(self.single.seen), 3)
        # Timeout headers are consumed; the retry headers go on, as Envoy forwards them.
        self.single.clear()
        r, body = self.proxy.request("GET", "/header-retry", headers={
            "x-envoy-upstream-rq-timeout-ms": "3000", "x-envoy-upstream-rq-per-try-timeout-ms": "1000"})
        h = json.loads(body)["headers"]
        self.assertNotIn("x-envoy-upstream-rq-timeout-ms", h)
        self.assertNotIn("x-envoy-upstream-rq-per-try-timeout-ms", h)
        self.assertEqual(h["x-envoy-expected-rq-timeout-ms"], "1000")

    def test_body_replayed_on_retry_and_not_past_the_buffer_limit(self):
        self.single.fail(503, 1)
        payload = b"x" * 3000
        r, body = self.proxy.request("POST", "/big", body=payload)
        self.assertEqual(r.status, 200, body)
        self.assertEqual(json.loads(body)["body_len"], 3000)
        # Past per_request_buffer_limit_bytes (4096) the body is not kept: no retry.
        self.single.clear()
        self.single.fail(503, 1)
        r, body = self.proxy.request("POST", "/big", body=b"y" * 10000)
        self.assertEqual(r.status, 503)
        self.assertEqual(len(self.single.seen), 1)

    def test_per_try_timeout_then_retry(self):
        # Round robin alternates slow and fast, starting at either (Envoy's round robin starts
        # at a random host); a retry takes the next turn, which is fast's. So every request
        # that starts at slow is cut at 200 ms and retried on fast: of 3 requests, 2 or 3.
        self.slow.delay(3000, 5)
        before = self.proxy.stat("cluster.slowfast.upstream_rq_per_try_timeout") or 0
        slow_before = self.slow.requests
        start = time.monotonic()
        answers = []
        for _ in range(3):
            r, _ = self.proxy.request("GET", "/pertry")
            answers.append((r.status, r.getheader("x-upstream")))
        self.assertEqual(answers, [(200, "fast")] * 3)
        self.assertLess(time.monotonic() - start, 2.5)
        timeouts = self.proxy.stat("cluster.slowfast.upstream_rq_per_try_timeout") - before
        self.assertIn(timeouts, (2, 3))
        self.assertEqual(self.slow.requests - slow_before, timeouts)
        self.slow.clear()

    def test_per_try_timeout_without_retry_is_504_ut(self):
        self.single.delay(1500, 1)
        start = time.monotonic()
        r, body = self.proxy.request("GET", "/pertry-noretry")
        self.assertEqual(r.status, 504)
        self.assertLess(time.monotonic() - start, 1.4)
        self.assertIn("/pertry-noretry 504 UT", self.log_lines("/pertry-noretry")[-1])

    def test_hedging_keeps_the_first_try_and_first_answer_wins(self):
        # The first try (slow, 300 ms) outlives its 200 ms per-try timeout; a hedge goes to
        # fast (1000 ms). Hedging keeps the first try, whose answer wins; a plain retry would
        # have cut it and waited for fast.
        self.slow.delay(300, 1)
        self.fast.delay(1000, 1)
        before = self.proxy.stat("cluster.slowfast.upstream_rq_per_try_timeout") or 0
        start = time.monotonic()
        r, _ = self.proxy.request("GET", "/hedge")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("x-upstream"), "slow")
        self.assertLess(time.monotonic() - start, 0.95)
        # (The hedge's own per-try timeout may fire too, with no retry left to take.)
        self.assertGreaterEqual(self.proxy.stat("cluster.slowfast.upstream_rq_per_try_timeout"), before + 1)
        harness.wait_until(lambda: len(self.fast.seen) == 1, what="the hedged try")

    def test_circuit_breaker_max_requests(self):
        results = []
        lock = threading.Lock()

        def one(i):
            r, _ = self.proxy.request("GET", "/cb?i=%d" % i, headers={"x-test-delay-ms": "700"})
            with lock:
                results.append((r.status, r.getheader("x-envoy-overloaded")))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ok = [r for r in results if r[0] == 200]
        overloaded = [r for r in results if r[0] == 503 and r[1] == "true"]
        self.assertEqual(len(ok) + len(overloaded), 20, results)
        self.assertGreaterEqual(len(ok), 2)
        self.assertGreaterEqual(len(overloaded), 10)
        self.assertLessEqual(len(self.cb.seen), len(ok))
        self.assertEqual(self.proxy.stat("cluster.cb.upstream_rq_pending_overflow"), len(overloaded))
        harness.wait_until(lambda: os.path.exists(self.log_path) and len(
            [l for l in read_log(self.log_path).splitlines() if l.startswith("/cb?")]) == 20,
            what="20 access log lines")
        flagged = [l for l in read_log(self.log_path).splitlines() if l.startswith("/cb?") and " 503 UO " in l]
        self.assertEqual(len(flagged), len(overloaded))
        self.assertEqual(self.proxy.stat("cluster.cb.circuit_breakers.default.rq_open"), 0)
        self.assertEqual(self.proxy.stat("cluster.cb.circuit_breakers.default.remaining_rq"), 2)

    def test_circuit_breaker_connections_and_pending(self):
        # One connection, one waiting request: of five concurrent slow requests two are
        # served (one after the other on the one connection) and three overflow. A first
        # request opens the connection, so that none waits in the queue for its connect.
        r, _ = self.proxy.request("GET", "/cbpool")
        self.assertEqual(r.status, 200)
        results = []
        lock = threading.Lock()
        started = threading.Barrier(5)

        def one(i):
            started.wait()
            r, _ = self.proxy.request("GET", "/cbpool?i=%d" % i, headers={"x-test-delay-ms": "500"})
            with lock:
                results.append((r.status, r.getheader("x-envoy-overloaded")))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results, key=lambda r: r[0]),
                         [(200, None)] * 2 + [(503, "true")] * 3, results)
        self.assertEqual(self.proxy.stat("cluster.cbpool.upstream_rq_pending_overflow"), 3)
        self.assertGreaterEqual(self.proxy.stat("cluster.cbpool.upstream_cx_overflow"), 1)
        self.assertEqual(self.cbpool.connections, 1)
        self.assertEqual(self.proxy.stat("cluster.cbpool.circuit_breakers.default.cx_open"), 1)
        self.assertEqual(self.proxy.stat("cluster.cbpool.circuit_breakers.default.rq_pending_open"), 0)

    def test_high_priority_route_is_not_blocked_by_default_overflow(self):
        # DEFAULT allows one request at a time; a HIGH route has its own breakers and pools.
        slow = {}

        def hold():
            r, _ = self.proxy.request("GET", "/cbprio?slow", headers={"x-test-delay-ms": "1500"})
            slow["status"] = r.status

        t = threading.Thread(target=hold)
        t.start()
        try:
            harness.wait_until(lambda: len(self.cbprio.seen) == 1, what="the slow request upstream")
            self.assertEqual(self.proxy.stat("cluster.cbprio.circuit_breakers.default.rq_open"), 1)
            r, _ = self.proxy.request("GET", "/cbprio?default")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.getheader("x-envoy-overloaded"), "true")
            r, _ = self.proxy.request("GET", "/cbprio-high")
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.getheader("x-envoy-overloaded"))
            self.assertEqual(self.proxy.stat("cluster.cbprio.circuit_breakers.high.rq_open"), 0)
            self.assertEqual(self.proxy.stat("cluster.cbprio.circuit_breakers.high.remaining_rq"), 2)
        finally:
            t.join()
        self.assertEqual(slow["status"], 200)
        self.assertEqual(self.proxy.stat("cluster.cbprio.upstream_rq_pending_overflow"), 1)
        self.assertEqual(self.proxy.stat("cluster.cbprio.circuit_breakers.default.rq_open"), 0)
        flagged = self.log_lines("/cbprio?default")
        self.assertIn(" 503 UO ", flagged[0])
        self.assertIn(" 200 ", self.log_lines("/cbprio-high")[0])

    def concurrent_failures(self, path, n):
        # n requests at once, each try held 300 ms by the upstream and then answered 503: the
        # n first tries fail together and want n retries at once.
        results = []
        lock = threading.Lock()
        started = threading.Barrier(n)

        def one(i):
            started.wait()
            r, _ = self.proxy.request("GET", "%s?i=%d" % (path, i),
                                      headers={"x-test-status": "503", "x-test-delay-ms": "300"})
            with lock:
                results.append(r.status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def test_retry_budget_limits_concurrent_retries(self):
        # budget_percent 20 of at most 5 active requests is at most 1, and
        # min_retry_concurrency is 1: of 5 retries wanted at once one goes (held through its
        # try), the others overflow.
        results = self.concurrent_failures("/budget", 5)
        self.assertEqual(results, [503] * 5)
        retried = self.proxy.stat("cluster.budget.upstream_rq_retry")
        overflow = self.proxy.stat("cluster.budget.upstream_rq_retry_overflow")
        self.assertGreaterEqual(retried, 1)
        self.assertGreaterEqual(overflow, 3)
        self.assertEqual(retried + overflow, 5)
        self.assertEqual(len(self.budget.seen), 5 + retried)
        harness.wait_until(lambda: len([l for l in read_log(self.log_path).splitlines()
                                        if l.startswith("/budget?")]) == 5, what="5 log lines")
        lines = [l for l in read_log(self.log_path).splitlines() if l.startswith("/budget?")]
        self.assertEqual(len([l for l in lines if " 503 UO " in l]), overflow)
        # Every retry gave its budget back.
        harness.wait_until(lambda: self.proxy.stat("cluster.budget.circuit_breakers.default.rq_retry_open") == 0,
                           what="no retry held")

    def test_retry_budget_percent_scales_with_load(self):
        # The same load with budget_percent 100: every failure may retry.
        results = self.concurrent_failures("/budget100", 5)
        # (A retry still in its back-off is not an active request, so the limit may dip
        # below the retries held for a moment: most, not necessarily all, go.)
        self.assertEqual(results, [503] * 5)  # the retries fail too (URX)
        retried = self.proxy.stat("cluster.budget100.upstream_rq_retry")
        overflow = self.proxy.stat("cluster.budget100.upstream_rq_retry_overflow") or 0
        self.assertGreaterEqual(retried, 3)
        self.assertEqual(retried + overflow, 5)
        self.assertEqual(len(self.budget100.seen), 5 + retried)

    def test_mirror_sees_every_request_with_shadow_host(self):
        for i in range(5):
            r, body = self.proxy.request("POST", "/mirror?i=%d" % i, body=b"hello", headers={"host": "svc.local:8080"})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("x-upstream"), "primary")
        harness.wait_until(lambda: len(self.mirror.seen) == 5, what="the mirror's requests")
        self.assertEqual(sorted(s["path"] for s in self.mirror.seen), ["/mirror?i=%d" % i for i in range(5)])
        self.assertTrue(all(s["host"] == "svc.local-shadow:8080" for s in self.mirror.seen), self.mirror.seen)
        self.assertTrue(all(s["host"] == "svc.local:8080" for s in self.primary.seen))
        harness.wait_until(lambda: (self.proxy.stat("cluster.mirror.upstream_rq_2xx") or 0) >= 5,
                           what="the mirror cluster's stats")

    def test_failing_mirror_does_not_touch_the_client(self):
        self.mirror.fail(500, 3)
        for _ in range(3):
            r, body = self.proxy.request("GET", "/mirror")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("x-upstream"), "primary")
        harness.wait_until(lambda: len(self.mirror.seen) == 3, what="the mirror's requests")
        for _ in range(3):
            r, _ = self.proxy.request("GET", "/mirror-dead")
            self.assertEqual(r.status, 200)
        self.assertEqual(len(self.primary.seen), 6)


class BadConfigTest(harness.unittest.TestCase):
    def check(self, routes_extra, clusters_extra, expect):
        r = {"match": {"prefix": "/"}, "route": {"cluster": "c"}}
        r["route"].update(routes_extra)
        hcm = harness.hcm([r])
        c = cluster("c", 1, **clusters_extra)
        d = harness.tempfile.mkdtemp()
        path = os.path.join(d, "envoy.json")
        with open(path, "w") as f:
            json.dump(bootstrap(hcm, [c]), f)
        out = harness.run("proxy", "-c", path, "--mode", "validate")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(expect, out.stdout + out.stderr)

    def test_bad_values_are_refused_with_their_path(self):
        self.check({"retry_policy": {"retry_on": "5xx,sometimes"}}, {}, "retry_policy.retry_on: 'sometimes'")
        self.check({"retry_policy": {"retry_on": "5xx", "retry_host_predicate": [{"name": "envoy.retry_host_predicates.omit_canary_hosts"}]}},
                   {}, "retry_host_predicate[0]: envoy.retry_host_predicates.omit_canary_hosts is not supported")
        self.check({"retry_policy": {"retry_on": "5xx", "retry_back_off": {"base_interval": "0.1s", "max_interval": "0.05s"}}},
                   {}, "retry_back_off.max_interval")
        self.check({}, {"circuit_breakers": {"thresholds": [{"retry_budget": {"budget_percent": {"value": 150}}}]}},
                   "circuit_breakers.thresholds[0].retry_budget.budget_percent")
        self.check({"retry_policy": {"retry_on": "5xx", "retry_priority": {"name": "x"}}}, {}, "retry_priority")
        self.check({}, {"circuit_breakers": {"thresholds": [{"priority": "HIGH"}, {"priority": "HIGH"}]}},
                   "circuit_breakers.thresholds[1].priority")


if __name__ == "__main__":
    harness.main()
