# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU facts through NVML, or through `nvidia-smi` CSV queries when NVML cannot be loaded.

Both backends produce the same shape, so callers never care which one answered. Each GPU lists its
compute processes with the command line read from /proc: Xinference titles its model processes
``Model: <uid>``, which is how an operator tells a model worker from any other CUDA process.
"""

from __future__ import annotations

import csv
import os
import re

BACKENDS = ("auto", "nvml", "nvidia-smi")
MIB = 1024 * 1024
# NVML reports "not available" for a process's memory as the all-ones 64-bit value.
NVML_VALUE_NOT_AVAILABLE = 2**64 - 1
MODEL_TITLE = re.compile(r"\bModel:\s*(\S+)")
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


def no_gpu_facts(reason):
    return {
        "gpu_backend": "none",
        "gpu_count": 0,
        "gpu_driver_version": None,
        "gpu_cuda_version": None,
        "gpu_devices": [],
        "gpu_unavailable_reason": reason,
    }


def describe_process(pid, reported_name=None, proc_root="/proc"):
    """Name and command line of a GPU process, and the Xinference model it serves if any.

    A GPU process of another PID namespace (nvidia-smi inside a container sees host PIDs) has no
    entry in our /proc: then only the name the driver reported is known.
    """
    base = os.path.join(proc_root, str(pid))
    cmdline = None
    name = None
    try:
        with open(os.path.join(base, "cmdline"), "rb") as handle:
            raw = handle.read()
        cmdline = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part) or None
        with open(os.path.join(base, "comm"), "rb") as handle:
            name = handle.read().decode("utf-8", "replace").strip() or None
    except OSError:
        pass
    title = cmdline or reported_name or ""
    match = MODEL_TITLE.search(title)
    return {
        "pid": pid,
        "name": name or reported_name,
        "cmdline": cmdline,
        "visible_in_proc": cmdline is not None,
        "model_uid": match.group(1) if match else None,
    }


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _nvml_optional(nvml, getter, *args):
    """An NVML field some boards do not support (power on many, temperature on some) is None."""
    try:
        return getter(*args)
    except nvml.NVMLError:
        return None


def _cuda_version_from_int(value):
    if not value:
        return None
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def nvml_facts(nvml, proc_root="/proc"):
    """Facts from an initialised-or-not pynvml-compatible module `nvml`."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise BackendUnavailable("NVML could not be initialised: %s" % exc) from exc
    try:
        driver = _text(_nvml_optional(nvml, nvml.nvmlSystemGetDriverVersion))
        cuda = _cuda_version_from_int(_nvml_optional(nvml, nvml.nvmlSystemGetCudaDriverVersion))
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = _nvml_optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
            power = _nvml_optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
            limit = _nvml_optional(nvml, nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
            processes = []
            for proc in _nvml_optional(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []:
                used = proc.usedGpuMemory
                entry = describe_process(proc.pid, proc_root=proc_root)
                entry["used_memory_mib"] = None if used in (None, NVML_VALUE_NOT_AVAILABLE) else used // MIB
                processes.append(entry)
            devices.append(
                {
                    "index": index,
                    "name": _text(nvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_mib": memory.total // MIB,
                    "memory_used_mib": memory.used // MIB,
                    "memory_free_mib": memory.free // MIB,
                    "utilization_gpu_percent": rates.gpu if rates is not None else None,
                    "utilization_memory_percent": rates.memory if rates is not None else None,
                    "temperature_c": _nvml_optional(
                        nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
                    ),
                    "power_draw_w": round(power / 1000.0, 2) if power is not None else None,
                    "power_limit_w": round(limit / 1000.0, 2) if limit is not None else None,
                    "processes": processes,
                }
            )
    except nvml.NVMLError as exc:
        raise BackendUnavailable("NVML query failed: %s" % exc) from exc
    finally:
        _nvml_optional(nvml, nvml.nvmlShutdown)
    return {
        "gpu_backend": "nvml",
        "gpu_count": len(devices),
        "gpu_driver_version": driver,
        "gpu_cuda_version": cuda,
        "gpu_devices": devices,
        "gpu_unavailable_reason": None if devices else "the driver reports no GPU",
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
    return [row for row in csv.reader(output.splitlines(), skipinitialspace=True) if row and row[0].strip()]


def parse_smi_gpus(output):
    devices = []
    for row in _smi_rows(output):
        if len(row) != len(SMI_GPU_FIELDS):
            raise BackendUnavailable("unexpected nvidia-smi --query-gpu line: %r" % ",".join(row))
        device = {key: _smi_value(cell, convert) for (_field, key, convert), cell in zip(SMI_GPU_FIELDS, row)}
        device["processes"] = []
        devices.append(device)
    return devices


def parse_smi_apps(output):
    """(gpu_uuid, pid, process_name, used_memory_mib) per compute process."""
    apps = []
    for row in _smi_rows(output):
        if row[0].strip().lower().startswith("no running"):
            continue
        if len(row) != len(SMI_APP_FIELDS):
            raise BackendUnavailable("unexpected nvidia-smi --query-compute-apps line: %r" % ",".join(row))
        apps.append((row[0].strip(), _smi_value(row[1], int), row[2].strip(), _smi_value(row[3], int)))
    return apps


def parse_smi_cuda_version(banner):
    match = CUDA_VERSION.search(banner or "")
    return match.group(1) if match else None


def nvidia_smi_facts(run, smi_path, proc_root="/proc"):
    """Facts from `nvidia-smi`; `run(argv)` returns (rc, stdout, stderr) like AnsibleModule.run_command."""

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
                return nvidia_smi_facts(run, smi_path, proc_root)
            except BackendUnavailable as exc:
                reasons.append("nvidia-smi: %s" % exc)
    return no_gpu_facts("; ".join(reasons))
