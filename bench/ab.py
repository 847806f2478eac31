"""Two Sluice binaries against each other: a change's before and after, on this machine, now.

bench/run compares Sluice with nginx and HAProxy; between two runs the machine drifts by more
than most single changes move a ratio. This starts the benchmark's upstream and both binaries
at once (each with bench/configs/sluice.yaml, --concurrency 1), then alternates wrk runs
between them (A B, B A, A B, ... so that drift within a pair cancels), and prints each run and
the medians: requests/s, p99, and each binary's user and system CPU seconds per 10,000
requests (utime and stime from /proc). The load is scenario 1's (wrk, 1 thread, 50
connections, /small) unless --path /big (scenario 2), --close (scenario 4) or --connections
says otherwise.
"""

import argparse
import os
import shutil
import statistics
import sys

import clients
import procs
import targets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(prog="bench/ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="the binary before the change (A)")
    p.add_argument("--sluice", default=os.path.join(ROOT, "build", "bin", "sluice"),
                   help="the binary after the change (B; default build/bin/sluice)")
    p.add_argument("--rounds", type=int, default=8, help="wrk runs per binary (default 8)")
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 4)")
    p.add_argument("--path", default="/small", help="/small (64 B) or /big (16 KiB)")
    p.add_argument("--close", action="store_true",
                   help="a new connection per request (Connection: close), as scenario 4")
    p.add_argument("--connections", type=int, default=50,
                   help="wrk's connections (default 50; 1 measures one request's round trip "
                        "through a proxy that is otherwise idle)")
    args = p.parse_args()
    for b in (args.baseline, args.sluice):
        if not os.access(b, os.X_OK):
            p.error("%s is not an executable" % b)
    if os.path.realpath(args.baseline) == os.path.realpath(args.sluice):
        p.error("--baseline and --sluice are the same file")
    return args


def main():
    args = parse_args()
    for tool in ("wrk", targets.NGINX):
        if not shutil.which(tool):
            sys.exit("bench/ab: %s is missing (scripts/setup installs it)" % tool)
    headers = ["Connection: close"] if args.close else []
    names = {"A": args.baseline, "B": args.sluice}
    runs = {"A": [], "B": []}
    with procs.tool_session("ab") as (tmp, nofile):
        env = targets.Env(tmp, args.baseline, nofile, False)
        upstream = targets.start_upstream(env)
        servers = {}
        for key, binary in names.items():
            env.sluice = binary
            servers[key] = targets.start_proxy(env, "sluice", upstream.port)
            clients.wrk(servers[key].port, args.path, 1, env.newdir("warmup-" + key) + "/wrk.log",
                        connections=args.connections, headers=headers)
        print("A = %s\nB = %s\nload: wrk 1 thread, %d connections, %s%s, %d s per run"
              % (names["A"], names["B"], args.connections, args.path,
                 ", Connection: close" if args.close else "", args.duration))
        for r in range(args.rounds):
            for key in ("A", "B") if r % 2 == 0 else ("B", "A"):
                server = servers[key]
                user0, sys0 = server.child.cpu_split()
                w = clients.wrk(server.port, args.path, args.duration,
                                os.path.join(tmp, "wrk-%s-%d.log" % (key, r)),
                                connections=args.connections, headers=headers)
                user1, sys1 = server.child.cpu_split()
                if w["errors"]:
                    raise procs.BenchError("wrk against %s: %s" % (key, w["error_detail"]))
                n = w["requests"]
                row = (w["rps"], w["p99_us"], (user1 - user0) / n * 1e4, (sys1 - sys0) / n * 1e4)
                runs[key].append(row)
                print("round %d  %s  %9.0f req/s  p99 %6.0f us  user %.4f  system %.4f s/10k"
                      % (r + 1, key, *row), flush=True)
    med = {k: [statistics.median(col) for col in zip(*v)] for k, v in runs.items()}
    print("\nmedians     req/s     p99 us   user s/10k   system s/10k")
    for key in ("A", "B"):
        print("%s      %9.0f  %9.0f   %10.4f   %12.4f" % (key, *med[key]))
    print("B/A    %9.3f  %9.3f   %10.3f   %12.3f"
          % tuple(b / a if a else float("nan") for a, b in zip(med["A"], med["B"])))


if __name__ == "__main__":
    main()
