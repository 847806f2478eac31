"""Dynamic listeners from a file (LDS with a path_config_source), end to end: a new version
moved into place adds, changes and removes listeners while the proxy serves; a changed
listener on the same address keeps its socket (nothing refused during the swap) and its old
connections drain; a bad version is refused with the path of the bad field and the last good
listeners keep serving; under load, swaps fail no request."""

import http.client
import json
import os
import socket
import subprocess
import tempfile
import threading

import harness
from harness import Proxy, cluster, hcm, wait_until
from upstream import Upstream

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def route_to(name, prefix="/"):
    return {"match": {"prefix": prefix}, "route": {"cluster": name}}


def listener(name, routes, port=0, **extra):
    l = {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm(routes)}]}],
    }
    l.update(extra)
    return l


class LdsFileTest(harness.unittest.TestCase):
    def setUp(self):
        self.a = Upstream("a")
        self.b = Upstream("b")
        self.dir = tempfile.mkdtemp(prefix="sluice-lds-")
        self.lds_file = harness.DiscoveryFile(self.dir, "lds.yaml", LISTENER_TYPE)
        self.lds_path = self.lds_file.path
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()
        self.a.close()
        self.b.close()

    def write_lds(self, listeners, version=None, raw=None):
        self.lds_file.write(listeners, version, raw)

    def start(self, drain_time=2, concurrency=1):
        cfg = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"clusters": [cluster("a", self.a.port), cluster("b", self.b.port)]},
            "dynamic_resources": {"lds_config": {"path_config_source": {"path": self.lds_path},
                                                 "resource_api_version": "V3"}},
        }
        self.proxy = Proxy(cfg, "--drain-time-s", str(drain_time), concurrency=concurrency)
        return self.proxy

    def listeners_dump(self):
        _, data = self.proxy.admin("/config_dump")
        for c in json.loads(data)["configs"]:
            if c["@type"].endswith("ListenersConfigDump"):
                return c
        raise AssertionError("no ListenersConfigDump")

    def served_by(self, port=None):
        r, _ = self.proxy.request("GET", "/", port=port)
        return r.status, r.getheader("x-upstream")

    def test_listeners_are_added_changed_and_removed(self):
        self.write_lds([listener("listener_0", [route_to("a")])])
        p = self.start()
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("listener_manager.lds.update_success"), 1)
        self.assertEqual(p.stat("listener_manager.listener_added"), 1)
        self.assertEqual(p.stat("listener_manager.total_listeners_active"), 1)
        dump = self.listeners_dump()
        self.assertEqual(dump["version_info"], "v1")
        self.assertEqual([l["name"] for l in dump["dynamic_listeners"]], ["listener_0"])
        self.assertEqual(dump["dynamic_listeners"][0]["active_state"]["version_info"], "v1")

        # A keep-alive connection opened before the change.
        old = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        old.request("GET", "/")
        r = old.getresponse()
        r.read()
        self.assertEqual(r.getheader("x-upstream"), "a")

        # Changed routes, same address: the same port serves the new chain.
        self.write_lds([listener("listener_0", [route_to("b")])])
        wait_until(lambda: p.stat("listener_manager.lds.update_success") == 2, what="update 2")
        self.assertEqual(self.served_by(), (200, "b"))
        self.assertEqual(p.stat("listener_manager.listener_modified"), 1)
        self.assertEqual(p.stat("listener_manager.total_listeners_draining"), 1)
        self.assertIn("listener 'listener_0' updated in place", p.output())
        entry = self.listeners_dump()["dynamic_listeners"][0]
        self.assertEqual(entry["active_state"]["version_info"], "v2")
        self.assertEqual(entry["draining_state"]["version_info"], "v1")
        # The old connection finishes its next request on the old chain, then is closed.
        old.request("GET", "/")
        r = old.getresponse()
        r.read()
        self.assertEqual((r.getheader("x-upstream"), r.getheader("connection")), ("a", "close"))
        old.close()
        # The draining version goes after --drain-time-s.
        wait_until(lambda: p.stat("listener_manager.total_listeners_draining") == 0, timeout=10,
                   what="drain over")
        self.assertNotIn("draining_state", self.listeners_dump()["dynamic_listeners"][0])

        # A second listener is added; then removed.
        self.write_lds([listener("listener_0", [route_to("b")]),
                        listener("listener_1", [route_to("a")])])
        m = p.wait_for_line(r"listener 'listener_1' listening on 127\.0\.0\.1:(\d+)")
        port1 = int(m.group(1))
        self.assertEqual(self.served_by(port1), (200, "a"))
        self.assertEqual(p.stat("listener_manager.listener_added"), 2)
        self.assertEqual(p.stat("listener_manager.total_listeners_active"), 2)
        _, text = p.admin("/listeners")
        self.assertIn("listener_1::127.0.0.1:%d" % port1, text.decode())

        self.write_lds([listener("listener_0", [route_to("b")])])
        wait_until(lambda: p.stat("listener_manager.listener_removed") == 1, what="removal")

        def refused():
            try:
                socket.create_connection(("127.0.0.1", port1), timeout=2).close()
                return False
            except ConnectionRefusedError:
                return True

        wait_until(refused, what="removed listener refuses connections")
        self.assertEqual(p.stat("listener_manager.total_listeners_active"), 1)
        self.assertEqual(self.served_by(), (200, "b"))

    def test_new_address_moves_the_listener(self):
        self.write_lds([listener("listener_0", [route_to("a")])])
        p = self.start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        self.write_lds([listener("listener_0", [route_to("b")], port=free)])
        p.wait_for_line(r"listener 'listener_0' listening on 127\.0\.0\.1:%d" % free)
        self.assertEqual(self.served_by(free), (200, "b"))
        self.assertEqual(p.stat("listener_manager.listener_modified"), 1)

    def test_a_port_passes_from_a_removed_listener_to_a_new_one(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # Without reuse_port a second bind of the port fails while the first socket is open.
        self.write_lds([listener("listener_0", [route_to("a")], port=port,
                                 enable_reuse_port=False)])
        p = self.start(concurrency=2)
        self.assertEqual(self.served_by(port), (200, "a"))
        keep = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        keep.request("GET", "/")
        keep.getresponse().read()
        # One update removes listener_0 and adds 'new' on its port: the sockets pass over.
        self.write_lds([listener("new", [route_to("b")], port=port, enable_reuse_port=False)])
        wait_until(lambda: p.stat("listener_manager.lds.update_success") == 2, what="update 2")
        for _ in range(6):  # new connections, whichever worker takes them
            self.assertEqual(self.served_by(port), (200, "b"))
        # The old listener's connection drains on its old chain.
        keep.request("GET", "/")
        r = keep.getresponse()
        r.read()
        self.assertEqual((r.getheader("x-upstream"), r.getheader("connection")), ("a", "close"))
        keep.close()
        self.assertEqual(p.stat("listener_manager.listener_removed"), 1)
        self.assertEqual(p.stat("listener_manager.total_listeners_active"), 1)

    def test_tls_listener_changed_in_place_serves_new_handshakes(self):
        # A changed TLS listener on the same address gets new TLS contexts; handshakes on
        # it must work (their stats are set up for the new contexts too).
        certs = tempfile.mkdtemp(prefix="sluice-lds-certs-")
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([os.path.join(here, "..", "tls", "gen_certs.sh"), certs], check=True,
                       capture_output=True)
        tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"filename": os.path.join(certs, "server.pem")},
                "private_key": {"filename": os.path.join(certs, "server.key")}}]}}}

        def tls_listener(cluster_name):
            l = listener("listener_0", [route_to(cluster_name)])
            l["filter_chains"][0]["transport_socket"] = tls
            return l

        def https_served_by(port):
            r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert",
                                os.path.join(certs, "ca.pem"), "-o", "/dev/null", "-D", "-",
                                "https://localhost:%d/" % port],
                               capture_output=True, text=True, timeout=30)
            upstream = [l.split(":", 1)[1].strip() for l in r.stdout.splitlines()
                        if l.lower().startswith("x-upstream:")]
            return r.returncode, upstream[0] if upstream else None

        self.write_lds([tls_listener("a")])
        p = self.start()
        self.assertEqual(https_served_by(p.port), (0, "a"))
        # The same address as configured (port 0: the socket bound first stays).
        self.write_lds([tls_listener("b")])
        wait_until(lambda: https_served_by(p.port) == (0, "b"), what="new TLS chain serving")
        self.assertEqual(p.stat("listener_manager.listener_modified"), 1)
        self.assertIn("listener 'listener_0' updated in place", p.output())
        # The new contexts count their handshakes under the listener's address, as the old
        # ones did (they had no stats before the fix, and a handshake used them).
        name = "listener.127.0.0.1_%d.ssl.handshake" % p.port
        before = p.stat(name)
        for _ in range(3):
            self.assertEqual(https_served_by(p.port), (0, "b"))
        self.assertEqual(p.stat(name), before + 3)

    def test_a_socket_in_its_listener_filters_keeps_the_config_it_was_accepted_under(self):
        inspector = [{"name": "envoy.filters.listener.http_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3."
                     "HttpInspector"}}]
        self.write_lds([listener("listener_0", [route_to("a")], listener_filters=inspector)])
        p = self.start()
        # Accepted, but the inspector waits for its first bytes.
        pending = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        wait_until(lambda: p.stat("listener.127.0.0.1_%d.downstream_pre_cx_active" % p.port) == 1,
                   what="the socket accepted, in the inspector")
        self.write_lds([listener("listener_0", [route_to("b")], listener_filters=inspector)])
        wait_until(lambda: self.served_by() == (200, "b"), what="the new chain serving")
        # Its first bytes come after the update: it is served by the generation it was
        # accepted under, which drains (the response closes the connection).
        pending.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = http.client.HTTPResponse(pending)
        r.begin()
        r.read()
        self.assertEqual((r.status, r.getheader("x-upstream")), (200, "a"))
        self.assertEqual(r.getheader("connection"), "close")
        pending.close()
        self.assertEqual(p.stat("listener.127.0.0.1_%d.downstream_pre_cx_active" % p.port), 0)

    def test_a_socket_still_in_its_listener_filters_goes_with_its_drained_generation(self):
        inspector = [{"name": "envoy.filters.listener.http_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3."
                     "HttpInspector"}}]
        slow = dict(listener_filters=inspector, listener_filters_timeout="60s")
        self.write_lds([listener("listener_0", [route_to("a")], **slow)])
        p = self.start(drain_time=1)
        pending = socket.create_connection(("127.0.0.1", p.port), timeout=20)
        wait_until(lambda: p.stat("listener.127.0.0.1_%d.downstream_pre_cx_active" % p.port) == 1,
                   what="the socket accepted, in the inspector")
        self.write_lds([listener("listener_0", [route_to("b")], **slow)])
        wait_until(lambda: self.served_by() == (200, "b"), what="the new chain serving")
        # Once the old generation's drain time is over the socket is closed (long before the
        # listener filters' own timeout).
        self.assertEqual(pending.recv(1), b"")
        pending.close()
        self.assertEqual(p.stat("listener.127.0.0.1_%d.downstream_pre_cx_active" % p.port), 0)

    def test_bad_version_is_refused_and_the_old_keeps_serving(self):
        self.write_lds([listener("listener_0", [route_to("a")])])
        p = self.start()
        self.write_lds([listener("listener_0", [route_to("b")]),
                        listener("listener_1", [route_to("nowhere")])])
        p.wait_for_line(r"update rejected: resources\[1\]\.filter_chains\[0\]\.filters\[0\]\."
                        r"typed_config\.route_config\.virtual_hosts\[0\]\.routes\[0\]\.route\."
                        r"cluster: unknown cluster 'nowhere'")
        self.write_lds([listener("listener_0", [route_to("b")], per_connection_buffer_limit_bytes="x")])
        p.wait_for_line(r"update rejected: .*per_connection_buffer_limit_bytes")
        self.write_lds([listener("", [route_to("b")])])
        p.wait_for_line(r"update rejected: resources\[0\]\.name: a listener from LDS needs a name")
        self.write_lds([listener("listener_0", [route_to("b")], use_original_dst=True)])
        p.wait_for_line(r"update rejected: resources\[0\]\.use_original_dst")
        self.assertEqual(p.stat("listener_manager.lds.update_rejected"), 4)
        # Nothing of the bad versions applied.
        self.assertEqual(self.served_by(), (200, "a"))
        self.assertEqual(p.stat("listener_manager.total_listeners_active"), 1)
        self.assertEqual(self.listeners_dump()["version_info"], "v1")
        self.write_lds([listener("listener_0", [route_to("b")])])
        wait_until(lambda: self.served_by() == (200, "b"), what="good version applied")

    def test_swaps_under_load_fail_no_request(self):
        self.write_lds([listener("listener_0", [route_to("a")])])
        p = self.start(drain_time=30, concurrency=2)
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
                except Exception as e:  # a refused or reset connection is a failure
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
            self.write_lds([listener("listener_0", [route_to(target)])])
            wait_until(lambda: counts[target] > before + 50, timeout=20, what="traffic on " + target)
        stop.set()
        for t in threads:
            t.join(20)
        print("lds swaps under load: %d ok, %d failed (a %d, b %d)" %
              (counts["ok"], counts["failed"], counts["a"], counts["b"]))
        if counts["failed"]:
            print(p.admin("/stats?filter=downstream_cx|drain|no_filter")[1].decode())
        self.assertEqual(counts["failed"], 0, errors[:5])
        self.assertGreater(counts["ok"], 300)
        self.assertEqual(p.stat("listener_manager.listener_modified"), 6)


if __name__ == "__main__":
    harness.main()
