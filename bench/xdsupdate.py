"""The proxy's CPU per large xDS update, alone (nothing polls the proxy meanwhile), and a way
to profile it.

It starts build/bin/test_ads_server and Sluice (--concurrency 1) with scenario 14's config,
gives it a first version, then sends N updates that alternate between two versions and waits
for each one's ACK (the proxy's next request with that version). Printed: the proxy's CPU
(utime+stime from /proc) per update, mean and median, and its RSS at the end.
  routes     a route table of --size routes (default 10,000), the last route flipping
             between the upstream and a direct response (scenario 14's two tables)
  endpoints  an assignment of --size endpoints (default 10,000) that replaces every host
             (127.3.x.y and 127.4.x.y alternately; nothing listens there, no traffic goes)
--perf FILE records the updates with `perf record --call-graph dwarf` into FILE (perf from
Debian's linux-perf); read it with `perf report -i FILE`.
"""

import argparse
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import procs
import scenarios

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    p = argparse.ArgumentParser(prog="bench/xdsupdate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["routes", "endpoints"])
    p.add_argument("--size", type=int, default=10000)
    p.add_argument("--updates", type=int, default=8)
    p.add_argument("--sluice", default=os.path.join(ROOT, "build", "bin", "sluice"))
    p.add_argument("--perf", metavar="FILE")
    args = p.parse_args()
    ads_bin = os.path.join(os.path.dirname(args.sluice), "test_ads_server")
    for b in (args.sluice, ads_bin):
        if not os.path.exists(b):
            sys.exit("no %s: build it first" % b)
    if args.perf and not shutil.which("perf"):
        sys.exit("no perf: apt-get install linux-perf")
    procs.start_guard()
    procs.install_cleanup()
    d = tempfile.mkdtemp(prefix="sluice-xdsupdate-")
    children = []
    try:
        ads_port = procs.free_port()
        ads = procs.Child("ads_server", [ads_bin, "127.0.0.1:%d" % ads_port],
                          os.path.join(d, "ads.log"), pipes=True)
        children.append(ads)
        lines = queue.Queue()

        def read():
            for line in ads.proc.stderr:
                lines.put(line.decode(errors="replace"))
        threading.Thread(target=read, daemon=True).start()

        def wait(pattern, timeout=120):
            rx = re.compile(pattern)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    raise procs.BenchError("no line matching %r from the ADS server" % pattern)
                if line.startswith("error "):
                    raise procs.BenchError("ADS server: " + line.strip())
                if rx.search(line):
                    return line

        def send(path):
            ads.proc.stdin.write(("respond %s\n" % path).encode())
            ads.proc.stdin.flush()

        wait(r"^listening")
        port, admin_port = procs.free_port(), procs.free_port()
        if args.kind == "routes":
            first, other = scenarios._xds_files(d, args.size)  # the upstream's, the direct one
            versions = ["up-%d" % args.size, "direct-%d" % args.size]
            cfg = scenarios._xds_bootstrap(port, admin_port, ads_port, procs.free_port())
            asked = r'^request .*"typeUrl":"%s"' % re.escape(scenarios.ROUTE_TYPE)
            warm = []
        else:
            first, other = (scenarios._eds_file(d, "big-%d" % g, "big", "big-%d" % g, g,
                                                args.size, 1) for g in (3, 4))
            versions = ["big-3", "big-4"]
            cfg = scenarios._eds_bootstrap(port, admin_port, ads_port)
            asked = r'^request (?=.*ClusterLoadAssignment)(?=.*"big")'
            warm = [scenarios._eds_file(d, "live-1", "live", "live-1", 1, 10, 1)]
        path = os.path.join(d, "sluice.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        proxy = procs.Child("sluice", [args.sluice, "-l", "warning", "proxy", "-c", path,
                                       "--concurrency", "1"], os.path.join(d, "sluice.log"))
        children.append(proxy)
        wait(asked)
        for w in warm:
            send(w)
        send(first)
        wait(r'"versionInfo":"%s"' % versions[0])
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf,16384",
                                     "-F", "999", "-o", args.perf, "-p", str(proxy.proc.pid)])
            time.sleep(1)  # perf attaches
        cpu = []
        for i in range(args.updates):
            k = (i + 1) % 2
            c0 = proxy.cpu_seconds()
            send((first, other)[k])
            wait(r'"versionInfo":"%s"' % versions[k])
            time.sleep(0.05)  # the workers' share, posted before the ACK
            cpu.append(proxy.cpu_seconds() - c0)
        if perf:
            perf.send_signal(2)
            perf.wait()
        ms = sorted(x * 1000 for x in cpu)
        print("%s, %d: %d updates, CPU per update: mean %.1f ms, median %.1f ms "
              "(/proc ticks of 10 ms); RSS %.1f MiB" % (
                  args.kind, args.size, len(ms), sum(ms) / len(ms), ms[len(ms) // 2],
                  proxy.rss_bytes() / 1048576.0))
    except procs.BenchError as e:
        sys.exit("xdsupdate: %s" % e)
    finally:
        for c in reversed(children):
            c.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
