"""`sluice echo` and the command line, end to end."""

import signal
import socket
import threading

import harness


class CommandLineTest(harness.unittest.TestCase):
    def test_version(self):
        r = harness.run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^sluice \d+\.\d+\.\d+ \(commit \w+\)")

    def test_help_lists_the_commands(self):
        r = harness.run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("echo", r.stdout)
        self.assertIn("--log-level", r.stdout)

    def test_bad_flag_prints_usage_and_fails(self):
        r = harness.run("echo", "--no-such-flag")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--no-such-flag", r.stderr + r.stdout)

    def test_bad_log_level_is_refused(self):
        r = harness.run("-l", "loud", "echo")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unknown log level 'loud'", r.stderr)

    def test_bad_address_is_refused_with_the_reason(self):
        r = harness.run("echo", "--address", "127.0.0.1:99999")
        self.assertEqual(r.returncode, 1)
        self.assertIn("port out of range", r.stderr)


class EchoTest(harness.unittest.TestCase):
    def start(self, *extra):
        p = harness.Process("echo", "--address", "127.0.0.1:0", *extra)
        m = p.wait_for_line(r"echo server listening on 127\.0\.0\.1:(\d+) with (\d+) worker")
        return p, int(m.group(1))

    def test_echo_with_two_workers_and_clean_exit(self):
        p, port = self.start("--concurrency", "2")
        with p:
            clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
            for i, c in enumerate(clients):
                c.sendall(b"client %d\n" % i)
            for i, c in enumerate(clients):
                want = b"client %d\n" % i
                got = b""
                while len(got) < len(want):
                    chunk = c.recv(100)
                    self.assertTrue(chunk, "connection closed early")
                    got += chunk
                self.assertEqual(got, want)
            for c in clients:
                c.close()
            self.assertEqual(p.stop(signal.SIGTERM), 0)
            self.assertIn("shutting down", "".join(p.lines))

    def test_large_transfer_with_a_reader_in_another_thread(self):
        p, port = self.start("--concurrency", "1", "--buffer-limit", "65536")
        with p:
            data = bytes((i * 7) % 251 for i in range(8 * 1024 * 1024))
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            got = bytearray()

            def reader():
                while len(got) < len(data):
                    chunk = c.recv(1 << 16)
                    if not chunk:
                        break
                    got.extend(chunk)

            t = threading.Thread(target=reader)
            t.start()
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)  # half-close: the echo finishes, then the server closes
            t.join(60)
            self.assertEqual(len(got), len(data))
            self.assertTrue(bytes(got) == data)
            self.assertEqual(c.recv(1), b"")  # the server ended its side too
            c.close()
            self.assertEqual(p.stop(signal.SIGINT), 0)


if __name__ == "__main__":
    harness.main()
