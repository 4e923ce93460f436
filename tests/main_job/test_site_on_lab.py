"""The README's main job: playbooks/site.yml against the lab inventory, then again in check mode."""

import re
import subprocess

import pytest

from ..support import report, run_tool

pytestmark = pytest.mark.lab


def lab_hosts():
    proc = subprocess.run(
        ["docker", "ps", "--filter", "label=io.llmops.ragstack.lab=1", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(proc.stdout.split())


@pytest.fixture(scope="module")
def two_runs(lab_image):
    if lab_hosts() != ["ragstack-lab-gpu-1", "ragstack-lab-gpu-2"]:
        pytest.fail(f"lab hosts are not running ({lab_hosts()}): run `make lab` first", pytrace=False)
    argv = ["ansible-playbook", "-i", "inventories/lab", "playbooks/site.yml"]
    return run_tool(argv, ANSIBLE_NOCOLOR="1"), run_tool([*argv, "--check"], ANSIBLE_NOCOLOR="1")


def test_main_job_prints_each_hosts_gpu_and_memory_summary(two_runs):
    first = two_runs[0]
    assert first.returncode == 0, report(first)
    summaries = re.findall(
        r'"msg": "(0 GPU\(s\) \(.*?\) \| MemAvailable \d+/\d+ MiB \([\d.]+ %\) \| swap used \d+ MiB .*?)"', first.stdout
    )
    assert len(summaries) == 2, first.stdout


def test_main_job_and_its_check_mode_change_nothing(two_runs):
    for run in two_runs:
        assert run.returncode == 0, report(run)
        recap = re.findall(
            r"^(ragstack-lab-gpu-\d)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", run.stdout, re.M
        )
        assert sorted(recap) == [("ragstack-lab-gpu-1", "0"), ("ragstack-lab-gpu-2", "0")], run.stdout
