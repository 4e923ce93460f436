#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU, GPU process and host memory facts
version_added: 0.1.0
description:
  - Gathers what a GPU operator checks before and after launching models, as C(ansible_facts).
  - >-
    Per GPU it reports index, name, UUID, memory total/used/free in MiB, utilization, temperature and
    power draw/limit, and every compute process with its PID, GPU memory, name and command line read
    from C(/proc). A process titled C(Model: <uid>-rep<N>) (how Xinference 4.1 titles its model
    workers; older servers used C(Model: <uid>-<N>)) gets the uid in
    RV(ansible_facts.gpu_devices[].processes[].model_uid) and the replica index in
    RV(ansible_facts.gpu_devices[].processes[].model_replica).
  - Reads NVML through the C(nvidia-ml-py) library first. On any NVML failure (library missing,
    driver not loaded, bindings newer than the driver) it parses the CSV output of
    C(nvidia-smi --query-gpu) and C(nvidia-smi --query-compute-apps), and says why in
    RV(ansible_facts.gpu_nvml_fallback_reason).
  - Memory is read through NVML's v2 memory struct, which counts the driver's reserved memory apart
    (RV(ansible_facts.gpu_devices[].memory_reserved_mib)); drivers without it give the v1 numbers.
  - With no GPU at all it reports RV(ansible_facts.gpu_count=0) and the reason, unless O(required=true).
  - Host memory comes from C(/proc/meminfo). Judge memory pressure by
    RV(ansible_facts.host_memory.mem_available_mib); swap in use is often a leftover of earlier
    pressure, not a sign of pressure now.
author:
  - llmops.ragstack developers (@llmops)
options:
  required:
    description:
      - Fail when no GPU can be queried, with a message that says what was tried and what was missing.
    type: bool
    default: false
  backend:
    description:
      - Where to read GPU facts from. V(auto) tries NVML, then C(nvidia-smi).
    type: str
    choices: [auto, nvml, nvidia-smi]
    default: auto
  nvidia_smi_path:
    description:
      - The C(nvidia-smi) program, a name looked up in E(PATH) or an absolute path.
    type: str
    default: nvidia-smi
  nvidia_smi_timeout:
    description:
      - Seconds each C(nvidia-smi) call may take. A wedged driver hangs C(nvidia-smi); past this the
        call is killed and the backend reported unavailable with a message that the driver did not answer.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
  facts:
    support: full
  idempotent:
    support: full
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.attributes.facts
requirements:
  - C(nvidia-ml-py) for the NVML backend (optional; C(nvidia-smi) is the fallback)
notes:
  - Inside a container, C(nvidia-smi) lists host PIDs that are not in the container's C(/proc);
    such processes have RV(ansible_facts.gpu_devices[].processes[].visible_in_proc=false) and only
    the name the driver reported.
seealso:
  - name: NVML API reference
    description: The NVIDIA Management Library functions this module calls.
    link: https://docs.nvidia.com/deploy/nvml-api/
"""

EXAMPLES = r"""
- name: Gather GPU facts
  llmops.ragstack.gpu_facts:

- name: Fail unless the host has a usable GPU, giving a slow driver 60 s per nvidia-smi call
  llmops.ragstack.gpu_facts:
    required: true
    nvidia_smi_timeout: 60

- name: Show which Xinference models hold GPU memory
  ansible.builtin.debug:
    msg: "{{ item.model_uid }} uses {{ item.used_memory_mib }} MiB"
  loop: "{{ ansible_facts.gpu_devices | map(attribute='processes') | flatten | selectattr('model_uid') }}"

- name: Judge memory by MemAvailable, not by swap
  ansible.builtin.assert:
    that: ansible_facts.host_memory.mem_available_percent >= 10
"""

RETURN = r"""
ansible_facts:
  description: GPU and host memory facts.
  returned: always
  type: dict
  contains:
    gpu_backend:
      description: What answered, V(nvml), V(nvidia-smi), or V(none) when no GPU could be queried.
      type: str
      sample: nvml
    gpu_count:
      description: Number of GPUs.
      type: int
      sample: 1
    gpu_nvml_fallback_reason:
      description: Why NVML did not answer when V(nvidia-smi) did, else V(null).
      type: str
      sample: >-
        NVML query failed: NVMLLibraryMismatchError: Unversioned function called and the pyNVML version
        does not match the NVML lib version. ...
    gpu_unavailable_reason:
      description: Why no GPU was found (each backend's reason), or V(null) when GPUs were found.
      type: str
      sample: >-
        NVML: NVML could not be initialised: NVML Shared Library Not Found; nvidia-smi: not found in PATH
    gpu_driver_version:
      description: NVIDIA driver version.
      type: str
      sample: "550.54.15"
    gpu_cuda_version:
      description: Highest CUDA version the driver supports.
      type: str
      sample: "12.4"
    gpu_devices:
      description: One entry per GPU.
      type: list
      elements: dict
      contains:
        index:
          description: GPU index as CUDA and nvidia-smi number it.
          type: int
        name:
          description: Product name.
          type: str
          sample: NVIDIA H100 80GB HBM3
        uuid:
          description: GPU UUID.
          type: str
        memory_total_mib:
          description: Total memory in MiB.
          type: int
        memory_reserved_mib:
          description: Memory the driver reserves, in MiB (NVML v2 memory struct), V(null) where unknown.
          type: int
        memory_used_mib:
          description: Used memory in MiB, without the reserved memory where NVML's v2 struct answered.
          type: int
        memory_free_mib:
          description: Free memory in MiB.
          type: int
        utilization_gpu_percent:
          description: GPU utilization, V(null) where unsupported.
          type: int
        utilization_memory_percent:
          description: Memory controller utilization, V(null) where unsupported.
          type: int
        temperature_c:
          description: Core temperature in degrees Celsius, V(null) where unsupported.
          type: int
        power_draw_w:
          description: Power draw in watts, V(null) where unsupported.
          type: float
        power_limit_w:
          description: Enforced power limit in watts, V(null) where unsupported.
          type: float
        processes:
          description: Compute processes on this GPU.
          type: list
          elements: dict
          contains:
            pid:
              description: Process ID as the driver reports it.
              type: int
            used_memory_mib:
              description: GPU memory the process holds, V(null) when the driver does not say.
              type: int
            name:
              description: Process name (C(/proc/PID/comm), else the driver's name for it).
              type: str
            cmdline:
              description: Command line from C(/proc/PID/cmdline), V(null) when not visible.
              type: str
              sample: "Model: bge-m3-rep0"
            visible_in_proc:
              description: Whether the process is visible in this host's C(/proc).
              type: bool
            model_uid:
              description: >-
                The Xinference model uid from a process title C(Model: <uid>-rep<N>) (or C(Model: <uid>-<N>)),
                without the replica suffix, else V(null).
              type: str
              sample: bge-m3
            model_replica:
              description: The replica index N of that title, else V(null).
              type: int
              sample: 0
    host_memory:
      description: Host memory from C(/proc/meminfo), in MiB.
      type: dict
      contains:
        mem_total_mib:
          description: MemTotal.
          type: int
        mem_available_mib:
          description: MemAvailable, the memory new work can use without swapping.
          type: int
        mem_available_percent:
          description: MemAvailable as a percentage of MemTotal.
          type: float
        swap_total_mib:
          description: SwapTotal.
          type: int
        swap_free_mib:
          description: SwapFree.
          type: int
        swap_used_mib:
          description: Swap in use; reported, never a failure by itself.
          type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.gpu import (
    BACKENDS,
    DEFAULT_NVIDIA_SMI_TIMEOUT,
    BackendUnavailable,
    collect_gpu_facts,
    run_bounded,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.host_memory import (
    HostMemoryError,
    read_host_memory,
)


def load_nvml():
    try:
        import pynvml
    except ImportError as exc:
        raise BackendUnavailable("the nvidia-ml-py library is not installed") from exc
    return pynvml


def run_nvidia_smi(timeout):
    return lambda argv: run_bounded(argv, timeout)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            required=dict(type="bool", default=False),
            backend=dict(type="str", default="auto", choices=list(BACKENDS)),
            nvidia_smi_path=dict(type="str", default="nvidia-smi"),
            nvidia_smi_timeout=dict(type="int", default=DEFAULT_NVIDIA_SMI_TIMEOUT),
        ),
        supports_check_mode=True,
    )
    timeout = module.params["nvidia_smi_timeout"]
    if timeout < 1:
        module.fail_json(msg="nvidia_smi_timeout must be at least 1 second, got %d" % timeout)
    smi_path = module.get_bin_path(module.params["nvidia_smi_path"])
    facts = collect_gpu_facts(module.params["backend"], load_nvml, run_nvidia_smi(timeout), smi_path)
    try:
        facts["host_memory"] = read_host_memory()
    except HostMemoryError as exc:
        module.fail_json(msg=str(exc))
    if module.params["required"] and facts["gpu_count"] == 0:
        module.fail_json(
            msg="no usable NVIDIA GPU (required=true): %s. Install the NVIDIA driver (nvidia-smi must work) "
            "or run on a GPU host." % facts["gpu_unavailable_reason"],
            ansible_facts=facts,
        )
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
