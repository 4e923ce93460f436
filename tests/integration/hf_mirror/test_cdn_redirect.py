"""hf_mirror_download on the Hub's real serving path: LFS files redirected to a CDN host with signed URLs
that expire (FakeHub(cdn=True)); the token stays with the mirror."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from testkit.hf_mirror.repos import BIG_FILE, BIG_SIZE, assert_matches, fixture_files

pytestmark = pytest.mark.integration

REPO_ID = "acme/cdn-model"
TOKEN = "hf_granted_cdn"


@pytest.fixture
def cdn_repo(cdn_hub):
    files = fixture_files(small_count=5)
    cdn_hub.commit(REPO_ID, files)
    return cdn_hub, files


def module_args(hub, local_dir, **options):
    return {"repo_id": REPO_ID, "endpoint": hub.url, "local_dir": str(local_dir), "retries": 2, **options}


def resolves_of(hub, path):
    return [request for request in hub.requests if request[0] == "GET" and request[1].endswith("/" + path)]


def test_lfs_files_come_from_the_cdn_without_the_token(cdn_repo, run_module, tmp_path):
    hub, files = cdn_repo
    hub.gate(REPO_ID, TOKEN)
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir, token=TOKEN))
    assert result["changed"] is True, result
    assert_matches(local_dir, files)
    lfs_paths = {path for path in files if path.endswith(".safetensors") or len(files[path]) >= 1024 * 1024}
    assert {hub.cdn_blobs[etag][0] for etag in hub.cdn_blobs} == lfs_paths
    assert hub.cdn_requests and all(status == 200 for _method, _path, status in hub.cdn_requests)
    assert set(hub.cdn_authorizations) == {""}, "the token was sent to the CDN host"
    # Parts and retries reuse the signed URL: one resolve per LFS file, whatever the connections.
    assert len(resolves_of(hub, BIG_FILE)) == 1
    assert TOKEN not in str(result)


def test_check_mode_asks_nothing_of_the_cdn(cdn_repo, run_module, tmp_path):
    hub, files = cdn_repo
    result = run_module(module_args(hub, tmp_path / "model"), check_mode=True)
    assert result["changed"] is True
    assert result["files_to_download"] == len(files)
    assert hub.cdn_requests == []


@pytest.mark.parametrize("connections", [1, 4])
def test_signed_url_expiring_mid_file_is_resolved_again_and_continues(cdn_repo, run_module, tmp_path, connections):
    hub, files = cdn_repo
    # The transfer outlives the URL: 4 MiB at 4 MiB/s, then the connection drops (as a long transfer's does);
    # the retry with the old URL gets 403 "Request has expired", the module resolves again and goes on.
    hub.signed_url_ttl = 0.5
    hub.throttle_bytes_per_s = 4 * 1024 * 1024
    hub.drop_after[BIG_FILE] = BIG_SIZE // 3
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=connections))
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    statuses = [status for _method, _path, status in hub.cdn_requests]
    assert 403 in statuses, statuses
    assert len(resolves_of(hub, BIG_FILE)) >= 2
    # Continued from the bytes on disk: nothing served twice.
    assert hub.bytes_served[BIG_FILE] == BIG_SIZE
    assert result["bytes_downloaded"] == BIG_SIZE


def test_cdn_ignoring_range_falls_back_to_one_whole_file(cdn_repo, run_module, tmp_path):
    hub, files = cdn_repo
    hub.cdn_honour_range = False
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=4))
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    assert result["bytes_downloaded"] == BIG_SIZE


def test_cdn_ignoring_range_after_a_drop_starts_the_file_over(cdn_repo, run_module, tmp_path):
    hub, files = cdn_repo
    hub.cdn_honour_range = False
    hub.drop_after[BIG_FILE] = BIG_SIZE // 2
    local_dir = tmp_path / "model"
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=1))
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    # The half before the drop counts for nothing once the CDN answers the resumed request with byte 0.
    assert result["bytes_downloaded"] == BIG_SIZE + BIG_SIZE // 2


def test_cdn_refusing_every_fresh_url_fails_in_bounded_time(cdn_repo, run_module, tmp_path):
    hub, _files = cdn_repo
    hub.signed_url_ttl = -60  # every URL arrives expired: a skewed clock, or a CDN that refuses this host
    local_dir = tmp_path / "model"
    started = time.monotonic()
    result = run_module(module_args(hub, local_dir, allow_patterns=[BIG_FILE]))
    assert time.monotonic() - started < 30
    assert result["failed"] is True
    assert "refused 4 fresh signed URLs in a row" in result["msg"], result["msg"]
    assert "Signature=" not in result["msg"] and "\n" not in result["msg"]
    assert result["changed"] is False
    assert not (local_dir / BIG_FILE).exists()


def test_kill_9_mid_file_resumes_from_disk_with_a_fresh_signed_url(cdn_repo, run_module, tmp_path):
    hub, files = cdn_repo
    local_dir, progress_file = tmp_path / "model", tmp_path / "progress.json"
    args = module_args(
        hub, local_dir, allow_patterns=[BIG_FILE], connections_per_file=1, progress_file=str(progress_file)
    )
    hub.signed_url_ttl = 1.0  # the URL the killed run had is dead by the time the next run starts
    hub.throttle_bytes_per_s = 3 * 1024 * 1024
    process = run_module.start(args)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if json.loads(progress_file.read_text())["bytes_done"] >= BIG_SIZE // 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    served_before_kill = hub.bytes_served[BIG_FILE]
    time.sleep(1.0)
    hub.throttle_bytes_per_s = None
    resolves_before = len(resolves_of(hub, BIG_FILE))
    result = run_module(args)
    assert result["changed"] is True, result
    assert (local_dir / BIG_FILE).read_bytes() == files[BIG_FILE]
    refetched = served_before_kill + result["bytes_downloaded"] - BIG_SIZE
    assert result["bytes_downloaded"] < 0.6 * BIG_SIZE
    assert refetched < 0.05 * BIG_SIZE, "re-fetched %d of %d bytes" % (refetched, BIG_SIZE)
    # The resumed run resolved once, for a fresh URL (a loaded machine may have made the killed run
    # resolve again too, when its own URL expired before its first request).
    assert len(resolves_of(hub, BIG_FILE)) == resolves_before + 1
