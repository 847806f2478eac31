"""Helpers for Sluice's end-to-end tests: start the real binary, find the port it bound,
stop it. Tests never sleep for a fixed time: they wait on a process's output or a socket."""

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import unittest

SLUICE = None
# Every Process started during the test that runs now: a failing test shows their output.
_STARTED = []
OUTPUT_LINES_ON_FAILURE = 80


class _Result(unittest.TextTestResult):
    """Prints the last lines of output of every process the test started, when it fails (a
    proxy's log says why far better than the assertion alone)."""

    def startTest(self, test):
        del _STARTED[:]
        super().startTest(test)

    def _show_output(self):
        for p in _STARTED:
            lines = p.output().splitlines()[-OUTPUT_LINES_ON_FAILURE:]
            self.stream.write("\n--- %s (pid %d), its last %d lines of output ---\n%s\n" % (
                " ".join(os.path.basename(a) for a in p.proc.args[:3]), p.proc.pid, len(lines),
                "\n".join(lines)))
        self.stream.flush()

    def addFailure(self, test, err):
        self._show_output()
        super().addFailure(test, err)

    def addError(self, test, err):
        self._show_output()
        super().addError(test, err)


def main():
    global SLUICE
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice", required=True)
    args, rest = parser.parse_known_args()
    SLUICE = os.path.abspath(args.sluice)
    unittest.main(argv=[sys.argv[0]] + rest,
                  testRunner=unittest.TextTestRunner(resultclass=_Result, verbosity=2))


# What ASan, LSan, UBSan and TSan print when they find something.
SANITIZER_REPORT = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|: runtime error: ")


class Process:
    """A running sluice process. A thread reads its stderr continuously (so a chatty process
    never blocks on a full pipe) and keeps the lines for wait_for_line()."""

    def __init__(self, *args, argv=None, stdin=None):
        """Runs `sluice *args`, or another program's `argv` (a test server)."""
        self.proc = subprocess.Popen(argv or [SLUICE, *args], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.lines = []
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        _STARTED.append(self)

    def _read(self):
        partial = b""
        fd = self.proc.stderr.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    if partial:
                        self.lines.append(partial.decode(errors="replace"))
                    self._eof = True
                    self._cond.notify_all()
                    return
                partial += chunk
                while b"\n" in partial:
                    raw, partial = partial.split(b"\n", 1)
                    self.lines.append(raw.decode(errors="replace") + "\n")
                self._cond.notify_all()

    def wait_for_line(self, pattern, timeout=20):
        """Waits until a line of stderr matches; returns the match. Earlier lines count."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    break
                self._cond.wait(remaining)
            raise AssertionError("no line matching %r; output so far:\n%s" % (pattern, "".join(self.lines)))

    def output(self):
        with self._cond:
            return "".join(self.lines)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("sluice did not exit after %s" % sig)
        self._reader.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.check_sanitizers()
        return self.proc.returncode

    def check_sanitizers(self):
        """A sanitizer's report in the output fails the test, whatever the test checked."""
        out = self.output()
        m = SANITIZER_REPORT.search(out)
        if m:
            raise AssertionError("sanitizer report in the output of %s:\n%s" % (
                self.proc.args[0], out[max(0, m.start() - 2000):m.start() + 6000]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if not exc or exc[0] is None:
            self.check_sanitizers()


def wait_until(predicate, timeout=10, what="condition"):
    """Polls `predicate` (a cheap check of state another process changes) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def run(*args, timeout=30):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=timeout)


import http.client
import json
import os
import tempfile


def cluster(name, *ports, **extra):
    c = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                for p in ports]}],
        },
    }
    c.update(extra)
    return c


def hcm(routes, **extra):
    """An HTTP connection manager over one virtual host (domains ["*"]) with these routes."""
    cfg = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "route_config": {"name": "local_route", "virtual_hosts": [
            {"name": "backend", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    cfg.update(extra)
    return cfg


def bootstrap(hcm_config, clusters, listener_extra=None):
    listener = {
        "name": "listener_0",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm_config}]}],
    }
    if listener_extra:
        listener.update(listener_extra)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [listener], "clusters": clusters},
    }


class DiscoveryFile:
    """A path config source's file (a DiscoveryResponse of `type_url` resources). Each version
    is written beside it and renamed into place, as Envoy's docs ask of anyone who updates
    one (a write in place could be read half done)."""

    def __init__(self, directory, name, type_url):
        self.path = os.path.join(directory, name)
        self.type_url = type_url
        self.versions = 0

    def write(self, resources, version=None, raw=None):
        """`raw`: the file's text as given (a bad version); else the resources as JSON."""
        self.versions += 1
        tmp = os.path.join(os.path.dirname(self.path),
                           ".%s.%d.tmp" % (os.path.basename(self.path), self.versions))
        with open(tmp, "w") as f:
            if raw is not None:
                f.write(raw)
            else:
                json.dump({"version_info": version or "v%d" % self.versions,
                           "resources": [dict(r, **{"@type": self.type_url}) for r in resources]},
                          f)
        os.rename(tmp, self.path)


class Proxy(Process):
    """`sluice proxy` on a config given as a dict; knows its listener and admin ports."""

    def __init__(self, config, *args, concurrency=1, wait_serving=True):
        """`wait_serving`: returns once the workers serve (else once the ports are known: a
        proxy that waits on a control plane serves later)."""
        self.dir = tempfile.mkdtemp(prefix="sluice-test-")
        self.config_path = os.path.join(self.dir, "envoy.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        extra = os.environ.get("SLUICE_TEST_PROXY_ARGS", "").split()
        super().__init__("proxy", "-c", self.config_path, "--concurrency", str(concurrency),
                         *extra, *args)
        m = self.wait_for_line(r"listener 'listener_0' listening on 127\.0\.0\.1:(\d+)")
        self.port = int(m.group(1))
        m = self.wait_for_line(r"admin address: 127\.0\.0\.1:(\d+)")
        self.admin_port = int(m.group(1))
        if wait_serving:
            self.wait_for_line(r"worker\(s\) serving")

    def request(self, method, path, headers=None, body=None, port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def admin(self, path, method="GET"):
        return self.request(method, path, port=self.admin_port)

    def stat(self, name):
        r, data = self.admin("/stats?filter=^" + name.replace(".", "\\.") + "$")
        for line in data.decode().splitlines():
            k, _, v = line.partition(": ")
            if k == name:
                return int(v)
        return None


class HandshakeLoad:
    """HTTPS clients that send GET / to `port` until stopped: the first keeps its connection,
    the others open a new one (a new handshake) per request. Each answer is counted under the
    common name of the certificate the connection got; a non-200, a failed handshake or a reset
    is counted as failed (the first few are kept in `errors`)."""

    def __init__(self, port, context, clients=4):
        self.port, self.context = port, context
        self.counts = {"ok": 0, "failed": 0}
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i == 0,))
                         for i in range(clients)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(20)

    def seen(self, cn):
        with self._lock:
            return self.counts.get(cn, 0)

    def _count(self, key, error=None):
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if error is not None and len(self.errors) < 5:
                self.errors.append(error)

    def _run(self, keep_alive):
        import http.client
        c = None
        while not self._stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                                    context=self.context)
                    c.connect()
                c.request("GET", "/")
                r = c.getresponse()
                r.read()
                cn = dict(x[0] for x in c.sock.getpeercert()["subject"])["commonName"]
                if r.status == 200:
                    self._count("ok")
                    self._count(cn)
                else:
                    self._count("failed", r.status)
                if not keep_alive:
                    c.close()
                    c = None
            except Exception as e:  # a failed handshake or a reset is a failure
                self._count("failed", repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()
