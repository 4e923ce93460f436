"""FakeHub: a test double of the Hugging Face Hub's download endpoints, with faults on demand.

Not a mirror: it serves repos held in memory, and exists so tests can break things on purpose (drop a
connection after N bytes, cap the speed of each connection, answer 401/403/404/500) and count the bytes
it sent. It follows the Hub's documented behaviour (https://huggingface.co/docs/hub/api) as
huggingface_hub 2.4.0 consumes it:

- ``GET /api/{models|datasets}/{repo}/revision/{rev}``: ``{"id", "sha"}``; an unknown revision is 404 with
  ``X-Error-Code: RevisionNotFound``;
- ``GET /api/{models|datasets}/{repo}/tree/{sha}?recursive=true``: entries with ``type``, ``path``, ``size``,
  ``oid`` (git blob sha1) and, for LFS files, ``lfs: {oid: sha256, size, pointerSize}``; long listings
  continue in a ``Link: <...>; rel="next"`` header;
- ``GET|HEAD /[datasets/]{repo}/resolve/{sha}/{path}``: the bytes, with ``X-Repo-Commit``, a quoted
  ``ETag`` (sha256 for LFS, git oid otherwise), ``X-Linked-Size``/``X-Linked-Etag`` for LFS, and 206 with
  ``Content-Range`` for a ``Range`` request;
- an unknown repo is 404 ``RepoNotFound`` with a token and 401 ``RepoNotFound`` without one; a gated repo
  without a token is 401 ``GatedRepo``, with a token the repo's owner did not grant, 403 ``GatedRepo``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_MIN_BYTES = 1024 * 1024
SEND_CHUNK = 64 * 1024
TREE_PAGE_SIZE = 50
REPO_TYPES = {"models", "datasets"}


def git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def is_lfs(path: str, content: bytes) -> bool:
    return len(content) >= LFS_MIN_BYTES or path.endswith(".safetensors")


def etag_of(path: str, content: bytes) -> str:
    return hashlib.sha256(content).hexdigest() if is_lfs(path, content) else git_oid(content)


def tree_of(files: dict[str, bytes]) -> list[dict]:
    """The recursive tree listing of a commit: files, then the folders they imply."""
    entries, folders = [], set()
    for name in sorted(files):
        content = files[name]
        parts = name.split("/")
        folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
        entry = {"type": "file", "path": name, "size": len(content), "oid": git_oid(content)}
        if is_lfs(name, content):
            entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
        entries.append(entry)
    entries += [
        {"type": "directory", "path": folder, "size": 0, "oid": git_oid(folder.encode())} for folder in sorted(folders)
    ]
    return entries


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], dict] = {}
        self.gated: dict[tuple[str, str], str] = {}
        self.bytes_served: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.throttle_bytes_per_s: int | None = None
        self.drop_after: dict[str, int] = {}
        self.resolve_status: int | None = None
        # False answers every Range request with the whole file (200), as olah's offline mirror does.
        self.honour_range = True
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        # Clients hanging up mid-answer is what the fault tests are about, not an error worth a traceback.
        self.server.handle_error = lambda _request, _address: None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo_id: str, files: dict[str, bytes], repo_type: str = "models", branch: str = "main") -> str:
        """Make `files` the content of `branch`; returns the new commit sha."""
        repo = self.repos.setdefault((repo_type, repo_id), {"branches": {}, "commits": {}})
        sha = hashlib.sha1(("%s %d %f" % (repo_id, len(repo["commits"]), time.time())).encode()).hexdigest()
        # Hashes are computed once here, not per request, so the double does not slow the clients it serves.
        repo["commits"][sha] = {
            "files": dict(files),
            "tree": tree_of(files),
            "etags": {name: etag_of(name, content) for name, content in files.items()},
        }
        repo["branches"][branch] = sha
        return sha

    def gate(self, repo_id: str, token: str, repo_type: str = "models") -> None:
        """Serve the repo only to requests with this token, as a gated repo does once terms are accepted."""
        self.gated[(repo_type, repo_id)] = token

    def reset_counters(self) -> None:
        with self.lock:
            self.bytes_served.clear()
            self.requests.clear()

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.route(self, head=True)

            def do_GET(self):
                hub.route(self, head=False)

        return Handler

    # Routing -----------------------------------------------------------------------------------------

    API = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/]+)/?$")
    RESOLVE = re.compile(r"^/(?:(?P<type>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")

    def route(self, handler, head):
        split = urlsplit(handler.path)
        path = unquote(split.path)
        with self.lock:
            self.requests.append((handler.command, path))
        api, resolve = self.API.match(path), self.RESOLVE.match(path)
        match = api or resolve
        repo_key = (match["type"] or "models", match["repo"]) if match else None
        refusal = self.refuse(handler, repo_key) if match else (404, "EntryNotFound", "no such route")
        if refusal:
            self.send_error(handler, *refusal)
            return
        repo = self.repos[repo_key]
        sha = repo["branches"].get(match["rev"], match["rev"])
        commit = repo["commits"].get(sha)
        files = commit["files"] if commit else {}
        if commit is None:
            self.send_error(handler, 404, "RevisionNotFound", "Invalid rev id: %s" % match["rev"])
        elif api and api["kind"] == "revision":
            siblings = [{"rfilename": name} for name in sorted(files)]
            self.send_json(handler, {"id": match["repo"], "sha": sha, "siblings": siblings})
        elif api:
            self.send_tree(handler, split, commit["tree"])
        elif self.resolve_status:
            self.send_error(handler, self.resolve_status, "", "injected failure")
        elif resolve["path"] not in files:
            self.send_error(handler, 404, "EntryNotFound", "no file %s" % resolve["path"])
        else:
            path = resolve["path"]
            self.send_file(handler, head, sha, path, commit)

    def refuse(self, handler, repo_key):
        authorization = handler.headers.get("Authorization", "")
        if repo_key not in self.repos:
            return (404 if authorization else 401), "RepoNotFound", "Repository not found"
        token = self.gated.get(repo_key)
        if token and authorization != "Bearer %s" % token:
            return (403 if authorization else 401), "GatedRepo", "Access to this model is restricted"
        return None

    # Answers -----------------------------------------------------------------------------------------

    def send_error(self, handler, status, code, message):
        body = json.dumps({"error": message}).encode()
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        handler.send_header("X-Error-Message", message)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def send_json(self, handler, data, extra_headers=()):
        body = json.dumps(data).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def send_tree(self, handler, split, entries):
        query = parse_qs(split.query)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + TREE_PAGE_SIZE]
        headers = []
        if start + TREE_PAGE_SIZE < len(entries):
            next_url = "%s%s?recursive=true&cursor=%d" % (self.url, quote(split.path), start + TREE_PAGE_SIZE)
            headers.append(("Link", '<%s>; rel="next"' % next_url))
        self.send_json(handler, page, headers)

    def send_file(self, handler, head, sha, path, commit):
        content, etag = commit["files"][path], commit["etags"][path]
        size = len(content)
        start, end, status = 0, size - 1, 200
        requested = re.match(r"bytes=(\d+)-(\d*)$", handler.headers.get("Range", ""))
        if requested and self.honour_range:
            start = int(requested[1])
            end = min(int(requested[2]), size - 1) if requested[2] else size - 1
            status = 206
        handler.send_response(status)
        handler.send_header("X-Repo-Commit", sha)
        handler.send_header("ETag", '"%s"' % etag)
        if is_lfs(path, content):
            handler.send_header("X-Linked-Size", str(size))
            handler.send_header("X-Linked-Etag", '"%s"' % etag)
        handler.send_header("Accept-Ranges", "bytes")
        if status == 206:
            handler.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        handler.send_header("Content-Length", str(end - start + 1))
        handler.end_headers()
        if not head:
            self.stream(handler, path, content, start, end + 1)

    def stream(self, handler, path, content, start, stop):
        offset = start
        began = time.monotonic()
        while offset < stop:
            chunk = content[offset : min(offset + SEND_CHUNK, stop)]
            with self.lock:
                drop_at = self.drop_after.get(path)
                drop = drop_at is not None and offset + len(chunk) >= drop_at
                if drop:
                    del self.drop_after[path]
                    chunk = chunk[: max(drop_at - offset, 0)]
            try:
                handler.wfile.write(chunk)
                handler.wfile.flush()
            except OSError:
                return
            with self.lock:
                self.bytes_served[path] += len(chunk)
            offset += len(chunk)
            if drop:
                # The peer sees the body end early, as when a proxy or a mirror cuts a long transfer.
                handler.close_connection = True
                handler.connection.shutdown(2)
                return
            if self.throttle_bytes_per_s:
                ahead = (offset - start) / self.throttle_bytes_per_s - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
