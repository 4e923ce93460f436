"""gpu_facts against a real NVIDIA GPU: NVML and nvidia-smi must agree with `nvidia-smi` itself.

Runs only where `nvidia-smi -L` works (the device machine); skipped elsewhere.
"""

import shutil
import subprocess
import sys

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu

pytestmark = pytest.mark.gpu


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def smi_works():
    return shutil.which("nvidia-smi") is not None and run(["nvidia-smi", "-L"])[0] == 0


if not smi_works():
    pytest.skip("no working nvidia-smi: no GPU here", allow_module_level=True)


def smi_column(field):
    rc, out, err = run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"])
    assert rc == 0, err
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_nvidia_smi_backend_matches_nvidia_smi():
    facts = gpu.nvidia_smi_facts(run, "nvidia-smi")

    assert [d["uuid"] for d in facts["gpu_devices"]] == smi_column("uuid")
    assert [d["memory_total_mib"] for d in facts["gpu_devices"]] == [int(v) for v in smi_column("memory.total")]
    assert facts["gpu_driver_version"] == smi_column("driver_version")[0]
    assert facts["gpu_cuda_version"]


def test_nvml_and_nvidia_smi_agree():
    pynvml = pytest.importorskip("pynvml")
    by_nvml = gpu.nvml_facts(pynvml)
    by_smi = gpu.nvidia_smi_facts(run, "nvidia-smi")

    keys = ("index", "name", "uuid", "memory_total_mib")
    assert [[d[k] for k in keys] for d in by_nvml["gpu_devices"]] == [
        [d[k] for k in keys] for d in by_smi["gpu_devices"]
    ]
    assert by_nvml["gpu_driver_version"] == by_smi["gpu_driver_version"]
    assert by_nvml["gpu_cuda_version"] == by_smi["gpu_cuda_version"]


def test_a_cuda_process_titled_like_a_model_worker_is_found():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    script = (
        "import sys, torch\n"
        "x = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device='cuda:0')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    # argv[0] set to Xinference 4.1's worker title, so /proc/PID/cmdline reads "Model: probe-rep0 ...".
    worker = subprocess.Popen(
        ["Model: probe-rep0", "-c", script],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout.readline().strip() == "ready"
        facts = gpu.collect_gpu_facts("auto", lambda: pytest.importorskip("pynvml"), run, "nvidia-smi")
        mine = [p for d in facts["gpu_devices"] for p in d["processes"] if p["pid"] == worker.pid]
        assert len(mine) == 1
        assert (mine[0]["model_uid"], mine[0]["model_replica"]) == ("probe", 0)
        assert mine[0]["used_memory_mib"] is None or mine[0]["used_memory_mib"] >= 256
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
