"""Dynamic routes from a file (RDS: `rds` in the connection manager with a path config
source), end to end: a new version moved into place replaces the route table whole and the
next request, on an existing connection too, uses it; a bad version is refused with the path
of the bad field and the old routes keep serving; under load, swaps fail no request."""

import http.client
import json
import os
import tempfile
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def route_config(name, target, prefix="/", **route_extra):
    route = {"match": {"prefix": prefix}, "route": {"cluster": target}}
    route.update(route_extra)
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]}


class RdsFileTest(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.dir = tempfile.mkdtemp(prefix="sluice-rds-")
        self.rds_file = harness.DiscoveryFile(self.dir, "rds.yaml", ROUTE_TYPE)
        self.rds_path = self.rds_file.path
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.a.close()
        self.b.close()

    def write_rds(self, configs, version=None, raw=None):
        self.rds_file.write(configs, version, raw)

    def start(self, concurrency=1):
        hc = hcm([])
        del hc["route_config"]
        hc["rds"] = {"route_config_name": "routes",
                     "config_source": {"path_config_source": {"path": self.rds_path},
                                       "resource_api_version": "V3"}}
        cfg = bootstrap(hc, [cluster("a", self.a.port), cluster("b", self.b.port)])
        self.proxy = Proxy(cfg, concurrency=concurrency)
        return self.proxy

    def served_by(self):
        r, _ = self.proxy.request("GET", "/")
        return r.status, r.getheader("x-upstream")

    def stat(self, what):
        return self.proxy.stat("http.ingress_http.rds.routes." + what)

    def test_routes_are_replaced_for_the_next_request(self):
        self.write_rds([route_config("other", "b"), route_config("routes", "a")])
        p = self.start()
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(self.stat("update_success"), 1)
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)

        def on_conn():
            conn.request("GET", "/")
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("x-upstream")

        self.assertEqual(on_conn(), (200, "a"))
        self.write_rds([route_config("routes", "b")])
        wait_until(lambda: self.stat("update_success") == 2, what="update 2")
        # The same connection: its next request takes the new table.
        self.assertEqual(on_conn(), (200, "b"))
        self.assertEqual(self.served_by(), (200, "b"))
        self.assertEqual(self.a.connections, 1)
        conn.close()
        _, data = p.admin("/config_dump")
        routes = [c for c in json.loads(data)["configs"]
                  if c["@type"].endswith("RoutesConfigDump")][0]
        self.assertEqual([(r["version_info"], r["route_config"]["name"])
                          for r in routes["dynamic_route_configs"]], [("v2", "routes")])

    def test_bad_version_is_refused_and_the_old_routes_keep_serving(self):
        self.write_rds([route_config("routes", "a")])
        p = self.start()
        bad = route_config("routes", "b")
        bad["virtual_hosts"][0]["routes"][0]["match"] = {"safe_regex": {"regex": "(["}}
        self.write_rds([bad])
        p.wait_for_line(r"update rejected: resources\[0\]\.virtual_hosts\[0\]\.routes\[0\]\.match")
        self.write_rds([route_config("elsewhere", "b")])
        p.wait_for_line(r"update rejected: resources: no RouteConfiguration named 'routes'")
        self.write_rds([route_config("routes", "b", bogus_field=1)])
        p.wait_for_line(r"update rejected: .*bogus_field")
        self.assertEqual(self.stat("update_rejected"), 3)
        self.assertEqual(self.served_by(), (200, "a"))
        self.write_rds([route_config("routes", "b")])
        wait_until(lambda: self.served_by() == (200, "b"), what="good version applied")

    def test_missing_file_at_start_gives_404_until_created(self):
        p = self.start()
        self.assertEqual(self.stat("update_failure"), 1)
        self.assertIn("requests get 404 until it is", p.output())
        self.assertEqual(self.served_by()[0], 404)
        self.write_rds([route_config("routes", "a")])
        wait_until(lambda: self.served_by() == (200, "a"), what="routes from the new file")

    def test_swaps_under_load_fail_no_request(self):
        self.write_rds([route_config("routes", "a")])
        p = self.start(concurrency=2)
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0, "a": 0, "b": 0}
        errors = []
        lock = threading.Lock()

        def client(keep_alive):
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            while not stop.is_set():
                try:
                    if not keep_alive:
                        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
                    c.request("GET", "/")
                    r = c.getresponse()
                    r.read()
                    with lock:
                        if r.status == 200:
                            counts["ok"] += 1
                            counts[r.getheader("x-upstream")] += 1
                        else:
                            counts["failed"] += 1
                            errors.append(r.status)
                    if not keep_alive:
                        c.close()
                except Exception as e:
                    with lock:
                        counts["failed"] += 1
                        errors.append(repr(e))
                    c.close()
            c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in (True, True, False, False)]
        for t in threads:
            t.start()
        for i in range(6):
            target = "b" if i % 2 == 0 else "a"
            before = counts[target]
            self.write_rds([route_config("routes", target)])
            wait_until(lambda: counts[target] > before + 50, timeout=20, what="traffic on " + target)
        stop.set()
        for t in threads:
            t.join(20)
        print("rds swaps under load: %d ok, %d failed (a %d, b %d)" %
              (counts["ok"], counts["failed"], counts["a"], counts["b"]))
        self.assertEqual(counts["failed"], 0, errors[:5])
        self.assertGreater(counts["ok"], 300)
        self.assertEqual(self.stat("update_success"), 7)


if __name__ == "__main__":
    harness.main()
