"""A test upstream for Sluice's end-to-end tests: an HTTP/1.1 server that echoes each
request as JSON and misbehaves on demand.

Request headers that steer it:
  x-test-status: N        answer with status N
  x-test-delay-ms: N      wait N ms before answering (Upstream(name, delay_ms=N): every request)
  x-test-reset: 1         close the connection without answering
  x-test-body-size: N     answer with N bytes of body instead of the JSON echo
  x-test-close: 1         answer with "connection: close"
  x-test-close-next: 1    answer, but close the connection silently when the next request
                          arrives on it (the keep-alive race, made deterministic)
Controls on the Upstream object (for one upstream among several, where a header would reach
them all): fail(status, times) answers the next `times` requests with `status`;
reset(times) closes the connection on the next `times` requests without answering;
delay(ms, times) waits `ms` before answering the next `times` requests. `seen` lists every
request that arrived (method, path, host header).
Controls set on the Upstream object (for health checks and outlier detection):
  health_status = N       GET /healthz answers N (200 by default), counted in health_checks
  status = N              every other request answers N (None: as its headers say)
An Upgrade: websocket request gets 101 and then every byte is echoed back until the client
ends its side; with x-test-ws-bye: N it gets 101, N bytes, and the connection closed at once.

Run as a module (python3 upstream.py NAME) it prints "listening on PORT" and serves until
killed; tests use Upstream(name) to run it in a thread."""

import json
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The status line, headers and body go out in separate writes: without this, Nagle's
    # algorithm holds the body back for the proxy's delayed ACK (40 ms a response).
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True

    def _body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self):
        server = self.server
        if self.path == "/healthz":
            with server.lock:
                server.health_checks += 1
            self._body()
            self.send_response(server.health_status)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        with server.lock:
            server.requests += 1
            server.connections.add(self.client_address)
        body = self._body()
        if getattr(self, "close_next", False):
            with server.lock:
                server.closed_on_arrival += 1
            self.close_connection = True
            return
        if self.headers.get("x-test-close-next"):
            self.close_next = True
        with server.lock:
            server.seen.append({"method": self.command, "path": self.path,
                                "host": self.headers.get("host", "")})
            control = server.controls.pop(0) if server.controls else None
        if control is not None:
            kind, value = control
            if kind == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                self.connection.close()
                return
            if kind == "delay":
                time.sleep(value / 1000.0)
            if kind == "fail":
                payload = b"failing on purpose"
                self.send_response(value)
                self.send_header("content-length", str(len(payload)))
                self.send_header("x-upstream", server.name)
                self.end_headers()
                self.wfile.write(payload)
                return
        if self.headers.get("upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("upgrade", "websocket")
            self.send_header("connection", "upgrade")
            self.end_headers()
            self.wfile.flush()
            bye = self.headers.get("x-test-ws-bye")
            if bye is not None:
                self.connection.sendall(bytes(i % 251 for i in range(int(bye))))
                self.connection.shutdown(socket.SHUT_WR)
                self.close_connection = True
                return
            while True:
                data = self.connection.recv(65536)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        if self.headers.get("x-test-reset"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            self.connection.close()
            return
        delay = int(self.headers.get("x-test-delay-ms", "0")) or server.delay_ms
        if delay:
            time.sleep(delay / 1000.0)
        status = int(self.headers.get("x-test-status", "200"))
        if server.status is not None:
            status = server.status
        size = self.headers.get("x-test-body-size")
        if size is not None:
            payload = bytes((i * 7) % 251 for i in range(int(size)))
            ctype = "application/octet-stream"
        else:
            payload = json.dumps({
                "upstream": server.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_len": len(body),
                "body": body.decode("latin-1") if len(body) < 4096 else "",
            }).encode()
            ctype = "application/json"
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-upstream", server.name)
        if self.headers.get("x-test-close"):
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _serve


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # (5 by default: a burst of new upstream connections would drop SYNs)
    tls = None  # an ssl.SSLContext: serve HTTPS

    def get_request(self):
        sock, addr = super().get_request()
        if self.tls is None:
            return sock, addr
        # The handshake runs in the request's thread (a failed one ends only that request).
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request.do_handshake()
            except (OSError, ValueError):
                with self.lock:
                    self.tls_failures = getattr(self, "tls_failures", 0) + 1
                return
        super().finish_request(request, client_address)


class Upstream:
    """A test upstream on 127.0.0.1, port 0, in a background thread."""

    def __init__(self, name, delay_ms=0, tls=None):
        """tls: an ssl.SSLContext (server side) to serve HTTPS instead of HTTP."""
        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.tls = tls
        self.server.name = name
        self.server.delay_ms = delay_ms
        self.server.lock = threading.Lock()
        self.server.requests = 0
        self.server.connections = set()
        self.server.closed_on_arrival = 0
        self.server.seen = []
        self.server.controls = []
        self.server.health_checks = 0
        self.server.health_status = 200
        self.server.status = None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        with self.server.lock:
            return self.server.requests

    @property
    def connections(self):
        with self.server.lock:
            return len(self.server.connections)

    def fail(self, status, times=1):
        with self.server.lock:
            self.server.controls.extend([("fail", status)] * times)

    def reset(self, times=1):
        with self.server.lock:
            self.server.controls.extend([("reset", 0)] * times)

    def delay(self, ms, times=1):
        with self.server.lock:
            self.server.controls.extend([("delay", ms)] * times)

    def clear(self):
        with self.server.lock:
            self.server.controls = []
            self.server.seen = []

    @property
    def seen(self):
        with self.server.lock:
            return list(self.server.seen)
    @property
    def health_checks(self):
        with self.server.lock:
            return self.server.health_checks

    def set_health_status(self, code):
        self.server.health_status = code

    def set_status(self, code):
        self.server.status = code

    def close(self):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    u = Upstream(sys.argv[1] if len(sys.argv) > 1 else "upstream")
    print("listening on %d" % u.port, flush=True)
    threading.Event().wait()
