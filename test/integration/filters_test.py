"""HTTP filters end to end (envoy.filters.http.fault, envoy.filters.http.local_ratelimit):
the real binary, a real upstream that counts what reaches it, the access log and /stats."""

import os
import time

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def route(prefix, per_filter=None):
    r = {"match": {"prefix": prefix}, "route": {"cluster": "a"}}
    if per_filter:
        r["typed_per_filter_config"] = per_filter
    return r


def percent(n):
    return {"numerator": n, "denominator": "HUNDRED"}


class FiltersTest(harness.unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = Upstream("a")
        routes = [
            # The filter's own config is header-controlled; these routes replace it.
            route("/abort", {"envoy.filters.http.fault": {
                "@type": FAULT, "abort": {"http_status": 503, "percentage": percent(100)}}}),
            route("/delay", {"envoy.filters.http.fault": {
                "@type": FAULT, "delay": {"fixed_delay": "0.2s", "percentage": percent(100)}}}),
            route("/slowabort", {"envoy.filters.http.fault": {
                "@type": FAULT, "delay": {"fixed_delay": "0.05s", "percentage": percent(100)},
                "abort": {"http_status": 502, "percentage": percent(100)}}}),
            route("/nofault", {"envoy.filters.http.fault": {"@type": FAULT}}),
            route("/paced", {"envoy.filters.http.fault": {
                "@type": FAULT, "response_rate_limit": {
                    "fixed_limit": {"limit_kbps": 8}, "percentage": percent(100)}}}),
            route("/limited", {"envoy.filters.http.local_ratelimit": {
                "@type": LRL, "stat_prefix": "e2e_rl",
                "token_bucket": {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "3600s"},
                "filter_enabled": {"runtime_key": "rl_enabled", "default_value": percent(100)},
                "filter_enforced": {"runtime_key": "rl_enforced", "default_value": percent(100)},
                "response_headers_to_add": [{"header": {"key": "x-local-rate-limit", "value": "true"}}],
            }}),
            # A status under 400 is not an error: Envoy answers 429 instead.
            route("/okstatus", {"envoy.filters.http.local_ratelimit": {
                "@type": LRL, "stat_prefix": "ok_rl", "status": {"code": 200},
                "token_bucket": {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"},
                "filter_enabled": {"runtime_key": "a", "default_value": percent(100)},
                "filter_enforced": {"runtime_key": "b", "default_value": percent(100)},
            }}),
            route("/"),
        ]
        cls.log_path = os.path.join(harness.tempfile.mkdtemp(), "access.log")
        filters = [
            {"name": "envoy.filters.http.fault", "typed_config": {
                "@type": FAULT,
                "abort": {"header_abort": {}, "percentage": percent(100)},
                "delay": {"header_delay": {}, "percentage": percent(100)}}},
            # Off unless a route turns it on (filter_enabled defaults to 0%).
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": LRL, "stat_prefix": "global_rl"}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ]
        access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": cls.log_path,
            "log_format": {"text_format_source": {
                "inline_string": "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}}}]
        config = bootstrap(hcm(routes, http_filters=filters, access_log=access_log),
                           [cluster("a", cls.a.port)])
        cls.proxy = Proxy(config)

    @classmethod
    def tearDownClass(cls):
        rc = cls.proxy.stop()
        cls.a.close()
        # A clean exit (under ASan: no error or leak report).
        if rc != 0 or "Sanitizer" in cls.proxy.output():
            raise AssertionError("sluice exited %s:\n%s" % (rc, cls.proxy.output()[-3000:]))

    def log_line(self, path):
        """The access log line of `path` (waits for the flush, not the clock)."""
        def find():
            if not os.path.exists(self.log_path):
                return None
            with open(self.log_path) as f:
                lines = [l for l in f.read().splitlines() if l.split(" ")[0] == path]
            return lines[-1] if lines else None
        return wait_until(find, what="access log line for " + path)

    def test_abort_503_fi_and_the_upstream_never_sees_it(self):
        before = self.a.requests
        r, data = self.proxy.request("GET", "/abort/1")
        self.assertEqual(r.status, 503)
        self.assertEqual(data, b"fault filter abort")
        self.assertEqual(self.log_line("/abort/1"), "/abort/1 503 FI")
        self.assertEqual(self.a.requests, before)
        self.assertGreaterEqual(self.proxy.stat("http.ingress_http.fault.aborts_injected"), 1)

    def test_fixed_delay_is_at_least_the_delay_and_bounded(self):
        before = self.a.requests
        start = time.monotonic()
        r, _ = self.proxy.request("GET", "/delay/1")
        elapsed = time.monotonic() - start
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 2.0)
        self.assertEqual(self.a.requests, before + 1)
        self.assertEqual(self.log_line("/delay/1"), "/delay/1 200 DI")
        self.assertGreaterEqual(self.proxy.stat("http.ingress_http.fault.delays_injected"), 1)
        # The delay is over: no fault is active any more.
        wait_until(lambda: self.proxy.stat("http.ingress_http.fault.active_faults") == 0,
                   what="active_faults back to 0")

    def test_delay_then_abort(self):
        before = self.a.requests
        start = time.monotonic()
        r, _ = self.proxy.request("GET", "/slowabort/1")
        self.assertGreaterEqual(time.monotonic() - start, 0.05)
        self.assertEqual(r.status, 502)
        self.assertEqual(self.a.requests, before)
        self.assertEqual(self.log_line("/slowabort/1"), "/slowabort/1 502 DI,FI")

    def test_header_controlled_abort(self):
        before = self.a.requests
        r, _ = self.proxy.request("GET", "/hdr/1", {"x-envoy-fault-abort-request": "418"})
        self.assertEqual(r.status, 418)
        self.assertEqual(self.log_line("/hdr/1"), "/hdr/1 418 FI")
        # Without the header the request goes through.
        r, _ = self.proxy.request("GET", "/hdr/2")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.a.requests, before + 1)

    def test_per_route_config_disables_the_fault_on_one_route(self):
        before = self.a.requests
        r, _ = self.proxy.request("GET", "/nofault/1", {"x-envoy-fault-abort-request": "500"})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.a.requests, before + 1)
        self.assertEqual(self.log_line("/nofault/1"), "/nofault/1 200 -")

    def test_response_rate_limit_paces_the_body(self):
        # 8 KiB/s lets out 409 bytes per 50 ms tick: 2048 bytes take 5 slices, 4 ticks apart.
        start = time.monotonic()
        r, data = self.proxy.request("GET", "/paced/1", {"x-test-body-size": "2048"})
        elapsed = time.monotonic() - start
        self.assertEqual(r.status, 200)
        self.assertEqual(data, bytes((i * 7) % 251 for i in range(2048)))
        self.assertGreaterEqual(elapsed, 0.19)
        self.assertLess(elapsed, 2.0)
        self.assertGreaterEqual(self.proxy.stat("http.ingress_http.fault.response_rl_injected"), 1)

    def test_local_rate_limit_burst_beyond_max_tokens_is_429_rl(self):
        before = self.a.requests
        statuses = []
        for i in range(6):
            r, data = self.proxy.request("GET", "/limited/%d" % i)
            statuses.append(r.status)
            if r.status == 429:
                self.assertEqual(r.getheader("x-local-rate-limit"), "true")
                self.assertEqual(r.getheader("x-envoy-ratelimited"), "true")
        self.assertEqual(statuses, [200, 200, 200, 429, 429, 429])
        self.assertEqual(self.a.requests, before + 3)
        self.assertEqual(self.log_line("/limited/5"), "/limited/5 429 RL")
        self.assertEqual(self.log_line("/limited/0"), "/limited/0 200 -")
        self.assertEqual(self.proxy.stat("e2e_rl.http_local_rate_limit.enabled"), 6)
        self.assertEqual(self.proxy.stat("e2e_rl.http_local_rate_limit.ok"), 3)
        self.assertEqual(self.proxy.stat("e2e_rl.http_local_rate_limit.rate_limited"), 3)
        self.assertEqual(self.proxy.stat("e2e_rl.http_local_rate_limit.enforced"), 3)
        # Other routes use the filter's own config, which is not enabled.
        r, _ = self.proxy.request("GET", "/other")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.proxy.stat("global_rl.http_local_rate_limit.enabled"), 0)

    def test_rate_limit_status_under_400_answers_429(self):
        r, _ = self.proxy.request("GET", "/okstatus/1")
        self.assertEqual(r.status, 200)
        r, _ = self.proxy.request("GET", "/okstatus/2")
        self.assertEqual(r.status, 429)
        self.assertEqual(self.proxy.stat("ok_rl.http_local_rate_limit.enforced"), 1)

    def refused(self, config):
        path = os.path.join(harness.tempfile.mkdtemp(), "bad.json")
        with open(path, "w") as f:
            harness.json.dump(config, f)
        out = harness.run("proxy", "-c", path)
        self.assertNotEqual(out.returncode, 0)
        return out.stderr + out.stdout

    def test_per_route_config_of_another_filters_type_is_refused(self):
        # Keyed by the fault filter's name, a local rate limit config: refused at load (the
        # fault filter would read it as its own).
        router = {"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        bad = route("/", {"envoy.filters.http.fault": {
            "@type": LRL, "stat_prefix": "x",
            "token_bucket": {"max_tokens": 1, "fill_interval": "1s"}}})
        config = bootstrap(hcm([bad], http_filters=[
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": FAULT}}, router]),
            [cluster("a", self.a.port)])
        self.assertIn("routes[0].typed_per_filter_config[envoy.filters.http.fault]: "
                      "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit is not "
                      "the config of filter 'envoy.filters.http.fault'", self.refused(config))
        # A per-route rate limit without its own token bucket limits nothing: refused too.
        bad = route("/", {"envoy.filters.http.local_ratelimit": {"@type": LRL, "stat_prefix": "y"}})
        config = bootstrap(hcm([bad], http_filters=[
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": LRL, "stat_prefix": "x"}}, router]),
            [cluster("a", self.a.port)])
        self.assertIn("typed_per_filter_config[envoy.filters.http.local_ratelimit].token_bucket",
                      self.refused(config))

    def test_bad_filter_config_is_refused_with_its_path(self):
        config = bootstrap(hcm([route("/")], http_filters=[
            {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
                "@type": LRL, "stat_prefix": "x",
                "token_bucket": {"max_tokens": 1, "fill_interval": "0.001s"}}},
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]),
            [cluster("a", self.a.port)])
        path = os.path.join(harness.tempfile.mkdtemp(), "bad.json")
        with open(path, "w") as f:
            harness.json.dump(config, f)
        out = harness.run("proxy", "-c", path)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("http_filters[0].typed_config.token_bucket.fill_interval: must be at least 50ms",
                      out.stderr + out.stdout)


if __name__ == "__main__":
    harness.main()
