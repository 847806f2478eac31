"""Memory of an idle Sluice and of its idle HTTP/1 keep-alive connections, without load.

bench/run's scenario 6 measures the same thing among other runs; this measures only it, so
that a change to a connection's size can be checked quickly and repeatably. It starts the
benchmark's upstream nginx and Sluice with bench/configs/sluice.yaml (--concurrency 1), sends
one request, and reads /proc/PID/smaps_rollup (idle RSS, split into file-backed and anonymous
pages). Then it opens N keep-alive connections, each having served one request (the client of
scenario 6), in two halves, and reports
  bytes/conn      (RSS with N - idle RSS) / N, as scenario 6 computes it
  marginal        (RSS with N - RSS with N/2) / (N/2): one-time costs (the first connection's
                  upstream pool, arena growth) drop out
RSS moves with the heap's fragmentation (which depends on the order the connections' set-up
interleaves), by a few hundred bytes per connection from run to run. With gdb installed, it
also reports glibc's heap bytes in use (malloc_stats(), called in the stopped process through
gdb), which repeats to within a few bytes per connection:
  heap bytes/conn (heap in use with N - idle) / N, and its marginal form as above
"""

import argparse
import os
import re
import shutil
import subprocess
import time

import clients
import procs
import targets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rollup(pid):
    vals = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                vals[parts[0][:-1]] = int(parts[1]) * 1024
    return vals


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise procs.BenchError("no VmRSS")


def rss_by_file(pid):
    """Resident bytes per mapped file (all of its mappings), largest first."""
    by = {}
    name = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and "-" in parts[0] and ":" in parts[3]:
                name = parts[5] if len(parts) >= 6 else "[anon]"
            elif parts and parts[0] == "Rss:":
                by[name] = by.get(name, 0) + int(parts[1]) * 1024
    return sorted(by.items(), key=lambda kv: -kv[1])


def heap_in_use(child):
    """glibc's bytes in use (all arenas and mmapped blocks), from malloc_stats(), which gdb
    calls in the stopped process; it prints to the process's stderr, our log file. None
    without gdb."""
    if not shutil.which("gdb"):
        return None
    with open(child.log_path, "rb") as f:
        start = len(f.read())
    subprocess.run(["gdb", "-p", str(child.proc.pid), "-batch", "-nx",
                    "-ex", "call (void) malloc_stats()"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    with open(child.log_path, "rb") as f:
        text = f.read()[start:].decode(errors="replace")
    m = re.search(r"Total \(incl\. mmap\):\s*system bytes\s*=\s*\d+\s*in use bytes\s*=\s*(\d+)",
                  text)
    return int(m.group(1)) if m else None


def main():
    p = argparse.ArgumentParser(prog="bench/idlemem", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--conns", type=int, default=2000)
    p.add_argument("--sluice", default=os.path.join(ROOT, "build", "bin", "sluice"))
    p.add_argument("--config", default="sluice.yaml", help="template in bench/configs")
    p.add_argument("--maps", type=int, default=0, metavar="N",
                   help="also list the N mappings (by file) with the most resident bytes at idle")
    args = p.parse_args()
    held = []
    with procs.tool_session("idlemem") as (tmp, nofile):
        try:
            measure(args, targets.Env(tmp, args.sluice, nofile, False), held)
        finally:
            for c in held:
                c.close()


def measure(args, env, held):
    """Starts the upstream and Sluice, prints idle RSS, then opens the connections (kept in
    `held` for the caller to close) and prints what they cost."""
    upstream = targets.start_upstream(env)
    s = targets.start_proxy(env, "sluice", upstream.port, sluice_template=args.config)
    pid = s.child.proc.pid
    time.sleep(0.5)  # past LIVE (malloc_trim) and the first request's pool set-up
    r = rollup(pid)
    idle = rss(pid)
    heap0 = heap_in_use(s.child)
    for name, size in rss_by_file(pid)[:args.maps]:
        print("  %8.2f MiB  %s" % (size / 2**20, name))
    print("idle RSS            %.2f MiB (file-backed %.2f MiB, anonymous %.2f MiB)" % (
        idle / 2**20, (r.get("Rss", 0) - r.get("Anonymous", 0)) / 2**20,
        r.get("Anonymous", 0) / 2**20))
    half = args.conns // 2
    for i, n in enumerate((half, args.conns - half)):
        c = clients.IdleConnections(s.port, "/small", n)
        held.append(c)
        if c.failure:
            raise procs.BenchError("opening connections: %s" % c.failure)
        if i == 0:
            time.sleep(0.2)
            mid = rss(pid)
            heap_mid = heap_in_use(s.child)
    time.sleep(0.2)
    full = rss(pid)
    heap_full = heap_in_use(s.child)
    print("connections         %d" % args.conns)
    print("RSS with them       %.2f MiB" % (full / 2**20))
    print("bytes/conn          %.0f" % ((full - idle) / args.conns))
    print("marginal bytes/conn %.0f" % ((full - mid) / (args.conns - half)))
    if None not in (heap0, heap_mid, heap_full):
        print("heap in use         %.2f MiB idle, %.2f MiB with them" % (
            heap0 / 2**20, heap_full / 2**20))
        print("heap bytes/conn     %.0f (marginal %.0f)" % (
            (heap_full - heap0) / args.conns, (heap_full - heap_mid) / (args.conns - half)))


if __name__ == "__main__":
    main()
