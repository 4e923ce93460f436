# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host memory as an operator should judge it: by MemAvailable, with swap only reported.

High swap use is often a leftover of an earlier memory squeeze; MemAvailable tells whether the
host is short of memory now.
"""

from __future__ import annotations

MEMINFO_PATH = "/proc/meminfo"
DEFAULT_MIN_MEM_AVAILABLE_PERCENT = 10


class HostMemoryError(Exception):
    pass


def parse_meminfo(text):
    """Parse /proc/meminfo into {key: kibibytes}."""
    values = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if sep and fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0])
    return values


def host_memory_facts(meminfo_text):
    """Facts in MiB from the text of /proc/meminfo."""
    kib = parse_meminfo(meminfo_text)
    missing = [key for key in ("MemTotal", "MemAvailable") if key not in kib]
    if missing:
        raise HostMemoryError(
            "/proc/meminfo lacks %s (kernel older than 3.14?): cannot judge free memory" % ", ".join(missing)
        )
    total = kib["MemTotal"]
    available = kib["MemAvailable"]
    swap_total = kib.get("SwapTotal", 0)
    swap_free = kib.get("SwapFree", 0)
    return {
        "mem_total_mib": total // 1024,
        "mem_available_mib": available // 1024,
        "mem_available_percent": round(100.0 * available / total, 1) if total else 0.0,
        "swap_total_mib": swap_total // 1024,
        "swap_free_mib": swap_free // 1024,
        "swap_used_mib": (swap_total - swap_free) // 1024,
    }


def read_host_memory(path=MEMINFO_PATH):
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        raise HostMemoryError("cannot read %s: %s" % (path, exc)) from exc
    return host_memory_facts(text)


def mem_available_verdict(memory, min_percent):
    """THE host memory rule (the preflight and the report both judge by it): MemAvailable at least
    `min_percent` of MemTotal. Swap in use is reported in the value, never a failure by itself.

    Returns (passed, value, diagnosis or None) from the `host_memory` facts of gpu_facts.
    """
    percent = memory["mem_available_percent"]
    value = "MemAvailable %d/%d MiB (%.1f %%), swap used %d MiB" % (
        memory["mem_available_mib"],
        memory["mem_total_mib"],
        percent,
        memory["swap_used_mib"],
    )
    if percent >= min_percent:
        return True, value, None
    return (
        False,
        value,
        "MemAvailable is below %g %% of MemTotal: find what holds memory (an uncapped Elasticsearch heap is "
        "the usual suspect: set ragflow_es_heap); swap in use alone is no sign of pressure now" % min_percent,
    )
