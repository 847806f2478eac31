"""Clusters over ADS (state-of-the-world gRPC), end to end: the real proxy against a scriptable
gRPC server (test/ads_server). The proxy's requests are checked as the xDS protocol has them:
the node, the subscribed type, ACKs (version and nonce of the response) and NACKs (the last
good version, the nonce, and the path-named error); the proxy waits for its first clusters
before it serves, keeps serving its last config while the control plane is away, and
resubscribes with the version it has when the control plane returns."""

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
EDS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
SECRET_TYPE = TLS_TYPE + "Secret"
ADS_CONFIG = {"api_type": "GRPC", "transport_api_version": "V3",
              "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]}
ADS_SERVER = None


class AdsServer(harness.Process):
    """The scriptable ADS server; commands go to its stdin, its events come on stderr."""

    def __init__(self, port=0):
        super().__init__(argv=[ADS_SERVER, "127.0.0.1:%d" % port], stdin=subprocess.PIPE)
        self.port = int(self.wait_for_line(r"^listening (\d+)").group(1))
        self.seen = 0  # lines already matched by next()

    def send(self, command):
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()

    def next(self, pattern, timeout=20):
        """Waits for a line after the last one next() matched; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self.seen, len(self.lines)):
                    m = rx.search(self.lines[i])
                    if m:
                        self.seen = i + 1
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    raise AssertionError("no line matching %r after line %d:\n%s" % (
                        pattern, self.seen, "".join(self.lines)))
                self._cond.wait(remaining)

    def next_request(self):
        return json.loads(self.next(r"^request (.*)$").group(1))

    def quit(self):
        if self.proc.poll() is None:
            self.send("quit")
        self.proc.wait(timeout=20)
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()


class AdsBase(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.ads = AdsServer()
        self.dir = tempfile.mkdtemp(prefix="sluice-ads-")
        self.responses = 0
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.ads.quit()
        self.a.close()
        self.b.close()

    def respond(self, resources, version, type_url=CLUSTER_TYPE):
        self.responses += 1
        path = os.path.join(self.dir, "r%d.json" % self.responses)
        with open(path, "w") as f:
            json.dump({"version_info": version, "type_url": type_url,
                       "resources": [dict(c, **{"@type": type_url}) for c in resources]}, f)
        self.ads.send("respond " + path)
        return self.ads.next(r"^sent (\S+)").group(1)

    def start(self, ads_extra=None, **cds_extra):
        hc = hcm([{"match": {"prefix": "/"}, "route": {"cluster": "dyn"}}])
        hc["route_config"]["validate_clusters"] = False
        xds = cluster("xds", self.ads.port, typed_extension_protocol_options={
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}})
        cfg = bootstrap(hc, [xds])
        cfg["node"] = {"id": "node-1", "cluster": "test-cluster",
                       "metadata": {"role": "sidecar"}, "locality": {"zone": "z1"}}
        cfg["dynamic_resources"] = {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": dict({"ads": {}, "resource_api_version": "V3"}, **cds_extra)}
        cfg["dynamic_resources"]["ads_config"].update(ads_extra or {})
        self.proxy = Proxy(cfg, wait_serving=False)
        return self.proxy

    def served_by(self):
        r, _ = self.proxy.request("GET", "/")
        return r.status, r.getheader("x-upstream")

    def serving(self):
        return "worker(s) serving" in self.proxy.output()



class AdsTest(AdsBase):
    """Clusters over ADS."""

    def test_clusters_arrive_are_acked_changed_and_a_bad_version_is_nacked(self):
        p = self.start()
        self.ads.next(r"^stream open")
        first = self.ads.next_request()
        self.assertEqual(first["typeUrl"], CLUSTER_TYPE)
        self.assertNotIn("versionInfo", first)
        self.assertNotIn("responseNonce", first)
        self.assertEqual(first["node"]["id"], "node-1")
        self.assertEqual(first["node"]["cluster"], "test-cluster")
        self.assertEqual(first["node"]["metadata"], {"role": "sidecar"})
        self.assertEqual(first["node"]["locality"], {"zone": "z1"})
        self.assertEqual(first["node"]["userAgentName"], "sluice")
        # No clusters yet: the proxy waits (Envoy's initial fetch) and does not serve.
        self.assertEqual(p.stat("control_plane.connected_state"), 1)
        self.assertEqual(p.stat("server.state"), 2)  # PRE_INITIALIZING
        self.assertFalse(self.serving())

        nonce = self.respond([cluster("dyn", self.a.port)], "v1")
        ack = self.ads.next_request()
        self.assertEqual((ack.get("versionInfo"), ack.get("responseNonce")), ("v1", nonce))
        self.assertNotIn("errorDetail", ack)
        self.assertIn("node", ack)  # set_node_on_first_message_only is false by default
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("cluster_manager.cds.update_success"), 1)

        nonce = self.respond([cluster("dyn", self.b.port)], "v2")
        ack = self.ads.next_request()
        self.assertEqual((ack.get("versionInfo"), ack.get("responseNonce")), ("v2", nonce))
        wait_until(lambda: self.served_by() == (200, "b"), what="dyn moved to b")

        # A bad version: NACKed with the last good version and the path of the bad field;
        # nothing of it applies (not even its good cluster).
        nonce = self.respond([cluster("fine", self.a.port),
                              cluster("dyn", self.a.port, connect_timeout="0s")], "v3")
        nack = self.ads.next_request()
        self.assertEqual((nack.get("versionInfo"), nack.get("responseNonce")), ("v2", nonce))
        self.assertEqual(nack["errorDetail"]["code"], 13)
        self.assertIn("resources[1].connect_timeout: value must be greater than 0s",
                      nack["errorDetail"]["message"])
        self.assertEqual(p.stat("cluster_manager.cds.update_rejected"), 1)
        self.assertEqual(self.served_by(), (200, "b"))
        self.assertIsNone(p.stat("cluster.fine.upstream_cx_total"))

        # Removal: a version without dyn.
        self.respond([cluster("fine", self.a.port)], "v4")
        self.assertEqual(self.ads.next_request().get("versionInfo"), "v4")
        wait_until(lambda: self.served_by()[0] == 503, what="dyn removed")
        self.assertEqual(p.stat("cluster_manager.cds.update_success"), 3)

    def test_control_plane_away_keeps_the_config_and_resubscribes_on_return(self):
        p = self.start()
        self.ads.next_request()
        self.respond([cluster("dyn", self.a.port)], "v1")
        self.ads.next_request()
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(self.served_by(), (200, "a"))

        # The stream ends with UNAVAILABLE: the proxy keeps serving and opens a new stream,
        # asking again with the version it has and no nonce.
        self.ads.send("close 14 going away")
        self.ads.next(r"^stream closed")
        self.ads.next(r"^stream open")
        again = self.ads.next_request()
        self.assertEqual(again.get("versionInfo"), "v1")
        self.assertNotIn("responseNonce", again)
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertGreaterEqual(p.stat("cluster_manager.cds.update_failure"), 1)

        # The control plane process goes away altogether; the proxy serves on.
        port = self.ads.port
        self.ads.quit()
        wait_until(lambda: p.stat("control_plane.connected_state") == 0, what="disconnected")
        for _ in range(5):
            self.assertEqual(self.served_by(), (200, "a"))
        # It comes back on the same port; the proxy reconnects (back-off of at most a few
        # seconds this early) and takes a new version.
        self.ads = AdsServer(port)
        self.ads.next(r"^stream open", timeout=40)
        self.assertEqual(self.ads.next_request().get("versionInfo"), "v1")
        self.respond([cluster("dyn", self.b.port)], "v2")
        self.assertEqual(self.ads.next_request().get("versionInfo"), "v2")
        wait_until(lambda: self.served_by() == (200, "b"), what="v2 applied")
        self.assertEqual(p.stat("control_plane.connected_state"), 1)

    def test_node_only_in_a_streams_first_request_when_asked(self):
        p = self.start(ads_extra={"set_node_on_first_message_only": True})
        self.assertEqual(self.ads.next_request()["node"]["id"], "node-1")
        self.respond([cluster("dyn", self.a.port)], "v1")
        self.assertNotIn("node", self.ads.next_request())  # the ACK
        p.wait_for_line(r"worker\(s\) serving")
        # A new stream: its first request names the node again.
        self.ads.send("close 14 going away")
        self.ads.next(r"^stream open")
        self.assertEqual(self.ads.next_request()["node"]["id"], "node-1")
        self.respond([cluster("dyn", self.b.port)], "v2")
        self.assertNotIn("node", self.ads.next_request())

    def test_initial_fetch_timeout_lets_the_proxy_serve_without_clusters(self):
        p = self.start(initial_fetch_timeout="0.3s")
        self.ads.next_request()
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(p.stat("cluster_manager.cds.init_fetch_timeout"), 1)
        self.assertEqual(self.served_by()[0], 503)  # no cluster dyn yet
        self.respond([cluster("dyn", self.a.port)], "v1")
        wait_until(lambda: self.served_by() == (200, "a"), what="dyn arrived")

    def test_bad_ads_config_is_refused_with_the_path(self):
        not_h2 = cluster("xds", self.ads.port)
        cfg = bootstrap(hcm([]), [not_h2])
        cfg["dynamic_resources"] = {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"}}
        for dyn, expect in [
                (None, "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: "
                       "cluster 'xds' must use HTTP/2"),
                ({"grpc_services": [{"envoy_grpc": {"cluster_name": "nope"}}]},
                 "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name: no "
                 "static cluster 'nope'"),
                ({"api_type": "REST"}, "dynamic_resources.ads_config.api_type: only GRPC")]:
            c = json.loads(json.dumps(cfg))
            if dyn:
                c["dynamic_resources"]["ads_config"].update(dyn)
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                json.dump(c, f)
                f.flush()
                r = harness.run("proxy", "-c", f.name, "--mode", "validate")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(expect, r.stdout + r.stderr)


def xds_cluster(port):
    return cluster("xds", port, typed_extension_protocol_options={
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}})


def rds_hcm(route_config_name):
    """A connection manager whose routes come over ADS."""
    h = hcm([])
    del h["route_config"]
    h["rds"] = {"route_config_name": route_config_name,
                "config_source": {"ads": {}, "resource_api_version": "V3"}}
    return h


def route_config(name, cluster_name):
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]}


def ads_listener(name, route_config_name):
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": rds_hcm(route_config_name)}]}]}


class AdsListenersAndRoutesTest(AdsBase):
    """Listeners (LDS) and route tables (RDS) over the same ADS stream as clusters."""

    def start_lds_rds(self):
        cfg = bootstrap(rds_hcm("r0"), [cluster("a", self.a.port), cluster("b", self.b.port),
                                        xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {
            "ads_config": ADS_CONFIG,
            "lds_config": {"ads": {}, "resource_api_version": "V3"}}
        self.proxy = Proxy(cfg, wait_serving=False)
        return self.proxy

    def requests_by_type(self, n):
        out = {}
        for _ in range(n):
            r = self.ads.next_request()
            out.setdefault(r["typeUrl"], []).append(r)
        return out

    def get(self, port):
        r, _ = self.proxy.request("GET", "/", port=port)
        return r.status, r.getheader("x-upstream")

    def test_listeners_and_routes_arrive_by_name_and_change(self):
        p = self.start_lds_rds()
        self.ads.next(r"^stream open")
        # The static listener's RDS asks for its route table by name; LDS asks for every
        # listener.
        first = self.requests_by_type(2)
        self.assertEqual(first[ROUTE_TYPE][0]["resourceNames"], ["r0"])
        self.assertNotIn("resourceNames", first[LISTENER_TYPE][0])
        # Until the first listeners arrive the proxy does not serve (Envoy's LDS init).
        self.assertEqual(p.stat("server.state"), 2)
        self.assertFalse(self.serving())

        nonce = self.respond([ads_listener("listener_1", "r1")], "l1", LISTENER_TYPE)
        # The new listener warms (its socket bound) until its route table comes.
        port1 = int(p.wait_for_line(
            r"listener 'listener_1' warming on 127\.0\.0\.1:(\d+): waits for "
            r"route config 'r1'").group(1))
        after = self.requests_by_type(2)
        ack = after[LISTENER_TYPE][0]
        self.assertEqual((ack.get("versionInfo"), ack.get("responseNonce")), ("l1", nonce))
        # The new listener's connection manager asks for r1 too: one request for both names.
        self.assertEqual(sorted(after[ROUTE_TYPE][0]["resourceNames"]), ["r0", "r1"])
        # Start-up waits for the static listener's routes and the warming listener's: nothing
        # serves a 404 meanwhile.
        self.assertEqual(p.stat("listener_manager.total_listeners_warming"), 1)
        self.assertEqual(p.stat("server.state"), 2)
        self.assertFalse(self.serving())
        _, data = p.admin("/config_dump?resource=dynamic_listeners")
        dump = json.loads(data)
        warming = [l for l in dump["configs"] if l.get("name") == "listener_1"]
        self.assertEqual(len(warming), 1, dump)
        self.assertIn("warming_state", warming[0])
        self.assertNotIn("active_state", warming[0])

        nonce = self.respond([route_config("r0", "a"), route_config("r1", "b")], "v1", ROUTE_TYPE)
        ack = self.ads.next_request()
        self.assertEqual((ack["typeUrl"], ack.get("versionInfo"), ack.get("responseNonce")),
                         (ROUTE_TYPE, "v1", nonce))
        p.wait_for_line(r"listener 'listener_1' listening on 127\.0\.0\.1:%d" % port1)
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(p.stat("listener_manager.total_listeners_warming"), 0)
        # The first requests already have their routes.
        self.assertEqual(self.get(p.port), (200, "a"))
        self.assertEqual(self.get(port1), (200, "b"))
        self.assertEqual(p.stat("http.ingress_http.rds.r0.update_success"), 1)

        # A route change applies to the next request on an existing connection.
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        self.assertEqual(r.getheader("x-upstream"), "a")
        self.respond([route_config("r0", "b"), route_config("r1", "b")], "v2", ROUTE_TYPE)
        self.assertEqual(self.ads.next_request().get("versionInfo"), "v2")

        def same_connection():
            c.request("GET", "/")
            resp = c.getresponse()
            resp.read()
            return resp.getheader("x-upstream") == "b"
        wait_until(same_connection, what="r0 moved to b on the open connection")
        c.close()

        # A bad route table: NACKed with the path of the bad field in the response (r0 is
        # its second resource); the last good tables keep serving.
        bad = route_config("r0", "a")
        bad["virtual_hosts"][0]["domains"] = []
        nonce = self.respond([route_config("r1", "a"), bad], "v3", ROUTE_TYPE)
        nack = self.ads.next_request()
        self.assertEqual((nack.get("versionInfo"), nack.get("responseNonce")), ("v2", nonce))
        self.assertIn("resources[1].virtual_hosts[0].domains", nack["errorDetail"]["message"])
        self.assertEqual(self.get(p.port), (200, "b"))

        # The stream ends: each type asks again with what it has.
        self.ads.send("close 14 going away")
        self.ads.next(r"^stream closed")
        self.ads.next(r"^stream open")
        again = self.requests_by_type(2)
        self.assertEqual(again[LISTENER_TYPE][0].get("versionInfo"), "l1")
        self.assertEqual(again[ROUTE_TYPE][0].get("versionInfo"), "v2")
        self.assertEqual(sorted(again[ROUTE_TYPE][0]["resourceNames"]), ["r0", "r1"])
        self.assertEqual(self.get(port1), (200, "b"))

    def test_a_listener_whose_routes_never_come_serves_after_their_fetch_timeout(self):
        p = self.start_lds_rds()
        self.requests_by_type(2)
        late = ads_listener("late", "never")
        late["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["config_source"][
            "initial_fetch_timeout"] = "1s"
        self.respond([late], "l1", LISTENER_TYPE)
        port = int(p.wait_for_line(r"listener 'late' warming on 127\.0\.0\.1:(\d+)").group(1))
        self.respond([route_config("r0", "a")], "v1", ROUTE_TYPE)
        # Envoy's behaviour: past the timeout the listener serves without its routes (404, NR).
        p.wait_for_line(r"listener 'late' listening on 127\.0\.0\.1:%d" % port)
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(p.stat("http.ingress_http.rds.never.init_fetch_timeout"), 1)
        self.assertEqual(self.get(port)[0], 404)
        self.assertEqual(self.get(p.port), (200, "a"))

    def test_a_listener_update_over_ads_is_nacked_with_the_path(self):
        p = self.start_lds_rds()
        self.requests_by_type(2)
        self.respond([ads_listener("listener_1", "r1")], "l1", LISTENER_TYPE)
        self.requests_by_type(2)
        self.respond([route_config("r0", "a"), route_config("r1", "b")], "v1", ROUTE_TYPE)
        self.ads.next_request()
        p.wait_for_line(r"worker\(s\) serving")
        bad = ads_listener("listener_2", "r2")
        bad["address"]["socket_address"]["port_value"] = 70000
        nonce = self.respond([ads_listener("listener_1", "r1"), bad], "l2", LISTENER_TYPE)
        nack = self.ads.next_request()
        self.assertEqual((nack["typeUrl"], nack.get("versionInfo"), nack.get("responseNonce")),
                         (LISTENER_TYPE, "l1", nonce))
        self.assertIn("resources[1].address.socket_address.port_value",
                      nack["errorDetail"]["message"])
        self.assertEqual(p.stat("listener_manager.lds.update_rejected"), 1)
        self.assertNotIn("listener_2", p.output())


class DeltaAdsTest(AdsBase):
    """Incremental xDS (api_type DELTA_GRPC) on the DeltaAggregatedResources stream."""

    def respond_delta(self, type_url, version, resources=(), removed=()):
        self.responses += 1
        path = os.path.join(self.dir, "d%d.json" % self.responses)
        with open(path, "w") as f:
            json.dump({"system_version_info": version, "type_url": type_url,
                       "resources": [{"name": r["name"], "version": v,
                                      "resource": dict(r, **{"@type": type_url})}
                                     for r, v in resources],
                       "removed_resources": list(removed)}, f)
        self.ads.send("respond " + path)
        return self.ads.next(r"^sent (\S+)").group(1)

    def test_clusters_and_routes_change_by_difference(self):
        cfg = bootstrap(rds_hcm("r0"), [xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {
            "ads_config": dict(ADS_CONFIG, api_type="DELTA_GRPC"),
            "cds_config": {"ads": {}, "resource_api_version": "V3"}}
        p = self.proxy = Proxy(cfg, wait_serving=False)
        self.ads.next(r"^stream open")
        # Clusters first (every one: no names), with the node; the route table by name.
        first = self.ads.next_request()
        self.assertEqual(first["typeUrl"], CLUSTER_TYPE)
        self.assertNotIn("resourceNamesSubscribe", first)
        self.assertNotIn("initialResourceVersions", first)
        self.assertEqual(first["node"]["userAgentName"], "sluice")
        routes = self.ads.next_request()
        self.assertEqual((routes["typeUrl"], routes["resourceNamesSubscribe"]), (ROUTE_TYPE, ["r0"]))

        nonce = self.respond_delta(CLUSTER_TYPE, "s1", [(cluster("dyn", self.a.port), "1")])
        ack = self.ads.next_request()
        self.assertEqual((ack["typeUrl"], ack.get("responseNonce")), (CLUSTER_TYPE, nonce))
        self.assertNotIn("errorDetail", ack)
        p.wait_for_line(r"worker\(s\) serving")
        self.respond_delta(ROUTE_TYPE, "s1", [(route_config("r0", "dyn"), "1")])
        self.assertEqual(self.ads.next_request()["typeUrl"], ROUTE_TYPE)
        wait_until(lambda: self.served_by() == (200, "a"), what="r0 and dyn applied")

        # A response with only another cluster adds it and leaves dyn alone.
        self.respond_delta(CLUSTER_TYPE, "s2", [(cluster("other", self.b.port), "1")])
        self.ads.next_request()
        wait_until(lambda: p.stat("cluster.other.membership_total") == 1, what="other added")
        self.assertEqual(self.served_by(), (200, "a"))
        # A changed dyn replaces it.
        self.respond_delta(CLUSTER_TYPE, "s3", [(cluster("dyn", self.b.port), "2")])
        self.ads.next_request()
        wait_until(lambda: self.served_by() == (200, "b"), what="dyn moved to b")

        # A bad resource: NACKed with its path in this response; nothing applies.
        nonce = self.respond_delta(CLUSTER_TYPE, "s4", [
            (cluster("dyn", self.a.port, connect_timeout="0s"), "3")], removed=["other"])
        nack = self.ads.next_request()
        self.assertEqual(nack.get("responseNonce"), nonce)
        self.assertIn("resources[0].connect_timeout: value must be greater than 0s",
                      nack["errorDetail"]["message"])
        self.assertEqual(self.served_by(), (200, "b"))
        self.assertEqual(p.stat("cluster.other.membership_total"), 1)

        # Removal by name.
        self.respond_delta(CLUSTER_TYPE, "s5", removed=["dyn"])
        self.ads.next_request()
        wait_until(lambda: self.served_by()[0] == 503, what="dyn removed")

        # A new stream says what the proxy holds, by name and version.
        self.ads.send("close 14 going away")
        self.ads.next(r"^stream open")
        again = self.ads.next_request()
        self.assertEqual(again["typeUrl"], CLUSTER_TYPE)
        self.assertEqual(again["initialResourceVersions"], {"other": "1"})
        again = self.ads.next_request()
        self.assertEqual(again["initialResourceVersions"], {"r0": "1"})
        self.assertEqual(again["resourceNamesSubscribe"], ["r0"])

    def test_a_refused_route_table_does_not_roll_back_an_accepted_neighbour(self):
        cfg = bootstrap(rds_hcm("r0"), [cluster("a", self.a.port), cluster("b", self.b.port),
                                        xds_cluster(self.ads.port)])
        cfg["static_resources"]["listeners"].append(ads_listener("listener_1", "r1"))
        cfg["dynamic_resources"] = {"ads_config": dict(ADS_CONFIG, api_type="DELTA_GRPC")}
        p = self.proxy = Proxy(cfg)
        port1 = int(p.wait_for_line(
            r"listener 'listener_1' listening on 127\.0\.0\.1:(\d+)").group(1))
        self.assertEqual(sorted(self.ads.next_request()["resourceNamesSubscribe"]), ["r0", "r1"])

        def both():
            return (self.served_by()[1], self.get_from(port1))
        self.respond_delta(ROUTE_TYPE, "s1", [(route_config("r0", "a"), "1"),
                                              (route_config("r1", "a"), "1")])
        self.ads.next_request()
        wait_until(lambda: both() == ("a", "a"), what="both tables")
        # r0 changes, r1 is bad (its regex does not compile, which its table finds, not the
        # response's check): r0 is taken, r1 refused (NACK).
        bad = route_config("r1", "b")
        bad["virtual_hosts"][0]["routes"][0]["match"] = {"safe_regex": {"regex": "("}}
        self.respond_delta(ROUTE_TYPE, "s2", [(route_config("r0", "b"), "2"), (bad, "2")])
        self.assertIn("errorDetail", self.ads.next_request())
        wait_until(lambda: both() == ("b", "a"), what="r0 taken, r1 kept")
        # A response about r1 alone must leave r0 as taken, not as it was held before.
        self.respond_delta(ROUTE_TYPE, "s3", [(route_config("r1", "b"), "3")])
        self.assertNotIn("errorDetail", self.ads.next_request())
        wait_until(lambda: self.get_from(port1) == "b", what="r1 taken")
        self.assertEqual(both(), ("b", "b"))

    def get_from(self, port):
        r, _ = self.proxy.request("GET", "/", port=port)
        return r.getheader("x-upstream")


def assignment(name, *ports):
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        for p in ports]}]}


class AdsEndpointsTest(AdsBase):
    """Endpoints (EDS) over the ADS stream, for a cluster that came over it too."""

    def test_an_eds_cluster_from_cds_takes_its_endpoints_by_name(self):
        p = self.start()
        self.assertEqual(self.ads.next_request()["typeUrl"], CLUSTER_TYPE)
        eds_cluster = {"name": "dyn", "type": "EDS", "connect_timeout": "1s",
                       "eds_cluster_config": {"service_name": "dyn-endpoints", "eds_config": {
                           "ads": {}, "resource_api_version": "V3"}}}
        self.respond([eds_cluster], "c1")
        # The cluster warms: it asks for its assignment by service name (before or after the
        # clusters' ACK).
        got = {}
        for _ in range(2):
            r = self.ads.next_request()
            got[r["typeUrl"]] = r
        self.assertEqual(got[CLUSTER_TYPE].get("versionInfo"), "c1")
        self.assertEqual(got[EDS_TYPE]["resourceNames"], ["dyn-endpoints"])
        self.assertFalse(self.serving())  # warming until its endpoints come
        nonce = self.respond([assignment("other", self.b.port),
                              assignment("dyn-endpoints", self.a.port)], "e1", EDS_TYPE)
        ack = self.ads.next_request()
        self.assertEqual((ack["typeUrl"], ack.get("versionInfo"), ack.get("responseNonce")),
                         (EDS_TYPE, "e1", nonce))
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("cluster.dyn.update_success"), 1)

        # New endpoints; then a bad assignment is NACKed with the response's path.
        self.respond([assignment("dyn-endpoints", self.b.port)], "e2", EDS_TYPE)
        self.assertEqual(self.ads.next_request().get("versionInfo"), "e2")
        wait_until(lambda: self.served_by() == (200, "b"), what="endpoints moved to b")
        bad = assignment("dyn-endpoints", self.a.port)
        bad["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "address"] = "not-an-ip"
        nonce = self.respond([assignment("other", self.a.port), bad], "e3", EDS_TYPE)
        nack = self.ads.next_request()
        self.assertEqual((nack.get("versionInfo"), nack.get("responseNonce")), ("e2", nonce))
        self.assertIn("resources[1].endpoints[0].lb_endpoints[0].endpoint.address",
                      nack["errorDetail"]["message"])
        self.assertEqual(self.served_by(), (200, "b"))


CERTS = None


def certs():
    """Certificates made for the run by test/tls/gen_certs.sh (once)."""
    global CERTS
    if CERTS is None:
        CERTS = tempfile.mkdtemp(prefix="sluice-ads-certs-")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([os.path.join(here, "..", "tls", "gen_certs.sh"), CERTS], check=True)
    return CERTS


def cert(name):
    return os.path.join(certs(), name)


def cert_secret(name, which, key=None):
    return {"name": name, "tls_certificate": {
        "certificate_chain": {"filename": cert(which + ".pem")},
        "private_key": {"filename": cert((key or which) + ".key")}}}


def ads_sds(name):
    return {"name": name, "sds_config": {"ads": {}, "resource_api_version": "V3"}}


def handshake_cn(port):
    """The common name of the certificate a new TLS connection to the listener gets."""
    ctx = ssl.create_default_context(cafile=cert("ca.pem"))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


class AdsSecretsTest(AdsBase):
    """Secrets (SDS) over the ADS stream: the listener or cluster whose TLS context names one
    warms until it comes; a new version rotates it; a bad one is NACKed with the path."""

    def start_lds(self):
        """A proxy whose listeners come over ADS, once it has asked for them."""
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]),
                        [cluster("a", self.a.port), xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": ADS_CONFIG,
                                    "lds_config": {"ads": {}, "resource_api_version": "V3"}}
        self.proxy = Proxy(cfg, wait_serving=False)
        self.requests_until(LISTENER_TYPE)
        return self.proxy

    def requests_until(self, type_url):
        """The proxy's requests up to the first of `type_url` (which is returned)."""
        while True:
            r = self.ads.next_request()
            if r["typeUrl"] == type_url:
                return r

    def test_a_tls_listener_warms_until_its_certificate_comes_then_rotates(self):
        p = self.start_lds()
        tls = ads_listener("secure", "unused")
        tls["filter_chains"][0]["filters"][0]["typed_config"] = hcm(
            [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}])
        tls["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_TYPE + "DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    ads_sds("server_cert")]}}}
        self.respond([tls], "l1", LISTENER_TYPE)
        port = int(p.wait_for_line(r"listener 'secure' warming on 127\.0\.0\.1:(\d+): "
                                   r"waits for secret 'server_cert'").group(1))
        asked = self.requests_until(SECRET_TYPE)
        self.assertEqual(asked["resourceNames"], ["server_cert"])
        self.assertEqual(p.stat("listener_manager.total_listeners_warming"), 1)
        self.assertFalse(self.serving())

        nonce = self.respond([cert_secret("server_cert", "server")], "s1", SECRET_TYPE)
        ack = self.requests_until(SECRET_TYPE)
        self.assertEqual((ack.get("versionInfo"), ack.get("responseNonce")), ("s1", nonce))
        p.wait_for_line(r"listener 'secure' listening on 127\.0\.0\.1:%d" % port)
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(handshake_cn(port), "server")
        self.assertEqual(p.stat("sds.server_cert.update_success"), 1)

        # A new version: new handshakes get the new certificate, in place.
        self.respond([cert_secret("server_cert", "client")], "s2", SECRET_TYPE)
        self.assertEqual(self.requests_until(SECRET_TYPE).get("versionInfo"), "s2")
        self.assertEqual(handshake_cn(port), "client")

        # A key that does not match its certificate: NACKed with the field's path.
        nonce = self.respond([cert_secret("server_cert", "server", key="client")], "s3",
                             SECRET_TYPE)
        nack = self.requests_until(SECRET_TYPE)
        self.assertEqual((nack.get("versionInfo"), nack.get("responseNonce")), ("s2", nonce))
        self.assertIn("resources[0].tls_certificate.private_key", nack["errorDetail"]["message"])
        self.assertEqual(handshake_cn(port), "client")
        self.assertEqual(p.stat("listener_manager.listener_added"), 1)

    def test_rotations_over_ads_under_load_fail_no_request(self):
        cfg = bootstrap(hcm([{"match": {"prefix": "/"}, "route": {"cluster": "a"}}]),
                        [cluster("a", self.a.port), xds_cluster(self.ads.port)])
        cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_TYPE + "DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [
                    ads_sds("server_cert")]}}}
        cfg["dynamic_resources"] = {"ads_config": ADS_CONFIG}
        p = self.proxy = Proxy(cfg, concurrency=2, wait_serving=False)
        self.requests_until(SECRET_TYPE)
        self.respond([cert_secret("server_cert", "server")], "s0", SECRET_TYPE)
        p.wait_for_line(r"worker\(s\) serving")
        ctx = ssl.create_default_context(cafile=cert("ca.pem"))
        ctx.check_hostname = False
        with harness.HandshakeLoad(p.port, ctx) as load:
            for i in range(1, 7):
                which = "client2" if i % 2 else "server"
                before = load.seen(which)
                self.respond([cert_secret("server_cert", which)], "s%d" % i, SECRET_TYPE)
                wait_until(lambda: load.seen(which) > before + 20, timeout=30,
                           what="handshakes with " + which)
        print("sds over ads, rotations under load: %s" % load.counts)
        self.assertEqual(load.counts["failed"], 0, load.errors)
        self.assertEqual(p.stat("sds.server_cert.update_success"), 7)
        # Every answer the clients counted came from the upstream.
        self.assertGreaterEqual(self.a.requests, load.counts["ok"])

    def test_start_up_waits_for_a_static_clusters_secret_and_checks_after_it(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert("server.pem"), cert("server.key"))
        up = Upstream("tls-app", tls=ctx)
        self.addCleanup(up.close)
        tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": TLS_TYPE + "UpstreamTlsContext", "sni": "upstream.test",
            "common_tls_context": {"validation_context_sds_secret_config": ads_sds("ca")}}}
        # One cluster health-checked (over TLS: through a context without its CA every check
        # would fail), one not.
        checked = cluster("checked", up.port, transport_socket=tls, health_checks=[{
            "timeout": "5s", "interval": "60s", "unhealthy_threshold": 1,
            "healthy_threshold": 1, "http_health_check": {"path": "/healthz"}}])
        plain = cluster("plain", up.port, transport_socket=tls)
        cfg = bootstrap(hcm([{"match": {"prefix": "/checked"}, "route": {"cluster": "checked"}},
                             {"match": {"prefix": "/"}, "route": {"cluster": "plain"}}]),
                        [checked, plain, xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": ADS_CONFIG}
        p = self.proxy = Proxy(cfg, wait_serving=False)
        self.assertEqual(self.requests_until(SECRET_TYPE)["resourceNames"], ["ca"])
        p.wait_for_line(r"cluster 'plain' warming: waits for secret 'ca'")
        self.assertFalse(self.serving())
        self.assertEqual(up.health_checks, 0)
        self.respond([{"name": "ca", "validation_context": {
            "trusted_ca": {"filename": cert("ca.pem")}}}], "s1", SECRET_TYPE)
        p.wait_for_line(r"worker\(s\) serving")
        for path in ("/checked", "/plain"):
            r, body = p.request("GET", path)
            self.assertEqual((r.status, r.getheader("x-upstream")), (200, "tls-app"), body)
        self.assertEqual(p.stat("cluster.checked.health_check.failure") or 0, 0)

    def test_what_does_not_wait_for_a_secret_is_checked_at_once(self):
        p = self.start_lds()

        def tls_listener(**common):
            l = ads_listener("secure", "unused")
            l["filter_chains"][0]["filters"][0]["typed_config"] = hcm(
                [{"match": {"prefix": "/"}, "route": {"cluster": "a"}}])
            l["filter_chains"][0]["transport_socket"] = {
                "name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": TLS_TYPE + "DownstreamTlsContext",
                    "common_tls_context": dict(
                        {"tls_certificate_sds_secret_configs": [ads_sds("cert")],
                         "validation_context_sds_secret_config": ads_sds("ca")}, **common)}}
            return l
        # A bad cipher list is refused now, not when the secret comes.
        nonce = self.respond([tls_listener(tls_params={"cipher_suites": ["NO-SUCH-CIPHER"]})],
                             "l1", LISTENER_TYPE)
        nack = self.requests_until(LISTENER_TYPE)
        self.assertEqual(nack.get("responseNonce"), nonce)
        self.assertIn("tls_params.cipher_suites", nack["errorDetail"]["message"])
        self.respond([tls_listener()], "l2", LISTENER_TYPE)
        self.assertNotIn("errorDetail", self.requests_until(LISTENER_TYPE))
        # The certificate secret is a CA: refused though its partner has not come.
        nonce = self.respond([{"name": "cert", "validation_context": {
            "trusted_ca": {"filename": cert("ca.pem")}}}], "s1", SECRET_TYPE)
        nack = self.requests_until(SECRET_TYPE)
        self.assertEqual(nack.get("responseNonce"), nonce)
        self.assertIn("not a tls_certificate", nack["errorDetail"]["message"])
        # Both, right: the listener warms, then serves mTLS.
        self.respond([cert_secret("cert", "server"),
                      {"name": "ca", "validation_context": {
                          "trusted_ca": {"filename": cert("ca.pem")}}}], "s2", SECRET_TYPE)
        self.assertNotIn("errorDetail", self.requests_until(SECRET_TYPE))
        p.wait_for_line(r"listener 'secure' listening on")

    def test_a_cluster_warms_until_its_ca_comes(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert("server.pem"), cert("server.key"))
        up = Upstream("tls-app", tls=ctx)
        self.addCleanup(up.close)
        p = self.start()
        self.requests_until(CLUSTER_TYPE)
        dyn = cluster("dyn", up.port, transport_socket={
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_TYPE + "UpstreamTlsContext", "sni": "upstream.test",
                "common_tls_context": {
                    "validation_context_sds_secret_config": ads_sds("upstream_ca")}}})
        self.respond([dyn], "c1")
        asked = self.requests_until(SECRET_TYPE)
        self.assertEqual(asked["resourceNames"], ["upstream_ca"])
        p.wait_for_line(r"cluster 'dyn' warming: waits for secret 'upstream_ca'")
        self.assertEqual(p.stat("cluster_manager.warming_clusters"), 1)
        _, data = p.admin("/config_dump?resource=dynamic_warming_clusters&mask=cluster.name")
        self.assertEqual(json.loads(data)["configs"], [{
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.DynamicCluster",
            "cluster": {"@type": CLUSTER_TYPE, "name": "dyn"}}])
        self.assertFalse(self.serving())  # start-up waits for the cluster

        self.respond([{"name": "upstream_ca", "validation_context": {
            "trusted_ca": {"filename": cert("ca.pem")},
            "match_typed_subject_alt_names": [
                {"san_type": "DNS", "matcher": {"exact": "upstream.test"}}]}}], "s1", SECRET_TYPE)
        self.assertNotIn("errorDetail", self.requests_until(SECRET_TYPE))
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(p.stat("cluster_manager.warming_clusters"), 0)
        self.assertEqual(self.served_by(), (200, "tls-app"))
        self.assertEqual(p.stat("cluster.dyn.ssl.handshake"), 1)


def main():
    """harness.main(), after taking --ads-server (the test ADS server's binary)."""
    global ADS_SERVER
    if "--ads-server" in sys.argv:
        i = sys.argv.index("--ads-server")
        ADS_SERVER = os.path.abspath(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    harness.main()


if __name__ == "__main__":
    main()
