"""The scenarios: what each measures, and one measurement of one target (one round).

Each run_* function measures one target once and returns a sample: a dict of metric key ->
value, plus "error" (None, or what went wrong) and "detail" (commands, raw counts).
A BenchError raised inside becomes an error sample; the run goes on.
"""

import http.client
import json
import os
import queue
import threading
import time

import clients
import procs
import targets

# Scenario ids in the order they run; `--only` takes these (or their numbers 1-8).
SCENARIOS = ["keepalive", "bigbody", "fixedrate", "connclose", "cpu", "memory", "startup", "scale",
             "policy", "h2c", "h2tls", "handshake", "mtls", "xds"]

# Scenarios measured on one long-running instance per target; the others start a fresh
# instance for every measurement.
PERSISTENT = ["keepalive", "bigbody", "fixedrate", "connclose", "cpu"]
# Measured on one long-running instance per proxy started with its configs/*-tls.* config
# (an h2c and a TLS listener beside the plain one).
PERSISTENT_TLS = ["h2c", "h2tls", "handshake"]

FIXED_RATES = [1000, 10000]

HIGHER, LOWER, INFO = "higher", "lower", "info"


class Metric:
    def __init__(self, scenario, key, label, unit, better, digits=0, targets=None):
        self.scenario = scenario
        self.key = key
        self.label = label
        self.unit = unit
        self.better = better
        self.digits = digits
        self.targets = targets  # None: every target; else only these have a value


PROXIES_ONLY = targets.PROXIES
METRICS = [
    Metric("keepalive", "rps", "1. keep-alive, 64 B: requests/s", "req/s", HIGHER),
    Metric("keepalive", "p50_us", "1. keep-alive, 64 B: p50", "us", LOWER),
    Metric("keepalive", "p99_us", "1. keep-alive, 64 B: p99", "us", LOWER),
    Metric("bigbody", "rps", "2. keep-alive, 16 KiB: requests/s", "req/s", HIGHER),
    Metric("bigbody", "p50_us", "2. keep-alive, 16 KiB: p50", "us", LOWER),
    Metric("bigbody", "p99_us", "2. keep-alive, 16 KiB: p99", "us", LOWER),
] + [
    Metric("fixedrate", "%s_%d" % (p, rate), "3. %s req/s open loop: %s" % (
        "{:,}".format(rate), label), "us", LOWER)
    for rate in FIXED_RATES
    for p, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))
] + [
    Metric("connclose", "rps", "4. new connection per request: requests/s", "req/s", HIGHER),
    Metric("cpu", "cpu_per_10k", "5. CPU per 10,000 requests (scenario 1)", "CPU s", LOWER, 3),
    Metric("cpu", "cpu_user_per_10k", "5. of which user time", "CPU s", LOWER, 3),
    Metric("cpu", "cpu_sys_per_10k", "5. of which system time", "CPU s", LOWER, 3),
    Metric("cpu", "box_cpu_per_10k", "5. whole machine (/proc/stat) per 10,000 requests", "CPU s",
           LOWER, 3),
    Metric("cpu", "box_idle_pct", "5. whole machine: idle meanwhile", "%", INFO, 1),
    Metric("memory", "rss_idle_mib", "6. RSS idle after start", "MiB", LOWER, 1),
    Metric("memory", "anon_idle_mib", "6. of which anonymous (the process's own)", "MiB", LOWER,
           1),
    Metric("memory", "rss_conns_mib", "6. RSS with the idle connections", "MiB", LOWER, 1),
    Metric("memory", "bytes_per_conn", "6. bytes per idle keep-alive connection", "B", LOWER),
    Metric("memory", "conns", "6. idle connections opened", "", INFO),
    Metric("startup", "startup_ms", "7. exec to first proxied response", "ms", LOWER, 1),
    Metric("scale", "ready_ms", "8. 10k routes: exec to /ready 200", "ms", LOWER, 1,
           targets=["sluice"]),
    Metric("scale", "load_ms", "8. 10k routes: exec to first response on last route", "ms",
           LOWER, 1, targets=PROXIES_ONLY),
    Metric("scale", "rss_mib", "8. 10k routes: RSS after load", "MiB", LOWER, 1,
           targets=PROXIES_ONLY),
    Metric("scale", "rps", "8. 10k routes: requests/s on last route", "req/s", HIGHER,
           targets=PROXIES_ONLY),
    Metric("policy", "rps_plain", "9. sluice as in scenario 1: requests/s", "req/s", HIGHER,
           targets=["sluice"]),
    Metric("policy", "rps_policy", "9. with resilience configured, idle: requests/s", "req/s",
           HIGHER, targets=["sluice"]),
    Metric("policy", "ratio", "9. idle resilience / plain, throughput", "x", INFO, 3,
           targets=["sluice"]),
    Metric("policy", "cpu_ratio", "9. idle resilience / plain, CPU per request", "x", INFO, 3,
           targets=["sluice"]),
    Metric("h2c", "rps", "10. h2c (10 conns x 5 streams), 64 B: requests/s", "req/s", HIGHER),
    Metric("h2c", "mean_us", "10. h2c: mean latency", "us", LOWER),
    Metric("h2c", "cpu_per_10k", "10. h2c: CPU per 10,000 requests", "CPU s", LOWER, 3),
    Metric("h2tls", "rps", "11. h2 over TLS (10 x 5), 64 B: requests/s", "req/s", HIGHER),
    Metric("h2tls", "mean_us", "11. h2 over TLS: mean latency", "us", LOWER),
    Metric("h2tls", "cpu_per_10k", "11. h2 over TLS: CPU per 10,000 requests", "CPU s", LOWER,
           3),
    Metric("handshake", "rps", "12. TLS, new connection per request: handshakes/s", "1/s",
           HIGHER),
    Metric("handshake", "cpu_per_1k", "12. TLS: CPU per 1,000 handshakes", "CPU s", LOWER, 3),
    Metric("mtls", "rps_plain", "13. two sluice sidecars, plain: requests/s", "req/s", HIGHER,
           targets=["sluice"]),
    Metric("mtls", "rps_mtls", "13. two sluice sidecars, mTLS: requests/s", "req/s", HIGHER,
           targets=["sluice"]),
    Metric("mtls", "p99_plain", "13. two sidecars, plain: p99", "us", LOWER, targets=["sluice"]),
    Metric("mtls", "p99_mtls", "13. two sidecars, mTLS: p99", "us", LOWER, targets=["sluice"]),
    Metric("mtls", "ratio", "13. mTLS / plain, throughput", "x", INFO, 3, targets=["sluice"]),
    Metric("mtls", "cpu_ratio", "13. mTLS / plain, CPU per request (both sidecars)", "x", INFO,
           3, targets=["sluice"]),
] + [
    m for n in (1, 100, 10000) for m in (
        Metric("xds", "ms_%d" % n, "14. ADS route change to traffic, %s route%s" % (
            "{:,}".format(n), "" if n == 1 else "s"), "ms", LOWER, 2, targets=["sluice"]),
        Metric("xds", "cpu_ms_%d" % n, "14. CPU per route update, %s route%s" % (
            "{:,}".format(n), "" if n == 1 else "s"), "CPU ms", LOWER, 2, targets=["sluice"]))
] + [
    Metric("xds", "rss_mib_10000", "14. RSS after the 10,000-route updates", "MiB", LOWER, 1,
           targets=["sluice"]),
    Metric("xds", "eds_ms_1000", "14. ADS endpoint change to traffic, 1,000 endpoints", "ms",
           LOWER, 2, targets=["sluice"]),
    Metric("xds", "eds_cpu_ms_1000", "14. CPU per endpoint update, 1,000 endpoints", "CPU ms",
           LOWER, 2, targets=["sluice"]),
    Metric("xds", "eds_cpu_ms_10000", "14. CPU per endpoint update, 10,000 endpoints",
           "CPU ms", LOWER, 2, targets=["sluice"]),
    Metric("xds", "eds_rss_before_mib", "14. RSS before the 10,000 endpoints", "MiB", LOWER, 1,
           targets=["sluice"]),
    Metric("xds", "eds_rss_after_mib", "14. RSS after the 10,000-endpoint updates", "MiB",
           LOWER, 1, targets=["sluice"]),
]

MIB = 1024.0 * 1024.0


class Context:
    """Everything a measurement needs: the environment, the shared upstream, settings."""

    def __init__(self, env, upstream, duration, fixed_duration, fixed_warmup, idle_conns,
                 loadgen_bin, loadgen_missing, logdir):
        self.env = env
        self.upstream = upstream
        self.duration = duration
        self.fixed_duration = fixed_duration
        self.fixed_warmup = fixed_warmup
        self.idle_conns = idle_conns
        self.loadgen_bin = loadgen_bin
        self.loadgen_missing = loadgen_missing
        self.logdir = logdir
        self._n = 0

    def log(self, name):
        self._n += 1
        return "%s/%04d-%s.log" % (self.logdir, self._n, name)


def _wrk_sample(r, keys=("rps", "p50_us", "p99_us")):
    s = {k: r[k] for k in keys}
    s["error"] = None
    if r["errors"]:
        s["error"] = "wrk: %s (of %d requests)" % (r["error_detail"], r["requests"])
    s["detail"] = {"command": r["command"], "requests": r["requests"], "errors": r["errors"]}
    return s


# --- scenarios on the long-running instance -------------------------------------------

def run_keepalive(ctx, server):
    """Scenario 1 (and 5): wrk, 1 thread, 50 keep-alive connections, /small. The target's CPU
    time (all its processes), split into user and system time, is read from /proc before and
    after; so is the whole machine's (/proc/stat), which adds the upstream's, wrk's and the
    kernel's softirq work (loopback TCP's receive side, charged to no process), and how much
    of the two cores stayed idle. The upstream's and wrk's own CPU go in the details."""
    upstream = None if server.child is ctx.upstream.child else ctx.upstream.child
    user0, sys0 = server.child.cpu_split()
    up0 = upstream.cpu_seconds() if upstream else 0.0
    box0, all0 = procs.box_cpu_seconds()
    usage = {}
    r = clients.wrk(server.port, "/small", ctx.duration, ctx.log("wrk"),
                    cpus=ctx.env.client_cpus(), usage=usage)
    box1, all1 = procs.box_cpu_seconds()
    user1, sys1 = server.child.cpu_split()
    up1 = upstream.cpu_seconds() if upstream else 0.0
    s = _wrk_sample(r)
    per10k = 10000 / max(1, r["requests"])
    user, system = user1 - user0, sys1 - sys0
    s["cpu_per_10k"] = (user + system) * per10k
    s["cpu_user_per_10k"] = user * per10k
    s["cpu_sys_per_10k"] = system * per10k
    s["box_cpu_per_10k"] = (box1 - box0) * per10k
    s["box_idle_pct"] = (max(0.0, 100.0 * (1 - (box1 - box0) / (all1 - all0)))
                         if all1 > all0 else None)
    s["detail"]["cpu_seconds"] = user + system
    s["detail"]["upstream_cpu_seconds"] = up1 - up0
    s["detail"]["wrk_cpu_seconds"] = usage["cpu_seconds"]
    return s


def run_bigbody(ctx, server):
    """Scenario 2: as scenario 1 with the 16 KiB body."""
    r = clients.wrk(server.port, "/big", ctx.duration, ctx.log("wrk"),
                    cpus=ctx.env.client_cpus())
    return _wrk_sample(r)


def run_fixedrate(ctx, server):
    """Scenario 3: latency at fixed request rates from the open-loop loadgen."""
    if ctx.loadgen_bin is None:
        return {"error": "skipped: " + ctx.loadgen_missing, "skipped": True}
    s = {"error": None, "detail": {}}
    errors = []
    for rate in FIXED_RATES:
        r = clients.loadgen(ctx.loadgen_bin, server.port, "/small", rate, ctx.fixed_duration,
                            ctx.fixed_warmup, ctx.log("loadgen"), cpus=ctx.env.client_cpus())
        lat = r["latency_us"]
        s["p50_%d" % rate] = lat["p50"]
        s["p99_%d" % rate] = lat["p99"]
        s["p999_%d" % rate] = lat["p999"]
        s["detail"][str(rate)] = r
        if r.get("errors") or r.get("timeouts") or r.get("status_non_2xx"):
            errors.append("at %d req/s: %s errors, %s timeouts, %s non-2xx of %s sent"
                          % (rate, r.get("errors"), r.get("timeouts"),
                             r.get("status_non_2xx", 0), r.get("sent")))
        if r.get("achieved_rate", rate) < 0.95 * rate:
            errors.append("at %d req/s: only %.0f req/s achieved" % (rate, r["achieved_rate"]))
    if errors:
        s["error"] = "loadgen: " + "; ".join(errors)
    return s


def run_connclose(ctx, server):
    """Scenario 4: every request on a new connection (wrk sends Connection: close)."""
    r = clients.wrk(server.port, "/small", ctx.duration, ctx.log("wrk"),
                    headers=["Connection: close"], cpus=ctx.env.client_cpus())
    return _wrk_sample(r, keys=("rps",))


# --- scenarios that start a fresh instance per measurement -----------------------------

def run_memory(ctx, target):
    """Scenario 6: RSS of a fresh instance at idle (after the one request that showed it
    serving), then with N idle keep-alive connections that have each served one request."""
    server = targets.start_target(ctx.env, target, ctx.upstream, cpus=ctx.env.server_cpus())
    try:
        time.sleep(0.2)  # let start-up work finish
        idle = server.child.rss_bytes()
        anon = server.child.rss_bytes("RssAnon")
        conns = clients.IdleConnections(server.port, "/small", ctx.idle_conns)
        try:
            time.sleep(0.2)  # let the last responses' buffers be released
            loaded = server.child.rss_bytes()
            still = conns.still_open()
        finally:
            n = conns.count
            conns.close()
        if not server.child.alive():
            raise procs.BenchError("%s exited while holding the connections; its log:\n%s"
                                   % (target, server.child.log_tail()))
    finally:
        server.stop()
    s = {"rss_idle_mib": idle / MIB, "anon_idle_mib": anon / MIB, "rss_conns_mib": loaded / MIB,
         "conns": n,
         "bytes_per_conn": (loaded - idle) / n if n else None, "error": None,
         "detail": {"processes": "all processes of the target (nginx: master + worker)",
                    "rss_idle": idle, "rss_with_conns": loaded, "still_open": still}}
    problems = []
    if conns.failure:
        problems.append("opened %d of %d connections: %s" % (n, ctx.idle_conns, conns.failure))
    if still < n:
        problems.append("%d of %d connections were closed by the server before RSS was read"
                        % (n - still, n))
    if problems:
        s["error"] = "; ".join(problems)
    return s


def run_startup(ctx, target):
    """Scenario 7: exec to the first successful proxied request (GET /small polled every ~1 ms
    on a new connection)."""
    server = targets.start_target(ctx.env, target, ctx.upstream, cpus=ctx.env.server_cpus())
    server.stop()
    return {"startup_ms": server.ready_s * 1000, "error": None}


def run_scale(ctx, target):
    """Scenario 8: 10,000 routes over 1,000 clusters. Load time (sluice: to /ready 200, and
    for every proxy: to the first 200 on the last route), RSS after load, and scenario 1's
    wrk run against the last route."""
    server = targets.start_proxy(ctx.env, target, ctx.upstream.port, scale=True,
                                 cpus=ctx.env.server_cpus())
    try:
        rss = server.child.rss_bytes()
        r = clients.wrk(server.port, targets.SCALE_LAST_PATH, ctx.duration, ctx.log("wrk"),
                        cpus=ctx.env.client_cpus())
    finally:
        server.stop()
    s = _wrk_sample(r, keys=("rps",))
    s["load_ms"] = server.ready_s * 1000
    s["rss_mib"] = rss / MIB
    if server.admin_ready_s is not None:
        s["ready_ms"] = server.admin_ready_s * 1000
    return s


def run_policy(ctx, target):
    """Scenario 9 (sluice only): the cost of resilience features that are configured but do
    not fire (bench/configs/sluice-policy.yaml: fault filter at 0%, a local rate limit that is
    never reached, retries, circuit breakers, outlier detection, an active health check).
    Two fresh instances, plain and policy, each measured as scenario 1, alternately, twice;
    the medians of each go into the sample."""
    if target != "sluice":
        return {"error": "skipped: sluice only", "skipped": True}
    plain = targets.start_proxy(ctx.env, "sluice", ctx.upstream.port, cpus=ctx.env.server_cpus())
    try:
        policy = targets.start_proxy(ctx.env, "sluice", ctx.upstream.port,
                                     cpus=ctx.env.server_cpus(),
                                     sluice_template="sluice-policy.yaml")
    except BaseException:
        plain.stop()
        raise
    try:
        for server in (plain, policy):
            clients.wrk(server.port, "/small", 1, ctx.log("warmup"), cpus=ctx.env.client_cpus())
        got = {"plain": [], "policy": []}
        for _ in range(2):
            for name, server in (("plain", plain), ("policy", policy)):
                got[name].append(run_keepalive(ctx, server))
    finally:
        plain.stop()
        policy.stop()
    errors = [x["error"] for v in got.values() for x in v if x.get("error")]

    def mid(name, key):
        vals = sorted(x[key] for x in got[name])
        return (vals[0] + vals[-1]) / 2.0

    s = {"rps_plain": mid("plain", "rps"), "rps_policy": mid("policy", "rps"),
         "error": "; ".join(errors) if errors else None,
         "detail": {k: [x["detail"] for x in v] for k, v in got.items()}}
    s["ratio"] = s["rps_policy"] / s["rps_plain"] if s["rps_plain"] else None
    cpu_plain, cpu_policy = mid("plain", "cpu_per_10k"), mid("policy", "cpu_per_10k")
    s["cpu_ratio"] = cpu_policy / cpu_plain if cpu_plain else None
    return s


# --- HTTP/2 and TLS (scenarios 10-12, on the instances started with tls=True) -----------

def _h2load_sample(ctx, server, url):
    cpu0 = server.child.cpu_seconds()
    r = clients.h2load(url, ctx.duration, ctx.log("h2load"), cpus=ctx.env.client_cpus())
    cpu1 = server.child.cpu_seconds()
    s = {"rps": r["rps"], "mean_us": r["mean_us"], "error": None,
         "cpu_per_10k": (cpu1 - cpu0) / max(1, r["requests"]) * 10000,
         "detail": {"command": r["command"], "requests": r["requests"], "protocol": r["protocol"],
                    "cpu_seconds": cpu1 - cpu0}}
    if r["errors"]:
        s["error"] = "h2load: %s (of %d requests)" % (r["error_detail"], r["requests"])
    return s


def run_h2c(ctx, server):
    """Scenario 10: h2load, HTTP/2 with prior knowledge, 10 connections x 5 streams, /small."""
    return _h2load_sample(ctx, server, "http://127.0.0.1:%d/small" % server.h2c_port)


def run_h2tls(ctx, server):
    """Scenario 11: as 10 over TLS (h2 by ALPN); the 10 handshakes fall in h2load's warm-up."""
    return _h2load_sample(ctx, server, "https://127.0.0.1:%d/small" % server.tls_port)


def run_handshake(ctx, server):
    """Scenario 12: wrk over TLS with Connection: close, 50 connections: every request is a
    new TCP connection and a full TLS handshake (wrk resumes no session), HTTP/1.1."""
    cpu0 = server.child.cpu_seconds()
    r = clients.wrk(server.tls_port, "/small", ctx.duration, ctx.log("wrk"),
                    headers=["Connection: close"], cpus=ctx.env.client_cpus(), scheme="https")
    cpu1 = server.child.cpu_seconds()
    s = _wrk_sample(r, keys=("rps",))
    s["cpu_per_1k"] = (cpu1 - cpu0) / max(1, r["requests"]) * 1000
    return s


def run_mtls(ctx, target):
    """Scenario 13 (sluice only): two sluice proxies chained as two sidecars (client -> out ->
    in -> upstream), plain (sluice.yaml twice) and with mutual TLS between them
    (sluice-mtls-out.yaml, sluice-mtls-in.yaml). Both chains run at once; each is measured as
    scenario 1, alternately, twice. CPU is that of both sidecars."""
    if target != "sluice":
        return {"error": "n/a: sluice-to-sluice only", "skipped": True, "na": True}
    chains = {}
    try:
        for kind in ("plain", "mtls"):
            chains[kind] = targets.start_sidecars(ctx.env, ctx.upstream.port, kind == "mtls",
                                                  cpus=ctx.env.server_cpus())
        for out, _ in chains.values():
            clients.wrk(out.port, "/small", 1, ctx.log("warmup"), cpus=ctx.env.client_cpus())
        got = {"plain": [], "mtls": []}
        for _ in range(2):
            for kind, (out, inn) in chains.items():
                cpu0 = out.child.cpu_seconds() + inn.child.cpu_seconds()
                r = clients.wrk(out.port, "/small", ctx.duration, ctx.log("wrk"),
                                cpus=ctx.env.client_cpus())
                cpu1 = out.child.cpu_seconds() + inn.child.cpu_seconds()
                x = _wrk_sample(r)
                x["cpu_per_10k"] = (cpu1 - cpu0) / max(1, r["requests"]) * 10000
                got[kind].append(x)
    finally:
        for out, inn in chains.values():
            out.stop()
            inn.stop()
    errors = [x["error"] for v in got.values() for x in v if x.get("error")]

    def mid(kind, key):
        vals = sorted(x[key] for x in got[kind])
        return (vals[0] + vals[-1]) / 2.0

    s = {"rps_plain": mid("plain", "rps"), "rps_mtls": mid("mtls", "rps"),
         "p99_plain": mid("plain", "p99_us"), "p99_mtls": mid("mtls", "p99_us"),
         "error": "; ".join(errors) if errors else None,
         "detail": {k: [x["detail"] for x in v] for k, v in got.items()}}
    s["ratio"] = s["rps_mtls"] / s["rps_plain"] if s["rps_plain"] else None
    cpu_plain, cpu_mtls = mid("plain", "cpu_per_10k"), mid("mtls", "cpu_per_10k")
    s["cpu_ratio"] = cpu_mtls / cpu_plain if cpu_plain else None
    return s


# --- dynamic config (scenario 14, sluice only) ------------------------------------------

XDS_ROUTE_SIZES = (1, 100, 10000)
XDS_UPDATES = 6  # per size: alternately to a direct response and back to the upstream
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def _xds_files(d, n):
    """Two versions of route table "bench" with n routes: the last (/small) goes to the
    upstream (200) in one and is a direct response (203) in the other."""
    paths = []
    for tag, last in (("up", {"route": {"cluster": "up"}}),
                      ("direct", {"direct_response": {"status": 203}})):
        routes = [{"match": {"prefix": "/r%d/" % i}, "route": {"cluster": "up"}}
                  for i in range(n - 1)]
        routes.append(dict({"match": {"prefix": "/small"}}, **last))
        rc = {"@type": ROUTE_TYPE, "name": "bench",
              "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}
        path = os.path.join(d, "%s-%d.json" % (tag, n))
        with open(path, "w") as f:
            json.dump({"version_info": "%s-%d" % (tag, n), "type_url": ROUTE_TYPE,
                       "resources": [rc]}, f)
        paths.append(path)
    return paths


def _xds_bootstrap(port, admin_port, ads_port, upstream_port):
    def addr(p):
        return {"socket_address": {"address": "127.0.0.1", "port_value": p}}

    def static(name, p, **extra):
        return dict({"name": name, "type": "STATIC", "connect_timeout": "1s",
                     "load_assignment": {"cluster_name": name, "endpoints": [
                         {"lb_endpoints": [{"endpoint": {"address": addr(p)}}]}]}}, **extra)
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network."
                    "http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "bench",
           "rds": {"route_config_name": "bench",
                   "config_source": {"ads": {}, "resource_api_version": "V3"}},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    h2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    return {
        "admin": {"address": addr(admin_port)},
        "static_resources": {
            "listeners": [{"name": "listener_0", "address": addr(port), "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                              "typed_config": hcm}]}]}],
            "clusters": [static("up", upstream_port),
                         static("xds", ads_port, typed_extension_protocol_options=h2)]},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]}},
    }


class _AdsServer:
    """test/ads_server (built beside sluice) as the control plane: commands on stdin; the
    time each response went out is read from its stderr ("sent <nonce>") by a thread, and
    the proxy's requests (subscriptions, ACKs) are kept in order."""

    def __init__(self, ctx, port):
        binary = os.path.join(os.path.dirname(ctx.env.sluice), "test_ads_server")
        if not os.path.exists(binary):
            raise procs.BenchError("no %s (build the test_ads_server target)" % binary)
        self.port = port
        self.child = procs.Child("ads_server", [binary, "127.0.0.1:%d" % port],
                                 ctx.log("ads_server"), cpus=ctx.env.client_cpus(), pipes=True)
        self.sent = queue.Queue()
        self.requests = []  # the proxy's DiscoveryRequests (parsed), in arrival order
        self.cond = threading.Condition()
        self.listening = threading.Event()
        self.asked = threading.Event()  # the proxy's first request came
        threading.Thread(target=self._read, daemon=True).start()
        if not self.listening.wait(10):
            self.child.stop()
            raise procs.BenchError("ads_server did not start")

    def _read(self):
        for line in self.child.proc.stderr:
            now = time.monotonic()
            if line.startswith(b"listening"):
                self.listening.set()
            elif line.startswith(b"sent "):
                self.sent.put(now)
            elif line.startswith(b"request "):
                try:
                    req = json.loads(line[len(b"request "):])
                except ValueError:
                    req = {}
                with self.cond:
                    self.requests.append(req)
                    self.cond.notify_all()
                self.asked.set()
            elif line.startswith(b"error "):
                self.sent.put(None)
        with self.cond:
            self.cond.notify_all()

    def wait_request(self, pred, what, since=0, timeout=30):
        """Waits until one of the proxy's requests (from the `since`-th on) satisfies `pred`;
        returns it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.requests[since:]:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0 or not self.child.alive():
                    raise procs.BenchError("the proxy never sent the ADS server %s" % what)
                self.cond.wait(left)

    def respond(self, path):
        """Sends the response in `path`; returns when it went out (monotonic time)."""
        self.child.proc.stdin.write(("respond %s\n" % path).encode())
        self.child.proc.stdin.flush()
        try:
            t = self.sent.get(timeout=60)
        except queue.Empty:
            t = None
        if t is None:
            raise procs.BenchError("ads_server did not send %s" % path)
        return t

    def stop(self):
        self.child.stop()


def _poll(port, path, want, timeout=60, refused_s=10):
    """GET `path` on one keep-alive connection until it answers `want`; the time it did.
    A refused or dropped connection is retried (on a new one) for up to `refused_s` seconds:
    a listener may not accept before its routes came (Envoy's listener warming)."""
    deadline = time.monotonic() + timeout
    refused_until = None
    c = None
    try:
        while time.monotonic() < deadline:
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                refused_until = None
                if r.status == want:
                    return time.monotonic()
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                if c is not None:
                    c.close()
                    c = None
                now = time.monotonic()
                refused_until = refused_until or now + refused_s
                if now > refused_until:
                    raise procs.BenchError("%s: no connection for %.0f s (%s)"
                                           % (path, refused_s, e))
                time.sleep(0.001)
    finally:
        if c is not None:
            c.close()
    raise procs.BenchError("%s never answered %d" % (path, want))


def _start_xds_proxy(ctx, d, name, cfg_obj, ads):
    port = cfg_obj["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"]
    cfg = os.path.join(d, "sluice-%s.json" % name)
    with open(cfg, "w") as f:
        json.dump(cfg_obj, f)
    proxy = procs.Child("sluice", [ctx.env.sluice, "-l", "warning", "proxy", "-c", cfg,
                                   "--concurrency", "1"], ctx.log("sluice-" + name),
                        cpus=ctx.env.server_cpus())
    return proxy, port


def _xds_routes(ctx, d, s, n):
    to_up, to_direct = _xds_files(d, n)
    ads = _AdsServer(ctx, procs.free_port())
    proxy = None
    try:
        port, admin_port = procs.free_port(), procs.free_port()
        proxy, port = _start_xds_proxy(
            ctx, d, "rds-%d" % n, _xds_bootstrap(port, admin_port, ads.port, ctx.upstream.port),
            ads)
        # Without routes the listener answers 404, or (warming, as Envoy) accepts nothing:
        # either way the routes go out once the proxy asked for them.
        ads.wait_request(lambda r: r.get("typeUrl") == ROUTE_TYPE, "a route request")
        ads.respond(to_up)
        _poll(port, "/small", 200)
        lat, cpu = [], []
        for i in range(XDS_UPDATES):
            path, want = (to_direct, 203) if i % 2 == 0 else (to_up, 200)
            cpu0 = proxy.cpu_seconds()
            t0 = ads.respond(path)
            t1 = _poll(port, "/small", want)
            cpu.append(proxy.cpu_seconds() - cpu0)
            lat.append((t1 - t0) * 1000)
        s["ms_%d" % n] = sorted(lat)[len(lat) // 2]
        s["cpu_ms_%d" % n] = sorted(cpu)[len(cpu) // 2] * 1000
        s["detail"]["ms_%d" % n] = [round(x, 3) for x in lat]
        if n == XDS_ROUTE_SIZES[-1]:
            s["rss_mib_%d" % n] = proxy.rss_bytes() / MIB
    finally:
        if proxy:
            proxy.stop()
        ads.stop()


# --- endpoints over ADS (EDS) ---
# Cluster "live" has 1,000 endpoints, all reachable: two groups of 1,000 loopback addresses
# (127.1.x.y and 127.2.x.y, one port) served by one nginx, group 1 answering 200 and group 2
# 203. Each update swaps the whole set from one group to the other, so from the update on
# every request (round robin) goes to a host of the other group: the first GET /eds with the
# other status marks the update's effect. Cluster "big" gets 10,000 endpoints (127.3.x.y and
# 127.4.x.y, alternately, nothing listening: no traffic goes there) for the proxy's CPU and
# RSS; its update counts as applied when the proxy ACKs its version and a request through the
# worker came back after that.
XDS_EDS_LIVE = 1000
XDS_EDS_BIG = 10000
XDS_EDS_BIG_UPDATES = 4
EDS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def _eds_addr(group, i):
    return "127.%d.%d.%d" % (group, i // 250, i % 250 + 1)


def _eds_file(d, name, service, version, group, n, port):
    eps = [{"endpoint": {"address": {"socket_address": {
        "address": _eds_addr(group, i), "port_value": port}}}} for i in range(n)]
    path = os.path.join(d, "%s.json" % name)
    with open(path, "w") as f:
        json.dump({"version_info": version, "type_url": EDS_TYPE, "resources": [
            {"@type": EDS_TYPE, "cluster_name": service, "endpoints": [{"lb_endpoints": eps}]}]},
            f)
    return path


def _start_eds_endpoints(ctx, d, port):
    """One nginx on the 2 x XDS_EDS_LIVE addresses of groups 1 (200) and 2 (203)."""
    vals = targets._nginx_values(ctx.env, d, port)
    lines = [vals.get("user_directive", ""),
             "worker_processes 1; daemon off; master_process on; pid %s/pid;" % d,
             "worker_rlimit_nofile %d; error_log stderr warn;" % vals["nofile"],
             "events { worker_connections %d; }" % vals["worker_connections"],
             "http { access_log off; keepalive_timeout 60s; keepalive_requests 1000000;",
             "client_body_temp_path %s/cb; proxy_temp_path %s/px; fastcgi_temp_path %s/fc;"
             % (d, d, d),
             "uwsgi_temp_path %s/uw; scgi_temp_path %s/sc;" % (d, d)]
    for group, status in ((1, 200), (2, 203)):
        lines.append("server {")
        lines += ["listen %s:%d;" % (_eds_addr(group, i), port) for i in range(XDS_EDS_LIVE)]
        lines.append("location / { return %d \"group %d\\n\"; } }" % (status, group))
    lines.append("}")
    cfg = os.path.join(d, "nginx.conf")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    child = procs.Child("eds-endpoints", [targets.NGINX, "-e", "stderr", "-p", d, "-c", cfg],
                        ctx.log("eds-endpoints"), cpus=ctx.env.client_cpus())
    try:
        deadline = time.monotonic() + 30
        for group, want in ((1, 200), (2, 203)):
            for i in (0, XDS_EDS_LIVE - 1):
                st = _http_get_at(_eds_addr(group, i), port)
                while st != want and time.monotonic() < deadline and child.alive():
                    time.sleep(0.01)
                    st = _http_get_at(_eds_addr(group, i), port)
                if st != want:
                    raise procs.BenchError("the endpoints' nginx did not serve %s:%d; its log:\n%s"
                                           % (_eds_addr(group, i), port, child.log_tail()))
    except BaseException:
        child.stop()
        raise
    return child


def _http_get_at(addr, port):
    try:
        c = http.client.HTTPConnection(addr, port, timeout=2)
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except (OSError, http.client.HTTPException):
        return None


def _eds_bootstrap(port, admin_port, ads_port):
    cfg = _xds_bootstrap(port, admin_port, ads_port, 1)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    del hcm["rds"]
    hcm["route_config"] = {"name": "eds", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/eds"}, "route": {"cluster": "live"}}]}]}

    def eds(name):
        return {"name": name, "type": "EDS", "connect_timeout": "1s",
                "eds_cluster_config": {"service_name": name, "eds_config": {
                    "ads": {}, "resource_api_version": "V3"}}}
    clusters = cfg["static_resources"]["clusters"]
    clusters[:] = [c for c in clusters if c["name"] == "xds"] + [eds("live"), eds("big")]
    return cfg


def _xds_endpoints(ctx, d, s):
    ep_port = procs.free_port()
    endpoints = _start_eds_endpoints(ctx, ctx.env.newdir("xds-endpoints"), ep_port)
    ads = _AdsServer(ctx, procs.free_port())
    proxy = None
    try:
        port, admin_port = procs.free_port(), procs.free_port()
        proxy, port = _start_xds_proxy(ctx, d, "eds", _eds_bootstrap(port, admin_port, ads.port),
                                       ads)
        live = [_eds_file(d, "live-%d" % g, "live", "live-%d" % g, g, XDS_EDS_LIVE, ep_port)
                for g in (1, 2)]
        big = [_eds_file(d, "big-%d" % g, "big", "big-%d" % g, g, XDS_EDS_BIG, ep_port)
               for g in (3, 4)]
        empty = os.path.join(d, "big-0.json")
        with open(empty, "w") as f:
            json.dump({"version_info": "big-0", "type_url": EDS_TYPE, "resources": [
                {"@type": EDS_TYPE, "cluster_name": "big", "endpoints": []}]}, f)

        def asked_for(name):
            return lambda r: (r.get("typeUrl") == EDS_TYPE
                              and name in r.get("resourceNames", []))
        ads.wait_request(asked_for("live"), "an endpoint request for 'live'")
        ads.wait_request(asked_for("big"), "an endpoint request for 'big'")
        ads.respond(live[0])
        ads.respond(empty)
        _poll(port, "/eds", 200)

        # 1,000 endpoints: time to traffic and CPU per update.
        lat, cpu = [], []
        for i in range(XDS_UPDATES):
            path, want = (live[1], 203) if i % 2 == 0 else (live[0], 200)
            cpu0 = proxy.cpu_seconds()
            t0 = ads.respond(path)
            t1 = _poll(port, "/eds", want)
            cpu.append(proxy.cpu_seconds() - cpu0)
            lat.append((t1 - t0) * 1000)
        s["eds_ms_1000"] = sorted(lat)[len(lat) // 2]
        s["eds_cpu_ms_1000"] = sorted(cpu)[len(cpu) // 2] * 1000
        s["detail"]["eds_ms_1000"] = [round(x, 3) for x in lat]

        # 10,000 endpoints: CPU per update (each replaces every host) and RSS.
        want = 200 if XDS_UPDATES % 2 == 0 else 203
        s["eds_rss_before_mib"] = proxy.rss_bytes() / MIB
        cpu = []
        for i in range(XDS_EDS_BIG_UPDATES):
            path = big[i % 2]
            version = "big-%d" % (3 + i % 2)
            cpu0 = proxy.cpu_seconds()
            seen = len(ads.requests)
            ads.respond(path)
            ads.wait_request(lambda r: (r.get("typeUrl") == EDS_TYPE
                                        and r.get("versionInfo") == version),
                             "the ACK of " + version, since=seen)
            _poll(port, "/eds", want)  # a round trip through the worker after the ACK
            cpu.append(proxy.cpu_seconds() - cpu0)
        s["eds_cpu_ms_10000"] = sorted(cpu)[len(cpu) // 2] * 1000
        s["detail"]["eds_cpu_ms_10000"] = [round(x * 1000, 1) for x in cpu]
        s["eds_rss_after_mib"] = proxy.rss_bytes() / MIB
    finally:
        if proxy:
            proxy.stop()
        ads.stop()
        endpoints.stop()


def run_xds(ctx, target):
    """Scenario 14 (sluice only). Routes: the time from a route table leaving the control plane
    (the ADS server's write of the DiscoveryResponse) to the first request that sees it (GET
    /small, the last route, polled on a keep-alive connection), for route tables of 1, 100 and
    10,000 routes, and the proxy's CPU per update; each size gets a fresh proxy and XDS_UPDATES
    updates that flip the last route between the upstream (200) and a direct response (203);
    the median is reported. Endpoints: the same for a cluster of 1,000 endpoints (see
    _xds_endpoints), and CPU and RSS for updates of 10,000 endpoints."""
    if target != "sluice":
        return {"error": "n/a: sluice only", "skipped": True, "na": True}
    d = ctx.env.newdir("xds")
    s = {"error": None, "detail": {}}
    for n in XDS_ROUTE_SIZES:
        _xds_routes(ctx, d, s, n)
    _xds_endpoints(ctx, d, s)
    return s


RUNNERS = {
    "keepalive": run_keepalive, "bigbody": run_bigbody, "fixedrate": run_fixedrate,
    "connclose": run_connclose, "memory": run_memory, "startup": run_startup,
    "scale": run_scale, "policy": run_policy, "h2c": run_h2c, "h2tls": run_h2tls,
    "handshake": run_handshake, "mtls": run_mtls, "xds": run_xds,
}
