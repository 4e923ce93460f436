"""Fake NVML (not NVIDIA's): FakeNVML, the subset of the pynvml API that gpu_facts calls, and
FakeNvmlLibrary, a stand-in for libnvidia-ml.so.1 under the real pynvml bindings.

FakeNVML raises what nvidia-ml-py 13.615.71 (pynvml.py) raises: NVMLError built from an NVML return code,
which turns itself into the code's subclass (NVMLError_NotSupported, NVMLError_FunctionNotFound, ...)
and prints the bindings' text for the code; and NVMLLibraryMismatchError, which is NOT an NVMLError,
from the unversioned nvmlDeviceGetComputeRunningProcesses when the driver lacks the _v3 call (pynvml's
throwOnVersionMismatch). tests/unit/plugins/module_utils/test_gpu.py compares these with the real
bindings installed in .venv.
"""

import ctypes
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import ClassVar

MIB = 1024 * 1024
# What NVML reports for a process's memory it cannot tell (WDDM): the all-ones 64-bit value.
NVML_VALUE_NOT_AVAILABLE = 2**64 - 1

# NVML return codes (nvml.h, pynvml.py NVML_ERROR_*) and the text pynvml gives each.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLLibraryMismatchError(Exception):
    """pynvml.NVMLLibraryMismatchError: deliberately not a subclass of NVMLError, as upstream."""


class NVMLError(Exception):
    """pynvml.NVMLError: NVMLError(code) is an instance of the code's subclass."""

    by_code: ClassVar[dict] = {}

    def __new__(cls, value):
        subclass = NVMLError.by_code.get(value, cls) if cls is NVMLError else cls
        error = Exception.__new__(subclass)
        error.value = value
        return error

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return ERROR_TEXT.get(self.value, "NVML Error with code %d" % self.value)


def _error_class(name, code):
    subclass = type(name, (NVMLError,), {})
    NVMLError.by_code[code] = subclass
    return subclass


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_FunctionNotFound = _error_class("NVMLError_FunctionNotFound", NVML_ERROR_FUNCTION_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)


@dataclass
class FakeGpu:
    name: str
    uuid: str
    total_mib: int
    used_mib: int
    reserved_mib: int = 0
    utilization: tuple = (0, 0)
    temperature_c: int = 30
    power_mw: int = 70000
    limit_mw: int = 700000
    processes: list = field(default_factory=list)  # (pid, used bytes or None)


class FakeNVML:
    """The subset of pynvml (nvidia-ml-py) gpu_facts uses, with NVML's documented units:
    memory in bytes, power in milliwatts, CUDA driver version as 1000*major + 10*minor.

    - `init_error`: the NVML return code nvmlInit fails with (NVML_ERROR_DRIVER_NOT_LOADED, ...).
    - `unsupported`: functions the board does not support (NVMLError_NotSupported).
    - `missing`: C functions the driver's libnvidia-ml lacks (an older driver than the bindings):
      calling them raises NVMLError_FunctionNotFound, and the unversioned
      nvmlDeviceGetComputeRunningProcesses raises NVMLLibraryMismatchError when the _v3 one is missing.
    - `failing`: {function: exception} raised as it is (a GPU lost mid-query, ...).
    Every call before nvmlInit() fails like NVML_ERROR_UNINITIALIZED.

    With v1 memory (a driver without nvmlDeviceGetMemoryInfo_v2) the reserved memory counts as used.
    """

    NVMLError = NVMLError
    NVMLLibraryMismatchError = NVMLLibraryMismatchError
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = 0
    nvmlMemory_v2 = 0x02000028

    def __init__(  # noqa: PLR0917 - a test names the few it needs; the rest keep a healthy board's values.
        self, gpus, driver="550.54.15", cuda=12040, init_error=None, unsupported=(), missing=(), failing=None
    ):
        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        self.init_error = init_error
        self.unsupported = set(unsupported)
        self.missing = set(missing)
        self.failing = dict(failing or {})
        self.initialised = False
        self.shutdowns = 0
        self.calls = []

    def _call(self, name):
        self.calls.append(name)
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if name in self.missing:
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        if name in self.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if name in self.failing:
            raise self.failing[name]

    def nvmlInit(self):
        if self.init_error:
            raise NVMLError(self.init_error)
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

    def nvmlDeviceGetMemoryInfo(self, gpu, version=None):
        free = (gpu.total_mib - gpu.used_mib - gpu.reserved_mib) * MIB
        if not version:
            self._call("nvmlDeviceGetMemoryInfo")
            return SimpleNamespace(total=gpu.total_mib * MIB, used=(gpu.used_mib + gpu.reserved_mib) * MIB, free=free)
        self._call("nvmlDeviceGetMemoryInfo_v2")
        return SimpleNamespace(
            version=version,
            total=gpu.total_mib * MIB,
            reserved=gpu.reserved_mib * MIB,
            used=gpu.used_mib * MIB,
            free=free,
        )

    def nvmlDeviceGetUtilizationRates(self, gpu):
        self._call("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.utilization[0], memory=gpu.utilization[1])

    def nvmlDeviceGetTemperatureV(self, gpu, sensor):
        self._call("nvmlDeviceGetTemperatureV")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return gpu.temperature_c

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
        try:
            self._call("nvmlDeviceGetComputeRunningProcesses_v3")
        except NVMLError_FunctionNotFound:
            raise NVMLLibraryMismatchError(
                "Unversioned function called and the pyNVML version does not match the NVML lib version. "
                "Either use matching pyNVML and NVML lib versions or use a versioned function such as "
                "nvmlDeviceGetComputeRunningProcesses_v2"
            ) from None
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]


class FakeNvmlLibrary:
    """A fake of libnvidia-ml.so.1 itself, for the REAL pynvml bindings: set it as `pynvml.nvmlLib`
    (and empty `pynvml._nvmlGetFunctionPointer_cache`) and pynvml calls these methods where it would
    call the C functions, with the same ctypes arguments, and raises its own exceptions from their
    return codes. A C function the "driver" lacks is an attribute missing here: pynvml raises
    NVMLError_FunctionNotFound for it, or NVMLLibraryMismatchError from an unversioned call.

    The C signatures followed are those of nvml.h as nvidia-ml-py 13.615.71 (pynvml.py) calls them.
    """

    SUCCESS = 0
    INSUFFICIENT_SIZE = 7

    def __init__(self, gpus, driver="580.95.05", cuda=13000, missing=()):
        # Imported here: the bindings are needed only by the tests that use this fake.
        from pynvml import struct_c_nvmlDevice_t

        self.gpus = gpus
        self.driver = driver
        self.cuda = cuda
        # A handle is a pointer to an opaque struct: one struct per GPU, told apart by address.
        self.devices = [struct_c_nvmlDevice_t() for _gpu in gpus]
        self.by_address = {ctypes.addressof(device): gpu for device, gpu in zip(self.devices, gpus, strict=True)}
        self.missing = set(missing)

    def __getattribute__(self, name):
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _gpu(self, handle):
        return self.by_address[ctypes.addressof(handle.contents)]

    def nvmlInitWithFlags(self, _flags):
        return self.SUCCESS

    def nvmlShutdown(self):
        return self.SUCCESS

    def nvmlSystemGetDriverVersion(self, buffer, _size):
        buffer.value = self.driver.encode()
        return self.SUCCESS

    def nvmlSystemGetCudaDriverVersion(self, version):
        version._obj.value = self.cuda
        return self.SUCCESS

    def nvmlDeviceGetCount_v2(self, count):
        count._obj.value = len(self.gpus)
        return self.SUCCESS

    def nvmlDeviceGetHandleByIndex_v2(self, index, device):
        device._obj.contents = self.devices[index.value]
        return self.SUCCESS

    def nvmlDeviceGetName(self, handle, buffer, _size):
        buffer.value = self._gpu(handle).name.encode()
        return self.SUCCESS

    def nvmlDeviceGetUUID(self, handle, buffer, _size):
        buffer.value = self._gpu(handle).uuid.encode()
        return self.SUCCESS

    def nvmlDeviceGetMemoryInfo(self, handle, memory):
        gpu = self._gpu(handle)
        memory._obj.total = gpu.total_mib * MIB
        memory._obj.used = (gpu.used_mib + gpu.reserved_mib) * MIB
        memory._obj.free = (gpu.total_mib - gpu.used_mib - gpu.reserved_mib) * MIB
        return self.SUCCESS

    def nvmlDeviceGetMemoryInfo_v2(self, handle, memory):
        gpu = self._gpu(handle)
        assert memory._obj.version == FakeNVML.nvmlMemory_v2
        memory._obj.total = gpu.total_mib * MIB
        memory._obj.reserved = gpu.reserved_mib * MIB
        memory._obj.used = gpu.used_mib * MIB
        memory._obj.free = (gpu.total_mib - gpu.used_mib - gpu.reserved_mib) * MIB
        return self.SUCCESS

    def nvmlDeviceGetUtilizationRates(self, handle, rates):
        rates._obj.gpu, rates._obj.memory = self._gpu(handle).utilization
        return self.SUCCESS

    def nvmlDeviceGetTemperatureV(self, handle, reading):
        reading._obj.temperature = self._gpu(handle).temperature_c
        return self.SUCCESS

    def nvmlDeviceGetTemperature(self, handle, _sensor, reading):
        reading._obj.value = self._gpu(handle).temperature_c
        return self.SUCCESS

    def nvmlDeviceGetPowerUsage(self, handle, milliwatts):
        milliwatts._obj.value = self._gpu(handle).power_mw
        return self.SUCCESS

    def nvmlDeviceGetEnforcedPowerLimit(self, handle, milliwatts):
        milliwatts._obj.value = self._gpu(handle).limit_mw
        return self.SUCCESS

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle, count, processes):
        running = self._gpu(handle).processes
        if processes is None:
            count._obj.value = len(running)
            return self.INSUFFICIENT_SIZE if running else self.SUCCESS
        # pynvml passes an array larger than the count it was told, in case processes start meanwhile.
        for slot, (pid, used) in zip(processes, running, strict=False):
            slot.pid = pid
            slot.usedGpuMemory = NVML_VALUE_NOT_AVAILABLE if used is None else used
        count._obj.value = len(running)
        return self.SUCCESS
