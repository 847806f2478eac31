"""Child processes of the benchmark: start, measure (CPU, RSS), stop.

Every child runs in its own session, so its process group holds it and everything it
forks (nginx's worker, for instance). That group is the unit we measure and stop:
  - CPU and RSS of a target are summed over all processes of its group;
  - stopping sends SIGTERM to the group, then SIGKILL to whatever is left.
Every child is registered in CHILDREN until stopped; stop_all() (called from a finally
block, atexit, and after SIGTERM/SIGHUP/SIGINT) stops them all.

If the harness itself is killed with SIGKILL, none of that runs. Two safety nets cover it:
each child gets PR_SET_PDEATHSIG=SIGKILL (it dies with the harness), and a small guard
process (start_guard) that knows every live process group kills them all when the harness's
end of a pipe closes. The second is needed for grandchildren such as nginx's worker, which
outlives a SIGKILLed master.
"""

import atexit
import contextlib
import ctypes
import errno
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1

CHILDREN = []  # every Child not yet stopped
_guard_fd = None  # write end of the pipe to the guard process (see start_guard)

# The guard: reads "+PGID" / "-PGID" / "dPATH" lines from the harness; at EOF (the harness
# exited, however it exited) it SIGKILLs every group still listed and removes the temp dir.
# It ignores the signals that stop the harness, so it outlives it.
_GUARD_CODE = r"""
import os, shutil, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
fd, groups, dirs, buf = int(sys.argv[1]), set(), [], b""
while True:
    chunk = os.read(fd, 4096)
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        if line[:1] == b"d":
            dirs.append(line[1:].decode())
        else:
            (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


def start_guard():
    """Starts the guard process (once, before any child)."""
    global _guard_fd
    r, w = os.pipe()  # both non-inheritable: no child but the guard gets them
    subprocess.Popen([sys.executable, "-c", _GUARD_CODE, str(r)], pass_fds=(r,),
                     stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(r)
    _guard_fd = w


def guard_remove_dir(path):
    """Has the guard remove `path` if the harness dies without cleaning up."""
    _tell_guard("d" + path)


def _tell_guard(line):
    if _guard_fd is not None:
        try:
            os.write(_guard_fd, line.encode() + b"\n")
        except OSError:
            pass


class BenchError(Exception):
    """A failure of one measurement (reported in the table, the run goes on)."""


def _preexec(cpus):
    """Runs in the child between fork and exec."""
    def f():
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cpus:
            os.sched_setaffinity(0, cpus)
    return f


class Child:
    """A process (and its process group) started by the harness.

    stdout/stderr go to `log_path` (a file: a chatty child can never block on a full pipe),
    unless capture=True, where stdout is a pipe read by communicate()."""

    def __init__(self, name, argv, log_path, cpus=None, capture=False, cwd=None, pipes=False):
        """pipes=True: stdin and stderr are pipes (a child driven by commands that reports
        events on stderr, as the ADS server of scenario 14)."""
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._log,
            stderr=subprocess.PIPE if pipes else self._log,
            start_new_session=True, preexec_fn=_preexec(cpus), cwd=cwd)
        self.pgid = self.proc.pid  # a new session: the child leads its own group
        CHILDREN.append(self)
        _tell_guard("+%d" % self.pgid)

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def pids(self):
        """All live processes of the group (e.g. nginx master and worker)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            st = _read_stat(int(entry))
            if st and int(st[2]) == self.pgid:  # field 5 of stat: pgrp
                out.append(int(entry))
        return out

    def cpu_split(self):
        """(utime, stime) in seconds, each summed over the group's processes (each includes
        all its threads)."""
        user = system = 0
        for pid in self.pids():
            st = _read_stat(pid)
            if st:
                user += int(st[11])  # field 14: utime
                system += int(st[12])  # field 15: stime
        return user / CLK_TCK, system / CLK_TCK

    def cpu_seconds(self):
        """utime+stime, summed over the group's processes."""
        return sum(self.cpu_split())

    def rss_bytes(self, field="VmRSS"):
        """VmRSS summed over the group's processes (pages shared by nginx's master and
        worker are counted twice). field="RssAnon": only the anonymous pages (the heap,
        stacks, copied-on-write data: what is the process's own, unlike the pages of its
        files, which the page cache holds and other processes share)."""
        total = 0
        for pid in self.pids():
            try:
                with open("/proc/%d/status" % pid) as f:
                    for line in f:
                        if line.startswith(field + ":"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def set_affinity(self, cpus):
        """Moves every thread of every process of the group to `cpus` (None: all CPUs)."""
        cpus = cpus or set(range(os.cpu_count()))
        for pid in self.pids():
            try:
                for tid in os.listdir("/proc/%d/task" % pid):
                    os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass

    def stop(self, grace=3.0):
        """SIGTERM to the group; SIGKILL after `grace` seconds to whatever is left."""
        if self in CHILDREN:
            CHILDREN.remove(self)
        _signal_group(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.proc.poll()
            if not _group_exists(self.pgid):
                break
            time.sleep(0.01)
        _signal_group(self.pgid, signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        # Processes of the group whose parent was not us (nginx's worker) are reaped by
        # init; wait until they are gone so nothing is left when we return.
        deadline = time.monotonic() + 2.0
        while _group_exists(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
        _tell_guard("-%d" % self.pgid)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def box_cpu_seconds():
    """(busy, all) CPU seconds of the whole machine since boot, from /proc/stat's first line:
    busy counts user, nice, system, irq, softirq and steal time (loopback TCP's receive side
    runs in softirq context, often charged to no process); all adds idle and iowait."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def _read_stat(pid):
    """/proc/PID/stat split after the command name (which may contain spaces), so
    index 0 is field 3 (state)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_exists(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_all():
    """Stops every child still running (in parallel: SIGTERM all, then wait)."""
    children = list(CHILDREN)
    for c in children:
        _signal_group(c.pgid, signal.SIGTERM)
    for c in children:
        c.stop(grace=2.0)


def _on_signal(signum, frame):
    # Turn SIGTERM/SIGHUP into the same path as Ctrl-C: unwind, run finally blocks.
    raise KeyboardInterrupt("signal %d" % signum)


def install_cleanup():
    # SIGINT raises KeyboardInterrupt even when the shell started us with SIGINT ignored
    # (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(stop_all)


def ignore_signals_during_cleanup():
    """A second Ctrl-C must not interrupt the cleanup itself."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


@contextlib.contextmanager
def tool_session(prog):
    """What a bench tool (bench/ab, profile, idlemem) sets up and cleans up: signals turned
    into the cleanup path, the guard process, the fd limit raised, a temp dir. Yields
    (tmp, nofile). On the way out (also on Ctrl-C) every child is stopped and the dir goes;
    a BenchError ends the program with "bench/<prog>: <message>"."""
    install_cleanup()
    start_guard()
    nofile = raise_nofile(65536)
    tmp = tempfile.mkdtemp(prefix="sluice-%s-" % prog)
    os.chmod(tmp, 0o755)
    guard_remove_dir(tmp)
    try:
        yield tmp, nofile
    except BenchError as e:
        sys.exit("bench/%s: %s" % (prog, e))
    finally:
        ignore_signals_during_cleanup()
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def run_client(name, argv, log_path, timeout, cpus=None, usage=None):
    """Runs a short-lived client (wrk, loadgen) to completion; returns its stdout.
    It is registered like any child, so an interrupt stops it too. With a dict as `usage`,
    the client's own CPU seconds go into usage["cpu_seconds"] (from the harness's reaped
    children's rusage, before and after: no other child exits meanwhile)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = Child(name, argv, log_path, cpus=cpus, capture=True)
    try:
        out, _ = c.proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError("%s did not finish within %.0f s" % (name, timeout))
    finally:
        c.stop(grace=1.0)
    if usage is not None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if c.proc.returncode != 0:
        raise BenchError("%s exited with %s: %s" % (name, c.proc.returncode,
                                                   (out.decode(errors="replace") + c.log_tail(5)).strip()[-400:]))
    return out.decode(errors="replace")


# --- ports and HTTP probes -------------------------------------------------------------

_handed_out = set()


def free_port():
    """A loopback port that was free a moment ago (bind port 0, read it, close)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def http_get(port, path, timeout=2.0, host="127.0.0.1"):
    """One GET on a new connection; returns the status code, or None if the connection
    failed (refused, reset, closed before a full response)."""
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(req)
            buf = b""
            while True:
                r = parse_response(buf)
                if r is not None:
                    return r[0]
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None


def parse_response(buf):
    """(status, total_length) once `buf` holds one complete response, else None.
    Handles Content-Length and (for completeness) a chunked body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    length, chunked = 0, False
    for line in head[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
    body_start = end + 4
    if chunked:
        term = buf.find(b"0\r\n\r\n", body_start)
        return (status, term + 5) if term >= 0 else None
    if len(buf) - body_start >= length:
        return status, body_start + length
    return None


def wait_serving(child, port, path, timeout=30.0, interval=0.001, want=200):
    """Polls GET `path` on a new connection every ~1 ms until it answers `want`.
    Returns seconds from the child's exec to that answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http_get(port, path, timeout=min(2.0, timeout))
        if status == want:
            return time.monotonic() - child.t_exec
        if not child.alive():
            raise BenchError("%s exited (code %s) before serving; its log:\n%s"
                             % (child.name, child.proc.returncode, child.log_tail()))
        time.sleep(interval)
    raise BenchError("%s did not answer %d on :%d%s within %.0f s; its log:\n%s"
                     % (child.name, want, port, path, timeout, child.log_tail()))


def raise_nofile(want=65536):
    """Raises RLIMIT_NOFILE for the harness (and so for every child); returns the limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(want, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(limit, hard)))
            return limit
        except (ValueError, OSError):
            continue
    return soft


ERRNO_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK)
