#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_verify
short_description: Verify an Xinference gateway and its models with one real request each
version_added: 0.2.0
description:
  - >-
    Checks an Xinference server (4.x RESTful API) the way an operator does by hand with C(curl),
    read-only, and returns one check per step with a verdict, what was measured, and what to do
    when it fails.
  - >-
    The C(gateway) check lists C(/v1/models) and passes when the server answers and lists every
    model of O(models).
  - >-
    Then one check per model, named C(model <uid>): one embedding of one input, a rerank of two
    documents, or a streamed chat (C(stream=true), a few tokens) whose first content chunk must
    arrive within O(ttft_timeout); C(reasoning_content) counts as content, as DeepSeek-R1 style models
    stream their reasoning first. An LLM without the C(chat) ability gets a streamed completion
    instead. Other model types are only described.
  - >-
    A model that the gateway lists but whose requests fail with a connection-level error (C([Errno 111]
    Connect call failed), C(Connection refused), C(Connection reset), C(Server disconnected)) has a
    dead worker: Xinference keeps listing a model after its worker died. Such a check has
    C(dead_worker=true) and its uid is in RV(dead_workers); terminate and relaunch it, for example
    with M(llmops.ragstack.xinference_model).
  - >-
    Once the supervisor drops the dead worker, its models are no longer listed; a model Xinference
    records as unexpectedly terminated (C(xinference:model_unexpected_termination) in C(/metrics)) is
    reported as C(its worker died), with C(dead_worker=true), not as never launched.
  - >-
    O(api_key) is the credential for this module (listing, describing and inference are what API keys
    may do); O(username) and O(password) work too.
  - >-
    Each model is also described (C(GET /v1/models/{uid})); RV(models) holds what the server reports,
    among it the model process's C(address) and the GPUs it was given (C(accelerators)).
  - The module never fails because a check failed, only on bad input; the caller judges RV(checks).
author:
  - llmops.ragstack developers (@llmops)
options:
  timeout:
    description:
      - Seconds to wait for one HTTP answer (the model list, a describe, an embedding, a rerank).
    type: int
    default: 60
  models:
    description:
      - The models that should run, each checked with a request of its kind.
    type: list
    elements: dict
    required: true
    suboptions:
      model_uid:
        description:
          - The uid the model runs under, what clients put in C(model).
        type: str
        required: true
      model_type:
        description:
          - Kind of model; when omitted, the type the server reports for the uid.
          - A model the server runs as another type fails its check.
        type: str
        choices: [LLM, embedding, rerank, image, audio, video, flexible]
  ttft_timeout:
    description:
      - Seconds within which the first content chunk of an LLM's streamed answer must arrive (time to
        first token, counted from sending the request).
      - A stream that sends nothing at all is given up after the longer of O(timeout) and O(ttft_timeout).
    type: float
    default: 120
attributes:
  check_mode:
    support: full
    details: The module only reads and sends inference requests; check mode runs them all the same.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: It changes nothing; C(changed) is always V(false).
extends_documentation_fragment:
  - llmops.ragstack.xinference
  - llmops.ragstack.proxy
  - llmops.ragstack.attributes
notes:
  - >-
    The probes are real inference requests: an embedding of one sentence, a rerank of two, a chat of
    at most 16 tokens. A model that is loading (HTTP 503) or not launched fails its check with that
    diagnosis.
seealso:
  - module: llmops.ragstack.xinference_model
  - name: Xinference RESTful API
    description: The endpoints this module calls.
    link: https://inference.readthedocs.io/en/latest/reference/index.html
"""

EXAMPLES = r"""
- name: Verify the gateway and the three models of the stack
  llmops.ragstack.xinference_verify:
    endpoint: http://127.0.0.1:9997
    api_key: "{{ xinference_api_key }}"
    models:
      - model_uid: bge-m3
        model_type: embedding
      - model_uid: bge-reranker-v2-m3
        model_type: rerank
      - model_uid: deepseek-r1-distill-qwen-14b
    ttft_timeout: 30
  register: verified

- name: Say what failed, and what to do
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.value }} ({{ item.diagnosis }})"
  loop: "{{ verified.checks | selectattr('verdict', 'equalto', 'fail') }}"

- name: Relaunch the chat model when its worker died (xinference_model heals a listed model that does not answer)
  llmops.ragstack.xinference_model:
    endpoint: http://127.0.0.1:9997
    username: "{{ xinference_admin_username }}"
    password: "{{ xinference_admin_password }}"
    model_uid: deepseek-r1-distill-qwen-14b
    model_name: deepseek-r1-distill-qwen
    model_engine: transformers
    model_path: /models/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B
  when: "'deepseek-r1-distill-qwen-14b' in verified.dead_workers"
"""

RETURN = r"""
checks:
  description:
    - The checks in order, C(gateway) first, then C(model <uid>) for each of O(models).
    - >-
      C(measured) holds the numbers: C(latency_ms), C(listed) and C(planned_listed) for the gateway;
      C(latency_ms) and C(dimension) for an embedding; C(latency_ms), C(results), C(top_index) and
      C(top_score) for a rerank; C(ttft_s), C(chunks) and C(stream_s) for a streamed chat or completion.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: V(gateway) or C(model <uid>).
      type: str
      sample: model bge-m3
    verdict:
      description: V(pass), V(fail), or V(skip) (a model not checked because the gateway check failed).
      type: str
      sample: pass
    value:
      description: What was seen, in a few words.
      type: str
      sample: "ttft 0.42 s, 12 chunks"
    diagnosis:
      description: What went wrong and what to do, V(null) when the check passed.
      type: str
      sample: >-
        gateway lists deepseek-r1-distill-qwen-14b but its worker does not answer (/v1/chat/completions
        answered HTTP 500: [Errno 111] Connect call failed ('10.0.0.7', 30001)): the worker process
        died; terminate and relaunch the model (stack_verify_heal: true does it through
        llmops.ragstack.xinference_model)
    measured:
      description: The numbers measured, by name (empty when there are none).
      type: dict
      sample:
        ttft_s: 0.42
        chunks: 12
        stream_s: 0.61
    dead_worker:
      description: Whether the model is listed but its worker does not answer.
      type: bool
      sample: false
    model_uid:
      description: The model's uid, V(null) for the gateway check.
      type: str
      sample: bge-m3
    model_type:
      description: >-
        The model's type as planned or, when not planned, as the server reports it; V(null) for the
        gateway check.
      type: str
      sample: embedding
dead_workers:
  description: The uids of the models diagnosed with a dead worker.
  returned: always
  type: list
  elements: str
  sample: [deepseek-r1-distill-qwen-14b]
models:
  description:
    - Per uid, what C(GET /v1/models/{uid}) reports of the running model, an empty dict when describe failed.
    - C(address) is the host:port of the model's process on its worker, C(accelerators) the GPU indexes it was given.
  returned: always
  type: dict
  sample:
    bge-m3:
      model_type: embedding
      model_name: bge-m3
      model_engine: sentence_transformers
      address: 10.0.0.7:41235
      accelerators: ["0"]
      model_ability: [embed]
      replica: 1
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy, ALL_PROXY]
failed_checks:
  description: How many checks have the verdict V(fail).
  returned: always
  type: int
  sample: 0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import XinferenceError
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import (
    READ,
    XINFERENCE_CONNECTION_RULES,
    api_from_params,
    xinference_connection_argument_spec,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_verify import verify

MODEL_TYPES = ["LLM", "embedding", "rerank", "image", "audio", "video", "flexible"]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            **xinference_connection_argument_spec(),
            timeout=dict(type="int", default=60),
            models=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    model_uid=dict(type="str", required=True),
                    model_type=dict(type="str", choices=MODEL_TYPES),
                ),
            ),
            ttft_timeout=dict(type="float", default=120),
        ),
        supports_check_mode=True,
        **XINFERENCE_CONNECTION_RULES,
    )
    params = module.params
    ignored = ignored_proxy_variables(params["use_proxy"])
    try:
        result = verify(api_from_params(params, READ), params["models"], params["ttft_timeout"])
    except XinferenceError as exc:
        module.fail_json(msg=str(exc), proxy_variables_ignored=ignored)
    module.exit_json(proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
