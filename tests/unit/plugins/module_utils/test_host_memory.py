import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import host_memory

pytestmark = pytest.mark.unit

# /proc/meminfo of a host under the field notes' condition: swap largely used, memory available.
MEMINFO = """\
MemTotal:       131891264 kB
MemFree:         2301112 kB
MemAvailable:   61325140 kB
Buffers:          412300 kB
Cached:         57213840 kB
SwapCached:       913020 kB
SwapTotal:       8388604 kB
SwapFree:         102396 kB
HugePages_Total:       0
"""


def test_reports_available_memory_and_swap_in_mib():
    facts = host_memory.host_memory_facts(MEMINFO)

    assert facts == {
        "mem_total_mib": 128800,
        "mem_available_mib": 59887,
        "mem_available_percent": 46.5,
        "swap_total_mib": 8191,
        "swap_free_mib": 99,
        "swap_used_mib": 8092,
    }


def test_host_without_swap():
    facts = host_memory.host_memory_facts("MemTotal: 1024 kB\nMemAvailable: 512 kB\n")

    assert (facts["swap_total_mib"], facts["swap_used_mib"], facts["mem_available_percent"]) == (0, 0, 50.0)


def test_missing_memavailable_is_explained():
    with pytest.raises(host_memory.HostMemoryError, match="lacks MemAvailable"):
        host_memory.host_memory_facts("MemTotal: 1024 kB\nMemFree: 512 kB\n")


def test_unreadable_file_is_explained(tmp_path):
    with pytest.raises(host_memory.HostMemoryError, match="cannot read"):
        host_memory.read_host_memory(str(tmp_path / "missing"))


def test_this_hosts_meminfo_parses():
    facts = host_memory.read_host_memory()

    assert 0 < facts["mem_available_mib"] <= facts["mem_total_mib"]


def test_the_mem_available_rule_passes_at_the_threshold_and_reports_swap():
    facts = host_memory.host_memory_facts(MEMINFO)

    assert host_memory.mem_available_verdict(facts, 46.5) == (
        True,
        "MemAvailable 59887/128800 MiB (46.5 %), swap used 8092 MiB",
        None,
    )
    passed, _value, diagnosis = host_memory.mem_available_verdict(facts, 46.6)
    assert passed is False
    assert diagnosis.startswith("MemAvailable is below 46.6 % of MemTotal: find what holds memory")
    assert "swap in use alone is no sign of pressure now" in diagnosis
