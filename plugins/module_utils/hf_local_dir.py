# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The on-disk layout of a huggingface_hub ``local_dir``, read and written without importing huggingface_hub.

huggingface_hub (``_local_folder.py``) keeps, for each downloaded file ``{path}``, a metadata file
``{local_dir}/.cache/huggingface/download/{path}.metadata`` of three lines: the commit sha, the etag
(the sha256 of an LFS file, the git blob sha1 of any other file) and a Unix timestamp. It trusts the
file without asking the Hub when its mtime is at most one second newer than that timestamp and the
commit matches. Writing the same file makes our downloads count as up to date for ``hf download``,
``snapshot_download(local_dir=...)`` and transformers, and reading it lets us accept folders they made.
"""

from __future__ import annotations

import hashlib
import os
import time

DOWNLOAD_DIR = os.path.join(".cache", "huggingface", "download")
# Suffixes of our own temporary files; distinct from huggingface_hub's `.incomplete` files.
PART_SUFFIX = ".part"
PART_STATE_SUFFIX = ".part.json"
# huggingface_hub allows this much slack between the file's mtime and the metadata timestamp.
MTIME_SLACK_SECONDS = 1
HASH_CHUNK = 8 * 1024 * 1024


class UnsafeRepoPath(Exception):
    pass


def check_repo_path(path):
    """Refuse repo paths that would land outside local_dir (a malicious tree listing)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or ".." in parts or "" in parts:
        raise UnsafeRepoPath("refusing repo file path %r: it would be written outside local_dir" % path)


def file_path(local_dir, path):
    return os.path.join(local_dir, *path.split("/"))


def metadata_path(local_dir, path):
    return os.path.join(local_dir, DOWNLOAD_DIR, *path.split("/")) + ".metadata"


def temp_path(local_dir, path, etag):
    """Where a file is assembled before its atomic rename; the etag in the name keeps versions apart."""
    return os.path.join(local_dir, DOWNLOAD_DIR, *path.split("/")) + "." + etag + PART_SUFFIX


def part_state_path(temp):
    """The offsets of a multi-connection download in progress, kept beside its temporary file."""
    return temp + ".json"


def read_metadata(local_dir, path):
    """Return (commit, etag, timestamp) when huggingface_hub would trust the file, else None."""
    try:
        with open(metadata_path(local_dir, path)) as handle:
            commit, etag, timestamp = handle.read().split("\n")[:3]
        timestamp = float(timestamp)
        mtime = os.stat(file_path(local_dir, path)).st_mtime
    except (OSError, ValueError):
        return None
    if mtime - MTIME_SLACK_SECONDS > timestamp:
        return None
    return commit, etag, timestamp


def write_metadata(local_dir, path, commit, etag):
    target = metadata_path(local_dir, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = target + ".tmp"
    with open(staging, "w") as handle:
        handle.write("%s\n%s\n%s\n" % (commit, etag, time.time()))
    os.replace(staging, target)


def ensure_cache_dir(local_dir):
    """Create `.cache/huggingface` with the .gitignore huggingface_hub puts there, so git ignores it."""
    cache_dir = os.path.join(local_dir, ".cache", "huggingface")
    os.makedirs(os.path.join(cache_dir, "download"), exist_ok=True)
    gitignore = os.path.join(cache_dir, ".gitignore")
    if not os.path.exists(gitignore):
        with open(gitignore, "w") as handle:
            handle.write("*")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1_of(path):
    """The git object id of a file's content: what the Hub reports as `oid` and ETag of non-LFS files."""
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_etag_of(path, is_lfs):
    return sha256_of(path) if is_lfs else git_blob_sha1_of(path)


def leftover_temp_files(local_dir):
    """Our temporary files under local_dir (not huggingface_hub's `.incomplete` ones)."""
    found = []
    for folder, _dirs, names in os.walk(os.path.join(local_dir, DOWNLOAD_DIR)):
        found.extend(
            os.path.join(folder, name)
            for name in names
            if name.endswith(PART_SUFFIX) or name.endswith(PART_STATE_SUFFIX)
        )
    return found
