"""The ADS client's (src/config/grpc_mux) bookkeeping, end to end against the scriptable ADS
server: a watch made after its resources came (an EDS cluster replaced by CDS) is offered them
as they were last accepted, name by name, also when a neighbour of the same response was
refused; a type nobody watches any more asks for nothing (in state of the world a request
without names would ask for every resource); and a refused resource leaves its accepted
neighbours of the same response applied."""

import json
import os
import sys

import harness
import xds_ads_test
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from xds_ads_test import (ADS_CONFIG, CLUSTER_TYPE, EDS_TYPE, ROUTE_TYPE, AdsBase, ads_listener,
                          assignment, rds_hcm, route_config, xds_cluster)


def eds_cluster(name, service, **extra):
    c = {"name": name, "type": "EDS", "connect_timeout": "1s",
         "eds_cluster_config": {"service_name": service,
                                "eds_config": {"ads": {}, "resource_api_version": "V3"}}}
    c.update(extra)
    return c


class MuxBase(AdsBase):
    delta = False

    def tearDown(self):
        proxy, self.proxy = self.proxy, None
        rc = proxy.stop() if proxy else 0
        super().tearDown()
        # A sanitizer's report (a leak at exit) makes the exit status non-zero.
        self.assertEqual(rc, 0, proxy.output()[-3000:] if proxy else "")

    def reply_to(self, type_url, nonce):
        """The proxy's answer to the response `nonce` (other types' requests skipped)."""
        while True:
            req = self.ads.next_request()
            if req["typeUrl"] == type_url and req.get("responseNonce") == nonce:
                return req

    def send(self, type_url, version, resources, removed=()):
        """A response (whole set in state of the world; the changes in delta); returns the
        proxy's ACK or NACK."""
        self.responses += 1
        path = os.path.join(self.dir, "m%d.json" % self.responses)
        with open(path, "w") as f:
            if self.delta:
                json.dump({"system_version_info": version, "type_url": type_url,
                           "resources": [{"name": r.get("name") or r["cluster_name"],
                                          "version": version,
                                          "resource": dict(r, **{"@type": type_url})}
                                         for r in resources],
                           "removed_resources": list(removed)}, f)
            else:
                json.dump({"version_info": version, "type_url": type_url,
                           "resources": [dict(r, **{"@type": type_url}) for r in resources]}, f)
        self.ads.send("respond " + path)
        return self.reply_to(type_url, self.ads.next(r"^sent (\S+)").group(1))

    def ack(self, type_url, version, resources, removed=()):
        req = self.send(type_url, version, resources, removed)
        self.assertNotIn("errorDetail", req, "version %s NACKed" % version)
        return req

    def get(self, path, port=None):
        r, _ = self.proxy.request("GET", path, port=port)
        return r.status, r.getheader("x-upstream")

    def start_eds(self):
        h = hcm([{"match": {"prefix": "/x"}, "route": {"cluster": "x"}},
                 {"match": {"prefix": "/y"}, "route": {"cluster": "y"}}])
        h["route_config"]["validate_clusters"] = False
        cfg = bootstrap(h, [xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {
            "ads_config": dict(ADS_CONFIG, api_type="DELTA_GRPC") if self.delta else ADS_CONFIG,
            "cds_config": {"ads": {}, "resource_api_version": "V3"}}
        self.proxy = Proxy(cfg, wait_serving=False)
        self.ads.next(r"^stream open")
        self.assertEqual(self.ads.next_request()["typeUrl"], CLUSTER_TYPE)
        return self.proxy

    def test_a_late_watch_gets_each_name_as_last_accepted(self):
        p = self.start_eds()
        self.ack(CLUSTER_TYPE, "c1", [eds_cluster("x", "sx"), eds_cluster("y", "sy")])
        self.ack(EDS_TYPE, "e1", [assignment("sx", self.a.port), assignment("sy", self.a.port)])
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual((self.get("/x"), self.get("/y")), ((200, "a"), (200, "a")))
        # sx moves to b; sy's new assignment is refused by its cluster: NACK, sx taken.
        bad = assignment("sy", self.b.port)
        bad["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "address"] = "not-an-ip"
        nack = self.send(EDS_TYPE, "e2", [assignment("sx", self.b.port), bad])
        self.assertIn("resources[1].endpoints[0].lb_endpoints[0].endpoint.address",
                      nack["errorDetail"]["message"])
        wait_until(lambda: self.get("/x") == (200, "b"), what="sx taken")
        self.assertEqual(self.get("/y"), (200, "a"))
        self.assertEqual(p.stat("cluster.y.update_rejected"), 1)

        # Both clusters replaced (a new connect_timeout): each new definition warms with a new
        # EDS watch, made after its assignment came. The control plane sends nothing more:
        # each is offered its name as last accepted (sx of e2, sy of e1, not e2's refused one).
        self.ack(CLUSTER_TYPE, "c2", [eds_cluster("x", "sx", connect_timeout="2s"),
                                      eds_cluster("y", "sy", connect_timeout="2s")])
        wait_until(lambda: p.stat("cluster_manager.cluster_modified") == 2,
                   what="both clusters replaced")
        wait_until(lambda: p.stat("cluster_manager.warming_clusters") == 0,
                   what="the new definitions warmed from the accepted assignments")
        self.assertEqual(p.stat("cluster.x.update_success"), 3)  # e1, e2, and the late offer
        self.assertEqual(p.stat("cluster.y.update_success"), 2)  # e1 and the late offer
        self.assertEqual(p.stat("cluster.y.update_rejected"), 1)
        self.assertEqual((self.get("/x"), self.get("/y")), ((200, "b"), (200, "a")))
        _, data = p.admin("/config_dump")
        self.assertIn('"2s"', data.decode())

    def test_a_type_nobody_watches_asks_for_nothing(self):
        p = self.start_eds()
        self.ack(CLUSTER_TYPE, "c1", [eds_cluster("x", "sx")])
        self.ack(EDS_TYPE, "e1", [assignment("sx", self.a.port)])
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(self.get("/x"), (200, "a"))
        # x goes (and its EDS watch with it): no watch of endpoints is left.
        first = len(self.ads.lines)
        if self.delta:
            self.ack(CLUSTER_TYPE, "c2", [cluster("z", self.b.port)], removed=["x"])
        else:
            self.ack(CLUSTER_TYPE, "c2", [cluster("z", self.b.port)])
        wait_until(lambda: self.get("/x")[0] == 503, what="x removed")
        # Nothing watches endpoints now: an assignment is ignored (no ACK)...
        self.responses += 1
        path = os.path.join(self.dir, "m%d.json" % self.responses)
        with open(path, "w") as f:
            if self.delta:
                json.dump({"system_version_info": "e2", "type_url": EDS_TYPE, "resources": [
                    {"name": "sx", "version": "e2",
                     "resource": dict(assignment("sx", self.b.port), **{"@type": EDS_TYPE})}]},
                          f)
            else:
                json.dump({"version_info": "e2", "type_url": EDS_TYPE, "resources": [
                    dict(assignment("sx", self.b.port), **{"@type": EDS_TYPE})]}, f)
        self.ads.send("respond " + path)
        self.ads.next(r"^sent ")
        p.wait_for_line(r"ignoring a response of unsubscribed type .*ClusterLoadAssignment")
        # ... and a round trip later (the proxy's requests are sent on its next loop), no
        # request for endpoints has gone out since x went. In state of the world one without
        # names would ask for every assignment the control plane has.
        self.ack(CLUSTER_TYPE, "c3", [cluster("z", self.a.port)])
        eds_requests = [json.loads(l[len("request "):]) for l in self.ads.lines[first:]
                        if l.startswith("request ") and EDS_TYPE in l]
        if self.delta:  # only the name it no longer wants
            self.assertEqual([(r.get("resourceNamesSubscribe"), r.get("resourceNamesUnsubscribe"))
                              for r in eds_requests], [(None, ["sx"])])
        else:
            self.assertEqual(eds_requests, [])
        # Nor on a new stream: it asks for clusters only.
        self.ads.send("close 14 going away")
        self.ads.next(r"^stream open")
        first = len(self.ads.lines)
        self.assertEqual(self.ads.next_request()["typeUrl"], CLUSTER_TYPE)
        self.ack(CLUSTER_TYPE, "c4", [cluster("z", self.b.port)])
        self.assertEqual([l for l in self.ads.lines[first:]
                          if l.startswith("request ") and EDS_TYPE in l], [])

    def test_a_refused_route_table_leaves_its_accepted_neighbour(self):
        cfg = bootstrap(rds_hcm("r0"), [cluster("a", self.a.port), cluster("b", self.b.port),
                                        xds_cluster(self.ads.port)])
        cfg["static_resources"]["listeners"].append(ads_listener("listener_1", "r1"))
        cfg["dynamic_resources"] = {
            "ads_config": dict(ADS_CONFIG, api_type="DELTA_GRPC") if self.delta else ADS_CONFIG}
        p = self.proxy = Proxy(cfg, wait_serving=False)
        self.ads.next(r"^stream open")
        # Routes first: a listener waits for its route table before it serves (warming).
        self.ack(ROUTE_TYPE, "v1", [route_config("r0", "a"), route_config("r1", "a")])
        port1 = int(p.wait_for_line(
            r"listener 'listener_1' listening on 127\.0\.0\.1:(\d+)").group(1))
        p.wait_for_line(r"worker\(s\) serving")

        def both():
            return self.get("/")[1], self.get("/", port1)[1]
        wait_until(lambda: both() == ("a", "a"), what="both tables")
        # r0 changes; r1's regex does not compile (its table finds it, not the response's
        # check): NACK naming r1's place in the response, r0 taken, r1 as it was.
        bad = route_config("r1", "b")
        bad["virtual_hosts"][0]["routes"][0]["match"] = {"safe_regex": {"regex": "("}}
        nack = self.send(ROUTE_TYPE, "v2", [route_config("r0", "b"), bad])
        self.assertIn("resources[1].virtual_hosts[0].routes[0].match", nack["errorDetail"]["message"])
        if not self.delta:
            self.assertEqual(nack.get("versionInfo"), "v1")
        wait_until(lambda: both() == ("b", "a"), what="r0 taken, r1 kept")
        self.assertEqual(p.stat("http.ingress_http.rds.r0.update_success"), 2)
        self.assertEqual(p.stat("http.ingress_http.rds.r1.update_rejected"), 1)
        # A response carrying r1 alone (state of the world need not carry each name of a
        # named type): r1 taken, r0 left as taken.
        self.ack(ROUTE_TYPE, "v3", [route_config("r1", "b")])
        wait_until(lambda: self.get("/", port1)[1] == "b", what="r1 taken")
        self.assertEqual(both(), ("b", "b"))


class DeltaMuxTest(MuxBase):
    delta = True


class MuxTest(MuxBase):
    delta = False


del MuxBase  # run only through its two modes

if __name__ == "__main__":
    xds_ads_test.main()
