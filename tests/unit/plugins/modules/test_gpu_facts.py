"""The gpu_facts module run as Ansible runs it: a separate Python process given its arguments as JSON."""

import sys

import pytest

from testkit.support import REPO, ModuleRunner

pytestmark = pytest.mark.unit

FAKE_SMI = REPO / "tests" / "fixtures" / "nvidia_smi" / "fake_nvidia_smi.py"


def run_module(tmp_path, args, scenario=None):
    """Run gpu_facts with `args`; with a scenario, a fake nvidia-smi replaying it is first in PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if scenario:
        wrapper = bin_dir / "nvidia-smi"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_SMI} "$@"\n')
        wrapper.chmod(0o755)
        env["FAKE_NVIDIA_SMI_SCENARIO"] = scenario
    return ModuleRunner("gpu_facts", tmp_path)(args, env=env)


def test_host_without_gpu_reports_zero_and_why(tmp_path):
    # nvml is forced off: the test machine may have nvidia-ml-py but no driver, or a GPU.
    result = run_module(tmp_path, {"backend": "nvidia-smi"})

    assert result["changed"] is False
    facts = result["ansible_facts"]
    assert facts["gpu_count"] == 0
    assert facts["gpu_unavailable_reason"] == "nvidia-smi: not found in PATH"
    assert facts["host_memory"]["mem_total_mib"] > 0


def test_required_without_gpu_fails_with_what_was_missing(tmp_path):
    result = run_module(tmp_path, {"backend": "nvidia-smi", "required": True})

    assert result["failed"] is True
    assert result["msg"].startswith("no usable NVIDIA GPU (required=true): nvidia-smi: not found in PATH.")
    assert "Install the NVIDIA driver" in result["msg"]


def test_nvidia_smi_backend_through_the_real_module(tmp_path):
    result = run_module(tmp_path, {"backend": "nvidia-smi", "required": True}, scenario="h100x2")

    facts = result["ansible_facts"]
    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_count"] == 2
    assert facts["gpu_cuda_version"] == "12.4"
    uids = [(p["model_uid"], p["model_replica"]) for p in facts["gpu_devices"][0]["processes"]]
    assert uids == [("bge-m3", 0), ("deepseek-r1-distill-qwen-14b", 0)]


def test_driver_down_is_reported_not_raised(tmp_path):
    result = run_module(tmp_path, {"backend": "nvidia-smi"}, scenario="driver_down")

    facts = result["ansible_facts"]
    assert facts["gpu_count"] == 0
    assert "NVIDIA-SMI has failed because it couldn't communicate" in facts["gpu_unavailable_reason"]


def test_bad_option_is_one_clear_line(tmp_path):
    result = run_module(tmp_path, {"backend": "cuda"})

    assert result["failed"] is True
    assert "value of backend must be one of: auto, nvml, nvidia-smi, got: cuda" in result["msg"]
