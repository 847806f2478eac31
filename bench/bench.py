#!/usr/bin/python3
"""Sluice's benchmark harness: sluice against nginx and HAProxy (and the upstream reached
directly) on loopback. Run it as `bench/run`; see bench/README.md.

Flow:
  1. check the tools, raise RLIMIT_NOFILE, make a temp dir;
  2. start the upstream nginx, and one instance of each proxy in front of it;
  3. scenarios 1-5 on those instances: per scenario, R rounds, each round measuring every
     target in turn (A B C D A B C D ...);
  4. scenarios 6-8 start a fresh instance for every measurement, in the same order;
  5. stop everything (also on Ctrl-C/SIGTERM), print the table, write bench/results/.
"""

import argparse
import datetime
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import clients  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
import targets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Pinning default, decided by running both ways (see README, "Pinning").
PIN_DEFAULT = False

MODES = {
    # rounds: of scenarios 1-5 and 7; fresh_rounds: of scenarios 6 and 8 (slow to set up,
    # and steady: RSS barely moves between rounds); duration: seconds per wrk run;
    # fixed_duration, fixed_warmup: seconds of each loadgen run (scenario 3) and its warm-up.
    "quick": dict(rounds=2, fresh_rounds=1, duration=1, fixed_duration=1, fixed_warmup=0.5),
    "full": dict(rounds=5, fresh_rounds=5, duration=4, fixed_duration=4, fixed_warmup=1),
}

REQUIRED_TOOLS = {
    "nginx": targets.NGINX,
    "haproxy": targets.HAPROXY,
    "wrk": clients.WRK,
    "h2load": "/usr/bin/h2load",
}


def parse_args():
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark sluice against nginx and HAProxy on loopback.")
    p.add_argument("--quick", action="store_true",
                   help="about a minute: 2 rounds of 1 s runs (1 round of scenarios 6, 8) "
                        "instead of the full run (about 10 minutes: 5 rounds of 4 s runs)")
    p.add_argument("--only", metavar="SCENARIO[,..]",
                   help="scenarios to run, by name or number: " + ", ".join(
                       "%d=%s" % (i + 1, s) for i, s in enumerate(scenarios.SCENARIOS)))
    p.add_argument("--targets", metavar="T[,..]", default=",".join(targets.ALL_TARGETS),
                   help="targets, in the order they are measured (default: %(default)s)")
    p.add_argument("--sluice", default=os.path.join(ROOT, "build", "bin", "sluice"),
                   help="the sluice binary (default: build/bin/sluice)")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--pin", dest="pin", action="store_true", default=PIN_DEFAULT,
                     help="server under test on CPU 0, load generators and upstream on CPU 1")
    pin.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU affinity")
    p.add_argument("--rounds", type=int, help="override the mode's number of rounds")
    p.add_argument("--duration", type=int, help="override the seconds per run (wrk, loadgen)")
    p.add_argument("--conns", type=int, default=10000,
                   help="idle keep-alive connections in scenario 6 (default: %(default)s)")
    p.add_argument("--results", default=os.path.join(HERE, "results"),
                   help="where to write the JSON and Markdown results")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temp dir (configs, logs) for inspection")
    args = p.parse_args()

    names = []
    for item in (args.only or ",".join(scenarios.SCENARIOS)).split(","):
        item = item.strip()
        if item.isdigit() and 1 <= int(item) <= len(scenarios.SCENARIOS):
            item = scenarios.SCENARIOS[int(item) - 1]
        if item not in scenarios.SCENARIOS:
            p.error("unknown scenario %r (choose from %s)" % (item, ", ".join(scenarios.SCENARIOS)))
        names.append(item)
    args.scenarios = [s for s in scenarios.SCENARIOS if s in names]
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in args.target_list:
        if t not in targets.ALL_TARGETS:
            p.error("unknown target %r (choose from %s)" % (t, ", ".join(targets.ALL_TARGETS)))
    mode = MODES["quick" if args.quick else "full"]
    args.mode = "quick" if args.quick else "full"
    args.fresh_rounds = args.rounds or mode["fresh_rounds"]
    args.rounds = args.rounds or mode["rounds"]
    args.duration = args.duration or mode["duration"]
    args.fixed_duration = args.duration if args.duration != mode["duration"] else mode["fixed_duration"]
    args.fixed_warmup = mode["fixed_warmup"]
    args.sluice = os.path.abspath(args.sluice)
    return args


def check_tools(args):
    missing = [name for name, path in REQUIRED_TOOLS.items() if not os.access(path, os.X_OK)]
    if missing:
        sys.exit("bench: missing %s; run scripts/setup" % ", ".join(missing))
    if "sluice" in args.target_list and not os.access(args.sluice, os.X_OK):
        sys.exit("bench: no sluice binary at %s (build it, or pass --sluice PATH)" % args.sluice)
    if args.pin and (os.cpu_count() or 1) < 2:
        sys.exit("bench: --pin needs at least 2 CPUs")


def _cmd(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT)
        return (p.stdout + p.stderr).strip(), p.returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e), -1


def versions(args):
    v = {}
    v["sluice"] = _cmd([args.sluice, "--version"])[0] if os.path.exists(args.sluice) else "-"
    v["nginx"] = _cmd([targets.NGINX, "-v"])[0]
    v["haproxy"] = _cmd([targets.HAPROXY, "-v"])[0].splitlines()[0]
    v["wrk"] = _cmd([clients.WRK, "-v"])[0].splitlines()[0].split(" Copyright")[0]
    v["h2load"] = _cmd(["/usr/bin/h2load", "--version"])[0]
    if os.path.exists(clients.LOADGEN_SRC):
        with open(clients.LOADGEN_SRC, "rb") as f:
            v["loadgen"] = "bench/loadgen/loadgen.cc sha256 " + hashlib.sha256(f.read()).hexdigest()[:12]
    return v


def commit():
    """Short commit of the tree, with -dirty when tracked files differ (read-only git)."""
    sha, rc = _cmd(["git", "rev-parse", "--short", "HEAD"])
    if rc != 0:
        return "unknown"
    status, _ = _cmd(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"])
    return sha + ("-dirty" if status else "")


def machine():
    model = "?"
    mem = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_mib": mem,
            "kernel": platform.release(), "loadavg_start": _loadavg()}


def _loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summary(scenario, sample):
    """One progress line's worth of a sample."""
    if sample.get("na"):
        return sample["error"]
    if sample.get("error") and len(sample) <= 2:
        return "ERROR: " + sample["error"].splitlines()[0]
    parts = []
    for m in scenarios.METRICS:
        src = "keepalive" if m.scenario == "cpu" else m.scenario
        if src == scenario and sample.get(m.key) is not None:
            parts.append("%s=%s" % (m.key, report._fmt_num(sample[m.key], m.digits)))
    if sample.get("error"):
        parts.append("ERROR: " + sample["error"].splitlines()[0])
    return "  ".join(parts)


def run(args, env, results, t_start):
    upstream = targets.start_upstream(env, cpus=env.client_cpus())
    loadgen_bin, loadgen_missing = None, None
    if "fixedrate" in args.scenarios:
        loadgen_bin, loadgen_missing = clients.ensure_loadgen()
        if loadgen_missing:
            print("bench: scenario 3 (fixedrate) skipped: " + loadgen_missing, flush=True)
    logdir = os.path.join(env.tmp, "clients")
    os.makedirs(logdir)
    ctx = scenarios.Context(env, upstream, args.duration, args.fixed_duration,
                            args.fixed_warmup, args.conns, loadgen_bin, loadgen_missing, logdir)

    def progress(scenario, r, rounds, t, sample):
        print("[%5.0fs] %-9s round %d/%d  %-8s %s" % (
            time.monotonic() - t_start, scenario, r + 1, rounds, t,
            summary(scenario, sample)), flush=True)

    # --- scenarios 1-5: one long-running instance per target -----------------------------
    persistent = [s for s in scenarios.PERSISTENT if s in args.scenarios and s != "cpu"]
    if "cpu" in args.scenarios and "keepalive" not in persistent:
        persistent.insert(0, "keepalive")  # CPU is measured during scenario 1's runs
    run_persistent(args, env, ctx, upstream, results, persistent, progress, tls=False)
    # --- scenarios 10-12: one long-running instance per proxy, with its -tls config -------
    persistent = [s for s in scenarios.PERSISTENT_TLS if s in args.scenarios]
    run_persistent(args, env, ctx, upstream, results, persistent, progress, tls=True)

    # --- scenarios 6-8: a fresh instance per measurement --------------------------------
    for scenario in ("memory", "startup", "scale", "policy", "mtls", "xds"):
        if scenario not in args.scenarios:
            continue
        tlist = [t for t in args.target_list if scenario != "scale" or t != "direct"]
        if scenario in ("policy", "mtls", "xds"):
            tlist = [t for t in tlist if t == "sluice"]
        rounds = args.rounds if scenario == "startup" else args.fresh_rounds
        for r in range(rounds):
            for t in tlist:
                try:
                    sample = scenarios.RUNNERS[scenario](ctx, t)
                except procs.BenchError as e:
                    sample = {"error": str(e)}
                results.add(scenario, t, sample)
                progress(scenario, r, rounds, t, sample)
    upstream.stop()


def run_persistent(args, env, ctx, upstream, results, names, progress, tls):
    """Scenarios `names` on one long-running instance per target (tls=True: the proxies with
    their *-tls configs; `direct` is n/a there), round after round, targets interleaved."""
    if not names:
        return
    persistent = names
    servers = {}
    start_errors = {}
    for t in args.target_list:
        try:
            if t == "direct" and tls:
                continue
            servers[t] = upstream if t == "direct" else targets.start_proxy(
                env, t, upstream.port, cpus=env.server_cpus(), tls=tls)
        except procs.BenchError as e:  # e.g. the config is refused: an error cell
            start_errors[t] = "did not start: %s" % e
            print("bench: %s %s" % (t, start_errors[t]), flush=True)
    # A short warm-up of every target (connection pools, caches, page faults).
    for t in servers:
        with pinned(env, upstream, t):
            try:
                clients.wrk(servers[t].port, "/small", 1, ctx.log("warmup"),
                            cpus=env.client_cpus())
            except procs.BenchError as e:
                print("warm-up of %s failed: %s" % (t, e), flush=True)
    for scenario in persistent:
        if scenario == "fixedrate" and ctx.loadgen_bin is None:
            for t in args.target_list:
                results.add(scenario, t, {"error": "skipped: " + ctx.loadgen_missing,
                                          "skipped": True})
            continue
        for r in range(args.rounds):
            for t in args.target_list:
                server = servers.get(t)
                if t == "direct" and tls:
                    sample = {"error": "n/a: the upstream nginx (the direct target) speaks "
                              "HTTP/1.1 in cleartext only", "skipped": True, "na": True}
                elif server is None:
                    sample = {"error": start_errors[t]}
                elif not server.child.alive():
                    if t == "direct":
                        raise procs.BenchError("the upstream nginx exited:\n" +
                                               server.child.log_tail())
                    sample = {"error": "%s had exited (code %s) before this run; its log:\n%s"
                              % (t, server.child.proc.returncode, server.child.log_tail())}
                    try:  # restart it for the next measurements
                        servers[t] = targets.start_proxy(env, t, upstream.port,
                                                         cpus=env.server_cpus(), tls=tls)
                    except procs.BenchError as e:
                        print("restart of %s failed: %s" % (t, e), flush=True)
                else:
                    with pinned(env, upstream, t):
                        try:
                            sample = scenarios.RUNNERS[scenario](ctx, server)
                        except procs.BenchError as e:
                            sample = {"error": str(e)}
                    if not server.child.alive():
                        sample["error"] = ((sample.get("error") or "") +
                                           " %s exited during the run (code %s); its log:\n%s"
                                           % (t, server.child.proc.returncode,
                                              server.child.log_tail())).strip()
                results.add(scenario, t, sample)
                progress(scenario, r, args.rounds, t, sample)
    for t, s in servers.items():
        if t != "direct":
            s.stop()


class pinned:
    """While `target` is measured with --pin: when it is `direct`, the upstream itself is
    the server under test and moves to the server CPU; otherwise it stays on the client CPU."""

    def __init__(self, env, upstream, target):
        self.active = env.pin and target == "direct"
        self.env, self.upstream = env, upstream

    def __enter__(self):
        if self.active:
            self.upstream.child.set_affinity(self.env.server_cpus())

    def __exit__(self, *exc):
        if self.active:
            self.upstream.child.set_affinity(self.env.client_cpus())


def main():
    args = parse_args()
    check_tools(args)
    procs.install_cleanup()
    procs.start_guard()
    nofile = procs.raise_nofile(65536)
    if args.pin:
        os.sched_setaffinity(0, {1})  # the harness is a load generator too (scenarios 6, 7)
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(tmp, 0o755)  # nginx workers run as `nobody` when the harness is root
    if not args.keep_tmp:
        procs.guard_remove_dir(tmp)
    env = targets.Env(tmp, args.sluice, nofile, args.pin)
    if args.conns > targets.idle_conn_limit(env):
        print("bench: RLIMIT_NOFILE is %d (the most it could be raised to) and HAProxy needs "
              "two fds per connection: scenario 6 opens %d idle connections, not %d"
              % (nofile, targets.idle_conn_limit(env), args.conns), flush=True)
        args.conns = targets.idle_conn_limit(env)
    results = report.Results(args.target_list)
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "machine": machine(),
        "versions": versions(args),
        "mode": args.mode, "rounds": args.rounds, "fresh_rounds": args.fresh_rounds,
        "duration_s": args.duration,
        "fixed_duration_s": args.fixed_duration, "fixed_warmup_s": args.fixed_warmup,
        "idle_conns": args.conns, "pin": args.pin, "nofile": nofile,
        "scenarios": args.scenarios, "targets": args.target_list,
        "command": "bench/run " + " ".join(sys.argv[1:]),
    }
    m = re.search(r"commit ([0-9a-f]{7,})", meta["versions"].get("sluice", ""))
    head = _cmd(["git", "rev-parse", "HEAD"])[0]
    if m and not head.startswith(m.group(1)) and "sluice" in args.target_list:
        meta["warning"] = ("the sluice binary was built from commit %s, the tree is at %s"
                           % (m.group(1)[:12], meta["commit"]))
        print("bench: warning: " + meta["warning"], flush=True)
    print("bench: %s mode, %d rounds, %d s runs, scenarios %s, targets %s, pinning %s"
          % (args.mode, args.rounds, args.duration, ",".join(args.scenarios),
             ",".join(args.target_list), "on" if args.pin else "off"), flush=True)
    print("bench: temp dir %s, RLIMIT_NOFILE %d" % (tmp, nofile), flush=True)
    load1 = float(_loadavg().split()[0])
    if load1 > 0.5:
        print("bench: warning: load average is %.2f: something else is running, the numbers "
              "will be noisy (it is recorded with the results)" % load1, flush=True)
    t_start = time.monotonic()
    failed = None  # exit status when the run did not complete
    try:
        run(args, env, results, t_start)
    except KeyboardInterrupt:
        failed = 130
        print("\nbench: interrupted", file=sys.stderr)
    except procs.BenchError as e:  # only what makes the whole run meaningless (no upstream)
        failed = 1
        print("bench: aborted: %s" % e, file=sys.stderr)
    finally:
        procs.ignore_signals_during_cleanup()
        procs.stop_all()
        if args.keep_tmp:
            print("bench: kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print("bench: every process it started is stopped; no results written", file=sys.stderr)
        sys.exit(failed)

    elapsed = time.monotonic() - t_start
    meta["elapsed"] = "%dm%02ds" % (elapsed // 60, elapsed % 60)
    meta["machine"]["loadavg_end"] = _loadavg()
    rows, errors = results.cells()
    print()
    print(report.text_table(rows, args.target_list))
    if errors:
        print("\nErrors and skips:")
        for i, text in errors:
            print("  [%d] %s" % (i, text))
    base = "%s-%s%s" % (datetime.date.today().isoformat(), meta["commit"],
                        "-quick" if args.mode == "quick" else "")
    paths, _ = report.write(args.results, base, meta, results, rows, errors)
    print("\nbench: took %s; wrote %s" % (meta["elapsed"], ", ".join(
        os.path.relpath(p, ROOT) for p in paths)))


if __name__ == "__main__":
    main()
