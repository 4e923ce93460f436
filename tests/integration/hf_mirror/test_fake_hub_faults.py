"""hf_mirror_download against FakeHub: resume after kill -9 and dropped connections, verification, errors."""

from __future__ import annotations

import json
import os
import signal
import time
from types import SimpleNamespace

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import hf_transfer
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import DiskFull
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_mirror import MirrorClient, download_repo
from testkit.hf_mirror.intercepting_proxy import InterceptingProxy
from testkit.hf_mirror.repos import BIG_FILE, BIG_SIZE, assert_matches, fixture_files, tree_snapshot
from testkit.support import free_port

pytestmark = pytest.mark.integration

REPO_ID = "acme/fixture-model"


@pytest.fixture
def hub_repo(fake_hub):
    files = fixture_files()
    fake_hub.commit(REPO_ID, files)
    return fake_hub, files


def module_args(hub, local_dir, **options):
    return {"repo_id": REPO_ID, "endpoint": hub.url, "local_dir": str(local_dir), "retries": 2, **options}


def temp_files(local_dir):
    download_dir = local_dir / ".cache" / "huggingface" / "download"
    return sorted(path.name for path in download_dir.rglob("*") if path.name.endswith((".part", ".part.json")))


def wait_for_progress(progress_file, fraction, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            progress = json.loads(progress_file.read_text())
        except (OSError, ValueError):
            progress = None
        if progress and progress["bytes_done"] >= fraction * progress["bytes_total"]:
            return progress
        time.sleep(0.05)
    raise AssertionError("download never reached %d %%" % (100 * fraction))


def test_check_mode_writes_nothing_and_reports_bytes(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir), check_mode=True)
    assert result["changed"] is True
    assert result["files_to_download"] == len(files)
    assert result["bytes_to_download"] == sum(len(content) for content in files.values())
    assert result["files_downloaded"] == 0
    # The plan as a diff: every file to fetch, absent on disk, and the bytes.
    assert result["diff"]["before"].count(": absent (missing)\n") == len(files)
    assert result["diff"]["after"].endswith(
        "# %d file(s) to fetch, %d bytes from %s\n" % (len(files), result["bytes_to_download"], hub.url)
    )
    assert not local_dir.exists()
    assert not any(path.endswith("/resolve") or "/resolve/" in path for _method, path in hub.requests)


def test_first_download_then_noop(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    local_dir = tmp_path / "model"
    first = run_module(module_args(hub, local_dir, allow_patterns=None))
    assert first["changed"] is True, first
    assert first["bytes_downloaded"] == sum(len(content) for content in files.values())
    assert_matches(local_dir, files)
    assert temp_files(local_dir) == []
    before = tree_snapshot(local_dir)
    hub.reset_counters()
    again = run_module(module_args(hub, local_dir))
    assert again["changed"] is False
    assert again["files_skipped"] == len(files)
    assert sum(hub.bytes_served.values()) == 0
    assert tree_snapshot(local_dir) == before


# With parts, a kill also loses what each connection had read but not yet written (up to 256 KiB) and up to
# 0.1 s of unsaved offsets per part: a fixed amount, a larger share of this 12 MiB file than of a real one.
@pytest.mark.parametrize(("connections", "max_refetch_share"), [(1, 0.05), (4, 0.10)])
def test_kill_9_mid_file_resumes_from_disk(hub_repo, run_module, tmp_path, connections, max_refetch_share):
    hub, _files = hub_repo
    local_dir, progress_file = tmp_path / "model", tmp_path / "progress.json"
    args = module_args(
        hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=connections, progress_file=str(progress_file)
    )
    hub.throttle_bytes_per_s = 3 * 1024 * 1024 // connections
    process = run_module.start(args)
    wait_for_progress(progress_file, 0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert not (local_dir / BIG_FILE).exists(), "a partial file reached its final path"
    served_before_kill = hub.bytes_served[BIG_FILE]

    hub.throttle_bytes_per_s = None
    result = run_module(args)
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == hub_repo[1][BIG_FILE]
    refetched = served_before_kill + result["bytes_downloaded"] - BIG_SIZE
    assert result["bytes_downloaded"] < 0.6 * BIG_SIZE
    assert refetched < max_refetch_share * BIG_SIZE, "re-fetched %d of %d bytes" % (refetched, BIG_SIZE)
    if connections > 1:
        assert sum(1 for method, path in hub.requests if method == "GET" and path.endswith(BIG_FILE)) >= 3
    assert temp_files(local_dir) == []


def test_dropped_connection_is_resumed_within_the_run(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    local_dir = tmp_path / "model"
    hub.drop_after[BIG_FILE] = BIG_SIZE // 3
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=1))
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    assert hub.bytes_served[BIG_FILE] == BIG_SIZE
    ranges = [path for method, path in hub.requests if method == "GET" and path.endswith(BIG_FILE)]
    assert len(ranges) == 2


def test_server_ignoring_range_gets_one_whole_file_download(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    hub.honour_range = False
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=4))
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    gets = [path for method, path in hub.requests if method == "GET" and path.endswith(BIG_FILE)]
    # Up to three ranged parts start in parallel (how many before the first answer shows that Range
    # is ignored varies), then one retry as a single part fetches the file whole.
    assert 2 <= len(gets) <= 4
    assert result["bytes_downloaded"] == BIG_SIZE


def test_corruption_with_unchanged_mtime_is_caught_by_sha256_only(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    local_dir = tmp_path / "model"
    run_module(module_args(hub, local_dir))
    target = local_dir / BIG_FILE
    stat = target.stat()
    with open(target, "r+b") as handle:
        handle.seek(BIG_SIZE // 2)
        handle.write(b"\0corrupt\0")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    trusting = run_module(module_args(hub, local_dir))
    assert trusting["changed"] is False
    checking = run_module(module_args(hub, local_dir, verify="sha256"))
    assert checking["changed"] is True
    assert [entry["path"] for entry in checking["files"] if entry["action"] == "download"] == [BIG_FILE]
    assert [entry["reason"] for entry in checking["files"] if entry["action"] == "download"] == ["hash differs"]
    assert target.read_bytes() == files[BIG_FILE]


def test_new_commit_fetches_only_what_changed(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    local_dir = tmp_path / "model"
    run_module(module_args(hub, local_dir))
    changed_files = {**files, "config.json": b'{"model_type": "bert", "hidden_size": 2048}\n', "new/file.txt": b"x"}
    sha = hub.commit(REPO_ID, changed_files)
    hub.reset_counters()
    result = run_module(module_args(hub, local_dir))
    assert result["commit"] == sha
    assert sorted(hub.bytes_served) == ["config.json", "new/file.txt"]
    assert_matches(local_dir, changed_files)


def test_proxies_in_environment_are_ignored_unless_asked(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    dead = "http://127.0.0.1:%d" % free_port()
    env = {"http_proxy": dead, "HTTPS_PROXY": dead, "ALL_PROXY": "socks5://127.0.0.1:%d" % free_port()}
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir), env=env)
    assert result["changed"] is True, result
    assert result["proxy_variables_ignored"] == ["ALL_PROXY", "HTTPS_PROXY", "http_proxy"]
    assert_matches(local_dir, files)

    through_proxy = run_module(module_args(hub, tmp_path / "other", use_proxy=True), env=env)
    assert through_proxy["failed"] is True
    assert "use_proxy: false" in through_proxy["msg"]


def assert_failed_with_one_line(result, expected, local_dir):
    assert result["failed"] is True
    assert expected in result["msg"], result["msg"]
    assert "\n" not in result["msg"]
    assert not (local_dir / BIG_FILE).exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"repo_id": "acme/missing"}, "not found, or private (HTTP 401)"),
        ({"repo_id": "acme/missing", "token": "hf_x"}, "not found (HTTP 404)"),
        ({"revision": "v9"}, "revision 'v9' not found"),
        ({"allow_patterns": ["*.gguf"]}, "select none of the"),
        ({"allow_patterns": ["../*"]}, "bad allow_patterns entry"),
        ({"endpoint": "http://127.0.0.1:%d" % free_port()}, "is unreachable (proxies ignored"),
        ({"endpoint": "https://127.0.0.1:{port}"}, "TLS failure reaching"),
    ],
)
def test_errors_are_one_clear_line(hub_repo, run_module, tmp_path, options, expected):
    hub, _files = hub_repo
    args = module_args(hub, tmp_path / "model", retries=1, **options)
    args["endpoint"] = args["endpoint"].format(port=hub.server.server_address[1])
    assert_failed_with_one_line(run_module(args), expected, tmp_path / "model")


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "is gated or private (HTTP 401)"), ("hf_wrong", "refused the token (HTTP 403")],
)
def test_gated_repo_without_a_granted_token_says_the_mirror_has_no_login(
    hub_repo, run_module, tmp_path, token, expected
):
    hub, _files = hub_repo
    hub.gate(REPO_ID, "hf_granted")
    result = run_module(module_args(hub, tmp_path / "model", token=token))
    assert_failed_with_one_line(result, expected, tmp_path / "model")
    assert "`token`" in result["msg"] and "no login" in result["msg"]


def test_server_errors_are_retried_then_reported(hub_repo, run_module, tmp_path):
    hub, _files = hub_repo
    hub.resolve_status = 500
    result = run_module(module_args(hub, tmp_path / "model", retries=1, allow_patterns=["config.json"]))
    assert_failed_with_one_line(result, "the mirror answered HTTP 500", tmp_path / "model")
    assert sum(1 for method, path in hub.requests if method == "GET" and path.endswith("/config.json")) == 2


def test_gated_repo_downloads_with_its_token(hub_repo, run_module, tmp_path):
    hub, files = hub_repo
    hub.gate(REPO_ID, "hf_granted")
    result = run_module(module_args(hub, tmp_path / "model", token="hf_granted"))
    assert result["changed"] is True, result
    assert "hf_granted" not in json.dumps(result)
    assert_matches(tmp_path / "model", files)


def test_disk_full_before_start_writes_nothing(hub_repo, tmp_path, monkeypatch):
    hub, _files = hub_repo
    local_dir = tmp_path / "model"
    monkeypatch.setattr("shutil.disk_usage", lambda _path: SimpleNamespace(total=10**6, used=10**6 - 1000, free=1000))
    with pytest.raises(DiskFull, match="bytes free"):
        download_repo(MirrorClient(hub.url, "model", REPO_ID), str(local_dir))
    assert tree_snapshot(local_dir) == {}


def test_disk_full_mid_file_leaves_no_partial_file(hub_repo, tmp_path, monkeypatch):
    hub, _files = hub_repo
    local_dir = tmp_path / "model"
    real_pwrite = os.pwrite
    written = []

    def pwrite_until_full(descriptor, data, offset):
        if sum(written) > BIG_SIZE // 2:
            raise OSError(28, "No space left on device")
        written.append(len(data))
        return real_pwrite(descriptor, data, offset)

    monkeypatch.setattr(hf_transfer.os, "pwrite", pwrite_until_full)
    with pytest.raises(DiskFull, match="no space left"):
        download_repo(MirrorClient(hub.url, "model", REPO_ID), str(local_dir), allow_patterns=[BIG_FILE], backoff=0)
    assert not (local_dir / BIG_FILE).exists()
    assert temp_files(local_dir) == []


@pytest.fixture
def intercepting_proxy(tmp_path):
    proxy = InterceptingProxy(tmp_path)
    yield proxy
    proxy.stop()


def test_tls_broken_by_an_intercepting_proxy_says_use_proxy_false(intercepting_proxy, run_module, tmp_path):
    # The proxy never forwards, so this name is never resolved nor reached.
    args = {
        "repo_id": REPO_ID,
        "endpoint": "https://hf-mirror.example",
        "local_dir": str(tmp_path / "model"),
        "use_proxy": True,
        "retries": 0,
    }
    result = run_module(args, env={"https_proxy": intercepting_proxy.url})
    assert [line.split()[:2] for line in intercepting_proxy.connects] == [["CONNECT", "hf-mirror.example:443"]]
    assert_failed_with_one_line(result, "TLS failure reaching https://hf-mirror.example through the proxy", tmp_path)
    assert "set use_proxy: false" in result["msg"]
