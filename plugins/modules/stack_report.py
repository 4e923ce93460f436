#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_report
short_description: Judge and write the verification report of one host of the RAG stack
version_added: 0.2.0
description:
  - Builds the verification report of O(host) from what the role M(llmops.ragstack.stack_verify)
    measured there, writes it as C(<dest>/<host>.json) and C(<dest>/<host>.md), and returns it with
    a plain-text table.
  - >-
    Checks it judges itself: host memory by C(MemAvailable) against O(min_mem_available_percent)
    (swap in use is reported, never a failure by itself); each GPU's used and free memory; for each
    model Xinference placed on GPUs (C(accelerators) in its description), a live compute process
    titled C(Model: <uid>) holding memory on one of those GPUs on some host of O(cluster_gpus); the
    heap each Elasticsearch node's JVM runs with (C(_nodes/stats/jvm)) against the cap.
  - >-
    Checks judged by their modules are taken as they are: the gateway and model probes of
    M(llmops.ragstack.xinference_verify) (a model healed during the run says so, with its first
    diagnosis) and the end-to-end run of M(llmops.ragstack.ragflow_e2e).
  - A host that failed an earlier stage of the playbook gets a failed check naming the stage and the message.
  - Usually run on the controller (C(delegate_to=localhost)), once per host.
author:
  - llmops.ragstack developers (@llmops)
options:
  host:
    description:
      - The host the report is about; its name is the report's file name.
    type: str
    required: true
  dest:
    description:
      - Folder the report files are written to; created when missing.
    type: path
    required: true
  results:
    description:
      - >-
        What was measured on the host, each key optional: C(memory) (the C(host_memory) fact of
        M(llmops.ragstack.gpu_facts)), C(gpu) (its C(gpu_count), C(gpu_devices) and
        C(gpu_unavailable_reason)), C(xinference) (the result of M(llmops.ragstack.xinference_verify)),
        C(xinference_first) and C(healed) (the result before healing and the
        M(llmops.ragstack.xinference_model) results of the healing), C(es) (the result of
        M(ansible.builtin.uri) on C(_nodes/stats/jvm)), C(es_heap_cap) (JVM size such as V(2g)),
        C(ragflow_e2e) (the result of M(llmops.ragstack.ragflow_e2e)) and C(ragflow_backend) (what
        served it, for the report).
    type: dict
    default: {}
  failure:
    description:
      - The stage the host failed earlier in the run, with C(stage), C(task) and C(msg).
    type: dict
  cluster_gpus:
    description:
      - GPU facts (C(gpu_devices)) of every GPU host, by host name, to find the GPU processes of the
        models Xinference reports.
    type: dict
    default: {}
  min_mem_available_percent:
    description:
      - Least C(MemAvailable) as a percentage of C(MemTotal).
    type: float
    default: 10
extends_documentation_fragment:
  - llmops.ragstack.attributes
attributes:
  check_mode:
    support: full
    details: >-
      The report is the product of the verification, not managed state: it is written in check
      mode too, and never reported as a change.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never reports a change; each run rewrites the report files with what it measured.
"""

EXAMPLES = r"""
- name: Write the report of every host and print its table
  llmops.ragstack.stack_report:
    host: "{{ item }}"
    dest: "{{ playbook_dir }}/reports"
    results: "{{ hostvars[item].stack_verify_results | default({}) }}"
    failure: "{{ hostvars[item].ragstack_failure | default(omit) }}"
  loop: "{{ groups['all'] }}"
  delegate_to: localhost
  register: reports
"""

RETURN = r"""
verdict:
  description: V(pass) when every check passed or was skipped (and there was at least one), else V(fail).
  returned: always
  type: str
  sample: pass
checks:
  description: Each check with its verdict (V(pass), V(fail), V(skip)), measured value, diagnosis and numbers.
  returned: always
  type: list
  elements: dict
  sample:
    - name: host memory
      verdict: pass
      value: MemAvailable 20480/24105 MiB (85.0 %), swap used 0 MiB
      diagnosis: null
      measured: {mem_available_mib: 20480, mem_total_mib: 24105}
counts:
  description: Number of checks per verdict.
  returned: always
  type: dict
  sample: {pass: 6, fail: 0, skip: 1}
table:
  description: The report as a plain-text table, with the diagnosis of each failed check below it.
  returned: always
  type: str
paths:
  description: The report files written.
  returned: always
  type: dict
  sample: {json: reports/gpu-a.json, md: reports/gpu-a.md}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.stack_report import (
    ReportError,
    build_report,
    render_table,
    write_report,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            results=dict(type="dict", default={}),
            failure=dict(type="dict"),
            cluster_gpus=dict(type="dict", default={}),
            min_mem_available_percent=dict(type="float", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        report = build_report(
            params["host"],
            params["results"],
            params["failure"],
            params["cluster_gpus"],
            params["min_mem_available_percent"],
        )
        paths = write_report(params["dest"], report)
    except ReportError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(
        changed=False,
        verdict=report["verdict"],
        checks=report["checks"],
        counts=report["counts"],
        table=render_table(report),
        paths=paths,
    )


if __name__ == "__main__":
    main()
