"""`sluice proxy` end to end, the connection manager's and the clusters' options one by one:
timeouts, x-forwarded-for, absolute-form targets, --config-yaml, JSON access logs, upstream
connection options, admin stats and the static config's cluster validation."""

import json
import os
import socket

import harness
from harness import Proxy, bootstrap, cluster, hcm, wait_until
from upstream import Upstream


def route(match, **action):
    r = {"match": match}
    r.update(action)
    return r


def catch_all(cluster_name="u", **action):
    a = {"cluster": cluster_name}
    a.update(action)
    return [route({"prefix": "/"}, route=a)]


def read_all(s):
    """Everything the peer sends until it closes (the socket has a timeout)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


class UpstreamCase(harness.unittest.TestCase):
    """One test upstream per test; `start()` runs a proxy in front of it."""

    def setUp(self):
        self.u = Upstream("u")
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.u.close()

    def start(self, routes=None, clusters=None, *args, **hcm_extra):
        self.proxy = Proxy(bootstrap(hcm(routes or catch_all(), **hcm_extra),
                                     clusters or [cluster("u", self.u.port)]), *args)
        return self.proxy

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10)


class TimeoutTest(UpstreamCase):
    def test_request_headers_timeout_is_408_and_closes(self):
        p = self.start(request_headers_timeout="0.3s")
        s = self.connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        data = read_all(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_header_timeout"), 1)
        self.assertEqual(self.u.requests, 0)

    def test_request_timeout_is_408_when_the_body_never_ends(self):
        p = self.start(request_timeout="0.3s")
        s = self.connect()
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        data = read_all(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_timeout"), 1)

    def test_stream_idle_timeout_is_408_while_the_upstream_is_silent(self):
        p = self.start(stream_idle_timeout="0.3s")
        r, _ = p.request("GET", "/", {"x-test-delay-ms": "3000"})
        self.assertEqual(r.status, 408)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_idle_timeout"), 1)

    def test_route_idle_timeout_overrides_the_stream_idle_timeout(self):
        p = self.start(catch_all(idle_timeout="0.3s"), stream_idle_timeout="60s")
        r, _ = p.request("GET", "/", {"x-test-delay-ms": "3000"})
        self.assertEqual(r.status, 408)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_idle_timeout"), 1)

    def test_max_stream_duration_is_408(self):
        p = self.start(common_http_protocol_options={"max_stream_duration": "0.3s"})
        r, _ = p.request("GET", "/", {"x-test-delay-ms": "3000"})
        self.assertEqual(r.status, 408)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_max_duration_reached"), 1)

    def test_connection_idle_timeout_closes_a_quiet_connection(self):
        p = self.start(common_http_protocol_options={"idle_timeout": "0.3s"})
        s = self.connect()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_all(s)  # the response, then the close once the connection idles
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(p.stat("http.ingress_http.downstream_cx_idle_timeout"), 1)


class ForwardedForTest(UpstreamCase):
    def echo(self, headers):
        r, data = self.proxy.request("GET", "/", headers)
        self.assertEqual(r.status, 200, data)
        return json.loads(data)["headers"]

    def client_header_routes(self):
        # The trusted client address, as the proxy sees it, in a request header.
        return [route({"prefix": "/"}, route={"cluster": "u"}, request_headers_to_add=[
            {"header": {"key": "x-client", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}])]

    def test_edge_proxy_appends_and_cleans(self):
        self.start(self.client_header_routes(), use_remote_address=True)
        h = self.echo({"x-forwarded-for": "203.0.113.1", "x-envoy-retry-on": "5xx",
                       "x-envoy-internal": "true"})
        self.assertEqual(h["x-forwarded-for"], "203.0.113.1,127.0.0.1")
        self.assertEqual(h["x-envoy-external-address"], "127.0.0.1")
        self.assertEqual(h["x-client"], "127.0.0.1")
        self.assertNotIn("x-envoy-retry-on", h)
        self.assertNotIn("x-envoy-internal", h)
        self.assertEqual(h["x-forwarded-proto"], "http")

    def test_edge_proxy_marks_a_direct_internal_client_internal(self):
        self.start(use_remote_address=True)
        h = self.echo({})
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-envoy-internal"], "true")
        self.assertNotIn("x-envoy-external-address", h)

    def test_edge_proxy_with_a_trusted_hop(self):
        self.start(self.client_header_routes(), use_remote_address=True, xff_num_trusted_hops=1)
        h = self.echo({"x-forwarded-for": "192.0.2.9, 198.51.100.7"})
        self.assertEqual(h["x-client"], "198.51.100.7")
        self.assertEqual(h["x-envoy-external-address"], "198.51.100.7")
        self.assertEqual(h["x-forwarded-for"], "192.0.2.9, 198.51.100.7,127.0.0.1")

    def test_internal_proxy_trusts_the_last_address_and_leaves_xff_alone(self):
        self.start(self.client_header_routes())
        h = self.echo({"x-forwarded-for": "198.51.100.7, 10.0.0.1"})
        self.assertEqual(h["x-forwarded-for"], "198.51.100.7, 10.0.0.1")
        self.assertEqual(h["x-client"], "10.0.0.1")
        self.assertNotIn("x-envoy-internal", h)  # two addresses: not internal
        h = self.echo({"x-forwarded-for": "10.0.0.1"})
        self.assertEqual(h["x-envoy-internal"], "true")
        h = self.echo({"x-forwarded-for": "198.51.100.7, 10.0.0.1", "x-forwarded-proto": "https"})
        self.assertEqual(h["x-forwarded-proto"], "https")  # kept from a trusted hop

    def test_internal_proxy_with_trusted_hops(self):
        self.start(self.client_header_routes(), xff_num_trusted_hops=1)
        h = self.echo({"x-forwarded-for": "198.51.100.7, 10.0.0.1"})
        self.assertEqual(h["x-client"], "198.51.100.7")
        h = self.echo({"x-forwarded-for": "10.0.0.1"})  # too few: the connection's address
        self.assertEqual(h["x-client"], "127.0.0.1")


class AbsoluteFormTest(UpstreamCase):
    def test_absolute_form_target_becomes_authority_and_path(self):
        self.start()
        s = self.connect()
        s.sendall(b"GET http://example.com:8080/abs/path?q=1 HTTP/1.1\r\nHost: other\r\n"
                  b"Connection: close\r\n\r\n")
        data = read_all(s)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        e = json.loads(body)
        self.assertEqual(e["path"], "/abs/path?q=1")
        self.assertEqual(e["headers"]["host"], "example.com:8080")


class ConfigYamlTest(UpstreamCase):
    def test_config_yaml_merges_over_the_file(self):
        # The file routes everything to u; the flag sets the node and adds a cluster, both seen
        # in /config_dump.
        p = self.start(None, None, "--config-yaml",
                       "{node: {id: from-flag, cluster: c1}, static_resources: {clusters: "
                       "[{name: extra, type: STATIC, connect_timeout: 1s}]}}")
        r, data = p.admin("/config_dump")
        dump = json.loads(data)
        boot = [c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump")][0]
        self.assertEqual(boot["bootstrap"]["node"]["id"], "from-flag")
        names = [c["name"] for c in boot["bootstrap"]["static_resources"]["clusters"]]
        self.assertEqual(names, ["u", "extra"])  # repeated fields append, as in Envoy
        r, _ = p.request("GET", "/")
        self.assertEqual(r.status, 200)

    def test_config_yaml_alone(self):
        yaml = ("{admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}, "
                "static_resources: {listeners: [{name: listener_0, address: {socket_address: "
                "{address: 127.0.0.1, port_value: 0}}, filter_chains: [{filters: [{name: "
                "envoy.filters.network.http_connection_manager, typed_config: {'@type': "
                "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                ".HttpConnectionManager, stat_prefix: from_yaml, route_config: {virtual_hosts: [{name: v, "
                "domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200, "
                "body: {inline_string: from-yaml}}}]}]}, http_filters: [{name: "
                "envoy.filters.http.router}]}}]}]}]}}")
        proc = harness.Process("proxy", "--config-yaml", yaml, "--concurrency", "1")
        try:
            port = int(proc.wait_for_line(r"listening on 127\.0\.0\.1:(\d+)").group(1))
            proc.wait_for_line(r"worker\(s\) serving")
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(read_all(s).endswith(b"\r\n\r\nfrom-yaml"))
            self.assertEqual(proc.stop(), 0)
        finally:
            proc.__exit__()


class JsonAccessLogTest(UpstreamCase):
    def test_json_format_lines_keep_types(self):
        path = os.path.join(harness.tempfile.mkdtemp(), "access.json")
        p = self.start(access_log=[{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": {
                "status": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "flags": "%RESPONSE_FLAGS%",
                "upstream": "%UPSTREAM_HOST%", "fixed": "text", "method_and_path": "%REQ(:METHOD)% %REQ(:PATH)%",
                "nested": {"ua": "%REQ(USER-AGENT)%"}}}}}])
        p.request("GET", "/one", {"user-agent": "t1"})
        p.request("GET", "/two", {"x-test-status": "503"})
        lines = wait_until(lambda: os.path.exists(path) and
                           len(open(path).read().splitlines()) >= 2 and open(path).read().splitlines(),
                           what="two access log lines")
        one, two = (json.loads(l) for l in lines[:2])
        self.assertEqual(one["status"], 200)  # a number, as Envoy keeps the type
        self.assertEqual(one["path"], "/one")
        self.assertEqual(one["flags"], "-")
        self.assertEqual(one["upstream"], "127.0.0.1:%d" % self.u.port)
        self.assertEqual(one["fixed"], "text")
        self.assertEqual(one["method_and_path"], "GET /one")
        self.assertEqual(one["nested"], {"ua": "t1"})
        self.assertEqual(two["status"], 503)
        self.assertIsNone(two["nested"]["ua"])  # an absent value is null in JSON


def http_options(**common):
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "common_http_protocol_options": common,
        "explicit_http_config": {"http_protocol_options": {}}}}


class UpstreamOptionsTest(UpstreamCase):
    def test_max_requests_per_connection(self):
        p = self.start(clusters=[cluster("u", self.u.port, typed_extension_protocol_options=http_options(
            max_requests_per_connection=2))])
        for _ in range(5):
            r, _ = p.request("GET", "/")
            self.assertEqual(r.status, 200)
        self.assertEqual(self.u.connections, 3)
        self.assertEqual(p.stat("cluster.u.upstream_cx_total"), 3)
        self.assertEqual(p.stat("cluster.u.upstream_cx_max_requests"), 2)

    def test_idle_timeout_closes_pooled_connections(self):
        p = self.start(clusters=[cluster("u", self.u.port, typed_extension_protocol_options=http_options(
            idle_timeout="0.2s"))])
        r, _ = p.request("GET", "/")
        self.assertEqual(r.status, 200)
        wait_until(lambda: p.stat("cluster.u.upstream_cx_idle_timeout") == 1, what="the idle timeout")
        self.assertEqual(p.stat("cluster.u.upstream_cx_active"), 0)
        r, _ = p.request("GET", "/")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.u.connections, 2)


class AdminStatsTest(UpstreamCase):
    def test_stats_json_and_reset_counters(self):
        p = self.start()
        for _ in range(3):
            p.request("GET", "/")
        r, data = p.admin("/stats?format=json")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "application/json")
        stats = json.loads(data)["stats"]
        values = {s["name"]: s["value"] for s in stats if "name" in s}
        self.assertEqual(values["cluster.u.upstream_rq_200"], 3)
        self.assertEqual(values["http.ingress_http.downstream_rq_2xx"], 3)
        histograms = [s["histograms"] for s in stats if "histograms" in s]
        self.assertEqual(len(histograms), 1)
        names = {h["name"] for h in histograms[0]["computed_quantiles"]}
        self.assertIn("cluster.u.upstream_rq_time", names)
        r, data = p.admin("/stats?format=json&filter=rq_2xx$")
        names = {s["name"] for s in json.loads(data)["stats"] if "name" in s}
        self.assertIn("http.ingress_http.downstream_rq_2xx", names)
        self.assertTrue(all(n.endswith("rq_2xx") for n in names), names)

        r, _ = p.admin("/reset_counters")  # GET on a mutating endpoint
        self.assertEqual(r.status, 405)
        self.assertEqual(p.stat("cluster.u.upstream_rq_200"), 3)
        r, data = p.admin("/reset_counters", method="POST")
        self.assertEqual((r.status, data), (200, b"OK\n"))
        self.assertEqual(p.stat("cluster.u.upstream_rq_200"), 0)
        self.assertEqual(p.stat("http.ingress_http.downstream_rq_2xx"), 0)
        self.assertEqual(p.stat("cluster.u.membership_total"), 1)  # gauges stay
        p.request("GET", "/")
        self.assertEqual(p.stat("cluster.u.upstream_rq_200"), 1)


class ValidateClustersTest(harness.unittest.TestCase):
    def validate(self, route_config_extra, routes):
        d = harness.tempfile.mkdtemp()
        path = os.path.join(d, "c.json")
        cfg = bootstrap(hcm(routes), [cluster("a", 1)])
        rc = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        rc.update(route_config_extra)
        json.dump(cfg, open(path, "w"))
        return harness.run("proxy", "--mode", "validate", "-c", path)

    def test_a_route_to_an_unknown_cluster_is_refused(self):
        r = self.validate({}, [route({"prefix": "/x"}, route={"cluster": "a"}),
                               route({"prefix": "/"}, route={"cluster": "nope"})])
        self.assertEqual(r.returncode, 1)
        self.assertIn("static_resources.listeners[0].filter_chains[0].filters[0].typed_config."
                      "route_config.virtual_hosts[0].routes[1].route.cluster: unknown cluster 'nope'",
                      r.stderr)

    def test_an_unknown_weighted_cluster_is_refused(self):
        r = self.validate({}, [route({"prefix": "/"}, route={"weighted_clusters": {"clusters": [
            {"name": "a", "weight": 1}, {"name": "gone", "weight": 1}]}})])
        self.assertEqual(r.returncode, 1)
        self.assertIn("routes[0].route.weighted_clusters.clusters[1].name: unknown cluster 'gone'",
                      r.stderr)

    def test_validate_clusters_false_allows_it(self):
        r = self.validate({"validate_clusters": False},
                          [route({"prefix": "/"}, route={"cluster": "nope"})])
        self.assertEqual(r.returncode, 0, r.stderr)


class WebSocketCloseTest(UpstreamCase):
    def upgrade(self, extra=b""):
        s = self.connect()
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
                  extra + b"\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            self.assertTrue(chunk, head)
            head += chunk
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        return s

    def test_upstream_close_delivers_its_last_bytes(self):
        self.start(upgrade_configs=[{"upgrade_type": "websocket"}])
        n = 3 * 1024 * 1024
        s = self.upgrade(b"x-test-ws-bye: %d\r\n" % n)
        data = read_all(s)
        self.assertEqual(len(data), n)
        self.assertEqual(data, bytes(i % 251 for i in range(n)))

    def test_client_half_close_passes_through_and_the_echo_completes(self):
        self.start(upgrade_configs=[{"upgrade_type": "websocket"}])
        s = self.upgrade()
        payload = os.urandom(2 * 1024 * 1024)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_all(s), payload)


if __name__ == "__main__":
    harness.main()
