"""The hf_models role through ansible-playbook: progress lines while downloading, idempotent on re-run."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from testkit.hf_mirror.repos import assert_matches, fixture_files
from testkit.support import REPO, module_environment

pytestmark = pytest.mark.integration


def run_playbook(playbook, check=False):
    command = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(playbook)]
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
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Models",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"), **role_vars},
                    "roles": ["llmops.ragstack.hf_models"],
                }
            ]
        )
    )

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
