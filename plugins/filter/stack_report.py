# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that judge the verification on the controller: the report of a host, its table, and the
host memory rule the preflight shares with the report. Their docs are the .yml files beside this one.
The role stack_verify writes the reports with ansible.builtin.copy and ansible.builtin.template, so
check mode, diff and `changed` are Ansible's own."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.ragstack.plugins.module_utils.host_memory import DEFAULT_MIN_MEM_AVAILABLE_PERCENT
from ansible_collections.llmops.ragstack.plugins.module_utils.stack_report import (
    ReportError,
    build_report,
    memory_check,
    render_table,
)


def _percent(value, option):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError("%s must be a number (a percentage), not %r" % (option, value)) from None


def stack_report(results, host, failure=None, cluster_gpus=None, min_mem_available_percent=None, *, check_mode=False):
    if not isinstance(results, dict):
        raise AnsibleFilterError(
            "stack_report: the results of %s must be a dict, not %s" % (host, type(results).__name__)
        )
    if min_mem_available_percent is None:
        min_mem_available_percent = DEFAULT_MIN_MEM_AVAILABLE_PERCENT
    try:
        return build_report(
            str(host),
            results,
            failure or None,
            cluster_gpus or {},
            _percent(min_mem_available_percent, "min_mem_available_percent"),
            check_mode=bool(check_mode),
        )
    except ReportError as exc:
        raise AnsibleFilterError("stack_report of %s: %s" % (host, exc)) from None


def stack_report_table(report):
    return render_table(report)


def mem_available_check(memory, min_percent=None):
    if not isinstance(memory, dict) or "mem_available_percent" not in memory:
        raise AnsibleFilterError(
            "mem_available_check takes the host_memory facts of llmops.ragstack.gpu_facts, not %r" % (memory,)
        )
    if min_percent is None:
        min_percent = DEFAULT_MIN_MEM_AVAILABLE_PERCENT
    return memory_check(memory, _percent(min_percent, "min_percent"))


class FilterModule:
    def filters(self):
        return {
            "stack_report": stack_report,
            "stack_report_table": stack_report_table,
            "mem_available_check": mem_available_check,
        }
