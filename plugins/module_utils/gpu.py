# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU facts through NVML, or through `nvidia-smi` CSV queries when NVML fails in any way.

Both backends produce the same shape, so callers never care which one answered. Each GPU lists its
compute processes with the command line read from /proc: Xinference titles its model processes
``Model: <replica uid>`` (xinference/core/model.py, ModelActor.load, setproctitle), which is how an
operator tells a model worker from any other CUDA process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

BACKENDS = ("auto", "nvml", "nvidia-smi")
MIB = 1024 * 1024
# NVML reports "not available" for a process's memory as the all-ones 64-bit value.
NVML_VALUE_NOT_AVAILABLE = 2**64 - 1
# The whole title: Xinference uids may hold spaces and commas.
MODEL_TITLE = re.compile(r"^Model: (?P<replica_uid>.+?)\s*$")
# Xinference 4.1 replica uids are "<uid>-rep<N>" (xinference/core/utils.py build_replica_model_uid);
# before 4.1 they were "<uid>-<N>", which 4.1 still reads from old recovery files
# (parse_legacy_replica_model_uid). A title without the 4.1 suffix is therefore an older server's.
REPLICA_UID = re.compile(r"^(?P<uid>.+)-rep(?P<replica>\d+)$")
LEGACY_REPLICA_UID = re.compile(r"^(?P<uid>.+)-(?P<replica>\d+)$")
DEFAULT_NVIDIA_SMI_TIMEOUT = 30
CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9.]+)")

SMI_GPU_FIELDS = (
    ("index", "index", int),
    ("name", "name", str),
    ("uuid", "uuid", str),
    ("driver_version", "driver_version", str),
    ("memory.total", "memory_total_mib", int),
    ("memory.used", "memory_used_mib", int),
    ("memory.free", "memory_free_mib", int),
    ("utilization.gpu", "utilization_gpu_percent", int),
    ("utilization.memory", "utilization_memory_percent", int),
    ("temperature.gpu", "temperature_c", int),
    ("power.draw", "power_draw_w", float),
    ("power.limit", "power_limit_w", float),
)
SMI_APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")


class GpuFactsError(Exception):
    pass


class BackendUnavailable(Exception):
    """This backend cannot answer on this host; the message says why."""


def parse_model_title(title):
    """(model uid, replica index) from a process title ``Model: <uid>-rep<N>`` (Xinference 4.1) or
    ``Model: <uid>-<N>`` (older servers); (None, None) for any other process. The title must start
    with ``Model: `` so that a command line merely mentioning a model is not taken for a worker."""
    match = MODEL_TITLE.match(title or "")
    if not match:
        return None, None
    replica_uid = match.group("replica_uid")
    parts = REPLICA_UID.match(replica_uid) or LEGACY_REPLICA_UID.match(replica_uid)
    if not parts:
        return replica_uid, None
    return parts.group("uid"), int(parts.group("replica"))


def no_gpu_facts(reason):
    return {
        "gpu_backend": "none",
        "gpu_count": 0,
        "gpu_driver_version": None,
        "gpu_cuda_version": None,
        "gpu_devices": [],
        "gpu_unavailable_reason": reason,
        "gpu_nvml_fallback_reason": None,
    }


def describe_process(pid, reported_name=None, proc_root="/proc"):
    """Name and command line of a GPU process, and the Xinference model it serves if any.

    A GPU process of another PID namespace (nvidia-smi inside a container sees host PIDs) has no
    entry in our /proc: then only the name the driver reported is known.
    """
    base = os.path.join(proc_root, str(pid))
    arguments = []
    name = None
    try:
        with open(os.path.join(base, "cmdline"), "rb") as handle:
            raw = handle.read()
        arguments = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
        with open(os.path.join(base, "comm"), "rb") as handle:
            name = handle.read().decode("utf-8", "replace").strip() or None
    except OSError:
        pass
    cmdline = " ".join(arguments) or None
    # setproctitle writes the title over argv[0]; the driver reports the same title as the name.
    uid, replica = parse_model_title(arguments[0] if arguments else reported_name)
    return {
        "pid": pid,
        "name": name or reported_name,
        "cmdline": cmdline,
        "visible_in_proc": cmdline is not None,
        "model_uid": uid,
        "model_replica": replica,
    }


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _nvml_optional(nvml, getter, *args):
    """An NVML field some boards do not support (power on many, temperature on some) is None."""
    try:
        return getter(*args)
    except nvml.NVMLError:
        return None


def _nvml_memory(nvml, handle):
    """(total, reserved, used, free) in bytes. The v2 struct counts the driver's reserved memory
    apart; v1 counts it as used. v1 when the bindings (no ``nvmlMemory_v2``) or the driver
    (no ``nvmlDeviceGetMemoryInfo_v2``: NVMLError_FunctionNotFound) lack v2; reserved is then None."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            memory = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            return memory.total, memory.reserved, memory.used, memory.free
        except nvml.NVMLError:
            pass
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return memory.total, None, memory.used, memory.free


def _nvml_temperature(nvml, handle):
    """nvmlDeviceGetTemperatureV, then the call it replaces (deprecated, gone in CUDA 14) for older
    bindings or drivers; None where the board has no sensor."""
    versioned = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    if versioned is not None:
        try:
            return versioned(handle, nvml.NVML_TEMPERATURE_GPU)
        except nvml.NVMLError:
            pass
    return _nvml_optional(nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)


def _cuda_version_from_int(value):
    if not value:
        return None
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def _mib(value):
    return None if value is None else value // MIB


def _nvml_device(nvml, index, proc_root):
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    total, reserved, used, free = _nvml_memory(nvml, handle)
    rates = _nvml_optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    power = _nvml_optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
    limit = _nvml_optional(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    processes = []
    # A driver without the _v3 call makes the bindings raise NVMLLibraryMismatchError, which is no
    # NVMLError: it ends the NVML backend, and nvidia-smi lists the processes instead.
    for proc in _nvml_optional(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []:
        held = None if proc.usedGpuMemory == NVML_VALUE_NOT_AVAILABLE else proc.usedGpuMemory
        entry = describe_process(proc.pid, proc_root=proc_root)
        entry["used_memory_mib"] = _mib(held)
        processes.append(entry)
    return {
        "index": index,
        "name": _text(nvml.nvmlDeviceGetName(handle)),
        "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
        "memory_total_mib": _mib(total),
        "memory_reserved_mib": _mib(reserved),
        "memory_used_mib": _mib(used),
        "memory_free_mib": _mib(free),
        "utilization_gpu_percent": rates.gpu if rates is not None else None,
        "utilization_memory_percent": rates.memory if rates is not None else None,
        "temperature_c": _nvml_temperature(nvml, handle),
        "power_draw_w": round(power / 1000.0, 2) if power is not None else None,
        "power_limit_w": round(limit / 1000.0, 2) if limit is not None else None,
        "processes": processes,
    }


def _failure(exc):
    """The bindings' own words with the class that carries them (NVMLError_DriverNotLoaded, ...)."""
    return "%s: %s" % (type(exc).__name__, exc)


def nvml_facts(nvml, proc_root="/proc"):
    """Facts from a pynvml-compatible module `nvml`.

    Any exception of the bindings makes this backend unavailable, with the reason: besides the
    NVMLError family they raise NVMLLibraryMismatchError (not an NVMLError) when the driver is older
    than the bindings, and ctypes or OS errors when the library is broken.
    """
    try:
        nvml.nvmlInit()
    except Exception as exc:
        raise BackendUnavailable("NVML could not be initialised: %s" % _failure(exc)) from exc
    try:
        driver = _text(_nvml_optional(nvml, nvml.nvmlSystemGetDriverVersion))
        cuda = _cuda_version_from_int(_nvml_optional(nvml, nvml.nvmlSystemGetCudaDriverVersion))
        devices = [_nvml_device(nvml, index, proc_root) for index in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:
        raise BackendUnavailable("NVML query failed: %s" % _failure(exc)) from exc
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            # The answer (or the failure) is already known; a failing shutdown adds nothing to it.
            pass
    return {
        "gpu_backend": "nvml",
        "gpu_count": len(devices),
        "gpu_driver_version": driver,
        "gpu_cuda_version": cuda,
        "gpu_devices": devices,
        "gpu_unavailable_reason": None if devices else "the driver reports no GPU",
        "gpu_nvml_fallback_reason": None,
    }


def _smi_value(raw, convert):
    """One CSV cell of `--format=csv,noheader,nounits`: '[N/A]', '[Not Supported]' and the like are None."""
    value = raw.strip()
    if not value or value.startswith("[") or value == "N/A":
        return None
    try:
        return convert(value)
    except ValueError:
        return None


def _smi_rows(output):
    """The lines of a ``--format=csv,noheader`` answer, split at every comma.

    nvidia-smi neither quotes nor escapes its CSV: a comma inside a value splits it. Callers put
    the pieces back by position, knowing which one field may hold commas.
    """
    return [line.split(",") for line in output.splitlines() if line.strip()]


def parse_smi_gpus(output):
    devices = []
    for row in _smi_rows(output):
        if len(row) != len(SMI_GPU_FIELDS):
            raise BackendUnavailable("unexpected nvidia-smi --query-gpu line: %r" % ",".join(row))
        device = {key: _smi_value(cell, convert) for (_field, key, convert), cell in zip(SMI_GPU_FIELDS, row)}
        device["memory_reserved_mib"] = None
        device["processes"] = []
        devices.append(device)
    return devices


def parse_smi_apps(output):
    """(gpu_uuid, pid, process_name, used_memory_mib) per compute process.

    The UUID, PID and memory never hold a comma; the process name (a title such as
    ``Model: <uid>-rep0``, where the uid may) is everything between the PID and the last field.
    """
    apps = []
    for row in _smi_rows(output):
        if row[0].strip().lower().startswith("no running"):
            continue
        if len(row) < len(SMI_APP_FIELDS):
            raise BackendUnavailable("unexpected nvidia-smi --query-compute-apps line: %r" % ",".join(row))
        name = ",".join(row[2:-1]).strip()
        apps.append((row[0].strip(), _smi_value(row[1], int), name, _smi_value(row[-1], int)))
    return apps


def parse_smi_cuda_version(banner):
    match = CUDA_VERSION.search(banner or "")
    return match.group(1) if match else None


def run_bounded(argv, timeout):
    """(rc, stdout, stderr) of `argv`, or BackendUnavailable when it has not finished in `timeout`
    seconds. A wedged driver hangs nvidia-smi, often in the kernel: the process group gets SIGKILL,
    and one that cannot even die is left behind rather than waited for."""
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True
        )
    except OSError as exc:
        raise BackendUnavailable("cannot run %s: %s" % (argv[0], exc)) from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        raise BackendUnavailable(
            "%s did not answer in %s s (nvidia_smi_timeout): the NVIDIA driver is not responding. "
            "Look for Xid errors in `dmesg` and for nvidia-smi processes stuck in state D; a wedged "
            "driver usually needs the GPU reset or the host rebooted" % (" ".join(argv), timeout)
        ) from None
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def nvidia_smi_facts(run, smi_path, proc_root="/proc"):
    """Facts from `nvidia-smi`; `run(argv)` returns (rc, stdout, stderr) like AnsibleModule.run_command,
    or raises BackendUnavailable (run_bounded)."""

    def query(argv):
        rc, out, err = run([smi_path, *argv])
        if rc != 0:
            message = (err or out or "").strip().splitlines()
            raise BackendUnavailable("%s failed (rc=%s): %s" % (smi_path, rc, message[0] if message else "no output"))
        return out

    gpu_fields = ",".join(spec[0] for spec in SMI_GPU_FIELDS)
    devices = parse_smi_gpus(query(["--query-gpu=" + gpu_fields, "--format=csv,noheader,nounits"]))
    apps = parse_smi_apps(query(["--query-compute-apps=" + ",".join(SMI_APP_FIELDS), "--format=csv,noheader,nounits"]))
    by_uuid = dict((device["uuid"], device) for device in devices)
    for gpu_uuid, pid, reported_name, used in apps:
        entry = describe_process(pid, reported_name=reported_name, proc_root=proc_root)
        entry["used_memory_mib"] = used
        if gpu_uuid in by_uuid:
            by_uuid[gpu_uuid]["processes"].append(entry)
    driver = devices[0].get("driver_version") if devices else None
    for device in devices:
        device.pop("driver_version")
    return {
        "gpu_backend": "nvidia-smi",
        "gpu_count": len(devices),
        "gpu_driver_version": driver,
        "gpu_cuda_version": parse_smi_cuda_version(query([])) if devices else None,
        "gpu_devices": devices,
        "gpu_unavailable_reason": None if devices else "nvidia-smi lists no GPU",
    }


def collect_gpu_facts(backend, load_nvml, run, smi_path, proc_root="/proc"):
    """Try the requested backend(s) in order; with none answering, the facts of a host without GPU.

    `load_nvml()` returns a pynvml-compatible module or raises BackendUnavailable; `smi_path` is the
    resolved nvidia-smi path or None when it is not installed.
    """
    reasons = []
    if backend in ("auto", "nvml"):
        try:
            return nvml_facts(load_nvml(), proc_root)
        except BackendUnavailable as exc:
            reasons.append("NVML: %s" % exc)
    if backend in ("auto", "nvidia-smi"):
        if smi_path is None:
            reasons.append("nvidia-smi: not found in PATH")
        else:
            try:
                facts = nvidia_smi_facts(run, smi_path, proc_root)
                facts["gpu_nvml_fallback_reason"] = "; ".join(reasons) or None
                return facts
            except BackendUnavailable as exc:
                reasons.append("nvidia-smi: %s" % exc)
    return no_gpu_facts("; ".join(reasons))
