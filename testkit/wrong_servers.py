"""Loopback servers that answer wrongly, for the bad-input matrices: what an operator reaches when a
URL or port points at the wrong thing. Each is a context manager that yields its base URL or port
and stops everything it started."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .support import free_port

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Dashboard</title></head><body><h1>It works</h1></body></html>"


class _HtmlEverywhere(BaseHTTPRequestHandler):
    """A web UI on the wrong port: 200 and an HTML page to every GET, 405 to anything else."""

    def _page(self, status):
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(HTML_PAGE)))
        self.end_headers()
        self.wfile.write(HTML_PAGE)

    def do_GET(self):
        self._page(200)

    def do_POST(self):
        self._read_body()
        self._page(405)

    do_DELETE = do_PUT = do_PATCH = do_POST

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def html_everywhere():
    """An HTTP server on 127.0.0.1 answering every GET with 200 and an HTML page; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def _listener(on_connect):
    """A TCP listener on 127.0.0.1 that hands each accepted connection to `on_connect`; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stopping = threading.Event()
    accepted = []

    def serve():
        while not stopping.is_set():
            try:
                connection, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(connection)
            on_connect(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        sock.close()


def silent_listener():
    """A port that accepts connections and never sends a byte (a wedged service); yields the port."""
    return _listener(lambda connection: None)


def _greet_and_hold(connection):
    with contextlib.suppress(OSError):
        connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")


def foreign_tcp_service():
    """A TCP service that is not MySQL nor HTTP: it sends an SSH banner and nothing more; yields the port."""
    return _listener(_greet_and_hold)


DEAD_PROXY_ENV_NAMES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def dead_proxy_environment():
    """Proxy variables an operator left behind, all pointing at a closed loopback port."""
    url = "http://127.0.0.1:%d" % free_port()
    return {name: url for name in DEAD_PROXY_ENV_NAMES}
