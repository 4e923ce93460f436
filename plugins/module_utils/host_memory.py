# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host memory as an operator should judge it: by MemAvailable, with swap only reported.

High swap use is often a leftover of an earlier memory squeeze; MemAvailable tells whether the
host is short of memory now.
"""

from __future__ import annotations

MEMINFO_PATH = "/proc/meminfo"


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
