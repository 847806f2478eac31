"""Helpers for Sluice's end-to-end tests: start the real binary, find the port it bound,
stop it. Tests never sleep for a fixed time: they wait on a process's output or a socket."""

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import time
import unittest

SLUICE = None


def main():
    global SLUICE
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice", required=True)
    args, rest = parser.parse_known_args()
    SLUICE = os.path.abspath(args.sluice)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


class Process:
    """A running sluice process whose stderr is read line by line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([SLUICE, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []

    def wait_for_line(self, pattern, timeout=20):
        """Reads stderr until a line matches; returns the match."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stderr], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            m = rx.search(line)
            if m:
                return m
        raise AssertionError("no line matching %r; output so far:\n%s" % (pattern, "".join(self.lines)))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError("sluice did not exit after %s" % sig)
        self.lines.append(err)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(*args, timeout=30):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=timeout)
