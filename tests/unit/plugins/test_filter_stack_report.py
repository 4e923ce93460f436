"""The controller-side filters of plugins/filter/stack_report.py: what they return and how they refuse."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ragstack.plugins.filter.stack_report import FilterModule
from ansible_collections.llmops.ragstack.plugins.module_utils import host_memory

pytestmark = pytest.mark.unit

FILTERS = FilterModule().filters()
MEMORY = host_memory.host_memory_facts("MemTotal: 1024000 kB\nMemAvailable: 51200 kB\n")


def test_mem_available_check_is_the_reports_host_memory_check():
    check = FILTERS["mem_available_check"](MEMORY, 10)
    report = FILTERS["stack_report"]({"memory": MEMORY}, "h", min_mem_available_percent="10")

    assert check == report["checks"][0]
    assert check["verdict"] == "fail"
    assert FILTERS["mem_available_check"](MEMORY, 5)["verdict"] == "pass"
    assert FILTERS["mem_available_check"](MEMORY)["measured"]["min_mem_available_percent"] == 10


def test_report_and_table_of_a_host():
    report = FILTERS["stack_report"]({"memory": MEMORY}, "../escaped", cluster_gpus=None, min_mem_available_percent=4)

    assert (report["host"], report["file"], report["verdict"]) == ("../escaped", "___escaped", "pass")
    assert FILTERS["stack_report_table"](report).splitlines()[0] == "../escaped: PASS (1 pass, 0 fail, 0 skip)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: FILTERS["stack_report"]("text", "h"), r"^stack_report: the results of h must be a dict, not str$"),
        (
            lambda: FILTERS["stack_report"]({"memory": MEMORY}, "h", min_mem_available_percent="ten"),
            r"^min_mem_available_percent must be a number \(a percentage\), not 'ten'$",
        ),
        (
            lambda: FILTERS["stack_report"]({"es": {"status": 200}, "es_heap_cap": "2 GB"}, "h"),
            r"^stack_report of h: es_heap_cap must be a JVM size",
        ),
        (lambda: FILTERS["mem_available_check"]({"swap": 1}), r"^mem_available_check takes the host_memory facts"),
    ],
    ids=["results-not-a-dict", "threshold-not-a-number", "bad-heap-cap", "not-host-memory"],
)
def test_bad_input_is_one_filter_error(call, message):
    with pytest.raises(AnsibleFilterError, match=message):
        call()
