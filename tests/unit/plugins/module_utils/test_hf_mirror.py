"""Pure logic of hf_mirror_download: patterns, local_dir metadata, part planning, progress, error lines."""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from huggingface_hub._local_folder import read_download_metadata

from ansible_collections.llmops.ragstack.plugins.module_utils import hf_local_dir
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import (
    MirrorError,
    describe_http_error,
    describe_request_exception,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_mirror import (
    RemoteFile,
    check_patterns,
    plan_file,
    select_files,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_transfer import (
    MIN_PART_BYTES,
    PartState,
    Progress,
    plan_parts,
)

pytestmark = pytest.mark.unit

COMMIT = "a" * 40
FILES = [
    RemoteFile("config.json", 10, "1" * 40, False),
    RemoteFile("onnx/model.onnx", 100, "2" * 64, True),
    RemoteFile("onnx/sub/weights.bin", 100, "3" * 64, True),
    RemoteFile("model.safetensors", 100, "4" * 64, True),
]


def paths(files):
    return [remote.path for remote in files]


@pytest.mark.parametrize(
    ("allow", "ignore", "expected"),
    [
        (None, None, ["config.json", "onnx/model.onnx", "onnx/sub/weights.bin", "model.safetensors"]),
        (["*.safetensors", "*.json"], None, ["config.json", "model.safetensors"]),
        (["onnx/"], None, ["onnx/model.onnx", "onnx/sub/weights.bin"]),
        (None, ["onnx/*"], ["config.json", "model.safetensors"]),
        (["onnx/*"], ["*.bin"], ["onnx/model.onnx"]),
    ],
)
def test_patterns_select_like_huggingface_hub(allow, ignore, expected):
    assert paths(select_files(FILES, allow, ignore, "model x")) == expected


def test_patterns_that_select_nothing_fail_with_examples():
    with pytest.raises(MirrorError, match=r"select none of the 4 files of model x \(such as config.json"):
        select_files(FILES, ["*.gguf"], None, "model x")


@pytest.mark.parametrize("pattern", ["", "/abs/*", "../up/*", "a/../b"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(MirrorError, match="bad ignore_patterns entry"):
        check_patterns(["*.json"], [pattern])


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a//b", "a\\b", ""])
def test_repo_paths_that_escape_local_dir_are_refused(path):
    with pytest.raises(hf_local_dir.UnsafeRepoPath):
        hf_local_dir.check_repo_path(path)


def test_git_blob_sha1_is_the_git_object_id(tmp_path):
    target = tmp_path / "hello"
    target.write_bytes(b"hello\n")
    # `printf 'hello\n' | git hash-object --stdin`
    assert hf_local_dir.git_blob_sha1_of(str(target)) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_metadata_we_write_is_what_huggingface_hub_reads(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "modèle.bin").write_bytes(b"x")
    hf_local_dir.write_metadata(str(tmp_path), "sub/modèle.bin", COMMIT, "e" * 64)
    theirs = read_download_metadata(tmp_path, "sub/modèle.bin")
    assert (theirs.commit_hash, theirs.etag) == (COMMIT, "e" * 64)
    assert hf_local_dir.read_metadata(str(tmp_path), "sub/modèle.bin")[:2] == (COMMIT, "e" * 64)


def test_metadata_older_than_the_file_is_not_trusted(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    hf_local_dir.write_metadata(str(tmp_path), "f", COMMIT, "e" * 64)
    later = os.stat(tmp_path / "f").st_mtime + 10
    os.utime(tmp_path / "f", (later, later))
    assert hf_local_dir.read_metadata(str(tmp_path), "f") is None


def write_file_with_metadata(local_dir: Path, remote: RemoteFile, content: bytes, etag: str):
    (local_dir / remote.path).parent.mkdir(parents=True, exist_ok=True)
    (local_dir / remote.path).write_bytes(content)
    hf_local_dir.write_metadata(str(local_dir), remote.path, COMMIT, etag)


def test_plan_trusts_metadata_for_size_and_hashes_for_sha256(tmp_path):
    content = b"0123456789"
    remote = RemoteFile("config.json", 10, "1" * 40, False)
    write_file_with_metadata(tmp_path, remote, content, remote.etag)
    assert plan_file(str(tmp_path), COMMIT, remote, "size", False).action == "skip"
    checked = plan_file(str(tmp_path), COMMIT, remote, "sha256", False)
    assert (checked.action, checked.note) == ("download", "hash differs")


def test_plan_accepts_a_file_without_metadata_when_its_hash_matches(tmp_path):
    content = b"0123456789"
    (tmp_path / "config.json").write_bytes(content)
    remote = RemoteFile("config.json", 10, hf_local_dir.git_blob_sha1_of(str(tmp_path / "config.json")), False)
    planned = plan_file(str(tmp_path), "b" * 40, remote, "size", False)
    assert (planned.action, planned.note) == ("skip", "hash matches")
    assert plan_file(str(tmp_path), COMMIT, remote, "size", True).action == "download"


def test_plan_counts_bytes_an_interrupted_run_left(tmp_path):
    remote = RemoteFile("model.safetensors", 100, "4" * 64, True)
    temp = hf_local_dir.temp_path(str(tmp_path), remote.path, remote.etag)
    os.makedirs(os.path.dirname(temp))
    Path(temp).write_bytes(b"x" * 30)
    planned = plan_file(str(tmp_path), COMMIT, remote, "size", False)
    assert (planned.action, planned.present_bytes) == ("download", 30)


def test_parts_cover_the_file_without_gaps_and_small_files_use_one():
    size = 5 * MIN_PART_BYTES + 3
    parts = plan_parts(size, 4)
    assert len(parts) == 4
    assert parts[0][0] == 0 and parts[-1][1] == size
    assert all(left[1] == right[0] for left, right in pairwise(parts))
    assert plan_parts(MIN_PART_BYTES - 1, 8) == [[0, MIN_PART_BYTES - 1, 0]]
    assert plan_parts(0, 4) == [[0, 0, 0]]


def test_part_state_resumes_from_saved_offsets_or_a_bare_temp_file(tmp_path):
    temp = str(tmp_path / "f.part")
    size = 3 * MIN_PART_BYTES
    state = PartState.load(temp, size, 3)
    state.parts[1][2] = 1000
    Path(temp).write_bytes(b"")
    state.save(size, force=True)
    assert PartState.load(temp, size, 3).done == 1000
    assert PartState.peek_done(temp) == 1000

    os.unlink(hf_local_dir.part_state_path(temp))
    Path(temp).write_bytes(b"y" * 500)
    assert PartState.load(temp, size, 3).parts == [[0, size, 500]]


def test_progress_reports_rate_and_eta_from_fetched_bytes():
    now = [100.0]
    progress = Progress("acme/m", COMMIT, 1000, 2, clock=lambda: now[0])
    progress.add_present(200)
    progress.add_fetched(300)
    now[0] = 110.0
    snapshot = progress.snapshot()
    assert (snapshot["bytes_done"], snapshot["percent"]) == (500, 50.0)
    assert snapshot["rate_bytes_per_s"] == 30
    assert snapshot["eta_seconds"] == 16


def response(status, code="", message="", url="https://mirror/x"):
    return SimpleNamespace(status_code=status, headers={"X-Error-Code": code, "X-Error-Message": message}, url=url)


@pytest.mark.parametrize(
    ("answer", "token", "expected"),
    [
        (response(404, "RevisionNotFound"), False, "revision 'v1' not found in model a/b"),
        (response(401, "RepoNotFound"), False, "not found, or private (HTTP 401)"),
        (response(404, "RepoNotFound"), True, "not found (HTTP 404)"),
        (response(401, "GatedRepo"), False, "is gated or private (HTTP 401)"),
        (response(403, "GatedRepo"), True, "refused the token (HTTP 403"),
        (response(403), False, "is gated or private (HTTP 403)"),
        (response(502), False, "the mirror answered HTTP 502 for https://mirror/x"),
    ],
)
def test_http_errors_become_one_line(answer, token, expected):
    line = describe_http_error(answer, "model a/b", "v1", token)
    assert expected in line
    if answer.status_code in (401, 403):
        assert "token" in line and "no login" in line


def test_tls_failure_through_a_proxy_says_use_proxy_false():
    exc = requests.exceptions.SSLError("certificate verify failed: self-signed certificate in certificate chain")
    line = describe_request_exception(exc, "https://hf-mirror.com", "http://proxy:3128", 30)
    assert "through the proxy http://proxy:3128" in line and "use_proxy: false" in line
    assert "use_proxy" not in describe_request_exception(exc, "https://hf-mirror.com", None, 30)


def test_socks_proxy_from_the_environment_says_use_proxy_false():
    exc = requests.exceptions.InvalidSchema("Missing dependencies for SOCKS support.")
    assert "use_proxy: false" in describe_request_exception(exc, "https://hf-mirror.com", "socks5://p:1080", 30)
