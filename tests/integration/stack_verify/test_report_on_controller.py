"""The report entry point of stack_verify run by ansible-playbook on the controller: the filter judges,
copy and template write, so check mode writes nothing and diffs, `changed` says whether a report
file changed, and a host name that would leave the folder does not."""

import json
import re

import pytest
import yaml

from ansible_collections.llmops.ragstack.plugins.module_utils import stack_report
from testkit.support import REPO, report, run_tool

pytestmark = pytest.mark.integration

MEMORY = {
    "mem_total_mib": 24105,
    "mem_available_mib": 14131,
    "mem_available_percent": 58.6,
    "swap_total_mib": 0,
    "swap_free_mib": 0,
    "swap_used_mib": 0,
}
HOSTS = ["gpu-a", "../escaped"]


def playbook(tmp_path, memory_by_host):
    """Hosts measured as `memory_by_host` says (no connection needed), then the report on localhost."""
    measure = {
        "name": "Measured",
        "hosts": "gpu_hosts",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Keep what was measured",
                "ansible.builtin.set_fact": {
                    "stack_verify_results": {"memory": "{{ memory_by_host[inventory_hostname] }}"}
                },
            }
        ],
        "vars": {"memory_by_host": memory_by_host},
    }
    write = {
        "name": "Report",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Write and print the reports",
                "ansible.builtin.include_role": {"name": "llmops.ragstack.stack_verify", "tasks_from": "report.yml"},
            }
        ],
    }
    path = tmp_path / "report.yml"
    path.write_text(yaml.safe_dump([measure, write], sort_keys=False))
    inventory = tmp_path / "inventory.yml"
    hosts = {host: {"ansible_connection": "local"} for host in HOSTS}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    return path, inventory


def run(tmp_path, memory_by_host, *flags):
    path, inventory = playbook(tmp_path, memory_by_host)
    reports = tmp_path / "out" / "reports"
    variables = {"stack_verify_report_dir": str(reports), "ansible_python_interpreter": str(REPO / ".venv/bin/python")}
    proc = run_tool(
        [
            "ansible-playbook", "-i", str(inventory), str(path), "-e",
            json.dumps(variables),
            *flags,
        ],
        ANSIBLE_NOCOLOR="1",
    )  # fmt: skip
    return proc, reports


def localhost_changed(proc):
    return int(re.search(r"^localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M).group(1))


def test_check_mode_writes_nothing_then_a_run_writes_then_nothing_changes(tmp_path):
    memory = dict.fromkeys(HOSTS, MEMORY)

    proc, reports = run(tmp_path, memory, "--check", "--diff")
    assert proc.returncode == 0, report(proc)
    assert not reports.exists()
    assert localhost_changed(proc) == 3  # the tasks of the folder, the JSON files and the Markdown files
    assert '+    "host": "gpu-a",' in proc.stdout
    assert "gpu-a: PASS (1 pass, 0 fail, 0 skip)" in proc.stdout

    proc, reports = run(tmp_path, memory)
    assert proc.returncode == 0, report(proc)
    assert localhost_changed(proc) == 3
    assert sorted(path.name for path in (tmp_path / "out").rglob("*") if path.is_file()) == [
        "___escaped.json",
        "___escaped.md",
        "gpu-a.json",
        "gpu-a.md",
    ]
    written = json.loads((reports / "gpu-a.json").read_text())
    assert written == stack_report.build_report("gpu-a", {"memory": MEMORY}, None, {}, 10)
    assert json.loads((reports / "___escaped.json").read_text())["host"] == "../escaped"
    assert (reports / "gpu-a.md").read_text() == (
        "# Stack verification: gpu-a\n"
        "\n"
        "**PASS**: 1 pass, 0 fail, 0 skip.\n"
        "\n"
        "| check | verdict | value | diagnosis |\n"
        "| --- | --- | --- | --- |\n"
        "| host memory | PASS | MemAvailable 14131/24105 MiB (58.6 %), swap used 0 MiB |  |\n"
    )
    # The table printed is the text table of the role's README.
    assert "  check        verdict  value\n" in proc.stdout
    assert "  host memory  PASS     MemAvailable 14131/24105 MiB (58.6 %), swap used 0 MiB" in proc.stdout

    proc, _reports = run(tmp_path, memory)
    assert proc.returncode == 0, report(proc)
    assert localhost_changed(proc) == 0


def test_a_measurement_that_changed_rewrites_only_that_report_and_a_failure_fails_the_run(tmp_path):
    run(tmp_path, dict.fromkeys(HOSTS, MEMORY))
    short = {**MEMORY, "mem_available_mib": 1000, "mem_available_percent": 4.1}

    proc, reports = run(tmp_path, {"gpu-a": short, "../escaped": MEMORY}, "--diff")

    assert proc.returncode != 0
    assert localhost_changed(proc) == 2
    assert "Verification failed on gpu-a: see the tables above" in proc.stdout
    assert "| host memory | FAIL | MemAvailable 1000/24105 MiB (4.1 %)" in (reports / "gpu-a.md").read_text()
    assert "! host memory: MemAvailable is below 10 % of MemTotal" in proc.stdout
