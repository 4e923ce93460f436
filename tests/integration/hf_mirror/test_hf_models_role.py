"""The hf_models role through ansible-playbook: progress lines while downloading, idempotent on re-run."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from testkit.hf_mirror.repos import assert_matches, fixture_files
from testkit.support import REPO, module_environment

pytestmark = pytest.mark.integration


def run_playbook(playbook, check=False, inventory="localhost,"):
    command = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, str(playbook)]
    env = module_environment({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    completed = subprocess.run(
        [*command, *(["--check"] if check else [])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    recap = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)", completed.stdout)
    return completed.stdout, int(recap[2])


def write_play(path, role_vars, hosts="localhost"):
    play = {
        "name": "Models",
        "hosts": hosts,
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"), **role_vars},
        "roles": ["llmops.ragstack.hf_models"],
    }
    path.write_text(json.dumps([play]))


def test_role_downloads_with_progress_lines_and_is_idempotent(fake_hub, tmp_path):
    files = fixture_files(small_count=10)
    fake_hub.commit("acme/role-model", files)
    root = tmp_path / "models"
    playbook = tmp_path / "play.yml"
    role_vars = {
        "hf_models_list": [{"repo_id": "acme/role-model", "name": "role-model"}],
        "hf_models_root": str(root),
        "hf_models_endpoint": fake_hub.url,
        "hf_models_poll_interval": 1,
    }
    write_play(playbook, role_vars)

    output, changed = run_playbook(playbook, check=True)
    assert changed == 1
    assert "would download %d file(s)" % len(files) in output
    assert not (root / "role-model").exists()

    # Slow enough for several polls even when a loaded machine takes seconds per poll.
    fake_hub.throttle_bytes_per_s = 512 * 1024
    output, changed = run_playbook(playbook)
    assert changed >= 1
    progress_lines = re.findall(r"acme/role-model: [0-9.]+ %, .* MB/s, ETA", output)
    assert len(progress_lines) >= 2, "fewer than 2 progress lines:\n" + output
    assert "downloaded %d file(s)" % len(files) in output
    assert_matches(root / "role-model", files)

    fake_hub.throttle_bytes_per_s = None
    output, changed = run_playbook(playbook)
    assert changed == 0, output
    assert "downloaded 0 file(s)" in output


def test_check_mode_on_fresh_hosts_says_what_it_would_download_and_copy(fake_hub, tmp_path):
    # A fresh inventory: the source has never downloaded, the target has nothing. Check mode must pass, say
    # what the source would fetch and that the target would receive it, and write nothing anywhere.
    files = fixture_files(small_count=3)
    fake_hub.commit("acme/fresh-model", files)
    root = tmp_path / "models"
    playbook = tmp_path / "play.yml"
    role_vars = {
        "hf_models_list": [{"repo_id": "acme/fresh-model", "name": "fresh-model"}],
        "hf_models_root": str(root),
        "hf_models_endpoint": fake_hub.url,
        "hf_models_distribute_from": "localhost",
    }
    write_play(playbook, role_vars, hosts="all")
    output, changed = run_playbook(playbook, check=True, inventory="localhost,fresh-target,")
    assert "would download %d file(s)" % len(files) in output
    assert re.search(r"changed: \[fresh-target\] => \n\s+msg: 'acme/fresh-model: would copy", output), output
    assert re.search(r"fresh-target\s+: ok=\d+\s+changed=1", output), output
    assert changed == 1
    assert not root.exists()
    assert not [path for _method, path in fake_hub.requests if "/resolve/" in path]


def test_check_mode_fails_where_the_run_would_when_the_root_is_a_file(fake_hub, tmp_path):
    fake_hub.commit("acme/blocked", fixture_files(small_count=1))
    (tmp_path / "models").write_text("a file where the models folder should be")
    playbook = tmp_path / "play.yml"
    role_vars = {
        "hf_models_list": [{"repo_id": "acme/blocked"}],
        "hf_models_root": str(tmp_path / "models"),
        "hf_models_endpoint": fake_hub.url,
    }
    write_play(playbook, role_vars)
    command = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(playbook), "--check"]
    env = module_environment({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"})
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert completed.returncode != 0
    assert re.search(r"cannot be a folder: .*/models is a file", completed.stdout), completed.stdout[-3000:]
    assert "Traceback" not in completed.stdout + completed.stderr
