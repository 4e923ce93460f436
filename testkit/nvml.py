"""A fake NVML library (not NVIDIA's): the subset of the pynvml API that gpu_facts calls."""

from dataclasses import dataclass, field
from types import SimpleNamespace

MIB = 1024 * 1024


class FakeNVMLError(Exception):
    """Stands for pynvml.NVMLError (NVML's error codes are subclasses of it)."""


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total_mib: int
    used_mib: int
    utilization: tuple = (0, 0)
    temperature_c: int = 30
    power_mw: int = 70000
    limit_mw: int = 700000
    processes: list = field(default_factory=list)  # (pid, used bytes or None)


class FakeNVML:
    """The subset of pynvml (nvidia-ml-py) gpu_facts uses, with NVML's documented units:
    memory in bytes, power in milliwatts, CUDA driver version as 1000*major + 10*minor.

    Functions named in `unsupported` raise NVMLError like NVML_ERROR_NOT_SUPPORTED does, and every
    call before nvmlInit() fails like NVML_ERROR_UNINITIALIZED.
    """

    NVMLError = FakeNVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus, driver="550.54.15", cuda=12040, init_error=None, unsupported=()):
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.unsupported = set(unsupported)
        self.initialised = False
        self.shutdowns = 0

    def _call(self, name):
        if not self.initialised:
            raise FakeNVMLError("Uninitialized")
        if name in self.unsupported:
            raise FakeNVMLError("Not Supported")

    def nvmlInit(self):
        if self.init_error:
            raise FakeNVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self):
        self._call("nvmlShutdown")
        self.initialised = False
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self):
        self._call("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        self._call("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlDeviceGetCount(self):
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._call("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu):
        self._call("nvmlDeviceGetName")
        return gpu.name

    def nvmlDeviceGetUUID(self, gpu):
        self._call("nvmlDeviceGetUUID")
        return gpu.uuid

    def nvmlDeviceGetMemoryInfo(self, gpu):
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            total=gpu.total_mib * MIB, used=gpu.used_mib * MIB, free=(gpu.total_mib - gpu.used_mib) * MIB
        )

    def nvmlDeviceGetUtilizationRates(self, gpu):
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.utilization[0], memory=gpu.utilization[1])

    def nvmlDeviceGetTemperature(self, gpu, sensor):
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return gpu.temperature_c

    def nvmlDeviceGetPowerUsage(self, gpu):
        self._call("nvmlDeviceGetPowerUsage")
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu):
        self._call("nvmlDeviceGetEnforcedPowerLimit")
        return gpu.limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, gpu):
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]
