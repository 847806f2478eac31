"""The servers under test: render a config template, start the server, wait until it serves.

Targets:
  direct   the upstream nginx itself (the ceiling: no proxy in the path)
  sluice   build/bin/sluice proxy --concurrency 1
  nginx    nginx as a reverse proxy, one worker
  haproxy  HAProxy, nbthread 1
The three proxies forward to one shared upstream nginx (bench/configs/upstream-nginx.conf).
Every server listens on 127.0.0.1 only, on ports picked free just before it starts, and keeps
its config, pid file, temp files and log in its own directory under the run's temp dir.
"""

import os
import re
import subprocess

import procs

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "configs")

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"

PROXIES = ["sluice", "nginx", "haproxy"]
ALL_TARGETS = ["direct"] + PROXIES

SMALL_BODY = "sluice-bench small body: 64 bytes, served by nginx return......\n"
assert len(SMALL_BODY) == 64
BIG_SIZE = 16 * 1024

# The config-scale scenario: ROUTES exact-path routes /r/00000 .. /r/09999, route i going
# to cluster c{i % CLUSTERS}; every cluster points at the upstream.
SCALE_ROUTES = 10000
SCALE_CLUSTERS = 1000
SCALE_LAST_PATH = "/r/%05d" % (SCALE_ROUTES - 1)


GEN_CERTS = os.path.join(os.path.dirname(HERE), "test", "tls", "gen_certs.sh")


class Env:
    """What every start needs: the run's temp dir, limits, binaries and CPU pinning."""

    def __init__(self, tmp, sluice, nofile, pin):
        self.tmp = tmp
        self.sluice = sluice
        self.nofile = nofile
        self.pin = pin
        self._n = 0
        self._certs = None

    def certs(self):
        """The run's throw-away certificates (test/tls/gen_certs.sh, made on first use in the
        temp dir; ECDSA P-256), plus server-haproxy.pem: HAProxy wants chain and key in one
        file."""
        if self._certs is None:
            d = os.path.join(self.tmp, "certs")
            p = subprocess.run(["sh", GEN_CERTS, d], capture_output=True, text=True)
            if p.returncode != 0:
                raise procs.BenchError("gen_certs.sh failed:\n" + (p.stdout + p.stderr)[-800:])
            with open(os.path.join(d, "server-haproxy.pem"), "w") as out:
                for name in ("server.pem", "server.key"):
                    with open(os.path.join(d, name)) as f:
                        out.write(f.read())
            for name in os.listdir(d):  # nginx workers (user nobody under root) read these
                os.chmod(os.path.join(d, name), 0o644)
            os.chmod(d, 0o755)
            self._certs = d
        return self._certs

    def newdir(self, name):
        self._n += 1
        d = os.path.join(self.tmp, "%02d-%s" % (self._n, name))
        os.makedirs(d)
        os.chmod(d, 0o755)  # nginx workers (user nobody when run as root) read files here
        return d

    # With --pin: the server under test on CPU 0, load generators (and the upstream, while a
    # proxy is measured) on CPU 1. Without --pin: no affinity is set anywhere.
    def server_cpus(self):
        return {0} if self.pin else None

    def client_cpus(self):
        return {1} if self.pin else None


class Server:
    """A running target: its child process (group), its port, and for sluice its admin port."""

    def __init__(self, name, child, port, admin_port=None, ready_s=None, admin_ready_s=None,
                 h2c_port=None, tls_port=None):
        self.name = name
        self.child = child
        self.port = port
        self.h2c_port = h2c_port  # variant "tls": the HTTP/2 prior-knowledge listener
        self.tls_port = tls_port  # variant "tls": the TLS listener (ALPN h2, http/1.1)
        self.admin_port = admin_port
        self.ready_s = ready_s  # seconds from exec to the first successful request
        self.admin_ready_s = admin_ready_s  # sluice, scale=True: exec to admin /ready 200

    def stop(self):
        self.child.stop()


def render(template, out_path, **values):
    """Fills {{name}} placeholders of bench/configs/<template>; every one must be given."""
    with open(os.path.join(CONFIGS, template)) as f:
        text = f.read()

    def sub(m):
        key = m.group(1)
        if key not in values:
            raise KeyError("%s: no value for {{%s}}" % (template, key))
        return str(values[key])
    text = re.sub(r"\{\{(\w+)\}\}", sub, text)
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


# Every server is configured to take many client connections at once (the memory
# scenario opens 10,000 idle ones). HAProxy refuses to start unless RLIMIT_NOFILE covers two
# fds per connection of its maxconn; nginx's worker_connections counts both sides of a
# proxied connection. nginx preallocates its connection table from worker_connections, so
# its idle RSS grows with this setting.
MAX_CONNS = 20480


def client_conn_limit(env):
    """HAProxy's maxconn: client connections, two fds each."""
    return max(1000, min(MAX_CONNS, (env.nofile - 200) // 2))


def idle_conn_limit(env):
    """The most idle connections scenario 6 can open on every target (slack below maxconn)."""
    return client_conn_limit(env) - 100


def _nginx_values(env, d, port):
    return dict(
        tmp=d, port=port, nofile=env.nofile,
        worker_connections=min(2 * MAX_CONNS, env.nofile - 200),
        # As root nginx's workers switch to `nobody`; Debian has no group `nobody`.
        user_directive="user nobody nogroup;" if os.geteuid() == 0 else "",
    )


def start_upstream(env, cpus=None):
    d = env.newdir("upstream")
    www = os.path.join(d, "www")
    os.makedirs(www)
    os.chmod(www, 0o755)
    with open(os.path.join(www, "big"), "wb") as f:
        f.write((b"0123456789abcdef" * (BIG_SIZE // 16)))
    port = procs.free_port()
    cfg = render("upstream-nginx.conf", os.path.join(d, "nginx.conf"),
                 www=www, small_body=SMALL_BODY.replace("\n", "\\n"), small_len=len(SMALL_BODY),
                 **_nginx_values(env, d, port))
    child = procs.Child("upstream", [NGINX, "-e", "stderr", "-p", d, "-c", cfg],
                        os.path.join(d, "log"), cpus=cpus)
    ready = procs.wait_serving(child, port, "/small")
    return Server("direct", child, port, ready_s=ready)


TLS_TEMPLATES = {"sluice": "sluice-tls.yaml", "nginx": "nginx-tls.conf",
                 "haproxy": "haproxy-tls.cfg"}


def start_proxy(env, name, upstream_port, scale=False, cpus=None, sluice_template="sluice.yaml",
                tls=False, wrap=None):
    """Starts proxy `name` in front of the upstream; with scale=True, with the
    config-scale config (10,000 routes, 1,000 clusters) and waits on the last route. For
    sluice, `sluice_template` picks the config (scenario 9 uses sluice-policy.yaml). With
    tls=True, the config of scenarios 10-12 (configs/*-tls.*): the plain listener plus an h2c
    and a TLS listener. `wrap` prefixes the command (bench/profile runs it under valgrind)."""
    d = env.newdir(name + ("-scale" if scale else "") + ("-tls" if tls else "") +
                   ("" if sluice_template == "sluice.yaml" else "-policy"))
    port = procs.free_port()
    admin_port = None
    extra = {}
    if tls:
        extra = dict(h2c_port=procs.free_port(), tls_port=procs.free_port(), certs=env.certs())
        if name == "sluice":
            sluice_template = TLS_TEMPLATES[name]
    log = os.path.join(d, "log")
    if name == "sluice":
        admin_port = procs.free_port()
        cfg = os.path.join(d, "sluice.yaml")
        if scale:
            write_sluice_scale(cfg, port, admin_port, upstream_port)
        else:
            render(sluice_template, cfg, port=port, admin_port=admin_port,
                   upstream_port=upstream_port, **extra)
        argv = [env.sluice, "-l", "warning", "proxy", "-c", cfg, "--concurrency", "1",
                "--drain-time-s", "1"]
    elif name == "nginx":
        cfg = os.path.join(d, "nginx.conf")
        vals = _nginx_values(env, d, port)
        if scale:
            write_nginx_scale(cfg, upstream_port, vals)
        else:
            render(TLS_TEMPLATES[name] if tls else "nginx-proxy.conf", cfg,
                   upstream_port=upstream_port, **vals, **extra)
        if wrap:
            # Under valgrind, one process: callgrind_control cannot reach a forked worker
            # (which also runs as another user when we are root). The same work, no master.
            with open(cfg) as f:
                text = f.read()
            with open(cfg, "w") as f:
                f.write(text.replace("master_process on;", "master_process off;"))
        argv = [NGINX, "-e", "stderr", "-p", d, "-c", cfg]
    elif name == "haproxy":
        cfg = os.path.join(d, "haproxy.cfg")
        if scale:
            write_haproxy_scale(cfg, d, port, upstream_port, client_conn_limit(env))
        else:
            render(TLS_TEMPLATES[name] if tls else "haproxy.cfg", cfg, port=port,
                   upstream_port=upstream_port, maxconn=client_conn_limit(env), **extra)
        argv = [HAPROXY, "-db", "-f", cfg]
    else:
        raise ValueError(name)
    child = procs.Child(name, (wrap or []) + argv, log, cpus=cpus)
    try:
        admin_ready = None
        if scale and name == "sluice":
            # First /ready on the admin port, then the last route.
            admin_ready = procs.wait_serving(child, admin_port, "/ready", timeout=120)
        path = SCALE_LAST_PATH if scale else "/small"
        ready = procs.wait_serving(child, port, path, timeout=120 if scale or wrap else 30)
    except BaseException:
        child.stop()
        raise
    return Server(name, child, port, admin_port=admin_port, ready_s=ready,
                  admin_ready_s=admin_ready, h2c_port=extra.get("h2c_port"),
                  tls_port=extra.get("tls_port"))


def start_sidecars(env, upstream_port, mtls, cpus=None):
    """Scenario 13: two sluice proxies chained as two sidecars would be, client -> `out`
    (the client's sidecar) -> `in` (the server's sidecar) -> the upstream. mtls=False: both
    run sluice.yaml; mtls=True: sluice-mtls-out.yaml and sluice-mtls-in.yaml (mutual TLS
    between the two). Returns (out, in); `out.port` is where clients connect."""
    kind = "mtls" if mtls else "plain"
    extra = {"certs": env.certs()} if mtls else {}
    started = []
    try:
        for role, next_port in (("in", upstream_port), ("out", None)):
            d = env.newdir("sidecar-%s-%s" % (kind, role))
            port, admin_port = procs.free_port(), procs.free_port()
            cfg = os.path.join(d, "sluice.yaml")
            render("sluice-mtls-%s.yaml" % role if mtls else "sluice.yaml", cfg, port=port,
                   admin_port=admin_port,
                   upstream_port=next_port if next_port else started[0].port, **extra)
            argv = [env.sluice, "-l", "warning", "proxy", "-c", cfg, "--concurrency", "1",
                    "--drain-time-s", "1"]
            child = procs.Child("sluice-%s-%s" % (kind, role), argv, os.path.join(d, "log"),
                                cpus=cpus)
            server = Server("sluice", child, port, admin_port=admin_port)
            started.append(server)
            # `in` may listen with TLS only: wait on its admin /ready; `out` serves through it.
            if role == "in":
                procs.wait_serving(child, admin_port, "/ready")
            else:
                server.ready_s = procs.wait_serving(child, port, "/small")
    except BaseException:
        for s in started:
            s.stop()
        raise
    return started[1], started[0]


def start_target(env, name, upstream, cpus=None):
    """A fresh instance of target `name` (for direct: a second upstream nginx)."""
    if name == "direct":
        return start_upstream(env, cpus=cpus)
    return start_proxy(env, name, upstream.port, cpus=cpus)


# --- config-scale configs (generated: 10,000 routes do not belong in a template) --------

def _scale_routes():
    for i in range(SCALE_ROUTES):
        yield "/r/%05d" % i, "c%04d" % (i % SCALE_CLUSTERS)


def write_sluice_scale(path, port, admin_port, upstream_port):
    """sluice.yaml with its one route replaced by 10,000 exact-path routes and its one
    cluster by 1,000 clusters, everything else (timeouts, options) as in the template."""
    with open(os.path.join(CONFIGS, "sluice.yaml")) as f:
        base = f.read()
    routes = "".join(
        '              - match: { path: "%s" }\n'
        '                route: { cluster: %s, timeout: 15s }\n' % (p, c)
        for p, c in _scale_routes())
    one_route = ('              - match: { prefix: "/" }\n'
                 '                route: { cluster: upstream, timeout: 15s }\n')
    assert one_route in base
    text = base.replace(one_route, routes)
    # The cluster block: from "  - name: upstream" to the end of the file.
    start = text.index("  - name: upstream\n")
    cluster_tmpl = text[start:]
    clusters = "".join(cluster_tmpl.replace("name: upstream", "name: c%04d" % i)
                       .replace("cluster_name: upstream", "cluster_name: c%04d" % i)
                       for i in range(SCALE_CLUSTERS))
    text = text[:start] + clusters
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: str(dict(
        port=port, admin_port=admin_port, upstream_port=upstream_port)[m.group(1)]), text)
    with open(path, "w") as f:
        f.write(text)


def write_nginx_scale(path, upstream_port, vals):
    """nginx-proxy.conf with 1,000 upstream blocks and 10,000 exact locations."""
    render("nginx-proxy.conf", path, upstream_port=upstream_port, **vals)
    with open(path) as f:
        text = f.read()
    m = re.search(r"    upstream upstream \{\n.*?\n    \}\n", text, re.S)
    block = m.group(0)
    upstreams = "".join(block.replace("upstream upstream", "upstream c%04d" % i)
                        for i in range(SCALE_CLUSTERS))
    text = text.replace(block, upstreams)
    loc = re.search(r"        location / \{\n.*?\n        \}\n", text, re.S).group(0)
    # The proxy settings move to the server level (inherited by every location).
    settings = "".join(l.replace("    ", "", 1) + "\n" for l in loc.splitlines()[2:-1])
    locations = "".join("        location = %s { proxy_pass http://%s; }\n" % (p, c)
                        for p, c in _scale_routes())
    text = text.replace(loc, settings + locations)
    with open(path, "w") as f:
        f.write(text)


def write_haproxy_scale(path, d, port, upstream_port, maxconn):
    """haproxy.cfg with 1,000 backends, chosen by a map file of the 10,000 paths (the way
    an HAProxy user writes many exact-path routes)."""
    render("haproxy.cfg", path, port=port, upstream_port=upstream_port, maxconn=maxconn)
    with open(path) as f:
        text = f.read()
    mapfile = os.path.join(d, "routes.map")
    with open(mapfile, "w") as f:
        for p, c in _scale_routes():
            f.write("%s %s\n" % (p, c))
    start = text.index("\nbackend upstream\n") + 1  # the backend block ends the file
    backend = text[start:]
    backends = "".join(backend.replace("backend upstream", "backend c%04d" % i)
                       for i in range(SCALE_CLUSTERS))
    text = text[:start] + backends
    text = text.replace("    default_backend upstream\n",
                        "    use_backend %%[path,map_str(%s)]\n" % mapfile)
    with open(path, "w") as f:
        f.write(text)
