"""Config changes over ADS under load, end to end (issue 7): wrk drives the real proxy (keep-alive
connections and connections closed after each request) while the scriptable ADS server
(test/ads_server) steps route weights, replaces and renames clusters, and replaces a
listener's filter chain. Each step waits for the proxy's ACK of the version, then for its
effect on the upstreams' counts. Nothing may fail: no non-2xx answer and no socket error for
wrk, and no connection the upstreams saw reset."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import harness
import upstream
import xds_ads_test
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream
from xds_ads_test import (ADS_CONFIG, CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, AdsServer,
                          rds_hcm, xds_cluster)

WRK = shutil.which("wrk")


class CountingHandler(upstream.Handler):
    """The test upstream's handler, also counting open connections and connections that
    ended in a reset (the proxy closing abortively, or mid-request)."""

    # The headers and the body go in two writes: without this, the second waits for the
    # proxy's delayed ACK (40 ms a request), which starves the load.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.active += 1

    def handle_one_request(self):
        try:
            super(upstream.Handler, self).handle_one_request()
        except (ConnectionResetError, BrokenPipeError):
            with self.server.lock:
                self.server.resets += 1
            self.close_connection = True

    def finish(self):
        try:
            super().finish()
        except (ConnectionResetError, BrokenPipeError):
            with self.server.lock:
                self.server.resets += 1
        finally:
            with self.server.lock:
                self.server.active -= 1


def counting_upstream(name):
    u = Upstream(name)
    u.server.active = 0
    u.server.resets = 0
    u.server.RequestHandlerClass = CountingHandler
    # socketserver listens with a backlog of 5: under this load a SYN dropped from a full
    # queue is retried after 1 s, past the clusters' connect_timeout (a 503 not the proxy's).
    u.server.socket.listen(512)
    return u


def active(u):
    with u.server.lock:
        return u.server.active


def resets(u):
    with u.server.lock:
        return u.server.resets


class Wrk:
    """wrk on the proxy's port until stop(), which returns its counts. `close`: each request
    on a new connection (wrk reconnects after a "connection: close" request)."""

    def __init__(self, port, connections, close=False):
        argv = [WRK, "-t1", "-c%d" % connections, "-d60s", "--timeout", "10s",
                "http://127.0.0.1:%d/" % port]
        if close:
            argv[1:1] = ["-H", "Connection: close"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def stop(self):
        # wrk prints its summary when interrupted.
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        m = re.search(r"(\d+) requests in", out)
        if not m:
            raise AssertionError("wrk printed no summary:\n" + out)
        counts = {"requests": int(m.group(1)), "non2xx": 0, "socket_errors": 0, "out": out}
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            counts["non2xx"] = int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            counts["socket_errors"] = sum(int(g) for g in m.groups())
        return counts


class H2Load:
    """h2load (HTTP/2 with prior knowledge, streams multiplexed on each connection) run again
    and again on the proxy's port until stop(), which returns the summed counts (h2load has
    no summary when interrupted, so each run is short and whole)."""

    def __init__(self, port, connections=2, streams=4):
        self.argv = ["h2load", "-n", "200", "-c", str(connections), "-m", str(streams),
                     "http://127.0.0.1:%d/" % port]
        self.counts = {"requests": 0, "non2xx": 0, "socket_errors": 0, "not_started": 0}
        self.outs = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            r = subprocess.run(self.argv, capture_output=True, text=True, timeout=60)
            m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored, (\d+) timeout", r.stdout)
            ok = re.search(r"status codes: (\d+) 2xx", r.stdout)
            if not m or not ok:
                self.counts["socket_errors"] += 1
                self.outs.append(r.stdout + r.stderr)
                continue
            total, started, done, _, _, _, timeout = (int(g) for g in m.groups())
            statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx",
                                 r.stdout)
            self.counts["requests"] += done
            self.counts["non2xx"] += sum(int(g) for g in statuses.groups()[1:])
            self.counts["socket_errors"] += timeout
            # Not asserted: h2load gives up the rest of its run after a GOAWAY (it does not
            # reconnect), and a stream it queued after the GOAWAY came is refused inside the
            # client (counted as started and failed), which no count of its tells from one the
            # proxy refused. test_http2_drain_* checks the proxy's GOAWAYs instead.
            self.counts["not_started"] += total - int(ok.group(1))
            if timeout or int(ok.group(1)) != sum(int(g) for g in statuses.groups()):
                self.outs.append(r.stdout)

    def stop(self):
        self.done.set()
        self.thread.join(90)
        return dict(self.counts, out="\n".join(self.outs[:3]) or "h2load: no failures")


class AdsLoadBase(harness.unittest.TestCase):
    delta = False

    def setUp(self):
        if not WRK:
            self.skipTest("wrk is not installed")
        self.ups = {}
        self.ads = AdsServer()
        self.dir = tempfile.mkdtemp(prefix="sluice-ads-load-")
        self.responses = 0
        self.proxy = None
        self.loads = []

    def upstream(self, name):
        self.ups[name] = counting_upstream(name)
        return self.ups[name]

    def tearDown(self):
        for w in self.loads:
            if isinstance(w, H2Load):
                w.done.set()
                w.thread.join(90)
            elif w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        rc = self.proxy.stop() if self.proxy else 0
        self.ads.quit()
        for u in self.ups.values():
            u.close()
        # A sanitizer's report (a leak at exit) makes the exit status non-zero.
        self.assertEqual(rc, 0, self.proxy.output()[-3000:] if self.proxy else "")

    def ads_config(self):
        return dict(ADS_CONFIG, api_type="DELTA_GRPC") if self.delta else ADS_CONFIG

    def respond(self, type_url, version, resources):
        """Sends the resources (the whole set in state of the world; in delta, each at
        `version`) and waits for the proxy's ACK of them."""
        self.responses += 1
        path = os.path.join(self.dir, "r%d.json" % self.responses)
        with open(path, "w") as f:
            if self.delta:
                body = {"system_version_info": version, "type_url": type_url,
                        "resources": [{"name": r["name"], "version": version,
                                       "resource": dict(r, **{"@type": type_url})}
                                      for r in resources]}
            else:
                body = {"version_info": version, "type_url": type_url,
                        "resources": [dict(r, **{"@type": type_url}) for r in resources]}
            json.dump(body, f)
        self.ads.send("respond " + path)
        nonce = self.ads.next(r"^sent (\S+)").group(1)
        while True:  # other types' requests may come first
            req = self.ads.next_request()
            if req["typeUrl"] == type_url and req.get("responseNonce") == nonce:
                break
        self.assertNotIn("errorDetail", req, "version %s was NACKed" % version)
        if not self.delta:
            self.assertEqual(req.get("versionInfo"), version)

    def remove_delta(self, type_url, version, names):
        """Delta only: removes resources by name and waits for the ACK."""
        self.responses += 1
        path = os.path.join(self.dir, "r%d.json" % self.responses)
        with open(path, "w") as f:
            json.dump({"system_version_info": version, "type_url": type_url,
                                     "removed_resources": list(names)}, f)
        self.ads.send("respond " + path)
        nonce = self.ads.next(r"^sent (\S+)").group(1)
        while True:
            req = self.ads.next_request()
            if req["typeUrl"] == type_url and req.get("responseNonce") == nonce:
                break
        self.assertNotIn("errorDetail", req)

    def start_load(self, port):
        """HTTP/1.1 keep-alive connections, connections closed after each request, and
        HTTP/2 connections."""
        self.loads = [Wrk(port, 4), Wrk(port, 2, close=True), H2Load(port)]

    def stop_load(self):
        # The upstreams' resets as of now: wrk's exit drops its requests in flight, and the
        # proxy then (rightly) aborts their upstream requests.
        self.resets = {n: resets(u) for n, u in self.ups.items()}
        totals = {"requests": 0, "non2xx": 0, "socket_errors": 0}
        outs = []
        for w in self.loads:
            c = w.stop()
            outs.append(c["out"])
            for k in totals:
                totals[k] += c[k]
            if "not_started" in c:
                totals["h2_not_started"] = c["not_started"]
        self.loads = []
        return totals, "\n".join(outs)

    def requests(self):
        return {n: u.requests for n, u in self.ups.items()}

    def window(self, n, settle=100):
        """The requests each upstream served among the next `n` after the next `settle` (so
        those sent before the last change was ACKed have been answered, and every worker has
        had its turn to apply it: the ACK follows the main thread's work, and a worker on a
        busy machine may serve a few dozen requests on another before it runs the update)."""
        def total():
            return sum(self.requests().values())
        start = total()
        wait_until(lambda: total() >= start + settle, timeout=30, what="traffic")
        before = self.requests()
        start = sum(before.values())
        wait_until(lambda: total() >= start + n, timeout=30, what="%d requests" % n)
        after = self.requests()
        return {k: after[k] - before[k] for k in after}

    def assert_only(self, seen, name):
        """Every request of the window went to upstream `name`."""
        self.assertEqual({k: v for k, v in seen.items() if v and k != name}, {}, seen)
        self.assertGreater(seen[name], 0, seen)

    def assert_no_failures(self, totals, out):
        print("%s: %d requests (wrk, h2load), %d non-2xx, %d socket errors, h2load gave up %d "
              "after GOAWAYs; upstreams %s, resets %s" % (
            self.id().rsplit(".", 1)[-1], totals["requests"], totals["non2xx"],
            totals["socket_errors"], totals.get("h2_not_started", 0), self.requests(),
            self.resets))
        self.assertEqual(totals["non2xx"], 0, out)
        self.assertEqual(totals["socket_errors"], 0, out)
        self.assertGreater(totals["requests"], 500, out)
        self.assertEqual(self.resets, {n: 0 for n in self.ups}, "upstreams saw reset connections")


def weighted_routes(name, weights):
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [
            {"name": c, "weight": w} for c, w in weights]}}}]}]}


def routes_to(name, cluster_name):
    return {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}]}]}


class RdsOverAdsLoadTest(AdsLoadBase):
    """Route weights stepped from 100/0 to 0/100 over ADS while wrk runs."""

    def test_weights_stepped_under_load_fail_no_request(self):
        a, b = self.upstream("a"), self.upstream("b")
        cfg = bootstrap(rds_hcm("r0"), [cluster("a", a.port), cluster("b", b.port),
                                        xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": self.ads_config()}
        p = self.proxy = Proxy(cfg, concurrency=2, wait_serving=False)
        self.ads.next(r"^stream open")
        self.assertEqual(self.ads.next_request()["typeUrl"], ROUTE_TYPE)
        # Routes first: a listener waits for its route table before it serves (warming).
        self.respond(ROUTE_TYPE, "w0", [weighted_routes("r0", [("a", 100), ("b", 0)])])
        p.wait_for_line(r"worker\(s\) serving")
        self.start_load(p.port)
        shares = []
        for step in range(11):
            to_b = step * 10
            if step:
                self.respond(ROUTE_TYPE, "w%d" % step,
                             [weighted_routes("r0", [("a", 100 - to_b), ("b", to_b)])])
            seen = self.window(200)
            share = seen["b"] / float(seen["a"] + seen["b"])
            shares.append(round(share, 2))
            if to_b in (0, 100):  # exact at the ends
                self.assertEqual(seen["a" if to_b == 100 else "b"], 0, (step, seen))
            else:  # within about 3.7 standard deviations (at worst) of a 200-request sample
                self.assertLess(abs(share - to_b / 100.0), 0.13, (step, seen))
        totals, out = self.stop_load()
        print("share of b per step:", shares)
        self.assertEqual(p.stat("http.ingress_http.rds.r0.update_success"), 11)
        self.assert_no_failures(totals, out)


class DeltaRdsOverAdsLoadTest(RdsOverAdsLoadTest):
    """The same on the incremental (DeltaAggregatedResources) stream."""
    delta = True


class CdsOverAdsLoadTest(AdsLoadBase):
    """A cluster replaced, then renamed with the route switched (make before break, the order
    the xDS protocol asks of a control plane), while wrk runs."""

    def test_cluster_replaced_and_renamed_under_load_fail_no_request(self):
        a, b, c = self.upstream("a"), self.upstream("b"), self.upstream("c")
        cfg = bootstrap(rds_hcm("r0"), [xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": self.ads_config(),
                                    "cds_config": {"ads": {}, "resource_api_version": "V3"}}
        p = self.proxy = Proxy(cfg, concurrency=2, wait_serving=False)
        self.ads.next(r"^stream open")
        first = {self.ads.next_request()["typeUrl"] for _ in range(2)}
        self.assertEqual(first, {CLUSTER_TYPE, ROUTE_TYPE})
        self.respond(CLUSTER_TYPE, "c1", [cluster("svc", a.port)])
        self.respond(ROUTE_TYPE, "r1", [routes_to("r0", "svc")])
        p.wait_for_line(r"worker\(s\) serving")
        self.start_load(p.port)
        self.assert_only(self.window(100), "a")

        # svc replaced: new endpoints and settings. New requests go to b; the old
        # definition's pools drain (a's connections all close).
        self.respond(CLUSTER_TYPE, "c2", [cluster("svc", b.port, connect_timeout="2s",
                                                  per_connection_buffer_limit_bytes=65536)])
        self.assert_only(self.window(200), "b")
        wait_until(lambda: active(a) == 0, timeout=20, what="the old svc's connections closed")
        self.assertEqual(p.stat("cluster_manager.cluster_modified"), 1)

        # Renamed: svc2 added, the route switched to it, then svc removed.
        self.respond(CLUSTER_TYPE, "c3", [cluster("svc", b.port, connect_timeout="2s",
                                                  per_connection_buffer_limit_bytes=65536),
                                          cluster("svc2", c.port)])
        self.respond(ROUTE_TYPE, "r2", [routes_to("r0", "svc2")])
        self.assert_only(self.window(200), "c")
        if self.delta:
            self.remove_delta(CLUSTER_TYPE, "c4", ["svc"])
        else:
            self.respond(CLUSTER_TYPE, "c4", [cluster("svc2", c.port)])
        wait_until(lambda: active(b) == 0, timeout=20, what="svc's connections closed")
        self.assertEqual(p.stat("cluster_manager.cluster_removed"), 1)
        self.assert_only(self.window(100), "c")
        totals, out = self.stop_load()
        self.assert_no_failures(totals, out)


def chain_listener(stat_prefix, cluster_name, tag):
    """A listener whose one filter chain's connection manager (stat prefix `stat_prefix`)
    routes to `cluster_name` and tags responses with x-chain: `tag`."""
    # drain_timeout: the HTTP/2 grace between the shutdown notice and the final GOAWAY, well
    # within the proxy's --drain-time-s (which closes what is left).
    h = hcm([{"match": {"prefix": "/"}, "route": {"cluster": cluster_name}}],
            stat_prefix=stat_prefix, drain_timeout="0.5s")
    h["route_config"]["response_headers_to_add"] = [
        {"header": {"key": "x-chain", "value": tag}}]
    return {"name": "dyn",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": h}]}]}


class LdsOverAdsLoadTest(AdsLoadBase):
    """A listener's filter chain replaced on the same socket while wrk runs."""

    def test_filter_chain_replaced_under_load_fail_no_request(self):
        a, b = self.upstream("a"), self.upstream("b")
        cfg = bootstrap(hcm([]), [cluster("a", a.port), cluster("b", b.port),
                                  xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": self.ads_config(),
                                    "lds_config": {"ads": {}, "resource_api_version": "V3"}}
        p = self.proxy = Proxy(cfg, "--drain-time-s", "2", concurrency=2, wait_serving=False)
        self.assertEqual(self.ads.next_request()["typeUrl"], LISTENER_TYPE)
        self.respond(LISTENER_TYPE, "l1", [chain_listener("one", "a", "one")])
        port = int(p.wait_for_line(r"listener 'dyn' listening on 127\.0\.0\.1:(\d+)").group(1))
        p.wait_for_line(r"worker\(s\) serving")
        self.assertEqual(p.request("GET", "/", port=port)[0].getheader("x-chain"), "one")
        self.start_load(port)
        self.assert_only(self.window(100), "a")

        self.respond(LISTENER_TYPE, "l2", [chain_listener("two", "b", "two")])
        # The ACK means the main thread applied it; each worker takes the new chain up when it
        # runs the update posted to it, a loop pass later (a connection accepted in the same
        # pass may still get the old one). From then on every new connection gets the new
        # chain; the kept-alive ones drain to it.
        def chain_of_a_new_connection():
            r, _ = p.request("GET", "/", port=port)
            self.assertEqual(r.status, 200)
            return r.getheader("x-chain")
        wait_until(lambda: chain_of_a_new_connection() == "two", timeout=5,
                   what="a new connection on the new chain")
        self.assertEqual([chain_of_a_new_connection() for _ in range(6)], ["two"] * 6)
        wait_until(lambda: p.stat("http.one.downstream_cx_active") == 0, timeout=20,
                   what="the old chain's connections drained")
        self.assert_only(self.window(200), "b")
        totals, out = self.stop_load()
        self.assertEqual(p.stat("listener_manager.listener_modified"), 1)
        # Same socket: the port is the one bound at first, never closed.
        self.assertEqual(len(re.findall(r"listener 'dyn' listening on", p.output())), 1,
                         p.output())
        self.assertGreater(p.stat("http.two.downstream_rq_total"), 0)
        self.assert_no_failures(totals, out)

    def test_http2_drain_sends_a_notice_then_the_final_goaway(self):
        """The HTTP/2 side of the soft drain: a shutdown notice (GOAWAY with the largest
        stream id) when the chain is replaced, so streams already on the wire are still
        taken, and the final GOAWAY after the connection manager's drain_timeout."""
        a, b = self.upstream("a"), self.upstream("b")
        cfg = bootstrap(hcm([]), [cluster("a", a.port), cluster("b", b.port),
                                  xds_cluster(self.ads.port)])
        cfg["dynamic_resources"] = {"ads_config": self.ads_config(),
                                    "lds_config": {"ads": {}, "resource_api_version": "V3"}}
        p = self.proxy = Proxy(cfg, "--drain-time-s", "5", wait_serving=False)
        self.assertEqual(self.ads.next_request()["typeUrl"], LISTENER_TYPE)
        self.respond(LISTENER_TYPE, "l1", [chain_listener("one", "a", "one")])
        port = int(p.wait_for_line(r"listener 'dyn' listening on 127\.0\.0\.1:(\d+)").group(1))
        p.wait_for_line(r"worker\(s\) serving")
        client = subprocess.Popen(["nghttp", "-nv", "-H", "x-test-delay-ms: 1500",
                                   "http://127.0.0.1:%d/slow" % port],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: a.requests >= 1, what="the request at the upstream")
            self.respond(LISTENER_TYPE, "l2", [chain_listener("two", "b", "two")])
            out, _ = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        self.assertEqual(client.returncode, 0, out)
        goaways = re.findall(r"recv GOAWAY frame <[^>]*>\s+\(last_stream_id=(\d+), "
                             r"error_code=NO_ERROR", out)
        self.assertEqual(goaways, ["2147483647", "13"], out)
        self.assertIn(":status: 200", out)
        self.assertIn("x-chain: one", out)  # served by the chain it came in on


if __name__ == "__main__":
    xds_ads_test.main()
