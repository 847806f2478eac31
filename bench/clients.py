"""Load generators: wrk (closed loop), loadgen (open loop, bench/loadgen/), and a Python
client that holds many idle keep-alive connections (the memory scenario)."""

import json
import os
import re
import selectors
import socket
import subprocess
import time

import procs

HERE = os.path.dirname(os.path.abspath(__file__))
LOADGEN_DIR = os.path.join(HERE, "loadgen")
LOADGEN_SRC = os.path.join(LOADGEN_DIR, "loadgen.cc")
LOADGEN_BIN = os.path.join(HERE, ".build", "loadgen")

WRK = "/usr/bin/wrk"


# --- wrk -------------------------------------------------------------------------------

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _time_us(text):
    """wrk's printed durations ("812.00us", "1.23ms", "2.00s") in microseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise procs.BenchError("cannot read wrk time %r" % text)
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def parse_wrk(out):
    """Requests/s, p50/p99 (us), total requests and errors from `wrk --latency` output."""
    r = {}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise procs.BenchError("no Requests/sec in wrk output:\n" + out[-600:])
    r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, out, re.M)
        if not m:
            raise procs.BenchError("no %s%% latency in wrk output:\n%s" % (pct, out[-600:]))
        r[key] = _time_us(m.group(1))
    m = re.search(r"^\s+(\d+) requests in ([\d.]+)(\w+),", out, re.M)
    r["requests"] = int(m.group(1))
    errors = 0
    notes = []
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        c, rd, w, t = map(int, m.groups())
        errors += c + rd + w + t
        notes.append("socket errors: connect %d, read %d, write %d, timeout %d" % (c, rd, w, t))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
        notes.append("%s non-2xx/3xx responses" % m.group(1))
    r["errors"] = errors
    r["error_detail"] = "; ".join(notes)
    return r


def wrk(port, path, duration, log_path, connections=50, headers=(), cpus=None, scheme="http",
        usage=None):
    """wrk, 1 thread, `connections` keep-alive connections (unless a header says otherwise).
    scheme="https": over TLS (wrk sends no ALPN and resumes no session: a full handshake per
    connection)."""
    argv = [WRK, "-t", "1", "-c", str(connections), "-d", "%ds" % duration, "--latency",
            "--timeout", "5s"]
    for h in headers:
        argv += ["-H", h]
    argv.append("%s://127.0.0.1:%d%s" % (scheme, port, path))
    out = procs.run_client("wrk", argv, log_path, timeout=duration + 30, cpus=cpus, usage=usage)
    r = parse_wrk(out)
    r["command"] = " ".join(argv)
    return r


# --- h2load (HTTP/2) --------------------------------------------------------------------

H2LOAD = "/usr/bin/h2load"


def parse_h2load(out):
    """Requests/s, mean latency (us), requests done and failures, and the protocol negotiated
    from h2load's output. h2load prints no percentiles."""
    r = {}
    m = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
    if not m:
        raise procs.BenchError("no req/s in h2load output:\n" + out[-600:])
    r["rps"] = float(m.group(1))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out, re.M)
    if not m:
        raise procs.BenchError("no request counts in h2load output:\n" + out[-600:])
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    r["requests"] = done
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    non2xx = sum(map(int, m.groups()[1:])) if m else 0
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+(\S+)", out, re.M)
    r["mean_us"] = _time_us(m.group(1)) if m else None
    m = re.search(r"^Application protocol: (\S+)", out, re.M)
    r["protocol"] = m.group(1) if m else None
    r["errors"] = failed + errored + timeout + non2xx
    r["error_detail"] = "%d failed, %d errored, %d timeout, %d non-2xx" % (
        failed, errored, timeout, non2xx)
    return r


def h2load(url, duration, log_path, connections=10, streams=5, cpus=None):
    """h2load, 1 thread, `connections` HTTP/2 connections with up to `streams` requests in
    flight on each (10 x 5 = the 50 requests in flight of scenario 1), for `duration` s.
    http:// is h2c with prior knowledge; https:// negotiates h2 by ALPN."""
    argv = [H2LOAD, "-t", "1", "-c", str(connections), "-m", str(streams),
            "-D", str(duration), "--warm-up-time", "200ms", url]
    out = procs.run_client("h2load", argv, log_path, timeout=duration + 30, cpus=cpus)
    r = parse_h2load(out)
    if r["protocol"] != "h2" and r["protocol"] != "h2c":
        raise procs.BenchError("h2load negotiated %s, not HTTP/2:\n%s" % (r["protocol"], out[-400:]))
    r["command"] = " ".join(argv)
    return r


# --- loadgen (open loop) ---------------------------------------------------------------

def ensure_loadgen():
    """Builds bench/.build/loadgen when it is missing or older than its source.
    Returns (path, None), or (None, why it cannot be used)."""
    if not os.path.exists(LOADGEN_SRC):
        return None, "bench/loadgen/loadgen.cc does not exist yet"
    newest_src = max(os.path.getmtime(os.path.join(LOADGEN_DIR, f))
                     for f in os.listdir(LOADGEN_DIR)
                     if os.path.isfile(os.path.join(LOADGEN_DIR, f)))
    if os.path.exists(LOADGEN_BIN) and os.path.getmtime(LOADGEN_BIN) >= newest_src:
        return LOADGEN_BIN, None
    os.makedirs(os.path.dirname(LOADGEN_BIN), exist_ok=True)
    argv = ["g++", "-std=c++20", "-O2", "-o", LOADGEN_BIN, LOADGEN_SRC]
    print("building loadgen: " + " ".join(argv), flush=True)
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        return None, "building loadgen failed:\n" + p.stderr[-1500:]
    return LOADGEN_BIN, None


def loadgen(binary, port, path, rate, duration, warmup, log_path, connections=50, cpus=None):
    argv = [binary, "--target", "127.0.0.1:%d" % port, "--path", path, "--rate", str(rate),
            "--duration", str(duration), "--warmup", str(warmup),
            "--connections", str(connections), "--timeout-ms", "5000", "--json"]
    out = procs.run_client("loadgen", argv, log_path, timeout=duration + warmup + 30, cpus=cpus)
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise procs.BenchError("loadgen printed no JSON object:\n" + out[-600:])
    r["command"] = " ".join(argv)
    return r


# --- many idle keep-alive connections ----------------------------------------------------

class IdleConnections:
    """Opens up to `n` connections to 127.0.0.1:port, sends one GET on each, reads the whole
    response, and keeps the connection open (idle, keep-alive) until close().

    At most `concurrency` connections are being set up at once, so no listen backlog
    overflows. Opening stops at the first failure (e.g. EMFILE, or the server refusing);
    `count` is how many connections are open and have served their request, `failure` why
    fewer than n were opened (None if all were)."""

    def __init__(self, port, path, n, concurrency=64, timeout=120.0):
        self.socks = []
        self.failure = None
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
        sel = selectors.DefaultSelector()
        pending = {}  # socket -> bytes received so far (None while connecting)
        started = 0
        deadline = time.monotonic() + timeout
        try:
            while (started < n and self.failure is None) or pending:
                if time.monotonic() > deadline:
                    self.failure = "timed out after %.0f s" % timeout
                    break
                # Start new connections up to the concurrency limit.
                while started < n and self.failure is None and len(pending) < concurrency:
                    try:
                        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    except OSError as e:
                        self.failure = "socket(): %s after %d connections" % (e, started)
                        break
                    s.setblocking(False)
                    err = s.connect_ex(("127.0.0.1", port))
                    if err not in (0,) + procs.ERRNO_IN_PROGRESS:
                        s.close()
                        self.failure = "connect: %s after %d connections" % (os.strerror(err), started)
                        break
                    pending[s] = None
                    sel.register(s, selectors.EVENT_WRITE)
                    started += 1
                for key, _ in sel.select(timeout=1.0):
                    s = key.fileobj
                    if pending[s] is None:  # connect finished
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self._drop(sel, pending, s, "connect: " + os.strerror(err))
                            continue
                        s.send(req)  # tiny: always fits in an empty socket buffer
                        pending[s] = b""
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    try:
                        data = s.recv(65536)
                    except OSError as e:
                        self._drop(sel, pending, s, "recv: %s" % e)
                        continue
                    if not data:
                        self._drop(sel, pending, s, "closed by the server before responding")
                        continue
                    buf = pending[s] + data
                    r = procs.parse_response(buf)
                    if r is None:
                        pending[s] = buf
                        continue
                    sel.unregister(s)
                    del pending[s]
                    if r[0] != 200:
                        s.close()
                        self.failure = self.failure or "status %d" % r[0]
                        continue
                    self.socks.append(s)
        finally:
            for s in pending:
                s.close()
            sel.close()

    def _drop(self, sel, pending, s, why):
        sel.unregister(s)
        del pending[s]
        s.close()
        if self.failure is None:
            self.failure = "%s (after %d connections)" % (why, len(self.socks))

    @property
    def count(self):
        return len(self.socks)

    def still_open(self):
        """How many of the connections the server has not closed (a peek that reads no data)."""
        alive = 0
        for s in self.socks:
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    continue  # EOF: the server closed it
            except BlockingIOError:
                pass
            except OSError:
                continue
            alive += 1
        return alive

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
