# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Download a Hugging Face repo through a mirror into a huggingface_hub ``local_dir``.

We talk to the mirror's documented Hub endpoints ourselves instead of calling huggingface_hub, because
(as of 2.4.0) it does not resume a file killed mid-way, reads proxy variables we must ignore, and moves
about half the bytes per second that plain HTTP does. The endpoints:

- ``GET /api/{models|datasets}/{repo}/revision/{rev}``: the commit sha a branch, tag or sha points at;
- ``GET /api/{models|datasets}/{repo}/tree/{sha}?recursive=true``: every file with its size, its git oid
  and, for LFS files, ``lfs.oid`` (the sha256 of the content); pages continue in a ``Link: rel="next"``;
- ``GET /[datasets/]{repo}/resolve/{sha}/{path}``: the bytes, honouring ``Range`` with 206 on real mirrors.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import threading
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import quote, urlsplit

from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import (
    DiskFull,
    DownloadFailed,
    MirrorError,
    RepoNotFound,
    TransientHTTPError,
    describe_http_error,
    describe_request_exception,
    requests,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_local_dir import (
    DOWNLOAD_DIR,
    UnsafeRepoPath,
    check_repo_path,
    content_etag_of,
    ensure_cache_dir,
    file_path,
    leftover_temp_files,
    read_metadata,
    temp_path,
    write_metadata,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_transfer import (
    Aborted,
    FileDownload,
    FileLocation,
    PartState,
    Progress,
    origin,
    without_query,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables, proxy_for

DEFAULT_ENDPOINT = "https://hf-mirror.com"
DEFAULT_REVISION = "main"
API_REPO_TYPES = {"model": "models", "dataset": "datasets"}
VERIFY_MODES = ("size", "sha256")
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")

RemoteFile = namedtuple("RemoteFile", "path size etag is_lfs")
# action: download, skip; note says why (shown to the operator).
PlannedFile = namedtuple("PlannedFile", "remote action note present_bytes")


def ca_bundle_from_environment():
    """The CA bundle an operator configured for HTTP clients; kept even though proxy variables are not."""
    for name in CA_BUNDLE_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


class MirrorClient:
    def __init__(self, endpoint, repo_type, repo_id, *, token=None, timeout=30, use_proxy=False, ca_bundle=None):
        if repo_type not in API_REPO_TYPES:
            raise MirrorError("repo_type must be one of %s, not %r" % (", ".join(API_REPO_TYPES), repo_type))
        try:
            parts = urlsplit(endpoint)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            usable = False
        if not usable:
            raise MirrorError(
                "endpoint %r is not an http(s) URL: give a mirror's base URL, such as %s" % (endpoint, DEFAULT_ENDPOINT)
            )
        self.endpoint = endpoint.rstrip("/")
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.token = token
        self.timeout = timeout
        self.use_proxy = use_proxy
        self.label = "%s %s on %s" % (repo_type, repo_id, self.endpoint)
        self.session = requests.Session()
        # trust_env=False is what makes requests ignore http(s)_proxy/ALL_PROXY (and .netrc); the CA bundle
        # that trust_env would have read from the environment is passed explicitly instead.
        self.session.trust_env = use_proxy
        self.session.verify = ca_bundle or ca_bundle_from_environment() or True
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "llmops.ragstack.hf_mirror_download"

    def auth_headers(self, url):
        """The token, for the mirror's own origin only: never for a CDN host a redirect leads to."""
        if self.token and origin(url) == origin(self.endpoint):
            return {"Authorization": "Bearer %s" % self.token}
        return {}

    def ignored_proxy_variables(self):
        """Proxy variables set in the environment that this client does not use (use_proxy: false)."""
        return ignored_proxy_variables(self.use_proxy)

    def proxy_for(self, url):
        """The proxy that carried a request to `url` and the variable it came from, for messages; None if none."""
        if not self.use_proxy:
            return None
        variable, proxy = proxy_for(url, schemes=(urlsplit(url).scheme, "all"))
        return "%s (from %s)" % (proxy, variable) if proxy else None

    def explain(self, exc, revision):
        """Turn any failure of a request into a MirrorError with one clear line."""
        if isinstance(exc, MirrorError):
            return exc
        if isinstance(exc, TransientHTTPError):
            return MirrorError(str(exc))
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            return self.explain_http_error(exc.response, revision)
        if isinstance(exc, requests.exceptions.RequestException):
            return MirrorError(
                describe_request_exception(exc, self.endpoint, self.proxy_for(self.endpoint), self.timeout)
            )
        if isinstance(exc, OSError):
            return MirrorError(
                "cannot write %s (%s): check that local_dir is a folder this user can write"
                % (exc.filename or "in local_dir", exc.strerror or exc)
            )
        return MirrorError("%s: %s" % (exc.__class__.__name__, exc))

    def explain_http_error(self, response, revision):
        if origin(response.url) != origin(self.endpoint):
            return MirrorError(
                "%s, where %s redirected the download, answered HTTP %d for %s: try again later, or another "
                "endpoint" % (origin(response.url)[1], self.endpoint, response.status_code, without_query(response.url))
            )
        message = describe_http_error(response, self.label, revision, bool(self.token))
        if response.headers.get("X-Error-Code") == "RepoNotFound":
            path = urlsplit(self.endpoint).path
            if path not in ("", "/"):
                # A wrong path prefix reaches the mirror's catch-all route, which answers as for a missing repo.
                message += "; or drop the path %s from endpoint: mirrors serve the Hub API at their root" % path
            return RepoNotFound(message)
        return MirrorError(message)

    def get_json(self, url, revision, params=None):
        try:
            response = self.session.get(url, params=params, headers=self.auth_headers(url), timeout=self.timeout)
            response.raise_for_status()
        except requests.exceptions.RequestException as exc:
            raise self.explain(exc, revision) from exc
        try:
            return response.json(), response
        except ValueError:
            raise MirrorError(
                "%s answered %s with something that is not JSON: is endpoint a Hugging Face "
                "mirror?" % (self.endpoint, response.url)
            ) from None

    def api_url(self, *parts):
        return "/".join(
            [self.endpoint, "api", API_REPO_TYPES[self.repo_type], self.repo_id]
            + [quote(part, safe="") for part in parts]
        )

    def resolve_commit(self, revision):
        try:
            info, _response = self.get_json(self.api_url("revision", revision), revision)
        except RepoNotFound:
            # olah answers 401 RepoNotFound for a revision the repo does not have, too: asking for the default
            # branch on its own tells the two apart.
            if revision != DEFAULT_REVISION and self.repo_answers():
                raise MirrorError(
                    "revision %r not found in %s, whose %r branch exists: check revision (a branch, tag "
                    "or full commit sha)" % (revision, self.label, DEFAULT_REVISION)
                ) from None
            raise
        if not isinstance(info, dict) or not info.get("sha"):
            raise MirrorError("%s gave no commit sha for revision %r" % (self.label, revision))
        return info["sha"]

    def repo_answers(self):
        try:
            self.get_json(self.api_url("revision", DEFAULT_REVISION), DEFAULT_REVISION)
        except MirrorError:
            return False
        return True

    def list_files(self, commit):
        files = []
        url, params = self.api_url("tree", commit), {"recursive": "true"}
        while url:
            entries, response = self.get_json(url, commit, params)
            for entry in entries:
                if entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs")
                try:
                    check_repo_path(entry["path"])
                except UnsafeRepoPath as exc:
                    raise MirrorError("%s: %s" % (self.label, exc)) from exc
                files.append(
                    RemoteFile(
                        path=entry["path"],
                        size=int(lfs["size"] if lfs else entry["size"]),
                        etag=lfs["oid"] if lfs else entry["oid"],
                        is_lfs=bool(lfs),
                    )
                )
            url, params = response.links.get("next", {}).get("url"), None
        return files

    def file_url(self, commit, path):
        prefix = "" if self.repo_type == "model" else API_REPO_TYPES[self.repo_type] + "/"
        return "%s/%s%s/resolve/%s/%s" % (self.endpoint, prefix, self.repo_id, commit, quote(path, safe="/"))

    def file_location(self, commit, path):
        url = self.file_url(commit, path)
        return FileLocation(self.session, url, auth_headers=self.auth_headers(url), timeout=self.timeout)


def check_patterns(allow_patterns, ignore_patterns):
    for option, patterns in (("allow_patterns", allow_patterns), ("ignore_patterns", ignore_patterns)):
        for pattern in patterns or []:
            if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
                raise MirrorError(
                    "bad %s entry %r: patterns are fnmatch globs relative to the repo root, such "
                    "as '*.safetensors' or 'onnx/*'" % (option, pattern)
                )


def pattern_matches(path, patterns):
    # Like huggingface_hub's filter_repo_objects: a pattern ending in "/" means everything below it.
    return any(fnmatch.fnmatch(path, pattern + "*" if pattern.endswith("/") else pattern) for pattern in patterns)


def select_files(files, allow_patterns, ignore_patterns, label):
    selected = [
        remote
        for remote in files
        if (not allow_patterns or pattern_matches(remote.path, allow_patterns))
        and not (ignore_patterns and pattern_matches(remote.path, ignore_patterns))
    ]
    if files and not selected:
        examples = ", ".join(sorted(remote.path for remote in files)[:5])
        raise MirrorError(
            "allow_patterns %s / ignore_patterns %s select none of the %d files of %s (such as %s)"
            % (allow_patterns or [], ignore_patterns or [], len(files), label, examples)
        )
    return selected


def plan_file(local_dir, commit, remote, verify, force):
    """Decide whether a file must be fetched. Hashes only when the metadata cannot vouch for the file."""
    target = file_path(local_dir, remote.path)
    present = PartState.peek_done(temp_path(local_dir, remote.path, remote.etag))
    if force:
        return PlannedFile(remote, "download", "force", present)
    if not os.path.isfile(target):
        return PlannedFile(remote, "download", "missing", present)
    if os.path.getsize(target) != remote.size:
        return PlannedFile(remote, "download", "size differs", present)
    metadata = read_metadata(local_dir, remote.path)
    vouched = metadata is not None and metadata[1] == remote.etag
    if vouched and verify == "size":
        return PlannedFile(remote, "skip", "metadata" if metadata[0] == commit else "metadata of older commit", 0)
    if content_etag_of(target, remote.is_lfs) == remote.etag:
        return PlannedFile(remote, "skip", "hash matches", 0)
    return PlannedFile(remote, "download", "hash differs", present)


def run_downloads(
    client, local_dir, commit, downloads, progress, *, max_workers, connections_per_file, retries, backoff
):
    """Fetch the planned files; on failure raise DownloadFailed, which says how many were put in place."""
    abort = threading.Event()
    placed = []

    def fetch(planned):
        remote = planned.remote
        FileDownload(
            client.file_location(commit, remote.path),
            target=file_path(local_dir, remote.path),
            temp=temp_path(local_dir, remote.path, remote.etag),
            size=remote.size,
            expected_etag=remote.etag,
            is_lfs=remote.is_lfs,
            progress=progress,
            connections=connections_per_file,
            retries=retries,
            backoff=backoff,
            abort=abort,
        ).run()
        placed.append(remote.path)
        write_metadata(local_dir, remote.path, commit, remote.etag)
        progress.file_done()

    failures = []
    # Largest first, so the long transfers overlap the many small ones instead of trailing them.
    ordered = sorted(downloads, key=lambda planned: -planned.remote.size)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for future in as_completed([pool.submit(fetch, planned) for planned in ordered]):
            try:
                future.result()
            except Exception as exc:
                abort.set()
                failures.append(exc)
    if failures:
        first = next((exc for exc in failures if not isinstance(exc, Aborted)), failures[0])
        cause = client.explain(first, commit)
        if placed:
            raise DownloadFailed(
                "%s (%d of %d files were written before that)" % (cause, len(placed), len(downloads)),
                len(placed),
                progress.bytes_fetched,
            ) from first
        raise cause from first


def first_existing(path):
    """`path` or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def check_can_write(local_dir, progress_file=None):
    """Fail before any request where the download would fail to write: a file in the way, or a folder this
    user cannot write. Check mode runs this too, so it fails where the real run would."""
    folders = [("local_dir", local_dir)] + [
        ("local_dir's cache", os.path.join(local_dir, *parts))
        for parts in ((".cache",), (".cache", "huggingface"), (DOWNLOAD_DIR,))
    ]
    if progress_file:
        if os.path.isdir(progress_file):
            raise MirrorError("progress_file %s is a folder: give the path of a file" % progress_file)
        folders.append(("progress_file's folder", os.path.dirname(os.path.abspath(progress_file))))
    for what, folder in folders:
        existing = first_existing(folder)
        if not os.path.isdir(existing):
            raise MirrorError(
                "%s %s cannot be a folder: %s is a file; remove it or pick another path" % (what, folder, existing)
            )
        if not os.access(existing, os.W_OK | os.X_OK):
            raise MirrorError(
                "%s %s is not writable by this user (%s is not): fix its owner or mode, or pick another path"
                % (what, folder, existing if existing == folder else "its existing parent " + existing)
            )


class DownloadPlan:
    """What a download would do: the commit, every selected file and whether it must be fetched, and why."""

    def __init__(self, client, *, local_dir, revision, commit, files, planned):
        self.client = client
        self.local_dir = local_dir
        self.revision = revision
        self.commit = commit
        self.files = files
        self.planned = planned

    @property
    def downloads(self):
        return [planned for planned in self.planned if planned.action == "download"]

    @property
    def skips(self):
        return [planned for planned in self.planned if planned.action == "skip"]

    @property
    def bytes_to_fetch(self):
        return sum(planned.remote.size - planned.present_bytes for planned in self.downloads)

    def facts(self):
        """The result fields that describe the plan (the module returns them in both modes)."""
        return {
            "commit": self.commit,
            "revision": self.revision,
            "local_dir": self.local_dir,
            "files_total": len(self.planned),
            "bytes_total": sum(remote.size for remote in self.files),
            "files_skipped": len(self.skips),
            "files_to_download": len(self.downloads),
            "bytes_to_download": self.bytes_to_fetch,
            "proxy_variables_ignored": self.client.ignored_proxy_variables(),
            "files": [
                {"path": item.remote.path, "size": item.remote.size, "action": item.action, "reason": item.note}
                for item in self.planned
            ],
        }

    def diff(self):
        """The plan as Ansible's diff: each file to fetch, before (on disk) and after (the commit's)."""
        before, after = [], []
        for planned in self.downloads:
            target = file_path(self.local_dir, planned.remote.path)
            on_disk = "%d bytes" % os.path.getsize(target) if os.path.isfile(target) else "absent"
            before.append("%s: %s (%s)\n" % (planned.remote.path, on_disk, planned.note))
            resume = ", %d already fetched" % planned.present_bytes if planned.present_bytes else ""
            after.append("%s: %d bytes, %s %s%s\n" % (
                planned.remote.path, planned.remote.size, "sha256" if planned.remote.is_lfs else "git oid",
                planned.remote.etag[:12], resume,
            ))  # fmt: skip
        after.append(
            "# %d file(s) to fetch, %d bytes from %s\n"
            % (len(self.downloads), self.bytes_to_fetch, self.client.endpoint)
        )
        return {
            "before_header": "%s (on disk)" % self.local_dir,
            "after_header": "%s @ %s" % (self.client.repo_id, self.commit),
            "before": "".join(before),
            "after": "".join(after),
        }


def plan_download(
    client, local_dir, *, revision="main", allow_patterns=None, ignore_patterns=None, verify="size", force=False
):
    """Decide what bringing local_dir to `revision` takes, writing nothing."""
    if verify not in VERIFY_MODES:
        raise MirrorError("verify must be one of %s, not %r" % (", ".join(VERIFY_MODES), verify))
    check_patterns(allow_patterns, ignore_patterns)
    commit = client.resolve_commit(revision)
    files = select_files(client.list_files(commit), allow_patterns, ignore_patterns, client.label)
    planned = [plan_file(local_dir, commit, remote, verify, force) for remote in files]
    return DownloadPlan(client, local_dir=local_dir, revision=revision, commit=commit, files=files, planned=planned)


def apply_plan(
    plan,
    *,
    max_workers=8,
    connections_per_file=4,
    retries=5,
    progress_file=None,
    backoff=1.0,
    clock=time.monotonic,
):
    """Fetch what `plan` says; return (files written, bytes fetched). Raises DownloadFailed after a partial run."""
    client, local_dir, commit = plan.client, plan.local_dir, plan.commit
    progress = Progress(
        client.repo_id,
        commit,
        sum(remote.size for remote in plan.files),
        len(plan.planned),
        progress_file=progress_file,
        clock=clock,
    )
    for planned in plan.skips:
        progress.add_present(planned.remote.size)
        progress.file_done()
    try:
        os.makedirs(local_dir, exist_ok=True)
        ensure_cache_dir(local_dir)
        free = shutil.disk_usage(local_dir).free
        if plan.bytes_to_fetch > free:
            raise DiskFull(
                "%s has %d bytes free, %s needs %d more: free space or pick another local_dir (nothing "
                "was written)" % (local_dir, free, client.label, plan.bytes_to_fetch)
            )
        for planned in plan.skips:
            metadata = read_metadata(local_dir, planned.remote.path)
            if metadata is None or metadata[0] != commit or metadata[1] != planned.remote.etag:
                write_metadata(local_dir, planned.remote.path, commit, planned.remote.etag)
        progress.start()
    except OSError as exc:
        raise client.explain(exc, commit) from exc
    try:
        run_downloads(
            client,
            local_dir,
            commit,
            plan.downloads,
            progress,
            max_workers=max_workers,
            connections_per_file=connections_per_file,
            retries=retries,
            backoff=backoff,
        )
        # Every planned file is in place now, so what is left is from other versions or abandoned runs.
        for stale in leftover_temp_files(local_dir):
            os.unlink(stale)
    except Exception:
        progress.finish("failed")
        raise
    progress.finish("done")
    return len(plan.downloads), progress.bytes_fetched


def download_repo(
    client,
    local_dir,
    *,
    revision="main",
    allow_patterns=None,
    ignore_patterns=None,
    verify="size",
    force=False,
    max_workers=8,
    connections_per_file=4,
    retries=5,
    progress_file=None,
    check_mode=False,
    backoff=1.0,
    clock=time.monotonic,
):
    """Bring local_dir up to `revision` (plan, then apply unless check_mode); return the facts the module reports."""
    started = clock()
    check_can_write(local_dir, progress_file)
    plan = plan_download(
        client,
        local_dir,
        revision=revision,
        allow_patterns=allow_patterns,
        ignore_patterns=ignore_patterns,
        verify=verify,
        force=force,
    )
    result = plan.facts()
    if plan.downloads:
        result["diff"] = plan.diff()
    written, fetched = 0, 0
    if not check_mode:
        written, fetched = apply_plan(
            plan,
            max_workers=max_workers,
            connections_per_file=connections_per_file,
            retries=retries,
            progress_file=progress_file,
            backoff=backoff,
            clock=clock,
        )
    result.update(files_downloaded=written, bytes_downloaded=fetched, changed=bool(plan.downloads))
    return finish_result(result, started, clock)


def finish_result(result, started, clock):
    seconds = max(clock() - started, 1e-6)
    result["seconds"] = round(seconds, 3)
    result["mb_per_s"] = round(result["bytes_downloaded"] / 1e6 / seconds, 1)
    return result
