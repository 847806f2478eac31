"""EDS from a file, end to end: a cluster of type EDS whose endpoints come from a watched
file of ClusterLoadAssignments. Traffic follows each new version; a bad version is refused
with the path of the bad field and the last endpoints keep serving; endpoints moved from one
upstream to another under load lose no request."""

import json
import tempfile
import threading
import http.client

import harness
from harness import Proxy, bootstrap, hcm, wait_until
from upstream import Upstream

CLA_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def assignment(name, *ports, **extra):
    a = {"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        for p in ports]}]}
    a.update(extra)
    return a


class EdsFileTest(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.dir = tempfile.mkdtemp(prefix="sluice-eds-")
        self.eds = harness.DiscoveryFile(self.dir, "eds.json", CLA_TYPE)
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.a.close()
        self.b.close()

    def start(self, service_name="svc", concurrency=1, wait_serving=True):
        cluster = {
            "name": "backend",
            "type": "EDS",
            "connect_timeout": "1s",
            "eds_cluster_config": {
                "service_name": service_name,
                "eds_config": {"path_config_source": {"path": self.eds.path},
                               "resource_api_version": "V3"}},
        }
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]),
                        [cluster])
        self.proxy = Proxy(cfg, concurrency=concurrency, wait_serving=wait_serving)
        return self.proxy

    def served_by(self):
        r, _ = self.proxy.request("GET", "/")
        return r.status, r.getheader("x-upstream")

    def spread(self, n=20):
        return {self.served_by()[1] for _ in range(n)}

    def test_traffic_follows_versions_and_a_bad_one_is_refused(self):
        # Another service's assignment in the file is not this cluster's.
        self.eds.write([assignment("svc", self.a.port, self.b.port),
                        assignment("other", 1)])
        p = self.start()
        self.assertEqual(self.spread(), {"a", "b"})
        self.assertEqual(p.stat("cluster.backend.membership_total"), 2)
        self.assertEqual(p.stat("cluster.backend.update_success"), 1)
        # /config_dump?include_eds shows the assignment as accepted (Envoy's
        # EndpointsConfigDump); without the parameter there is none.
        _, data = p.admin("/config_dump?include_eds")
        eps = [c for c in json.loads(data)["configs"] if c["@type"].endswith("EndpointsConfigDump")]
        self.assertEqual(len(eps), 1)
        [entry] = eps[0]["dynamic_endpoint_configs"]
        self.assertEqual(entry["version_info"], "v1")
        self.assertEqual(entry["endpoint_config"]["cluster_name"], "svc")
        self.assertEqual(len(entry["endpoint_config"]["endpoints"][0]["lb_endpoints"]), 2)
        _, data = p.admin("/config_dump")
        self.assertFalse([c for c in json.loads(data)["configs"]
                          if c["@type"].endswith("EndpointsConfigDump")])

        self.eds.write([assignment("svc", self.b.port)])
        wait_until(lambda: p.stat("cluster.backend.update_success") == 2, what="v2 applied")
        self.assertEqual(self.spread(), {"b"})
        self.assertEqual(p.stat("cluster.backend.membership_total"), 1)

        # A bad version: refused whole, logged with the field's path; b keeps serving.
        bad = assignment("svc", self.a.port)
        bad["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "address"] = "not-an-ip"
        self.eds.write([bad])
        p.wait_for_line(r"update rejected: resources\[0\]\.endpoints\[0\]\.lb_endpoints\[0\]"
                        r"\.endpoint\.address\.socket_address: ")
        self.assertEqual(p.stat("cluster.backend.update_rejected"), 1)
        self.assertEqual(self.spread(), {"b"})

        # Unhealthy and draining endpoints take no traffic.
        drained = assignment("svc", self.a.port, self.b.port)
        drained["endpoints"][0]["lb_endpoints"][1]["health_status"] = "DRAINING"
        self.eds.write([drained])
        wait_until(lambda: p.stat("cluster.backend.update_success") == 3, what="v4 applied")
        self.assertEqual(self.spread(), {"a"})
        self.assertEqual(p.stat("cluster.backend.membership_healthy"), 1)

    def test_start_up_waits_for_the_first_assignment(self):
        # No file yet: the cluster has no assignment, so the workers do not serve (Envoy's
        # initial_fetch_timeout is 15 s, far beyond this test).
        p = self.start(wait_serving=False)
        wait_until(lambda: p.stat("cluster.backend.update_failure") == 1, what="first read")
        self.assertNotIn("serving", p.output())
        self.eds.write([assignment("svc", self.a.port)])
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("cluster.backend.membership_total"), 1)

    def test_endpoints_moved_under_load_lose_no_request(self):
        self.eds.write([assignment("svc", self.a.port)])
        p = self.start(concurrency=2)
        stop = threading.Event()
        results = {"ok": 0, "failed": 0, "by": {}}
        lock = threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            while not stop.is_set():
                try:
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    r.read()
                    with lock:
                        if r.status == 200:
                            results["ok"] += 1
                            who = r.getheader("x-upstream")
                            results["by"][who] = results["by"].get(who, 0) + 1
                        else:
                            results["failed"] += 1
                except Exception:  # a reset or a closed connection counts as a failure
                    with lock:
                        results["failed"] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            def served():
                with lock:
                    return results["ok"]
            # A, then A and B, then B: each step once traffic has flowed on the last one.
            for step, ports in enumerate([(self.a.port, self.b.port), (self.b.port,)], 2):
                base = served()
                wait_until(lambda: served() > base + 200, timeout=30, what="traffic")
                self.eds.write([assignment("svc", *ports)])
                wait_until(lambda: p.stat("cluster.backend.update_success") == step,
                           what="version %d" % step)
            before_b_only = self.a.requests
            base = served()
            wait_until(lambda: served() > base + 200, timeout=30, what="traffic on b")
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(results["failed"], 0, results)
        self.assertGreater(results["by"].get("a", 0), 0)
        self.assertGreater(results["by"].get("b", 0), 0)
        # After the last version A got nothing new (beyond requests already in flight).
        self.assertLessEqual(self.a.requests - before_b_only, 4)


if __name__ == "__main__":
    harness.main()
