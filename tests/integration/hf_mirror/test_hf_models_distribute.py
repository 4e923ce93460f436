"""The hf_models role with hf_models_distribute_from: the controller downloads once from a mirror on its
loopback and rsync copies each model folder to the lab's GPU-host containers, which never ask the mirror."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter

import pytest

from testkit.hf_mirror.repos import fixture_files
from testkit.support import lab_playbook, report, run_tool

pytestmark = pytest.mark.lab

HOSTS = ("ragstack-lab-gpu-1", "ragstack-lab-gpu-2", "ragstack-lab-gpu-3")
REPO_ID = "acme/dist-model"
# Files of a copy with their sha256 and mtime, metadata included, as the lab host's Python sees them.
LIST_FILES = """
import hashlib, json, os, sys
root = sys.argv[1]
found = {}
for folder, _, names in os.walk(root):
    for name in names:
        full = os.path.join(folder, name)
        with open(full, "rb") as handle:
            found[os.path.relpath(full, root)] = [hashlib.sha256(handle.read()).hexdigest(), os.stat(full).st_mtime]
print(json.dumps(found))
"""


def in_container(host, *argv):
    return subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True, check=False)


def files_on(host, local_dir):
    proc = in_container(host, "python3", "-c", LIST_FILES, local_dir)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def recap(proc):
    """changed= per host of the play recap."""
    return {host: int(changed) for host, changed in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)}


@pytest.fixture
def lab_root(lab_image, tmp_path):
    running = subprocess.run(
        ["docker", "ps", "--filter", "label=io.llmops.ragstack.lab=1", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not set(HOSTS) <= set(running):
        pytest.fail(f"lab hosts are not running ({running}): run `make lab` first", pytrace=False)
    # The same path on the controller (the source) and in the containers (the targets).
    root = tmp_path / "models"
    yield root
    for host in HOSTS:
        in_container(host, "rm", "-rf", str(tmp_path))


def test_controller_downloads_once_and_distributes_to_lab_hosts(fake_hub, lab_root, tmp_path):
    files = fixture_files(small_count=8, big_size=2 * 1024 * 1024)
    fake_hub.commit(REPO_ID, files)
    local_dir = lab_root / "dist-model"
    playbook = tmp_path / "distribute.yml"
    role_vars = {
        "hf_models_list": [{"repo_id": REPO_ID, "name": "dist-model"}],
        "hf_models_root": str(lab_root),
        "hf_models_endpoint": fake_hub.url,
        "hf_models_poll_interval": 1,
        "hf_models_distribute_from": "localhost",
    }
    play = {"name": "Models", "hosts": "gpu_hosts", "gather_facts": False, "vars": role_vars}
    playbook.write_text(json.dumps([{**play, "roles": ["llmops.ragstack.hf_models"]}]))
    argv = lab_playbook(playbook)

    first = run_tool(argv, ANSIBLE_NOCOLOR="1")
    assert first.returncode == 0, report(first)
    assert all(recap(first).get(host, 0) >= 1 for host in HOSTS), report(first)
    resolved = [re.search(r"/resolve/[^/]+/(.+)$", path) for method, path in fake_hub.requests if method == "GET"]
    downloads = Counter(match[1] for match in resolved if match)
    # Empty files are written without a request.
    assert sorted(downloads) == sorted(path for path, content in files.items() if content), downloads
    assert set(downloads.values()) == {1}, "a file was fetched more than once: %s" % downloads

    expected = {path: hashlib.sha256(content).hexdigest() for path, content in files.items()}
    copies = {host: files_on(host, str(local_dir)) for host in HOSTS}
    assert all(copy == copies[HOSTS[0]] for copy in copies.values())
    for path, digest in expected.items():
        assert copies[HOSTS[0]][path][0] == digest, path
    # Times kept: huggingface_hub trusts a .metadata file only while the file is no newer than it.
    for path, (_digest, mtime) in copies[HOSTS[0]].items():
        assert mtime == (local_dir / path).stat().st_mtime, path
    metadata = {path for path in copies[HOSTS[0]] if path.startswith(".cache/huggingface/download/")}
    assert metadata == {".cache/huggingface/download/%s.metadata" % path for path in files}
    assert not [path for path in copies[HOSTS[0]] if re.search(r"\.(part|tmp|incomplete|lock)$|progress", path)]

    fake_hub.reset_counters()
    second = run_tool(argv, ANSIBLE_NOCOLOR="1")
    assert second.returncode == 0, report(second)
    assert recap(second) == dict.fromkeys(HOSTS, 0), report(second)
    assert not [path for _method, path in fake_hub.requests if "/resolve/" in path]

    # A fresh target (no models folder at all): check mode says it would copy the model, and writes nothing.
    in_container(HOSTS[1], "rm", "-rf", str(lab_root))
    check = run_tool([*argv, "--check"], ANSIBLE_NOCOLOR="1")
    assert check.returncode == 0, report(check)
    assert recap(check)[HOSTS[1]] >= 1, report(check)
    assert recap(check)[HOSTS[0]] == recap(check)[HOSTS[2]] == 0, report(check)
    assert in_container(HOSTS[1], "test", "-e", str(lab_root)).returncode == 1
