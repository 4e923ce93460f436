"""Fixture repos, generated: the shapes real model repos have, at a size a test can move in a second.

Nested folders, a non-ASCII file name, an empty file, an LFS file over 10 MB (over 8 MiB, so it is fetched in ranged
parts), and enough small files that a tree listing spans several pages.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

from testkit.hf_mirror.fake_hub import is_lfs

BIG_FILE = "model.safetensors"
BIG_SIZE = 12 * 1024 * 1024
UNICODE_FILE = "docs/modèle 模型.md"


def fixture_files(seed: int = 3, small_count: int = 60, big_size: int = BIG_SIZE) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "config.json": b'{"model_type": "bert", "hidden_size": 1024}\n',
        "tokenizer/special/tokens_map.json": b'{"cls": "[CLS]"}\n',
        UNICODE_FILE: "Un modèle, 一个模型.\n".encode(),
        BIG_FILE: rng.randbytes(big_size),
        "onnx/model.onnx": rng.randbytes(2 * 1024 * 1024),
        "src/__init__.py": b"",
    }
    # Small files are text, as in real repos (olah 0.5.4 fails on a binary non-LFS file of 121-149 bytes,
    # which it mistakes for a possible LFS pointer and decodes as UTF-8).
    for index in range(small_count):
        files["shards/part-%03d.txt" % index] = rng.randbytes(rng.randrange(5, 2000)).hex().encode()
    return files


class GitMirrorRepo:
    """A git repo laid out as olah's `mirrors-path` expects: {root}/{models|datasets}/{org}/{name}.

    LFS files are committed as LFS pointers with their content under .git/lfs/objects/, which is where
    olah's offline mirror reads it from.
    """

    def __init__(self, root: Path, repo_id: str, repo_type: str = "models"):
        self.path = root / repo_type / repo_id
        self.path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=fixture", "-c", "user.email=fixture@example.invalid", *args],
            cwd=self.path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def commit(self, files: dict[str, bytes], message: str = "fixture") -> str:
        """Make the work tree exactly `files` and commit it; returns the commit sha."""
        for tracked in self.git("ls-files", "-z").split("\0"):
            if tracked:
                (self.path / tracked).unlink()
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_lfs(name, content):
                oid = hashlib.sha256(content).hexdigest()
                lfs_object = self.path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
                lfs_object.parent.mkdir(parents=True, exist_ok=True)
                lfs_object.write_bytes(content)
                pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (oid, len(content))
                target.write_text(pointer)
            else:
                target.write_bytes(content)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def tree_snapshot(local_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file outside .cache with its size and mtime in ns: equal snapshots mean nothing was rewritten."""
    snapshot = {}
    for folder, dirs, names in os.walk(local_dir):
        dirs[:] = [name for name in dirs if name != ".cache"]
        for name in names:
            full = Path(folder) / name
            stat = full.stat()
            snapshot[str(full.relative_to(local_dir))] = (stat.st_size, stat.st_mtime_ns)
    return snapshot


def assert_matches(local_dir: Path, files: dict[str, bytes]) -> None:
    on_disk = {path: (local_dir / path).read_bytes() for path in tree_snapshot(local_dir)}
    assert sorted(on_disk) == sorted(files)
    for path, content in files.items():
        assert on_disk[path] == content, path
