"""Cluster load balancing end to end: the real binary, three test upstreams."""

import http.client
import json
import os
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm
from upstream import Upstream


def route(prefix, cluster_name, **action):
    a = {"cluster": cluster_name}
    a.update(action)
    return {"match": {"prefix": prefix}, "route": a}


def get(proxy, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


class ConsistentHashTest(harness.unittest.TestCase):
    """RING_HASH and MAGLEV with a header hash policy: a key keeps its upstream."""

    @classmethod
    def setUpClass(cls):
        cls.ups = [Upstream("u%d" % i) for i in range(3)]
        ports = [u.port for u in cls.ups]
        header = [{"header": {"header_name": "x-user"}}]
        cookie = [{"cookie": {"name": "sticky", "ttl": "3600s", "path": "/"}}]
        routes = [route("/ring", "ring", hash_policy=header),
                  route("/maglev", "maglev", hash_policy=header),
                  route("/cookie", "ring", hash_policy=cookie)]
        clusters = [cluster("ring", *ports, lb_policy="RING_HASH"),
                    cluster("maglev", *ports, lb_policy="MAGLEV",
                            maglev_lb_config={"table_size": 65537})]
        # Two workers: each has its own balancer, and they must agree.
        cls.proxy = Proxy(bootstrap(hcm(routes), clusters), concurrency=2)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        for u in cls.ups:
            u.close()

    def check_sticky(self, prefix):
        chosen = {}
        counts_before = [u.requests for u in self.ups]
        for user in range(12):
            for _ in range(5):
                r, data = get(self.proxy, prefix, {"x-user": "user-%d" % user})
                self.assertEqual(r.status, 200)
                name = json.loads(data)["upstream"]
                chosen.setdefault(user, set()).add(name)
        for user, names in chosen.items():
            self.assertEqual(len(names), 1, "user-%d went to %s" % (user, names))
        # The upstreams' own counts: 60 requests, each user's 5 at one of them.
        per_upstream = {u.server.name: u.requests - b for u, b in zip(self.ups, counts_before)}
        self.assertEqual(sum(per_upstream.values()), 60)
        expected = {}
        for names in chosen.values():
            (n,) = names
            expected[n] = expected.get(n, 0) + 5
        self.assertEqual({k: v for k, v in per_upstream.items() if v}, expected)
        # Different keys spread: with 3 equal hosts, 12 keys all on one host has
        # probability 3 x (1/3)^12, about 6e-6.
        self.assertGreaterEqual(len(expected), 2)

    def test_ring_hash_keeps_each_key_on_one_upstream(self):
        self.check_sticky("/ring")

    def test_maglev_keeps_each_key_on_one_upstream(self):
        self.check_sticky("/maglev")

    def test_a_missing_cookie_is_generated_and_then_sticks(self):
        r, data = get(self.proxy, "/cookie")
        self.assertEqual(r.status, 200)
        set_cookie = r.getheader("set-cookie")
        self.assertRegex(set_cookie, r'^sticky="[0-9a-f]{16}"; Max-Age=3600; Path=/; HttpOnly$')
        value = set_cookie.split(";")[0].split("=", 1)[1].strip('"')
        first = json.loads(data)["upstream"]
        for _ in range(8):
            r, data = get(self.proxy, "/cookie", {"cookie": "sticky=" + value})
            self.assertIsNone(r.getheader("set-cookie"))
            self.assertEqual(json.loads(data)["upstream"], first)


class LeastRequestTest(harness.unittest.TestCase):
    def slow_share(self, policy):
        """The share of 180 requests (4 clients in closed loops) that reach the one slow
        upstream of three."""
        fast = [Upstream("fast0"), Upstream("fast1")]
        slow = Upstream("slow", delay_ms=500)
        ups = fast + [slow]
        try:
            clusters = [cluster("c", *[u.port for u in ups], lb_policy=policy)]
            with Proxy(bootstrap(hcm([route("/", "c")]), clusters)) as proxy:
                total = 180
                lock = threading.Lock()
                sent = [0]
                failures = []

                def client():
                    while True:
                        with lock:
                            if sent[0] >= total:
                                return
                            sent[0] += 1
                        r, _ = get(proxy, "/")
                        if r.status != 200:
                            failures.append(r.status)

                threads = [threading.Thread(target=client) for _ in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self.assertEqual(failures, [])
                self.assertEqual(sum(u.requests for u in ups), total)
                self.assertGreater(min(u.requests for u in fast), 0)
                return slow.requests / total
        finally:
            for u in ups:
                u.close()

    def test_least_request_avoids_a_slow_upstream(self):
        # Round robin (one worker) gives the slow upstream exactly every third request,
        # however long it takes to answer.
        self.assertAlmostEqual(self.slow_share("ROUND_ROBIN"), 1 / 3, delta=0.01)
        # Least request: while a request waits at the slow upstream, two random choices pick it
        # only when both land on it (1/9) or when the fast ones are busier. Runs of this test
        # gave 0.12 to 0.17; a balancer that ignored active requests would give 1/3.
        share = self.slow_share("LEAST_REQUEST")
        self.assertLess(share, 0.25)


class LocalityWeightTest(harness.unittest.TestCase):
    def test_localities_share_by_load_balancing_weight(self):
        ups = [Upstream("east"), Upstream("west")]
        try:
            c = cluster("c", 1, common_lb_config={"locality_weighted_lb_config": {}})
            c["load_assignment"]["endpoints"] = [
                {"locality": {"zone": zone}, "load_balancing_weight": weight,
                 "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                     "address": "127.0.0.1", "port_value": u.port}}}}]}
                for u, zone, weight in zip(ups, ["east", "west"], [1, 3])]
            with Proxy(bootstrap(hcm([route("/", "c")]), [c])) as proxy:
                for _ in range(40):
                    r, _ = get(proxy, "/")
                    self.assertEqual(r.status, 200)
                # One worker, localities picked smoothly by weight: exactly 1:3.
                self.assertEqual([u.requests for u in ups], [10, 30])
        finally:
            for u in ups:
                u.close()


class LbConfigRefusedTest(harness.unittest.TestCase):
    def validate(self, **cluster_extra):
        d = harness.tempfile.mkdtemp()
        path = os.path.join(d, "c.json")
        json.dump(bootstrap(hcm([route("/", "c")]), [cluster("c", 1, **cluster_extra)]), open(path, "w"))
        return harness.run("proxy", "--mode", "validate", "-c", path)

    def test_bad_values_are_refused_with_their_path(self):
        cases = [
            ({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 65536}},
             "static_resources.clusters[0].maglev_lb_config.table_size: 65536 is not a prime number"),
            ({"lb_policy": "RING_HASH",
              "ring_hash_lb_config": {"minimum_ring_size": 4096, "maximum_ring_size": 1024}},
             "static_resources.clusters[0].ring_hash_lb_config.minimum_ring_size: 4096 is greater "
             "than maximum_ring_size 1024"),
            ({"least_request_lb_config": {"choice_count": 1}},
             "static_resources.clusters[0].least_request_lb_config.choice_count"),
            ({"lb_policy": "RING_HASH", "common_lb_config": {"locality_weighted_lb_config": {}}},
             "static_resources.clusters[0].common_lb_config.locality_weighted_lb_config: not "
             "supported with RING_HASH"),
        ]
        for extra, message in cases:
            with self.subTest(extra=extra):
                r = self.validate(**extra)
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(message, r.stderr)

    def test_good_values_are_accepted(self):
        r = self.validate(lb_policy="LEAST_REQUEST",
                          least_request_lb_config={"choice_count": 3, "active_request_bias": {
                              "default_value": 0.5, "runtime_key": "k"}},
                          common_lb_config={"healthy_panic_threshold": {"value": 30},
                                            "locality_weighted_lb_config": {}})
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    harness.main()
