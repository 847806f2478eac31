"""Dynamic clusters from a file (CDS with a path_config_source), end to end: the file holds a
DiscoveryResponse; a new version moved into place adds, changes and removes clusters while
the proxy serves; a bad version is refused with the path of the bad field, and the last
good clusters keep serving."""

import json
import os
import socket
import tempfile
import threading

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def route_to(name, prefix="/"):
    return {"match": {"prefix": prefix}, "route": {"cluster": name}}


class CdsFileTest(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.dir = tempfile.mkdtemp(prefix="sluice-cds-")
        self.cds_file = harness.DiscoveryFile(self.dir, "cds.yaml", CLUSTER_TYPE)
        self.cds_path = self.cds_file.path
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.a.close()
        self.b.close()

    def write_cds(self, clusters, version=None, raw=None):
        self.cds_file.write(clusters, version, raw)

    def start(self, routes, static_clusters=()):
        hc = hcm(routes)
        # Routes name clusters that arrive later by CDS: the bootstrap does not check them
        # (Envoy's validate_clusters: false).
        hc["route_config"]["validate_clusters"] = False
        cfg = bootstrap(hc, list(static_clusters))
        cfg["dynamic_resources"] = {"cds_config": {
            "path_config_source": {"path": self.cds_path}, "resource_api_version": "V3"}}
        self.proxy = Proxy(cfg)
        return self.proxy

    def clusters_dump(self):
        _, data = self.proxy.admin("/config_dump")
        for c in json.loads(data)["configs"]:
            if c["@type"].endswith("ClustersConfigDump"):
                return c
        raise AssertionError("no ClustersConfigDump")

    def served_by(self, path="/"):
        r, _ = self.proxy.request("GET", path)
        return r.status, r.getheader("x-upstream")

    def test_clusters_are_added_changed_and_removed(self):
        self.write_cds([cluster("dyn", self.a.port)])
        p = self.start([route_to("dyn")])
        # The first version was read before the listeners opened.
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("cluster_manager.cds.update_success"), 1)
        self.assertEqual(p.stat("cluster_manager.active_clusters"), 1)
        dump = self.clusters_dump()
        self.assertEqual(dump["version_info"], "v1")
        self.assertEqual([(c["version_info"], c["cluster"]["name"])
                          for c in dump["dynamic_active_clusters"]], [("v1", "dyn")])

        # Changed: the same name now points at b.
        self.write_cds([cluster("dyn", self.b.port)])
        wait_until(lambda: self.served_by() == (200, "b"), what="dyn moved to b")
        self.assertEqual(p.stat("cluster_manager.cds.update_success"), 2)
        self.assertEqual(p.stat("cluster_manager.cluster_modified"), 1)

        # Removed: the route's cluster is gone (503, as Envoy's cluster_not_found).
        self.write_cds([cluster("other", self.a.port)])
        wait_until(lambda: self.served_by()[0] == 503, what="dyn removed")
        self.assertEqual(p.stat("cluster_manager.cluster_removed"), 1)
        self.assertEqual(p.stat("cluster_manager.cluster_added"), 2)

    def test_unchanged_cluster_is_left_alone(self):
        self.write_cds([cluster("dyn", self.a.port)])
        p = self.start([route_to("dyn")])
        self.assertEqual(self.served_by(), (200, "a"))
        self.write_cds([cluster("dyn", self.a.port), cluster("two", self.b.port)])
        wait_until(lambda: p.stat("cluster_manager.cds.update_success") == 2, what="update 2")
        self.assertEqual(p.stat("cluster_manager.cluster_modified") or 0, 0)
        self.assertEqual(p.stat("cluster_manager.cluster_added"), 2)
        # The unchanged cluster kept its upstream connection (no new one was opened).
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("cluster.dyn.upstream_cx_total"), 1)

    def test_bad_version_is_refused_and_the_old_keeps_serving(self):
        self.write_cds([cluster("dyn", self.a.port)])
        p = self.start([route_to("dyn")])
        self.assertEqual(self.served_by(), (200, "a"))

        bad = cluster("dyn", self.b.port, connect_timeout="0s")
        self.write_cds([cluster("fine", self.b.port), bad])
        p.wait_for_line(r"update rejected: resources\[1\]\.connect_timeout: value must be greater than 0s")
        self.assertEqual(p.stat("cluster_manager.cds.update_rejected"), 1)
        # Nothing of the bad version applied: not even its good cluster.
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertIsNone(p.stat("cluster.fine.upstream_cx_total"))
        self.assertEqual(p.stat("cluster_manager.active_clusters"), 1)

        unsupported = cluster("dyn", self.b.port, lb_policy="CLUSTER_PROVIDED")
        self.write_cds([unsupported])
        p.wait_for_line(r"update rejected: resources\[0\]\.lb_policy: ")
        self.write_cds(None, raw="version_info: x\nresources: [ {")
        p.wait_for_line(r"update rejected: .*yaml")
        self.write_cds(None, raw=json.dumps({"version_info": "wrong-type", "resources": [
            {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": "l"}]}))
        p.wait_for_line(r"update rejected: resources\[0\]: type .*Listener is not the subscribed type")
        self.assertEqual(p.stat("cluster_manager.cds.update_rejected"), 4)
        self.assertEqual(self.served_by(), (200, "a"))

        # A good version after the bad ones applies.
        self.write_cds([cluster("dyn", self.b.port)])
        wait_until(lambda: self.served_by() == (200, "b"), what="good version applied")

    def test_static_cluster_cannot_be_replaced(self):
        self.write_cds([cluster("fixed", self.b.port)])
        p = self.start([route_to("fixed")], static_clusters=[cluster("fixed", self.a.port)])
        self.assertEqual(p.stat("cluster_manager.cds.update_rejected"), 1)
        self.assertIn("resources[0].name: cluster 'fixed' is a static cluster", p.output())
        self.assertEqual(self.served_by(), (200, "a"))

    def test_missing_file_at_start_then_created(self):
        p = self.start([route_to("dyn")])
        self.assertEqual(p.stat("cluster_manager.cds.update_failure"), 1)
        self.assertEqual(self.served_by()[0], 503)
        self.write_cds([cluster("dyn", self.a.port)])
        wait_until(lambda: self.served_by() == (200, "a"), what="cluster from the new file")

    def test_in_flight_request_finishes_on_the_old_cluster(self):
        self.write_cds([cluster("dyn", self.a.port)])
        p = self.start([route_to("dyn")])
        self.a.delay(500)
        result = {}

        def slow():
            result["r"] = self.served_by()

        t = threading.Thread(target=slow)
        t.start()
        wait_until(lambda: self.a.requests >= 1, what="slow request at a")
        self.write_cds([cluster("dyn", self.b.port)])
        wait_until(lambda: p.stat("cluster_manager.cds.update_success") == 2, what="update 2")
        t.join(10)
        self.assertEqual(result.get("r"), (200, "a"))
        wait_until(lambda: self.served_by() == (200, "b"), what="new requests go to b")

    def test_config_dump_shows_a_warming_definition_as_warming(self):
        self.write_cds([cluster("dyn", self.a.port)])
        p = self.start([route_to("dyn")])
        # A port that accepts (the backlog) but never answers: the new definition's first
        # health check waits out its timeout, so it warms for that long.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)
        hc = {"timeout": "20s", "interval": "30s", "unhealthy_threshold": 1,
              "healthy_threshold": 1, "http_health_check": {"path": "/healthz"}}
        self.write_cds([cluster("dyn", silent.getsockname()[1], health_checks=[hc])])
        wait_until(lambda: p.stat("cluster_manager.warming_clusters") == 1, what="warming")
        dump = self.clusters_dump()
        self.assertEqual([(c["version_info"], c["cluster"]["name"])
                          for c in dump["dynamic_active_clusters"]], [("v1", "dyn")])
        self.assertEqual([(c["version_info"], c["cluster"]["name"])
                          for c in dump["dynamic_warming_clusters"]], [("v2", "dyn")])
        self.assertEqual(self.served_by(), (200, "a"))
        # (The test ends while it warms: a CDS cluster whose first health check times out
        # crashes the proxy when it activates, on main too; reported, not fixed here.)


if __name__ == "__main__":
    harness.main()
