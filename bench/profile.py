"""Instructions and heap allocations per request of Sluice, counted by callgrind.

The benchmark's CPU figures (bench/run) move with whatever else the machine runs; these do
not. It starts the benchmark's upstream nginx and Sluice with the benchmark's config
(bench/configs/sluice.yaml, --concurrency 1) under `valgrind --tool=callgrind`, warms up,
zeroes callgrind's counters, sends a fixed number of keep-alive requests with h2load (HTTP/1.1,
50 connections by default), dumps the counters, and divides by the requests. --proto h2c or
h2 drives the load over HTTP/2 instead, as scenarios 10 and 11 do (10 connections x 5
streams by default; h2c with prior knowledge, or h2 over TLS by ALPN), against the h2c or TLS
listener of the benchmark's configs/sluice-tls.yaml (upstream HTTP/1.1 as before):
  instructions/request   user-space instructions executed by Sluice (all its threads)
  allocations/request    calls to malloc, calloc, realloc and the aligned allocators
                         (operator new goes through malloc, so it is counted there)
The 50 connections' accept and close fall inside the measured window (about 1% at 20,000
requests). --callers N lists the N functions that allocate most, per request. With --proto h2
the connections' TLS handshakes fall inside the window too (h2load opens new connections).

Needs valgrind (Debian package `valgrind`, not installed by scripts/setup: install it by hand)
and what bench/run needs (nginx-light, h2load).
"""

import argparse
import collections
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import clients
import procs
import targets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ALLOCATORS = {"malloc", "calloc", "realloc", "memalign", "aligned_alloc", "posix_memalign",
              "__libc_malloc", "__libc_calloc", "__libc_realloc"}


def parse_args():
    p = argparse.ArgumentParser(prog="bench/profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--requests", type=int, default=20000, help="requests measured")
    p.add_argument("--proto", choices=("h1", "h2c", "h2"), default="h1",
                   help="h1: HTTP/1.1 (h2load --h1; default); h2c: HTTP/2 with prior knowledge "
                        "(scenario 10); h2: HTTP/2 over TLS by ALPN (scenario 11). h2c and h2 "
                        "use configs/sluice-tls.yaml")
    p.add_argument("-c", "--conns", type=int, default=None,
                   help="client connections (default 50 for h1, 10 for h2c and h2)")
    p.add_argument("-m", "--streams", type=int, default=5,
                   help="h2c, h2: concurrent streams per connection (default 5)")
    p.add_argument("--warmup", type=int, default=2000, help="requests before measuring")
    p.add_argument("--path", default="/small", help="/small (64 B) or /big (16 KiB)")
    p.add_argument("--sluice", default=os.path.join(ROOT, "build", "bin", "sluice"))
    p.add_argument("--config", default=None,
                   help="template in bench/configs (default sluice.yaml; sluice-tls.yaml for "
                        "h2c and h2)")
    p.add_argument("--callers", type=int, default=0, metavar="N",
                   help="also list the N functions that call the allocator most")
    p.add_argument("--syscalls", action="store_true",
                   help="instead of callgrind: run Sluice natively under `strace -c -f` for the "
                        "measured requests and print its system calls per request")
    p.add_argument("--target", choices=("sluice", "nginx", "haproxy"), default="sluice",
                   help="the proxy to measure, each with its bench/run config (nginx: its "
                        "worker process); nginx and haproxy over HTTP/1.1 only")
    p.add_argument("--close", action="store_true",
                   help="a new connection per request, as scenario 4 (wrk -c 50 -H 'Connection: "
                        "close' for 2 s, or 10 s under callgrind, instead of h2load; HTTP/1.1)")
    p.add_argument("--keep", metavar="DIR",
                   help="copy the callgrind dump there (for callgrind_annotate)")
    args = p.parse_args()
    if args.target != "sluice" and args.proto != "h1":
        p.error("--target %s is measured over HTTP/1.1 only" % args.target)
    if args.close and args.proto != "h1":
        p.error("--close is HTTP/1.1 only")
    if args.conns is None:
        args.conns = 50 if args.proto == "h1" else 10
    if args.config is None:
        args.config = "sluice.yaml" if args.proto == "h1" else "sluice-tls.yaml"
    return args


def _wrapper(name):
    """Functions that only pass an allocation on (credited to their callers instead)."""
    return name.startswith(("operator new", "event_mm_malloc_", "event_mm_calloc_",
                            "event_mm_realloc_"))


def parse_dump(path):
    """(total instructions, allocator calls, Counter of allocation calls by caller, where a
    caller of operator new or libevent's wrappers counts rather than the wrapper)."""
    names = {}
    total = 0
    allocs = 0
    callers = collections.Counter()
    fn = cfn = None
    expect_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                key, _, rest = line.rstrip("\n").partition("=")
                m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
                if m:
                    if m.group(2) is not None:
                        names[m.group(1)] = m.group(2)
                    name = names.get(m.group(1), rest)
                else:
                    name = rest
                if key == "fn":
                    fn = name
                else:
                    cfn = name
                continue
            if line.startswith("calls="):
                expect_calls = True
                count = int(line[6:].split()[0])
                if cfn in ALLOCATORS and fn not in ALLOCATORS:
                    allocs += count
                    if not _wrapper(fn):
                        callers[fn] += count
                elif _wrapper(cfn) and not _wrapper(fn) and fn not in ALLOCATORS:
                    callers[fn] += count
                continue
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total, allocs, callers


def h2load(url, proto, n, conns, streams, log):
    argv = ["h2load", "-n", str(n), "-c", str(conns), "-t", "1"]
    argv += ["--h1"] if proto == "h1" else ["-m", str(streams)]
    out = procs.run_client("h2load", argv + [url], log, timeout=600)
    if proto != "h1" and not re.search(r"Application protocol: h2c?\b", out):
        raise procs.BenchError("h2load did not speak HTTP/2:\n%s" % out[-600:])
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    if not m or int(m.group(4)) != n:
        raise procs.BenchError("h2load did not complete %d requests:\n%s" % (n, out[-600:]))
    return int(m.group(4))


def parse_strace(path):
    """{syscall: (calls, failed calls)} from the table `strace -c` writes."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
                failed = int(parts[4]) if len(parts) == 6 else 0
                calls[parts[-1]] = (int(parts[3]), failed)
    return calls


def strace_attach(pids, d):
    """Starts `strace -c -f` on the processes `pids` and waits until it has attached to every
    one (and each one's threads)."""
    out = os.path.join(d, "strace.out")
    err_path = os.path.join(d, "strace.err")
    err = open(err_path, "w")
    argv = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(err_path) as f:
            # "Process N attached" or "Process N attached with K threads", one line each
            if f.read().count(" attached") >= len(pids):
                return proc, out
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise procs.BenchError("strace did not attach to %s:\n%s" % (pids, open(err_path).read()))


def proxy_pids(server):
    """The processes of a bench/run target that serve requests: for nginx, its worker (the
    group's process whose parent is in the group too), else the one process."""
    pids = server.child.pids()
    if server.name == "nginx":
        workers = [p for p in pids if int(procs._read_stat(p)[1]) in pids]
        if workers:
            return workers
    return pids


def send_load(args, url, how, d, close_seconds):
    """The measured requests: h2load's fixed count, or with --close wrk's count in
    `close_seconds`. Returns (requests, how) with `how` describing the load."""
    if not args.close:
        return h2load(url, args.proto, args.requests, args.conns, args.streams,
                      os.path.join(d, "h2load.log")), how
    port = int(url.split(":")[2].split("/")[0])
    r = clients.wrk(port, args.path, close_seconds, os.path.join(d, "wrk.log"),
                    connections=args.conns, headers=["Connection: close"])
    if r["errors"]:
        raise procs.BenchError("wrk: %s" % r["error_detail"])
    return r["requests"], how + ", a new connection per request"


def count_syscalls(args, pids, url, how, d):
    """Traces `pids` with `strace -c -f` while h2load sends the measured requests; prints the
    system calls per request."""
    tracer, trace_out = strace_attach(pids, d)
    n, how = send_load(args, url, how, d, 2)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    calls = parse_strace(trace_out)
    print("requests            %d (%s, %s, %s)" % (n, how, args.path, args.target))
    print("system calls/request %.2f" % (sum(c for c, _ in calls.values()) / n))
    for name, (count, failed) in sorted(calls.items(), key=lambda kv: -kv[1][0]):
        print("  %7.3f  %s%s" % (count / n, name,
                                 "  (%.3f failed)" % (failed / n) if failed else ""))


def measure_peer(args, env, upstream):
    """--target nginx|haproxy: the peer with its bench/run config, natively under strace
    (--syscalls), or under callgrind (nginx then as one process: master_process off)."""
    d = env.newdir("measure")
    out = os.path.join(d, "callgrind.out")
    wrap = None
    if not args.syscalls:
        wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out]
    server = targets.start_proxy(env, args.target, upstream.port, wrap=wrap)
    url = "http://127.0.0.1:%d%s" % (server.port, args.path)
    if args.warmup:
        h2load(url, args.proto, args.warmup, args.conns, args.streams,
               os.path.join(d, "warmup.log"))
    how = "%d connections" % args.conns
    if args.syscalls:
        count_syscalls(args, proxy_pids(server), url, how, d)
        return
    pids = proxy_pids(server)
    if len(pids) != 1:
        raise procs.BenchError("expected one serving process of %s, found %s" % (args.target,
                                                                                  pids))
    count_instructions(args, pids[0], out, url, how)


def count_instructions(args, pid, out, url, how):
    """Zeroes callgrind's counters in process `pid`, sends the measured requests, dumps the
    counters (a file starting with `out`) and prints the figures per request."""
    pid = str(pid)
    subprocess.run(["callgrind_control", "-z", pid], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    n, how = send_load(args, url, how, os.path.dirname(out), 10)
    before = set(glob.glob(out + "*"))
    subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    dumps = sorted(set(glob.glob(out + "*")) - before, key=os.path.getmtime)
    if not dumps:
        raise procs.BenchError("callgrind wrote no dump")
    total, allocs, callers = parse_dump(dumps[-1])
    print("requests            %d (%s, %s, %s)" % (n, how, args.path, args.target))
    print("instructions/request %.0f" % (total / n))
    print("allocations/request  %.2f" % (allocs / n))
    if args.callers:
        print("top allocating functions (calls per request):")
        for name, count in callers.most_common(args.callers):
            print("  %7.2f  %s" % (count / n, name[:150]))
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        shutil.copy(dumps[-1], os.path.join(args.keep, "callgrind.out"))
        print("dump: %s" % os.path.join(args.keep, "callgrind.out"))


def main():
    args = parse_args()
    tools = ("strace",) if args.syscalls else ("valgrind", "callgrind_control")
    for tool in tools + ("h2load", targets.NGINX):
        if not shutil.which(tool):
            sys.exit("bench/profile: %s is missing (valgrind: apt-get install valgrind; "
                     "the rest: scripts/setup)" % tool)
    with procs.tool_session("profile") as (tmp, nofile):
        env = targets.Env(tmp, args.sluice, nofile, False)
        upstream = targets.start_upstream(env)
        if args.target != "sluice":
            return measure_peer(args, env, upstream)
        d = env.newdir("sluice")
        port, admin_port = procs.free_port(), procs.free_port()
        extra = {}
        url = "http://127.0.0.1:%d%s" % (port, args.path)
        if args.config.startswith("sluice-tls"):
            extra = dict(h2c_port=procs.free_port(), tls_port=procs.free_port(),
                         certs=env.certs())
            if args.proto == "h2c":
                url = "http://127.0.0.1:%d%s" % (extra["h2c_port"], args.path)
            elif args.proto == "h2":
                url = "https://127.0.0.1:%d%s" % (extra["tls_port"], args.path)
        elif args.proto != "h1":
            sys.exit("bench/profile: --proto %s needs a config with its listener "
                     "(sluice-tls.yaml)" % args.proto)
        cfg = targets.render(args.config, os.path.join(d, "sluice.yaml"), port=port,
                             admin_port=admin_port, upstream_port=upstream.port, **extra)
        out = os.path.join(d, "callgrind.out")
        argv = [args.sluice, "-l", "warning", "proxy", "-c", cfg, "--concurrency", "1",
                "--drain-time-s", "1"]
        if not args.syscalls:
            argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv
        sluice = procs.Child("sluice", argv, os.path.join(d, "log"))
        procs.wait_serving(sluice, port, args.path, timeout=300)
        if args.warmup:
            h2load(url, args.proto, args.warmup, args.conns, args.streams,
                   os.path.join(d, "warmup.log"))
        how = "%d connections" % args.conns
        if args.proto != "h1":
            how += " x %d streams, %s" % (args.streams, args.proto)
        if args.syscalls:
            count_syscalls(args, [sluice.proc.pid], url, how, d)
            return
        count_instructions(args, sluice.proc.pid, out, url, how)


if __name__ == "__main__":
    main()
