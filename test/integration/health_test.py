"""Host health end to end: active HTTP and TCP health checks and outlier detection take a
host out of the load balancer and bring it back, as /clusters and the stats show."""

import json
import os
import socket
import tempfile
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

CATCH_ALL = [{"match": {"prefix": "/"}, "route": {"cluster": "u"}}]


def http_check(**extra):
    hc = {
        "timeout": "1s",
        "interval": "0.1s",
        "no_traffic_interval": "0.1s",
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "http_health_check": {"path": "/healthz"},
    }
    hc.update(extra)
    return hc


def health_flags(proxy, cluster_name, port):
    """The health_flags line of /clusters for 127.0.0.1:port."""
    _, data = proxy.admin("/clusters")
    key = "%s::127.0.0.1:%d::health_flags::" % (cluster_name, port)
    for line in data.decode().splitlines():
        if line.startswith(key):
            return line[len(key):]
    return None


def served_by(proxy, n):
    """Which upstreams answered n requests through the proxy."""
    names = []
    for _ in range(n):
        r, _ = proxy.request("GET", "/")
        names.append((r.status, r.getheader("x-upstream")))
    return names


class TcpPingServer:
    """Answers each read with `answer` (PONG by default); counts the checks."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answer = b"PONG"
        self.received = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                with self.lock:
                    self.received += data
                c.sendall(self.answer)

    def close(self):
        self.sock.close()


class HealthCase(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.a.close()
        self.b.close()

    def start(self, **cluster_extra):
        self.proxy = Proxy(bootstrap(hcm(CATCH_ALL),
                                     [cluster("u", self.a.port, self.b.port, **cluster_extra)]))
        return self.proxy


class ActiveHealthCheckTest(HealthCase):
    def test_failing_host_gets_no_traffic_and_comes_back(self):
        p = self.start(health_checks=[http_check()])
        # The cluster warmed only after the first round: both hosts are healthy already.
        self.assertEqual(health_flags(p, "u", self.a.port), "healthy")
        self.assertEqual(health_flags(p, "u", self.b.port), "healthy")
        self.assertGreaterEqual(self.b.health_checks, 1)
        self.assertEqual(p.stat("cluster.u.health_check.healthy"), 2)

        self.b.set_health_status(503)
        wait_until(lambda: health_flags(p, "u", self.b.port) == "/failed_active_hc",
                   what="b failing its health check")
        wait_until(lambda: p.stat("cluster.u.health_check.healthy") == 1, what="healthy gauge")
        before = self.b.requests
        got = served_by(p, 10)
        self.assertEqual(got, [(200, "a")] * 10)
        self.assertEqual(self.b.requests, before)
        self.assertGreaterEqual(p.stat("cluster.u.health_check.failure"), 1)
        self.assertGreaterEqual(p.stat("cluster.u.health_check.attempt"),
                                p.stat("cluster.u.health_check.success"))

        self.b.set_health_status(200)
        wait_until(lambda: health_flags(p, "u", self.b.port) == "healthy", what="b back")
        wait_until(lambda: ("b" in [n for _, n in served_by(p, 2)]), what="traffic to b again")

    def test_host_failing_from_the_start_never_gets_traffic(self):
        self.b.set_health_status(500)
        p = self.start(health_checks=[http_check()])
        self.assertEqual(health_flags(p, "u", self.b.port), "/failed_active_hc")
        self.assertEqual(served_by(p, 6), [(200, "a")] * 6)
        self.assertEqual(self.b.requests, 0)

    def test_two_checks_fail_a_host_while_either_fails_it(self):
        # An HTTP check and a TCP connect check: b's 500 fails the first while the second
        # passes it; b stays out (where Envoy's latest verdict would let it flap), then comes
        # back once both pass it.
        tcp = dict(http_check(), tcp_health_check={})
        del tcp["http_health_check"]
        p = self.start(health_checks=[http_check(), tcp])
        self.assertEqual(health_flags(p, "u", self.b.port), "healthy")
        self.b.set_health_status(500)
        wait_until(lambda: health_flags(p, "u", self.b.port) == "/failed_active_hc", what="b out")
        attempts = p.stat("cluster.u.health_check.attempt")
        seen = set()

        def rounds():
            seen.add(health_flags(p, "u", self.b.port))
            return p.stat("cluster.u.health_check.attempt") >= attempts + 12
        wait_until(rounds, what="more check rounds")
        self.assertEqual(seen, {"/failed_active_hc"})
        self.assertEqual(served_by(p, 4), [(200, "a")] * 4)
        self.b.set_health_status(200)
        wait_until(lambda: health_flags(p, "u", self.b.port) == "healthy", what="b back")

    def test_bad_values_are_refused_with_their_path(self):
        tcp = dict(http_check(), tcp_health_check={"send": {"text": "zz"}})
        del tcp["http_health_check"]
        no_interval = http_check()
        del no_interval["interval"]
        cases = [
            ({"health_checks": [tcp]},
             "static_resources.clusters[0].health_checks[0].tcp_health_check.send.text"),
            ({"health_checks": [http_check(http_health_check={
                "path": "/healthz", "expected_statuses": [{"start": 600, "end": 700}]})]},
             "static_resources.clusters[0].health_checks[0].http_health_check.expected_statuses[0]"),
            ({"health_checks": [http_check(), no_interval]},
             "static_resources.clusters[0].health_checks[1].interval"),
            ({"health_checks": [no_interval]},
             "static_resources.clusters[0].health_checks[0].interval"),
            ({"outlier_detection": {"max_ejection_percent": 101}},
             "static_resources.clusters[0].outlier_detection.max_ejection_percent"),
            ({"outlier_detection": {"base_ejection_time": "60s", "max_ejection_time": "30s"}},
             "static_resources.clusters[0].outlier_detection.max_ejection_time"),
        ]
        for extra, want in cases:
            cfg = bootstrap(hcm(CATCH_ALL), [cluster("u", self.a.port, **extra)])
            path = os.path.join(tempfile.mkdtemp(prefix="sluice-test-"), "bad.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = harness.run("proxy", "--mode", "validate", "-c", path)
            self.assertNotEqual(r.returncode, 0, want)
            self.assertIn(want, r.stdout + r.stderr)


class TcpHealthCheckTest(harness.unittest.TestCase):
    def test_send_and_receive(self):
        server = TcpPingServer()
        self.addCleanup(server.close)
        check = {
            "timeout": "1s", "interval": "0.1s", "no_traffic_interval": "0.1s",
            "unhealthy_threshold": 1, "healthy_threshold": 1,
            "tcp_health_check": {"send": {"text": "50494E47"},       # PING
                                 "receive": [{"text": "504f4e47"}]},  # PONG
        }
        p = Proxy(bootstrap(hcm(CATCH_ALL), [cluster("u", server.port, health_checks=[check])]))
        self.addCleanup(p.stop)
        self.assertEqual(health_flags(p, "u", server.port), "healthy")
        self.assertIn(b"PING", server.received)
        server.answer = b"NOPE"
        wait_until(lambda: health_flags(p, "u", server.port) == "/failed_active_hc",
                   what="the wrong answer failing the check")
        server.answer = b"PONG"
        wait_until(lambda: health_flags(p, "u", server.port) == "healthy", what="PONG again")


class TcpConnectOnlyHealthCheckTest(harness.unittest.TestCase):
    def test_every_check_connects_so_a_closed_port_fails(self):
        # No send, no receive: connecting is the check, so each check connects again (the
        # default reuse_connection notwithstanding) and a port that stops listening fails.
        server = TcpPingServer()
        self.addCleanup(server.close)
        check = {
            "timeout": "1s", "interval": "0.1s", "no_traffic_interval": "0.1s",
            "unhealthy_threshold": 1, "healthy_threshold": 1, "tcp_health_check": {},
        }
        p = Proxy(bootstrap(hcm(CATCH_ALL), [cluster("u", server.port, health_checks=[check])]))
        self.addCleanup(p.stop)
        self.assertEqual(health_flags(p, "u", server.port), "healthy")
        wait_until(lambda: p.stat("cluster.u.health_check.success") >= 3, what="three passes")
        server.close()
        wait_until(lambda: health_flags(p, "u", server.port) == "/failed_active_hc",
                   what="the closed port failing the check")


class OutlierDetectionTest(HealthCase):
    def test_5xx_host_is_ejected_and_comes_back(self):
        p = self.start(outlier_detection={
            "consecutive_5xx": 3,
            "interval": "0.1s",
            "base_ejection_time": "1s",
            "max_ejection_percent": 50,
        })
        self.b.set_status(503)
        # Round robin sends every other request to b: its third 503 ejects it.
        wait_until(lambda: served_by(p, 1) and
                   health_flags(p, "u", self.b.port) == "/failed_outlier_check",
                   what="b ejected")
        self.assertEqual(p.stat("cluster.u.outlier_detection.ejections_enforced_consecutive_5xx"), 1)
        self.assertEqual(p.stat("cluster.u.outlier_detection.ejections_detected_consecutive_5xx"), 1)
        self.assertEqual(p.stat("cluster.u.outlier_detection.ejections_enforced_total"), 1)
        self.assertEqual(p.stat("cluster.u.outlier_detection.ejections_active"), 1)
        before = self.b.requests
        self.assertEqual(served_by(p, 8), [(200, "a")] * 8)
        self.assertEqual(self.b.requests, before)

        self.b.set_status(None)
        wait_until(lambda: health_flags(p, "u", self.b.port) == "healthy",
                   what="b back after its ejection time")
        self.assertEqual(p.stat("cluster.u.outlier_detection.ejections_active"), 0)
        wait_until(lambda: (200, "b") in served_by(p, 2), what="traffic to b again")


if __name__ == "__main__":
    harness.main()
