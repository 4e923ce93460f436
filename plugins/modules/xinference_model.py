#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_model
short_description: Ensure a model runs healthy on Xinference, launched as specified
version_added: 0.1.0
description:
  - Ensures the model O(model_uid) is launched on an Xinference server (4.x RESTful API) with the
    given spec and answers requests, or is terminated.
  - >-
    A model the server reports ready is probed with one minimal request of its kind when
    O(health_check=true): one embedding, a rerank of two documents, or a one-token chat (a
    one-token completion for an LLM without the chat ability). Other model types are only described.
  - >-
    A model the server still knows but that does not answer (describe, probe or terminate failing,
    for example with C([Errno 111] Connect call failed) after its worker died, or listed in
    C(/v1/models) while describe says it is not found) is healed: the module retries terminate
    until the server lets go of the uid, launches it again, and reports RV(healed=true) with
    RV(unhealthy_reason). A model that the supervisor dropped with its dead worker (no longer
    listed, but recorded in C(/metrics) as C(xinference:model_unexpected_termination)) is relaunched
    and reported RV(healed=true) too.
  - >-
    Xinference's own worker recovery (a worker restarted by its restart policy relaunches, from
    C(worker_recovery) under C(XINFERENCE_HOME), the models the supervisor still knows) and this heal
    converge on one running model, whichever acts first: a model the recovered worker is loading is
    waited for (HTTP 503, or C(already in the model list) to the module's launch) and then found
    ready, so the module neither fails nor launches it twice; a uid the module terminated first is
    skipped by the recovery, so the module's launch is the only one; a worker that does not come back
    within the supervisor's heartbeat limit (about 40 s) is dropped, and the module relaunches its
    models on a live worker.
  - >-
    Only what heals is retried within O(wait_timeout): signs of a dead worker (C([Errno 111] Connect
    call failed), C(Connection reset), xoscar's C(Remote server ... closed)), HTTP 503 while loading,
    C(already in the model list), and a launch that ends C(ERROR) without a message (no worker took
    it). Anything else fails at once; a failure after a dead worker names the last real cause seen.
  - >-
    Options are checked before any call (O(wait_timeout) and O(timeout) at least 1, O(model_uid)
    non-empty and without C(/)), and so is the server (see O(endpoint)). Before a running model is
    terminated to be relaunched, O(model_name), O(model_type) and O(model_engine) are checked against
    C(/v1/engines/{name}): a typo fails and leaves the running model alone.
  - >-
    The launch is sent with C(wait_ready=false) and followed through C(/v1/models/instances) and
    C(/v1/models/{uid}/progress), so a failed load ends with Xinference's own error message and a
    timeout says how far loading got.
  - >-
    Drift is judged on what describe reports: O(model_name), O(model_type), O(model_engine),
    O(model_format), O(model_size_in_billions), O(quantization) and O(replica). Xinference does
    not report O(model_path), O(n_gpu), O(gpu_idx), O(worker_ip), O(trust_remote_code),
    O(quantization_config) or O(extra); a change in those takes O(state=restarted) or
    O(recreate=always).
author:
  - llmops.ragstack developers (@llmops)
options:
  timeout:
    description:
      - Seconds to wait for one HTTP answer; a health probe of a large LLM may need more than the default.
    type: int
    default: 60
  model_uid:
    description:
      - The uid the model runs under, what clients put in C(model). Defaults to O(model_name).
    type: str
  model_name:
    description:
      - Built-in or registered model name, for example V(bge-m3) or V(deepseek-r1-distill-qwen).
      - Required unless O(state=absent).
    type: str
  model_type:
    description:
      - Kind of model, as Xinference names it.
    type: str
    choices: [LLM, embedding, rerank, image, audio, video, flexible]
    default: LLM
  model_engine:
    description:
      - Inference engine, for example V(transformers), V(vllm), V(llama.cpp),
        V(sentence_transformers). Required for an LLM; the error lists the engines the server
        offers for O(model_name).
    type: str
  model_format:
    description:
      - Weights format, for example V(pytorch), V(awq), V(gptq), V(ggufv2).
    type: str
  model_size_in_billions:
    description:
      - Size of the model spec, V(14) or V(1_5) as Xinference writes fractional sizes.
    type: str
  quantization:
    description:
      - Quantization of the model spec (V(none) for plain pytorch weights), not to be confused with
        O(quantization_config).
    type: str
  model_path:
    description:
      - Directory of the weights on the worker; Xinference then loads them from there instead of
        downloading.
    type: str
  n_gpu:
    description:
      - V(auto) (all GPUs the server assigns), V(cpu) (no GPU, sent as C(null)) or a number of GPUs.
    type: str
    default: auto
  gpu_idx:
    description:
      - GPU indexes to place the model on.
    type: list
    elements: int
  replica:
    description:
      - Number of replicas.
    type: int
    default: 1
  worker_ip:
    description:
      - Address of the worker to launch on, in a cluster.
    type: str
  trust_remote_code:
    description:
      - Let transformers run code shipped with the weights. It only takes effect on a server started
        with C(XINFERENCE_TRUST_REMOTE_CODE=1). Not sent when not set.
    type: bool
  quantization_config:
    description:
      - Load-time quantization for the transformers engine and pytorch format, passed as
        C(BitsAndBytesConfig(**quantization_config)), for example 4-bit NF4.
      - String values are typed as C(xinference launch -qc KEY VALUE) types them, V(true) and
        V(false) as booleans and numbers as numbers.
    type: dict
  extra:
    description:
      - Further launch keys, passed to the engine as they are (for example C(max_model_len) for vLLM).
      - It may not set keys that have an option of their own.
    type: dict
  state:
    description:
      - V(present) launches the model when it is absent, unhealthy, or drifted (see O(recreate)).
      - V(restarted) terminates and launches it on every run.
      - V(absent) terminates it.
    type: str
    choices: [present, absent, restarted]
    default: present
  health_check:
    description:
      - Probe a ready model with one request of its kind and treat a failed probe as unhealthy.
    type: bool
    default: true
  recreate:
    description:
      - What to do with a running, healthy model whose reported spec differs from the options.
      - V(on_change) relaunches it, V(never) leaves it and warns, V(always) relaunches on every run.
    type: str
    choices: [never, on_change, always]
    default: on_change
  wait_timeout:
    description:
      - Seconds to wait, in all, for a load in progress, a dead worker's model to be let go, and
        the launch to be ready.
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    details: >-
      In check mode the model is described and probed but never terminated or launched; a load in
      progress is still waited for.
  diff_mode:
    support: full
    details: >-
      The diff shows the reported spec before and the launch spec after; fields Xinference does not
      report are absent from C(before).
  idempotent:
    support: partial
    details: Idempotent unless O(state=restarted) or O(recreate=always), which relaunch on every run.
extends_documentation_fragment:
  - llmops.ragstack.xinference
  - llmops.ragstack.proxy
  - llmops.ragstack.attributes
notes:
  - Xinference answers 400 C(Model not found in the model list) for an unknown uid and 503 while a
    model loads; a load that someone else started is waited for within O(wait_timeout).
  - With O(quantization_config), the server must have C(bitsandbytes); its absence, an unknown
    O(model_name) or O(model_engine), running out of GPU memory and a refused credential each fail
    with a message that says so.
  - >-
    On a server with authentication on (the Xinference 4.x default) this module needs O(username) and
    O(password): an O(api_key) is refused the C(models:write) scope, and the module says so at once.
  - C(changed) is V(true) whenever the module terminated or launched anything, also when it then failed.
seealso:
  - name: Xinference RESTful API
    description: The endpoints this module calls.
    link: https://inference.readthedocs.io/en/latest/reference/index.html
"""

EXAMPLES = r"""
- name: Embedding model from weights fetched under /models
  llmops.ragstack.xinference_model:
    endpoint: http://127.0.0.1:9997
    username: "{{ xinference_admin_username }}"
    password: "{{ xinference_admin_password }}"
    model_name: bge-m3
    model_type: embedding
    model_path: /models/BAAI/bge-m3

- name: 14B LLM in 4-bit NF4 through transformers and bitsandbytes, healed when its worker dies
  llmops.ragstack.xinference_model:
    endpoint: http://127.0.0.1:9997
    username: "{{ xinference_admin_username }}"
    password: "{{ xinference_admin_password }}"
    model_name: deepseek-r1-distill-qwen
    model_uid: deepseek-r1-distill-qwen-14b
    model_engine: transformers
    model_format: pytorch
    model_size_in_billions: "14"
    model_path: /models/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B
    quantization_config:
      load_in_4bit: true
      bnb_4bit_quant_type: nf4
      bnb_4bit_compute_dtype: float16
      bnb_4bit_use_double_quant: true
  register: llm

- name: Say when it had to be healed
  ansible.builtin.debug:
    msg: "{{ llm.model_uid }} was relaunched: {{ llm.unhealthy_reason }}"
  when: llm.healed

- name: Terminate a model
  llmops.ragstack.xinference_model:
    endpoint: http://127.0.0.1:9997
    username: "{{ xinference_admin_username }}"
    password: "{{ xinference_admin_password }}"
    model_uid: old-model
    state: absent
"""

RETURN = r"""
model_uid:
  description: The uid the module managed.
  returned: always
  type: str
  sample: deepseek-r1-distill-qwen-14b
healed:
  description: >-
    Whether the model was known to the server but not answering, or dropped with its dead worker,
    and was relaunched.
  returned: always
  type: bool
  sample: false
unhealthy_reason:
  description: What showed the model unhealthy before the run (the server's answer), else V(null).
  returned: always
  type: str
  sample: "describe deepseek-r1-distill-qwen-14b answered HTTP 500: [Errno 111] Connect call failed ('10.0.0.7', 30001)"
relaunch_reason:
  description: >-
    Why the model was (or in check mode would be) launched: V(absent), V(unhealthy), V(restarted),
    V(recreate=always) or the drifted fields; V(null) when it was not.
  returned: always
  type: str
  sample: "changed: quantization none -> 4-bit"
launch_spec:
  description: The body of C(POST /v1/models) for the options.
  returned: unless O(state=absent)
  type: dict
  sample:
    model_uid: bge-m3
    model_name: bge-m3
    model_type: embedding
    replica: 1
    n_gpu: auto
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy, ALL_PROXY]
model:
  description: The server's description of the running model (C(GET /v1/models/{uid})), V(null) when it is not running.
  returned: always
  type: dict
  sample:
    model_type: embedding
    model_name: bge-m3
    model_engine: sentence_transformers
    model_format: pytorch
    quantization: none
    replica: 1
    address: 127.0.0.1:35397
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import XinferenceError, ensure_model
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import (
    MANAGE,
    XINFERENCE_CONNECTION_RULES,
    api_from_params,
    xinference_connection_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **xinference_connection_argument_spec(),
            timeout=dict(type="int", default=60),
            model_uid=dict(type="str"),
            model_name=dict(type="str"),
            model_type=dict(
                type="str",
                default="LLM",
                choices=["LLM", "embedding", "rerank", "image", "audio", "video", "flexible"],
            ),
            model_engine=dict(type="str"),
            model_format=dict(type="str"),
            model_size_in_billions=dict(type="str"),
            quantization=dict(type="str"),
            model_path=dict(type="str"),
            n_gpu=dict(type="str", default="auto"),
            gpu_idx=dict(type="list", elements="int"),
            replica=dict(type="int", default=1),
            worker_ip=dict(type="str"),
            trust_remote_code=dict(type="bool"),
            quantization_config=dict(type="dict"),
            extra=dict(type="dict"),
            state=dict(type="str", default="present", choices=["present", "absent", "restarted"]),
            health_check=dict(type="bool", default=True),
            recreate=dict(type="str", default="on_change", choices=["never", "on_change", "always"]),
            wait_timeout=dict(type="int", default=900),
        ),
        required_if=[
            ("state", "present", ("model_name",)),
            ("state", "restarted", ("model_name",)),
        ],
        required_one_of=[("model_uid", "model_name")],
        supports_check_mode=True,
        **XINFERENCE_CONNECTION_RULES,
    )
    params = module.params
    ignored = ignored_proxy_variables(params["use_proxy"])
    try:
        result = ensure_model(api_from_params(params, MANAGE), params, module.check_mode, module.warn)
    except XinferenceError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed, proxy_variables_ignored=ignored)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
