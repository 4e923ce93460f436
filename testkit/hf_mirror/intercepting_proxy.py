"""A TLS-intercepting HTTP proxy double: the kind of corporate proxy that breaks mirror downloads.

It accepts ``CONNECT host:port`` (RFC 9110, section 9.3.6), answers ``200``, and then, instead of
tunnelling, performs the TLS handshake itself with a self-signed certificate, as an inspecting proxy does
with its own CA. A client that does not trust that CA fails the handshake. Nothing is forwarded anywhere.
"""

from __future__ import annotations

import socketserver
import ssl
import subprocess
import threading
from pathlib import Path


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "proxy-ca.pem", folder / "proxy-ca.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=Inspecting Proxy CA",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class InterceptingProxy:
    def __init__(self, folder: Path):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed_certificate(folder))
        self.connects: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request_line = self.rfile.readline().decode("latin-1").strip()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                proxy.connects.append(request_line)
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                try:
                    context.wrap_socket(self.connection, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass  # the client refusing our certificate is the expected outcome

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
