"""Bad-input matrix of llmops.ragstack.gpu_facts: each row runs the module through `ansible` with an
`nvidia-smi` that misbehaves (a recorded scenario of tests/fixtures/nvidia_smi, or a few lines of
shell) and asserts failed/changed, a message pattern, no traceback, and a wall-time bound.

The fake NVML cannot be handed to a module run by Ansible: the NVML rows use the real nvidia-ml-py
of .venv on this host, which has no libnvidia-ml, so NVML fails as on a host without driver.
"""

import ctypes.util
import re
import sys
import time

import pytest

from testkit.support import REPO, ansible_adhoc

pytestmark = pytest.mark.integration

FAKE_SMI = REPO / "tests" / "fixtures" / "nvidia_smi" / "fake_nvidia_smi.py"
WALL_BOUND_S = 30


def replaying(scenario):
    return 'FAKE_NVIDIA_SMI_SCENARIO=%s exec %s %s "$@"' % (scenario, sys.executable, FAKE_SMI)


ROWS = [
    # id, module arguments, nvidia-smi (shell body, or None for none installed), failed, pattern on
    # msg (failed) or on gpu_unavailable_reason (ok)
    (
        "hung-driver",
        {"backend": "nvidia-smi", "nvidia_smi_timeout": 2},
        replaying("hung"),
        False,
        r"^nvidia-smi: \S+ --query-gpu=\S+ --format=csv,noheader,nounits did not answer in 2 s "
        r"\(nvidia_smi_timeout\): the NVIDIA driver is not responding\. Look for Xid errors",
    ),
    (
        "hung-driver-required",
        {"backend": "nvidia-smi", "nvidia_smi_timeout": 2, "required": True},
        replaying("hung"),
        True,
        r"^no usable NVIDIA GPU \(required=true\): nvidia-smi: .* did not answer in 2 s .*Install the NVIDIA driver",
    ),
    (
        "driver-down",
        {"backend": "nvidia-smi"},
        replaying("driver_down"),
        False,
        r"^nvidia-smi: \S+ failed \(rc=9\): NVIDIA-SMI has failed because it couldn't communicate",
    ),
    ("not-installed", {"backend": "nvidia-smi"}, None, False, r"^nvidia-smi: not found in PATH$"),
    (
        "html-instead-of-csv",
        {"backend": "nvidia-smi"},
        "echo '<html><body>It works</body></html>'",
        False,
        r"^nvidia-smi: unexpected nvidia-smi --query-gpu line: '<html><body>It works</body></html>'$",
    ),
    ("empty-answer", {"backend": "nvidia-smi"}, "exit 0", False, r"^nvidia-smi lists no GPU$"),
    (
        "killed-by-signal",
        {"backend": "nvidia-smi"},
        "kill -9 $$",
        False,
        r"^nvidia-smi: \S+ failed \(rc=-9\): no output$",
    ),
    (
        "zero-timeout",
        {"nvidia_smi_timeout": 0},
        replaying("h100x2"),
        True,
        r"^nvidia_smi_timeout must be at least 1 second, got 0$",
    ),
    ("unknown-backend", {"backend": "cuda"}, None, True, r"value of backend must be one of: auto, nvml, nvidia-smi"),
    (
        "nvml-forced-without-driver",
        {"backend": "nvml"},
        replaying("h100x2"),
        False,
        r"^NVML: NVML could not be initialised: NVMLError_LibraryNotFound: NVML Shared Library Not Found$",
    ),
]


@pytest.mark.parametrize(("args", "smi", "failed", "pattern"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_gpu_facts_bad_input(tmp_path, args, smi, failed, pattern):
    if args.get("backend") == "nvml" and ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this host has libnvidia-ml: NVML answers")
    smi_path = tmp_path / "nvidia-smi"
    if smi is not None:
        smi_path.write_text("#!/bin/sh\n%s\n" % smi)
        smi_path.chmod(0o755)

    started = time.monotonic()
    result = ansible_adhoc("gpu_facts", {"nvidia_smi_path": str(smi_path), **args})
    elapsed = time.monotonic() - started

    assert elapsed < WALL_BOUND_S
    assert result.get("failed", False) is failed, result
    assert result.get("changed") is False
    text = result["msg"] if failed else result["ansible_facts"]["gpu_unavailable_reason"]
    assert re.search(pattern, text), text
    assert "Traceback" not in str(result) and "Module failed" not in str(result)


def test_a_process_name_with_commas_is_one_process(tmp_path):
    smi_path = tmp_path / "nvidia-smi"
    smi_path.write_text("#!/bin/sh\n%s\n" % replaying("h200_xinference41"))
    smi_path.chmod(0o755)

    result = ansible_adhoc("gpu_facts", {"backend": "nvidia-smi", "nvidia_smi_path": str(smi_path), "required": True})

    processes = result["ansible_facts"]["gpu_devices"][0]["processes"]
    assert [(p["model_uid"], p["model_replica"]) for p in processes] == [
        ("bge-m3", 0),
        ("qwen2.5 chat, 4-bit, v2", 0),
        ("qwen2.5 chat, 4-bit, v2", 1),
    ]
