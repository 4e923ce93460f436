import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu
from testkit.nvml import MIB, FakeGpu, FakeNVML
from testkit.support import REPO

pytestmark = pytest.mark.unit

RECORDINGS = REPO / "tests" / "fixtures" / "nvidia_smi"
H100 = FakeGpu(
    name="NVIDIA H100 80GB HBM3",
    uuid="GPU-5c1b3a52-8f7e-4b1e-9a0e-2f6d3c1e7a10",
    total_mib=81559,
    used_mib=30211,
    utilization=(37, 12),
    temperature_c=41,
    power_mw=215330,
    limit_mw=700000,
    processes=[(4242, 2213 * MIB), (4343, 27994 * MIB)],
)


def no_nvml():
    raise gpu.BackendUnavailable("the nvidia-ml-py library is not installed")


def replay(scenario):
    """A run_command that answers like nvidia-smi from the recordings (fixtures/nvidia_smi)."""

    def run(argv):
        if scenario == "driver_down":
            return 9, (RECORDINGS / "driver_down.txt").read_text(), ""
        if len(argv) == 1:
            return 0, (RECORDINGS / f"{scenario}_banner.txt").read_text(), ""
        recording = "query_gpu" if argv[1].startswith("--query-gpu=") else "compute_apps"
        lines = (RECORDINGS / f"{scenario}_{recording}.csv").read_text().splitlines()[1:]
        return 0, "".join(line + "\n" for line in lines), ""

    return run


def test_nvml_reports_devices_in_mib_watts_and_cuda_version(fake_proc):
    fake_proc(4242, ["Model: bge-m3-0"], "python")
    fake_proc(4343, ["/usr/bin/python3", "-m", "vllm"], "python3")
    nvml = FakeNVML([H100])

    facts = gpu.nvml_facts(nvml, proc_root=fake_proc.root)

    assert facts["gpu_backend"] == "nvml"
    assert facts["gpu_count"] == 1
    assert facts["gpu_driver_version"] == "550.54.15"
    assert facts["gpu_cuda_version"] == "12.4"
    device = facts["gpu_devices"][0]
    assert device["memory_total_mib"] == 81559
    assert device["memory_used_mib"] == 30211
    assert device["memory_free_mib"] == 81559 - 30211
    assert device["power_draw_w"] == 215.33
    assert device["power_limit_w"] == 700.0
    assert device["utilization_gpu_percent"] == 37
    assert device["temperature_c"] == 41
    model, other = device["processes"]
    assert model["model_uid"] == "bge-m3-0"
    assert model["used_memory_mib"] == 2213
    assert model["visible_in_proc"] is True
    assert other["model_uid"] is None
    assert other["cmdline"] == "/usr/bin/python3 -m vllm"
    assert other["name"] == "python3"
    assert nvml.shutdowns == 1


def test_nvml_unsupported_fields_and_unknown_process_memory_are_null(fake_proc):
    board = FakeGpu("Tesla T4", "GPU-t4", 15360, 0, processes=[(77, gpu.NVML_VALUE_NOT_AVAILABLE), (78, None)])
    nvml = FakeNVML(
        [board],
        unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUtilizationRates"},
    )

    device = gpu.nvml_facts(nvml, proc_root=fake_proc.root)["gpu_devices"][0]

    assert device["power_draw_w"] is None
    assert device["power_limit_w"] is None
    assert device["utilization_gpu_percent"] is None
    assert [p["used_memory_mib"] for p in device["processes"]] == [None, None]
    assert [p["visible_in_proc"] for p in device["processes"]] == [False, False]


def test_nvml_decodes_byte_strings_of_older_bindings(fake_proc):
    nvml = FakeNVML([FakeGpu(b"NVIDIA A10", b"GPU-a10", 23028, 0)], driver=b"535.54.03")

    facts = gpu.nvml_facts(nvml, proc_root=fake_proc.root)

    assert facts["gpu_driver_version"] == "535.54.03"
    assert facts["gpu_devices"][0]["name"] == "NVIDIA A10"
    assert facts["gpu_devices"][0]["uuid"] == "GPU-a10"


def test_auto_falls_back_to_nvidia_smi_when_nvml_cannot_initialise(fake_proc):
    nvml = FakeNVML([H100], init_error="Driver Not Loaded")

    facts = gpu.collect_gpu_facts("auto", lambda: nvml, replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root)

    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_count"] == 2


def test_nvidia_smi_recording_of_two_h100_with_model_workers(fake_proc):
    fake_proc(184211, ["Model: bge-m3-0"], "python")

    facts = gpu.nvidia_smi_facts(replay("h100x2"), "nvidia-smi", proc_root=fake_proc.root)

    assert facts["gpu_driver_version"] == "550.54.15"
    assert facts["gpu_cuda_version"] == "12.4"
    first, second = facts["gpu_devices"]
    assert (first["index"], first["memory_free_mib"], first["power_draw_w"]) == (0, 50809, 215.33)
    assert second["uuid"] == "GPU-9e0f6a31-1d2c-4e8b-b7a4-6c3d2e1f0b99"
    assert second["processes"] == []
    assert "driver_version" not in first
    embedding, llm = first["processes"]
    assert embedding == {
        "pid": 184211,
        "name": "python",
        "cmdline": "Model: bge-m3-0",
        "visible_in_proc": True,
        "model_uid": "bge-m3-0",
        "used_memory_mib": 2213,
    }
    # PID from another namespace: only the driver's name is known, and it still names the model.
    assert llm["visible_in_proc"] is False
    assert llm["name"] == "Model: deepseek-r1-distill-qwen-14b-0"
    assert llm["model_uid"] == "deepseek-r1-distill-qwen-14b-0"
    assert llm["used_memory_mib"] == 27994


def test_nvidia_smi_not_available_values_are_null(fake_proc):
    facts = gpu.nvidia_smi_facts(replay("rtx3090"), "nvidia-smi", proc_root=fake_proc.root)

    device = facts["gpu_devices"][0]
    assert facts["gpu_cuda_version"] == "12.2"
    assert device["power_draw_w"] is None
    assert device["power_limit_w"] is None
    assert device["utilization_memory_percent"] is None
    assert device["utilization_gpu_percent"] == 0
    assert device["processes"] == []


def test_failing_nvidia_smi_gives_no_gpu_with_its_message():
    facts = gpu.collect_gpu_facts("auto", no_nvml, replay("driver_down"), "/usr/bin/nvidia-smi")

    assert facts["gpu_backend"] == "none"
    assert facts["gpu_count"] == 0
    assert "NVML: the nvidia-ml-py library is not installed" in facts["gpu_unavailable_reason"]
    assert "rc=9" in facts["gpu_unavailable_reason"]
    assert "couldn't communicate with the NVIDIA driver" in facts["gpu_unavailable_reason"]


def test_no_backend_at_all_names_both():
    facts = gpu.collect_gpu_facts("auto", no_nvml, replay("h100x2"), None)

    assert facts == gpu.no_gpu_facts("NVML: the nvidia-ml-py library is not installed; nvidia-smi: not found in PATH")


def test_forced_backend_does_not_fall_back():
    nvml = FakeNVML([H100])

    facts = gpu.collect_gpu_facts("nvidia-smi", lambda: nvml, replay("h100x2"), None)

    assert facts["gpu_backend"] == "none"
    assert facts["gpu_unavailable_reason"] == "nvidia-smi: not found in PATH"


def test_unexpected_csv_is_a_reason_not_a_traceback():
    def garbled(argv):
        return 0, "0, only, three\n", ""

    facts = gpu.collect_gpu_facts("nvidia-smi", no_nvml, garbled, "nvidia-smi")

    assert facts["gpu_count"] == 0
    assert "unexpected nvidia-smi --query-gpu line" in facts["gpu_unavailable_reason"]
