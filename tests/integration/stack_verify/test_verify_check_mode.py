"""playbooks/verify.yml on a fresh inventory, nothing deployed (two hosts on this machine, every
service port closed): in check mode each check that needs a running service is reported as skipped
with the reason and the run passes; a real run fails those same checks."""

import json
import re

import pytest
import yaml

from testkit.support import REPO, free_port, report, run_tool

pytestmark = pytest.mark.integration


def fresh_inventory(tmp_path):
    local = {"ansible_connection": "local", "ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python")}
    inventory = {
        "all": {
            "vars": {
                "xinference_port": free_port(),
                "ragflow_es_port": free_port(),
                "ragflow_api_port": free_port(),
                "ragflow_admin_password": "not-deployed",
                "xinference_models": [{"model_uid": "fresh-embedding", "model_type": "embedding"}],
            },
            "children": {
                "gpu_hosts": {"hosts": {"fresh-gpu": local}},
                "ragflow": {"hosts": {"fresh-ragflow": local}},
            },
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def verify(tmp_path, *flags):
    reports = tmp_path / "reports"
    return run_tool(
        [
            "ansible-playbook", "-i", str(fresh_inventory(tmp_path)), "playbooks/verify.yml",
            "-e", json.dumps({"stack_verify_report_dir": str(reports)}), *flags,
        ],
        ANSIBLE_NOCOLOR="1",
    )  # fmt: skip


def test_check_mode_on_a_fresh_inventory_skips_with_reasons_and_passes(tmp_path):
    proc = verify(tmp_path, "--check")

    assert proc.returncode == 0, report(proc)
    assert re.search(r"^fresh-gpu\s+: ok=\d+ .*failed=0", proc.stdout, re.M), report(proc)
    assert re.search(r"^fresh-ragflow\s+: ok=\d+ .*failed=0", proc.stdout, re.M), report(proc)
    assert "fresh-gpu: PASS (1 pass, 0 fail, 3 skip)" in proc.stdout, report(proc)
    assert "fresh-ragflow: PASS (1 pass, 0 fail, 2 skip)" in proc.stdout, report(proc)
    assert re.search(r"gateway\s+SKIP\s+check mode, not running yet: Xinference does not answer at", proc.stdout)
    assert re.search(
        r"elasticsearch heap\s+SKIP\s+check mode, not running yet: Elasticsearch does not answer", proc.stdout
    )
    assert re.search(
        r"ragflow e2e\s+SKIP\s+check mode, not running yet: RAGFlow at http://127\.0\.0\.1:\d+ gave no", proc.stdout
    )
    assert not (tmp_path / "reports").exists()


def test_a_real_run_on_the_same_inventory_fails_those_checks(tmp_path):
    proc = verify(tmp_path)

    assert proc.returncode != 0
    assert "fresh-gpu: FAIL" in proc.stdout, report(proc)
    assert "Verification failed on" in proc.stdout or "stage verify failed" in proc.stdout, report(proc)
