"""A Python package index on loopback: a folder of wheels served as PyPI's simple API, the way an
operator's index (devpi, a Nexus or Artifactory PyPI proxy) serves them to a host without Internet.

    with PackageIndex(wheels) as index:   # index.url: http://127.0.0.1:<port>/simple/
        ...                               # index.served: names of the files pip fetched

It answers the routes pip uses (PEP 503, HTML form): /simple/ lists the projects, /simple/<project>/
links each file with its sha256, /files/<name> sends it. pip treats 127.0.0.0/8 as a secure origin,
so plain HTTP needs no --trusted-host. `download_wheels` fills the folder with the ordinary client.
"""

import hashlib
import html
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .support import free_port, report


def project_name(filename):
    """The PEP 503 normalized project name of a wheel or sdist file."""
    return re.sub(r"[-_.]+", "-", re.split(r"-\d", filename, maxsplit=1)[0]).lower()


def download_wheels(requirements, folder):
    """`pip download --no-deps` of `requirements` into `folder`, once: a file already there is reused."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(folder),
            *requirements,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, "pip download failed:\n" + report(proc)
    return sorted(path.name for path in folder.glob("*.whl"))


class PackageIndex:
    """The wheels of `folder`, served on 127.0.0.1 until the context exits."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.served = []
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/simple/" % self.port
        self._server = None

    def projects(self):
        found = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix == ".whl" or path.name.endswith(".tar.gz"):
                found.setdefault(project_name(path.name), []).append(path)
        return found

    def __enter__(self):
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            head_only = False

            def answer(self, status, body, content_type="text/html"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not self.head_only:
                    self.wfile.write(body)

            def do_HEAD(self):
                # uv (what Xinference's model virtualenvs install with) asks for a file's headers first.
                self.head_only = True
                self.do_GET()

            def do_GET(self):
                parts = [part for part in self.path.split("?")[0].split("/") if part]
                projects = index.projects()
                if parts == ["simple"]:
                    links = "".join('<a href="/simple/%s/">%s</a>\n' % (name, name) for name in projects)
                    return self.answer(200, ("<!DOCTYPE html><html><body>\n%s</body></html>" % links).encode())
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in projects:
                    links = "".join(
                        '<a href="/files/%s#sha256=%s">%s</a>\n'
                        % (
                            html.escape(path.name),
                            hashlib.sha256(path.read_bytes()).hexdigest(),
                            html.escape(path.name),
                        )
                        for path in projects[parts[1]]
                    )
                    return self.answer(200, ("<!DOCTYPE html><html><body>\n%s</body></html>" % links).encode())
                if len(parts) == 2 and parts[0] == "files" and (index.folder / parts[1]).is_file():
                    if not self.head_only:
                        index.served.append(parts[1])
                    return self.answer(200, (index.folder / parts[1]).read_bytes(), "application/octet-stream")
                return self.answer(404, b"not found")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
