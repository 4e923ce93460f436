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

With ``FakeHub(cdn=True)`` it serves LFS files the way huggingface.co does, from a second loopback server
(the "CDN", another origin) behind expiring signed URLs:

- ``resolve`` of an LFS file answers ``302`` with ``Location`` (an absolute signed URL on the CDN), and the
  file's metadata on the redirect itself: ``X-Repo-Commit``, ``X-Linked-Size``, ``X-Linked-Etag`` (quoted
  sha256), ``ETag``; huggingface_hub 2.4.0 reads them there (``file_download.py`` ``get_hf_file_metadata``,
  lines 1670-1690) and does not follow the redirect to another host (``utils/_http.py``
  ``_httpx2_follow_hub_redirects_with_backoff``, lines 735-784; huggingface/huggingface_hub PR #4739);
- the signed URL is CloudFront's shape, ``...?Expires=<unix time>&Signature=...`` (a real one is quoted in
  huggingface/huggingface_hub PR #4339), valid for ``signed_url_ttl`` seconds; the CDN checks it when a
  request starts, answers ``403`` with an S3/CloudFront XML error (``AccessDenied``, "Request has expired")
  once it has expired and for a bad signature, and keeps streaming an answer it already began;
- the client must not send the Hub token there: huggingface_hub drops ``Authorization`` for any host that is
  not the Hub's (``file_download.py`` lines 1812-1819), and the CDN records what it got in
  ``cdn_authorizations``;
- the CDN honours ``Range`` unless ``cdn_honour_range`` is false, and shares the Hub's ``throttle_bytes_per_s``,
  ``drop_after`` and ``bytes_served`` (keyed by the repo path), so the fault tests read the same counters.
"""

from __future__ import annotations

import hashlib
import hmac
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
    def __init__(self, cdn: bool = False):
        self.repos: dict[tuple[str, str], dict] = {}
        self.gated: dict[tuple[str, str], str] = {}
        self.bytes_served: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.throttle_bytes_per_s: int | None = None
        self.drop_after: dict[str, int] = {}
        self.resolve_status: int | None = None
        # path -> status: `resolve` of that file alone fails (the others are served), to fail a run part-way.
        self.broken_paths: dict[str, int] = {}
        # False answers every Range request with the whole file (200), as olah's offline mirror does.
        self.honour_range = True
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        # Clients hanging up mid-answer is what the fault tests are about, not an error worth a traceback.
        self.server.handle_error = lambda _request, _address: None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.signed_url_ttl = 3600.0
        self.cdn_honour_range = True
        self.cdn_requests: list[tuple[str, str, int]] = []
        self.cdn_authorizations: list[str] = []
        self.cdn_blobs: dict[str, tuple[str, bytes]] = {}
        self.cdn_secret = hashlib.sha256(b"%f" % time.time()).digest()
        self.cdn_server = None
        if cdn:
            self.cdn_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class(self.route_cdn))
            self.cdn_server.daemon_threads = True
            self.cdn_server.handle_error = lambda _request, _address: None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    @property
    def cdn_url(self) -> str:
        return "http://127.0.0.1:%d" % self.cdn_server.server_address[1]

    def start(self) -> FakeHub:
        self.thread.start()
        if self.cdn_server:
            threading.Thread(target=self.cdn_server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self.server, self.cdn_server):
            if server:
                server.shutdown()
                server.server_close()

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
            self.cdn_requests.clear()
            self.cdn_authorizations.clear()

    def _handler_class(self, route=None):
        route = route or self.route

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                route(self, head=True)

            def do_GET(self):
                route(self, head=False)

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
        elif self.resolve_status or resolve["path"] in self.broken_paths:
            status = self.resolve_status or self.broken_paths[resolve["path"]]
            self.send_error(handler, status, "", "injected failure")
        elif resolve["path"] not in files:
            self.send_error(handler, 404, "EntryNotFound", "no file %s" % resolve["path"])
        elif self.cdn_server and is_lfs(resolve["path"], files[resolve["path"]]):
            self.send_cdn_redirect(handler, sha, resolve["path"], commit)
        else:
            path = resolve["path"]
            self.send_file(handler, head, sha, path, commit)

    # The CDN ------------------------------------------------------------------------------------------

    def signature(self, blob_path: str, expires: str) -> str:
        return hmac.new(self.cdn_secret, ("%s?%s" % (blob_path, expires)).encode(), "sha256").hexdigest()

    def send_cdn_redirect(self, handler, sha, path, commit):
        content, etag = commit["files"][path], commit["etags"][path]
        blob_path = "/repos/%s" % etag
        with self.lock:
            self.cdn_blobs[etag] = (path, content)
        expires = (
            str(int(time.time() + self.signed_url_ttl))
            if self.signed_url_ttl >= 1
            else "%.3f" % (time.time() + self.signed_url_ttl)
        )
        location = "%s%s?Expires=%s&Signature=%s" % (
            self.cdn_url,
            blob_path,
            expires,
            self.signature(blob_path, expires),
        )
        body = ("Found. Redirecting to %s" % location).encode()
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("X-Repo-Commit", sha)
        handler.send_header("ETag", '"%s"' % etag)
        handler.send_header("X-Linked-Size", str(len(content)))
        handler.send_header("X-Linked-Etag", '"%s"' % etag)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def route_cdn(self, handler, head):
        split = urlsplit(handler.path)
        query = parse_qs(split.query)
        expires, signature = query.get("Expires", [""])[0], query.get("Signature", [""])[0]
        blob = self.cdn_blobs.get(split.path.rsplit("/", 1)[-1])
        with self.lock:
            self.cdn_authorizations.append(handler.headers.get("Authorization", ""))
        if not blob or not hmac.compare_digest(signature, self.signature(split.path, expires)):
            status, message = 403, "SignatureDoesNotMatch"
        elif float(expires) < time.time():
            status, message = 403, "Request has expired"
        else:
            status, message = 200, ""
        with self.lock:
            self.cdn_requests.append((handler.command, split.path, status))
        if status != 200:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>%s</Message>'
                "</Error>" % message
            ).encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if not head:
                handler.wfile.write(body)
            return
        path, content = blob
        headers = [("ETag", '"%s"' % etag_of(path, content))]
        self.send_bytes(handler, head, path, content, honour_range=self.cdn_honour_range, headers=headers)

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
        headers = [("X-Repo-Commit", sha), ("ETag", '"%s"' % etag)]
        if is_lfs(path, content):
            headers += [("X-Linked-Size", str(len(content))), ("X-Linked-Etag", '"%s"' % etag)]
        self.send_bytes(handler, head, path, content, honour_range=self.honour_range, headers=headers)

    def send_bytes(self, handler, head, path, content, *, honour_range, headers):
        size = len(content)
        start, end, status = 0, size - 1, 200
        requested = re.match(r"bytes=(\d+)-(\d*)$", handler.headers.get("Range", ""))
        if requested and honour_range:
            start = int(requested[1])
            end = min(int(requested[2]), size - 1) if requested[2] else size - 1
            status = 206
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
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
