# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resumable, ranged, parallel download of one file, and the progress of a whole repo.

A file is assembled in a temporary file next to huggingface_hub's metadata and renamed into place only
after its size and content hash match, so the final path never holds a partial or corrupt file.

Resume works from what is on disk. With one connection the temporary file's size is the resume offset.
With several connections the file is split into parts written at their own offsets; a small JSON state
file records how far each part got. Data is written before the state that counts it, so after a kill
the state never claims bytes that are not on disk (a killed process loses no completed write()).

Where the bytes come from: the Hub (and mirrors that pass its answers on) answers ``resolve`` of an LFS file
with a redirect to a CDN host and a signed URL that expires (huggingface_hub 2.4.0, ``utils/_http.py``
``_httpx2_follow_hub_redirects_with_backoff``). ``FileLocation`` follows the redirect itself, sends the token
only to the mirror's own origin (as huggingface_hub does, ``file_download.py`` lines 1812-1819), reuses the
signed URL for every part and retry, and resolves again when the CDN refuses it (403: expired), so a file
that outlives its URL continues from the bytes on disk.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from urllib.parse import urljoin, urlsplit

from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import (
    RETRYABLE_STATUS,
    DiskFull,
    MirrorError,
    TransientHTTPError,
    requests,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_local_dir import (
    content_etag_of,
    part_state_path,
)

try:
    import urllib3
except ImportError:
    # Comes with requests; the module reports requests missing (hf_errors.REQUESTS_IMPORT_ERROR).
    urllib3 = None

# Read buffer per connection: what a kill can lose per connection beyond the last saved state.
CHUNK_BYTES = 256 * 1024
# Below this a part is not worth its own connection: the extra request costs more than it gains.
MIN_PART_BYTES = 4 * 1024 * 1024
# A kill loses at most this much of a multi-part download (beyond each connection's read buffer): the
# state is saved after this many seconds or this many bytes, whichever comes first.
STATE_SAVE_INTERVAL = 0.1
STATE_SAVE_BYTES = 4 * 1024 * 1024
PROGRESS_WRITE_INTERVAL = 1.0


REDIRECT_STATUS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
# What a CDN answers to a signed URL that has expired (S3 and CloudFront: 403; some: 401 or 410).
SIGNED_URL_REFUSED_STATUS = (401, 403, 410)
# Fresh signed URLs refused this many times in a row, with no byte moved in between, are not just expired.
MAX_RESOLVES_WITHOUT_PROGRESS = 3


class Aborted(MirrorError):
    """This transfer stopped because another one failed; the other failure is the one to report."""


class RangeNotHonoured(Exception):
    """The server answered a ranged request with the whole file (200), so parts cannot be used."""


class SignedUrlRefused(Exception):
    """The host a redirect led to refused the URL (it expired): resolve the file again."""

    def __init__(self, url, status):
        super().__init__("%s answered HTTP %d" % (without_query(url), status))
        self.url = url
        self.status = status


def origin(url):
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def without_query(url):
    """A URL fit for a message: a signed URL's query string is a credential, and long."""
    return url.split("?", 1)[0]


class FileLocation:
    """Where one file's bytes are fetched from: the mirror's `resolve` URL, or the signed URL it redirects to.

    Redirects are followed here, not by requests, to see where they lead: the token goes to the mirror's
    own origin only, and a signed URL found once is reused by every part and retry until it is refused."""

    def __init__(self, session, url, *, auth_headers, timeout):
        self.session = session
        self.url = url
        self.auth_headers = auth_headers
        self.timeout = timeout
        self.signed_url = None
        self.lock = threading.Lock()

    def _get(self, url, headers):
        if origin(url) == origin(self.url):
            headers = {**headers, **self.auth_headers}
        return self.session.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=False)

    def _resolve(self, headers):
        url = self.url
        for _redirect in range(MAX_REDIRECTS + 1):
            response = self._get(url, headers)
            location = response.headers.get("Location")
            if response.status_code not in REDIRECT_STATUS or not location:
                return response, url
            response.close()
            url = urljoin(url, location)
        raise MirrorError("%s redirected more than %d times" % (self.url, MAX_REDIRECTS))

    def open(self, headers):
        """A streaming response to a GET with `headers`; raises SignedUrlRefused when a signed URL was refused."""
        # One part resolves at a time, so the parts of a file starting together share one signed URL.
        response = None
        with self.lock:
            url = self.signed_url
            if url is None:
                response, url = self._resolve(headers)
                if url != self.url:
                    self.signed_url = url
        if response is None:
            response = self._get(url, headers)
        if url != self.url and response.status_code in SIGNED_URL_REFUSED_STATUS:
            response.close()
            with self.lock:
                if self.signed_url == url:
                    self.signed_url = None
            raise SignedUrlRefused(url, response.status_code)
        return response


def atomic_write_json(path, data):
    staging = path + ".tmp"
    with open(staging, "w") as handle:
        json.dump(data, handle)
    os.replace(staging, path)


class Progress:
    """Bytes done for a repo, shared by all download threads; optionally mirrored to a JSON file."""

    def __init__(self, repo_id, commit, bytes_total, files_total, *, progress_file=None, clock=time.monotonic):
        self.repo_id = repo_id
        self.commit = commit
        self.bytes_total = bytes_total
        self.files_total = files_total
        self.progress_file = progress_file
        self.clock = clock
        self.started = clock()
        self.bytes_done = 0
        self.bytes_fetched = 0
        self.files_done = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.writer = None

    def add_present(self, count):
        """Bytes already on disk (skipped files, resumed parts): done, but not fetched now."""
        with self.lock:
            self.bytes_done += count

    def add_fetched(self, count):
        with self.lock:
            self.bytes_done += count
            self.bytes_fetched += count

    def discard(self, count):
        """Bytes that were counted but must be fetched again (a server that ignored Range)."""
        with self.lock:
            self.bytes_done -= count

    def file_done(self):
        with self.lock:
            self.files_done += 1

    def snapshot(self, state="running"):
        with self.lock:
            elapsed = max(self.clock() - self.started, 1e-6)
            rate = self.bytes_fetched / elapsed
            remaining = max(self.bytes_total - self.bytes_done, 0)
            return {
                "repo_id": self.repo_id,
                "commit": self.commit,
                "state": state,
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "bytes_fetched": self.bytes_fetched,
                "files_done": self.files_done,
                "files_total": self.files_total,
                "percent": round(100.0 * self.bytes_done / self.bytes_total, 1) if self.bytes_total else 100.0,
                "rate_bytes_per_s": int(rate),
                "eta_seconds": int(remaining / rate) if rate > 0 else None,
                "elapsed_seconds": round(elapsed, 1),
                "updated_at": time.time(),
            }

    def write(self, state="running"):
        if self.progress_file:
            atomic_write_json(self.progress_file, self.snapshot(state))

    def start(self):
        if not self.progress_file:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.progress_file)), exist_ok=True)
        self.write()

        def keep_writing():
            while not self.stop_event.wait(PROGRESS_WRITE_INTERVAL):
                self.write()

        self.writer = threading.Thread(target=keep_writing, name="hf-progress", daemon=True)
        self.writer.start()

    def finish(self, state):
        self.stop_event.set()
        if self.writer is not None:
            self.writer.join()
        self.write(state)


def plan_parts(size, connections):
    """Split [0, size) into at most `connections` parts of at least MIN_PART_BYTES: [start, end, done]."""
    if size == 0:
        return [[0, 0, 0]]
    count = max(1, min(connections, size // MIN_PART_BYTES))
    step = -(-size // count)
    return [[start, min(start + step, size), 0] for start in range(0, size, step)]


class PartState:
    """How far each part of a multi-part download got, persisted next to the temporary file."""

    def __init__(self, path, parts):
        self.path = path
        self.parts = parts
        self.lock = threading.Lock()
        self.saved_at = 0.0
        self.saved_done = self.done

    @classmethod
    def load(cls, temp, size, connections):
        """Resume what is on disk, or start over; a bare temporary file is a one-connection download."""
        path = part_state_path(temp)
        try:
            with open(path) as handle:
                saved = json.load(handle)
            if saved["size"] == size and os.path.exists(temp):
                return cls(path, [list(part) for part in saved["parts"]])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if os.path.exists(temp) and not os.path.exists(path):
            on_disk = os.path.getsize(temp)
            if on_disk <= size:
                return cls(path, [[0, size, on_disk]])
        for stale in (temp, path):
            if os.path.exists(stale):
                os.unlink(stale)
        return cls(path, plan_parts(size, connections))

    @staticmethod
    def peek_done(temp):
        """Bytes a previous run left for this file, read without changing anything (for check mode)."""
        try:
            with open(part_state_path(temp)) as handle:
                return sum(part[2] for part in json.load(handle)["parts"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return os.path.getsize(temp) if os.path.exists(temp) else 0

    @property
    def done(self):
        return sum(part[2] for part in self.parts)

    def save(self, size, force=False):
        """Persist the part offsets; a one-part download needs no state (the file size says it all)."""
        if len(self.parts) == 1:
            return
        with self.lock:
            now, done = time.monotonic(), self.done
            unsaved = done - self.saved_done
            if not force and now - self.saved_at < STATE_SAVE_INTERVAL and unsaved < STATE_SAVE_BYTES:
                return
            self.saved_at, self.saved_done = now, done
            atomic_write_json(self.path, {"size": size, "parts": self.parts})

    def remove(self):
        if os.path.exists(self.path):
            os.unlink(self.path)


class FileDownload:
    """Download `url` to `target` through `temp`, resuming, in parallel parts, verified before rename."""

    def __init__(
        self,
        location,
        *,
        target,
        temp,
        size,
        expected_etag,
        is_lfs,
        progress,
        connections=1,
        retries=5,
        backoff=1.0,
        abort=None,
    ):
        self.location = location
        self.url = location.url
        self.target = target
        self.temp = temp
        self.size = size
        self.expected_etag = expected_etag
        self.is_lfs = is_lfs
        self.progress = progress
        self.connections = connections
        self.retries = retries
        self.backoff = backoff
        self.abort = abort or threading.Event()
        self.parts_stop = threading.Event()

    def run(self):
        os.makedirs(os.path.dirname(self.temp), exist_ok=True)
        state = PartState.load(self.temp, self.size, self.connections)
        self.progress.add_present(state.done)
        try:
            try:
                self._fetch_parts(state)
            except RangeNotHonoured:
                self.progress.discard(state.done)
                state.remove()
                state = PartState(state.path, [[0, self.size, 0]])
                self._fetch_parts(state)
            self._verify_and_place(state)
        except DiskFull:
            self._remove_temp(state)
            raise

    def _fetch_parts(self, state):
        self.parts_stop.clear()
        descriptor = os.open(self.temp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            pending = [part for part in state.parts if part[0] + part[2] < part[1]]
            if len(pending) <= 1:
                for part in pending:
                    self._fetch_part(descriptor, part, state, single=len(state.parts) == 1)
            else:
                self._fetch_in_threads(descriptor, pending, state)
        finally:
            os.close(descriptor)
        state.save(self.size, force=True)

    def _fetch_in_threads(self, descriptor, pending, state):
        failures = []

        def worker(part):
            try:
                self._fetch_part(descriptor, part, state, single=False)
            except Exception as exc:
                failures.append(exc)
                # Stops this file's other parts only: a server that ignores Range is retried as one part,
                # and other files go on unless the whole run fails.
                self.parts_stop.set()

        threads = [threading.Thread(target=worker, args=(part,), daemon=True) for part in pending]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise next((exc for exc in failures if not isinstance(exc, Aborted)), failures[0])

    def _stopped(self):
        return self.abort.is_set() or self.parts_stop.is_set()

    def _fetch_part(self, descriptor, part, state, single):
        attempt = 0
        refused = 0
        while part[0] + part[2] < part[1]:
            if self._stopped():
                raise Aborted("download of %s stopped because another transfer failed" % self.url)
            done_before = part[2]
            try:
                self._stream_part(descriptor, part, state, single)
            except SignedUrlRefused as exc:
                # An expired signed URL: the next attempt resolves the file again and goes on from part[2].
                refused = 0 if part[2] > done_before else refused + 1
                if refused > MAX_RESOLVES_WITHOUT_PROGRESS:
                    raise MirrorError(
                        "%s refused %d fresh signed URLs in a row that %s redirected to (last: %s): the URLs "
                        "expire before use; check this host's clock, or try another endpoint"
                        % (urlsplit(exc.url).netloc, refused, self.url, exc)
                    ) from None
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
                TransientHTTPError,
            ) as exc:
                attempt += 1
                if attempt > self.retries:
                    raise exc
                time.sleep(self.backoff * 2 ** (attempt - 1))

    def _stream_part(self, descriptor, part, state, single):
        start, end, done = part
        offset = start + done
        # identity: the bytes on disk must be the file's, never a compressed transfer encoding of them.
        headers = {"Range": "bytes=%d-%d" % (offset, end - 1), "Accept-Encoding": "identity"}
        with self.location.open(headers) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise TransientHTTPError(response.status_code, self.url)
            response.raise_for_status()
            if response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(
                "bytes %d-" % offset
            ):
                raise MirrorError(
                    "%s answered Range bytes=%d- with Content-Range %r"
                    % (self.url, offset, response.headers.get("Content-Range"))
                )
            if response.status_code == 200:
                if not single:
                    raise RangeNotHonoured()
                # The whole file again from byte 0: what we had counts for nothing.
                self.progress.discard(part[2])
                part[2] = 0
                offset = 0
            # readinto() a reused buffer: about a third faster than iter_content(), which allocates per chunk.
            buffer = bytearray(CHUNK_BYTES)
            view = memoryview(buffer)
            while not self._stopped():
                try:
                    count = response.raw.readinto(buffer)
                except urllib3.exceptions.HTTPError as exc:
                    raise requests.exceptions.ConnectionError(exc) from exc
                if not count:
                    break
                self._write(descriptor, view[:count], offset)
                offset += count
                part[2] += count
                self.progress.add_fetched(count)
                state.save(self.size)
        if not self._stopped() and part[0] + part[2] < part[1]:
            raise requests.exceptions.ConnectionError("connection closed at byte %d of %d" % (offset, end))

    def _write(self, descriptor, chunk, offset):
        try:
            os.pwrite(descriptor, chunk, offset)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.abort.set()
                raise DiskFull(
                    "no space left on the device of %s while writing %s: the partial file was "
                    "removed; free %d bytes there and run again"
                    % (os.path.dirname(self.target), os.path.basename(self.target), self.size)
                ) from exc
            raise

    def _verify_and_place(self, state):
        on_disk = os.path.getsize(self.temp)
        if on_disk != self.size:
            self._remove_temp(state)
            raise MirrorError(
                "%s: got %d bytes, the mirror's listing says %d; run again" % (self.url, on_disk, self.size)
            )
        actual = content_etag_of(self.temp, self.is_lfs)
        if actual != self.expected_etag:
            self._remove_temp(state)
            raise MirrorError(
                "%s: content hash %s does not match the repo's %s %s; the mirror served other "
                "bytes (a stale mirror cache?); run again or try another endpoint"
                % (self.url, actual, "sha256" if self.is_lfs else "git oid", self.expected_etag)
            )
        os.makedirs(os.path.dirname(self.target), exist_ok=True)
        os.replace(self.temp, self.target)
        state.remove()

    def _remove_temp(self, state):
        state.remove()
        if os.path.exists(self.temp):
            os.unlink(self.temp)
