"""hf_mirror_download against a real mirror (olah serving a local git repo) and the real huggingface_hub."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import snapshot_download

from testkit.hf_mirror.repos import assert_matches, fixture_files, tree_snapshot
from testkit.support import ansible_adhoc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def olah_repo(olah):
    repo = olah.new_repo("acme/olah-model")
    files = fixture_files(seed=7, small_count=20)
    sha = repo.commit(files)
    return olah, repo, files, sha


def run_through_ansible(args: dict, check: bool = False) -> dict:
    return ansible_adhoc("hf_mirror_download", args, *(["--check"] if check else []))


def test_idempotence_quartet_through_ansible(olah_repo, tmp_path):
    olah, _repo, files, sha = olah_repo
    args = {"repo_id": "acme/olah-model", "endpoint": olah.url, "local_dir": str(tmp_path / "model")}

    would = run_through_ansible(args, check=True)
    assert would["changed"] is True, json.dumps(would)
    assert would["files_to_download"] == len(files)
    assert not (tmp_path / "model").exists()

    first = run_through_ansible(args)
    assert first["changed"] is True, json.dumps(first)
    assert first["commit"] == sha
    assert_matches(tmp_path / "model", files)

    nothing_to_do = run_through_ansible(args, check=True)
    assert nothing_to_do["changed"] is False
    assert "diff" not in nothing_to_do
    again = run_through_ansible(args)
    assert again["changed"] is False
    assert again["files_skipped"] == len(files)


def test_huggingface_hub_sees_the_folder_as_up_to_date(olah_repo, run_module, tmp_path):
    olah, _repo, files, _sha = olah_repo
    local_dir = tmp_path / "model"
    result = run_module({"repo_id": "acme/olah-model", "endpoint": olah.url, "local_dir": str(local_dir)})
    assert result["changed"] is True, result
    before = tree_snapshot(local_dir)

    plan = snapshot_download("acme/olah-model", local_dir=local_dir, endpoint=olah.url, dry_run=True)
    assert len(plan) == len(files)
    assert [info.filename for info in plan if info.will_download] == []
    snapshot_download("acme/olah-model", local_dir=local_dir, endpoint=olah.url)
    assert tree_snapshot(local_dir) == before


def test_folder_made_by_hf_download_is_accepted(olah_repo, run_module, tmp_path):
    olah, _repo, files, _sha = olah_repo
    local_dir = tmp_path / "by-hf"
    snapshot_download("acme/olah-model", local_dir=local_dir, endpoint=olah.url)
    before = tree_snapshot(local_dir)
    result = run_module({"repo_id": "acme/olah-model", "endpoint": olah.url, "local_dir": str(local_dir)})
    assert result["changed"] is False, result
    assert {entry["reason"] for entry in result["files"]} == {"metadata"}
    assert result["bytes_downloaded"] == 0
    assert tree_snapshot(local_dir) == before
    assert_matches(local_dir, files)


def test_new_commit_on_the_mirror_is_picked_up(olah, run_module, tmp_path):
    repo = olah.new_repo("acme/olah-evolving")
    files = fixture_files(seed=11, small_count=5)
    repo.commit(files)
    args = {"repo_id": "acme/olah-evolving", "endpoint": olah.url, "local_dir": str(tmp_path / "model")}
    assert run_module(args)["changed"] is True

    updated = {name: content for name, content in files.items() if name != "onnx/model.onnx"}
    updated["config.json"] = b'{"model_type": "bert", "hidden_size": 4096}\n'
    updated["README.md"] = b"# evolving\n"
    new_sha = repo.commit(updated, "update config")
    result = run_module(args)
    assert result["changed"] is True
    assert result["commit"] == new_sha
    assert sorted(entry["path"] for entry in result["files"] if entry["action"] == "download") == [
        "README.md",
        "config.json",
    ]
    # A file the new commit dropped stays on disk: the module only adds and replaces, like `hf download`.
    assert (tmp_path / "model" / "onnx" / "model.onnx").exists()
    assert run_module(args)["changed"] is False
