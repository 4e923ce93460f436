import ctypes.util
import time

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu
from testkit import nvml as fake_nvml
from testkit.nvml import MIB, NVML_ERROR_DRIVER_NOT_LOADED, FakeGpu, FakeNVML
from testkit.support import REPO

pytestmark = pytest.mark.unit

RECORDINGS = REPO / "tests" / "fixtures" / "nvidia_smi"
H100 = FakeGpu(
    name="NVIDIA H100 80GB HBM3",
    uuid="GPU-5c1b3a52-8f7e-4b1e-9a0e-2f6d3c1e7a10",
    total_mib=81559,
    used_mib=29711,
    reserved_mib=500,
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
    fake_proc(4242, ["Model: bge-m3-rep0"], "python")
    fake_proc(4343, ["/usr/bin/python3", "-m", "vllm"], "python3")
    nvml = FakeNVML([H100])

    facts = gpu.nvml_facts(nvml, proc_root=fake_proc.root)

    assert facts["gpu_backend"] == "nvml"
    assert facts["gpu_count"] == 1
    assert facts["gpu_driver_version"] == "550.54.15"
    assert facts["gpu_cuda_version"] == "12.4"
    device = facts["gpu_devices"][0]
    assert device["memory_total_mib"] == 81559
    # NVML's v2 struct: the driver's reserved memory is not counted as used.
    assert device["memory_used_mib"] == 29711
    assert device["memory_reserved_mib"] == 500
    assert device["memory_free_mib"] == 81559 - 30211
    assert device["power_draw_w"] == 215.33
    assert device["power_limit_w"] == 700.0
    assert device["utilization_gpu_percent"] == 37
    assert device["temperature_c"] == 41
    model, other = device["processes"]
    assert (model["model_uid"], model["model_replica"]) == ("bge-m3", 0)
    assert model["used_memory_mib"] == 2213
    assert model["visible_in_proc"] is True
    assert other["model_uid"] is None
    assert other["cmdline"] == "/usr/bin/python3 -m vllm"
    assert other["name"] == "python3"
    assert nvml.shutdowns == 1
    # The versioned calls, not the deprecated ones (nvmlDeviceGetTemperature goes in CUDA 14).
    assert "nvmlDeviceGetMemoryInfo_v2" in nvml.calls and "nvmlDeviceGetMemoryInfo" not in nvml.calls
    assert "nvmlDeviceGetTemperatureV" in nvml.calls and "nvmlDeviceGetTemperature" not in nvml.calls


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
    nvml = FakeNVML([H100], init_error=NVML_ERROR_DRIVER_NOT_LOADED)

    facts = gpu.collect_gpu_facts("auto", lambda: nvml, replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root)

    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_count"] == 2
    assert facts["gpu_nvml_fallback_reason"] == (
        "NVML: NVML could not be initialised: NVMLError_DriverNotLoaded: Driver Not Loaded"
    )


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
    # Titles of Xinference before 4.1: "<uid>-<replica>".
    assert embedding == {
        "pid": 184211,
        "name": "python",
        "cmdline": "Model: bge-m3-0",
        "visible_in_proc": True,
        "model_uid": "bge-m3",
        "model_replica": 0,
        "used_memory_mib": 2213,
    }
    # PID from another namespace: only the driver's name is known, and it still names the model.
    assert llm["visible_in_proc"] is False
    assert llm["name"] == "Model: deepseek-r1-distill-qwen-14b-0"
    assert (llm["model_uid"], llm["model_replica"]) == ("deepseek-r1-distill-qwen-14b", 0)
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


@pytest.mark.parametrize(
    "title, uid, replica",
    [
        ("Model: bge-m3-rep0", "bge-m3", 0),
        ("Model: bge-m3-rep12", "bge-m3", 12),
        # A 4.1 uid that itself ends in -<digits> keeps them: only -rep<N> is the replica.
        ("Model: llama-2-rep1", "llama-2", 1),
        ("Model: qwen2.5 chat, 4-bit, v2-rep0", "qwen2.5 chat, 4-bit, v2", 0),
        # Xinference before 4.1.
        ("Model: bge-m3-0", "bge-m3", 0),
        ("Model: my-model", "my-model", None),
        # Not a model worker: the title must start with "Model: ".
        ("python -m worker --note Model: bge-m3-rep0", None, None),
        ("/usr/bin/python3", None, None),
        ("Model:", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_model_titles_are_anchored_and_split_into_uid_and_replica(title, uid, replica):
    assert gpu.parse_model_title(title) == (uid, replica)


def test_title_is_argv0_of_the_cmdline(fake_proc):
    # A process started with argv[0] set to the title (tests/gpu does so) has arguments after it.
    fake_proc(51, ["Model: probe-rep0", "-c", "import torch"], "python")

    entry = gpu.describe_process(51, proc_root=fake_proc.root)

    assert (entry["model_uid"], entry["model_replica"]) == ("probe", 0)
    assert entry["cmdline"] == "Model: probe-rep0 -c import torch"


def test_nvml_v1_memory_and_legacy_temperature_on_an_older_driver(fake_proc):
    nvml = FakeNVML([H100], missing={"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetTemperatureV"})

    device = gpu.nvml_facts(nvml, proc_root=fake_proc.root)["gpu_devices"][0]

    # v1 counts the reserved memory as used, and cannot tell it apart.
    assert (device["memory_used_mib"], device["memory_reserved_mib"]) == (30211, None)
    assert device["temperature_c"] == 41


def test_bindings_without_the_versioned_calls_use_the_old_ones(fake_proc):
    class OldBindings(FakeNVML):
        nvmlMemory_v2 = None
        nvmlDeviceGetTemperatureV = None

    device = gpu.nvml_facts(OldBindings([H100]), proc_root=fake_proc.root)["gpu_devices"][0]

    assert (device["memory_used_mib"], device["temperature_c"]) == (30211, 41)


def test_a_board_without_temperature_sensor_is_null(fake_proc):
    nvml = FakeNVML([H100], unsupported={"nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"})

    assert gpu.nvml_facts(nvml, proc_root=fake_proc.root)["gpu_devices"][0]["temperature_c"] is None


def test_library_mismatch_falls_back_to_nvidia_smi_with_the_reason(fake_proc):
    # A driver older than nvidia-ml-py lacks nvmlDeviceGetComputeRunningProcesses_v3: the bindings
    # raise NVMLLibraryMismatchError, which is not an NVMLError.
    nvml = FakeNVML([H100], missing={"nvmlDeviceGetComputeRunningProcesses_v3"})

    facts = gpu.collect_gpu_facts("auto", lambda: nvml, replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root)

    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_nvml_fallback_reason"].startswith(
        "NVML: NVML query failed: NVMLLibraryMismatchError: Unversioned function called"
    )
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(
    "error",
    [fake_nvml.NVMLError(fake_nvml.NVML_ERROR_GPU_IS_LOST), OSError("libnvidia-ml.so.1: cannot open"), ValueError("x")],
    ids=["gpu-lost", "os-error", "value-error"],
)
def test_any_nvml_failure_mid_query_falls_back(fake_proc, error):
    nvml = FakeNVML([H100], failing={"nvmlDeviceGetUUID": error})

    facts = gpu.collect_gpu_facts("auto", lambda: nvml, replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root)

    assert facts["gpu_backend"] == "nvidia-smi"
    assert type(error).__name__ in facts["gpu_nvml_fallback_reason"]


def test_forced_nvml_reports_the_failure_instead_of_falling_back(fake_proc):
    nvml = FakeNVML([H100], missing={"nvmlDeviceGetComputeRunningProcesses_v3"})

    facts = gpu.collect_gpu_facts("nvml", lambda: nvml, replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root)

    assert facts["gpu_backend"] == "none"
    assert "NVMLLibraryMismatchError" in facts["gpu_unavailable_reason"]


def test_the_fake_raises_what_the_real_bindings_raise():
    pynvml = pytest.importorskip("pynvml")

    assert not issubclass(pynvml.NVMLLibraryMismatchError, pynvml.NVMLError)
    assert not issubclass(fake_nvml.NVMLLibraryMismatchError, fake_nvml.NVMLError)
    for name, code in [
        ("NVMLError_Uninitialized", fake_nvml.NVML_ERROR_UNINITIALIZED),
        ("NVMLError_NotSupported", fake_nvml.NVML_ERROR_NOT_SUPPORTED),
        ("NVMLError_DriverNotLoaded", fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED),
        ("NVMLError_LibraryNotFound", fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND),
        ("NVMLError_FunctionNotFound", fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND),
        ("NVMLError_GpuIsLost", fake_nvml.NVML_ERROR_GPU_IS_LOST),
    ]:
        real, fake = pynvml.NVMLError(code), fake_nvml.NVMLError(code)
        assert type(real).__name__ == type(fake).__name__ == name
        assert str(real) == str(fake)
    assert pynvml.nvmlMemory_v2 == FakeNVML.nvmlMemory_v2
    assert pynvml.NVML_TEMPERATURE_GPU == FakeNVML.NVML_TEMPERATURE_GPU
    assert pynvml.NVML_ERROR_FUNCTION_NOT_FOUND == fake_nvml.NVML_ERROR_FUNCTION_NOT_FOUND


def test_the_real_bindings_without_a_driver_fall_back_with_their_reason():
    pynvml = pytest.importorskip("pynvml")
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this host has libnvidia-ml")

    facts = gpu.collect_gpu_facts("auto", lambda: pynvml, replay("h100x2"), "/usr/bin/nvidia-smi")

    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_nvml_fallback_reason"] == (
        "NVML: NVML could not be initialised: NVMLError_LibraryNotFound: NVML Shared Library Not Found"
    )


def test_a_process_name_with_commas_survives_the_unquoted_csv(fake_proc):
    facts = gpu.nvidia_smi_facts(replay("h200_xinference41"), "nvidia-smi", proc_root=fake_proc.root)

    assert (facts["gpu_driver_version"], facts["gpu_cuda_version"]) == ("580.95.05", "13.0")
    processes = facts["gpu_devices"][0]["processes"]
    assert [(p["pid"], p["model_uid"], p["model_replica"], p["used_memory_mib"]) for p in processes] == [
        (20417, "bge-m3", 0, 2300),
        (20533, "qwen2.5 chat, 4-bit, v2", 0, 21360),
        (20534, "qwen2.5 chat, 4-bit, v2", 1, 17860),
    ]
    assert processes[1]["name"] == "Model: qwen2.5 chat, 4-bit, v2-rep0"


def test_a_hung_nvidia_smi_is_killed_and_reported(tmp_path):
    started = time.monotonic()

    with pytest.raises(gpu.BackendUnavailable, match=r"did not answer in 1 s .*NVIDIA driver is not responding"):
        gpu.run_bounded(["sleep", "60"], 1)

    assert time.monotonic() - started < 10


def test_a_missing_binary_is_a_reason_not_a_traceback(tmp_path):
    with pytest.raises(gpu.BackendUnavailable, match="cannot run"):
        gpu.run_bounded([str(tmp_path / "nvidia-smi")], 5)


@pytest.fixture
def real_bindings(monkeypatch):
    """nvidia-ml-py's pynvml, its C library replaced by `install(fake_library)`."""
    pynvml = pytest.importorskip("pynvml")

    def install(library):
        monkeypatch.setattr(pynvml, "nvmlLib", library)
        monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
        return pynvml

    return install


def test_the_real_bindings_on_a_current_driver(real_bindings, fake_proc):
    fake_proc(4242, ["Model: bge-m3-rep0"], "python")
    pynvml = real_bindings(fake_nvml.FakeNvmlLibrary([H100]))

    facts = gpu.nvml_facts(pynvml, proc_root=fake_proc.root)

    assert (facts["gpu_backend"], facts["gpu_driver_version"], facts["gpu_cuda_version"]) == (
        "nvml",
        "580.95.05",
        "13.0",
    )
    device = facts["gpu_devices"][0]
    assert (device["name"], device["uuid"]) == (H100.name, H100.uuid)
    assert (device["memory_used_mib"], device["memory_reserved_mib"], device["memory_free_mib"]) == (29711, 500, 51348)
    assert (device["temperature_c"], device["power_draw_w"], device["utilization_gpu_percent"]) == (41, 215.33, 37)
    assert [(p["pid"], p["model_uid"], p["used_memory_mib"]) for p in device["processes"]] == [
        (4242, "bge-m3", 2213),
        (4343, None, 27994),
    ]


def test_the_real_bindings_on_an_older_driver_use_v1_memory_and_the_old_temperature(real_bindings, fake_proc):
    library = fake_nvml.FakeNvmlLibrary([H100], missing={"nvmlDeviceGetMemoryInfo_v2", "nvmlDeviceGetTemperatureV"})

    device = gpu.nvml_facts(real_bindings(library), proc_root=fake_proc.root)["gpu_devices"][0]

    assert (device["memory_used_mib"], device["memory_reserved_mib"], device["temperature_c"]) == (30211, None, 41)


def test_the_real_bindings_raise_the_library_mismatch_and_nvidia_smi_answers(real_bindings, fake_proc):
    library = fake_nvml.FakeNvmlLibrary([H100], missing={"nvmlDeviceGetComputeRunningProcesses_v3"})

    facts = gpu.collect_gpu_facts(
        "auto", lambda: real_bindings(library), replay("h100x2"), "/usr/bin/nvidia-smi", fake_proc.root
    )

    assert facts["gpu_backend"] == "nvidia-smi"
    assert facts["gpu_nvml_fallback_reason"].startswith(
        "NVML: NVML query failed: NVMLLibraryMismatchError: Unversioned function called and the pyNVML version "
        "does not match the NVML lib version."
    )
