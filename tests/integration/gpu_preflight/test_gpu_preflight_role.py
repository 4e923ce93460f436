"""The gpu_preflight role on this machine (local connection) with a fake nvidia-smi and a fake docker
CLI first in PATH: the driver and NVIDIA runtime requirements, and the MemAvailable rule it shares
with the report. Each failure must say what was found and what to do."""

import json
import sys

import pytest
import yaml

from testkit.support import REPO, report, run_tool

pytestmark = pytest.mark.integration

FAKE_SMI = REPO / "tests" / "fixtures" / "nvidia_smi" / "fake_nvidia_smi.py"
RUNC_ONLY = {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}}
WITH_NVIDIA = {**RUNC_ONLY, "nvidia": {"path": "nvidia-container-runtime"}}


def run_preflight(tmp_path, scenario, runtimes=None, **variables):
    """The role on localhost; `scenario` is replayed by nvidia-smi, `runtimes` answered by docker info."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\nFAKE_NVIDIA_SMI_SCENARIO=%s exec %s %s "$@"\n' % (scenario, sys.executable, FAKE_SMI))
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  version) echo 27.3.1 ;;\n"
        "  info) echo '%s' ;;\n"
        "esac\n" % json.dumps(runtimes if runtimes is not None else RUNC_ONLY)
    )
    for program in (smi, docker):
        program.chmod(0o755)
    play = [
        {
            "name": "Preflight",
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [{"role": "llmops.ragstack.gpu_preflight"}],
        }
    ]
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    base = {
        "ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"),
        "gpu_preflight_backend": "nvidia-smi",
        "gpu_preflight_min_gpus": 0,
    }
    return run_tool(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook), "-e", json.dumps({**base, **variables})],
        PATH="%s:%s:/usr/bin:/bin" % (bin_dir, REPO / ".venv" / "bin"),
        ANSIBLE_NOCOLOR="1",
    )


def test_a_driver_older_than_the_image_needs_is_refused_with_what_to_do(tmp_path):
    proc = run_preflight(tmp_path, "h100x2", gpu_preflight_require_docker=False)

    assert proc.returncode != 0
    assert "NVIDIA driver 550.54.15 is older than 580, which the Xinference image needs" in proc.stdout
    assert "Install NVIDIA driver 580 or newer and reboot" in proc.stdout


def test_a_recent_driver_and_the_nvidia_runtime_pass(tmp_path):
    proc = run_preflight(tmp_path, "h200_xinference41", WITH_NVIDIA, gpu_preflight_require_docker=True)

    assert proc.returncode == 0, report(proc)
    assert "driver 580.95.05 CUDA 13.0" in proc.stdout
    assert "docker 27.3.1" in proc.stdout


def test_container_mode_reserving_gpus_needs_the_nvidia_runtime(tmp_path):
    proc = run_preflight(tmp_path, "h200_xinference41", RUNC_ONLY, gpu_preflight_require_docker=True)

    assert proc.returncode != 0
    assert "the Docker engine has no NVIDIA runtime (its runtimes: io.containerd.runc.v2, runc)" in proc.stdout
    assert "nvidia-ctk runtime configure --runtime=docker" in proc.stdout


def test_no_runtime_check_where_the_container_reserves_no_gpu(tmp_path):
    proc = run_preflight(
        tmp_path, "h200_xinference41", RUNC_ONLY, gpu_preflight_require_docker=True, xinference_gpus=False
    )

    assert proc.returncode == 0, report(proc)


def test_the_memory_rule_and_variable_are_the_reports(tmp_path):
    proc = run_preflight(
        tmp_path, "driver_down", gpu_preflight_require_docker=False, ragstack_min_mem_available_percent=100.5
    )

    assert proc.returncode != 0
    assert "MemAvailable is below 100.5 % of MemTotal: find what holds memory" in proc.stdout
    assert "Free it before launching models." in proc.stdout
