#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ragflow_provider
short_description: Register Xinference models in RAGFlow and make them the tenant's defaults
version_added: 0.1.0
description:
  - Logs into RAGFlow as the user O(email), as the web UI does (or uses O(api_key)), and ensures that the user's tenant
    has the Xinference models O(models), served at O(provider_url), and (with O(set_defaults)) uses
    the first model of each type as its default chat, embedding and rerank model.
  - With RAGFlow v0.27 (C(/api/v1)) the models are an instance O(instance_name) of the provider
    C(Xinference) that holds exactly O(models); an instance with another base URL, API key or set
    of models is updated. Defaults are set through C(PATCH /api/v1/models/default).
  - With RAGFlow v0.24 and older (C(/v1)) each model is a C(Xinference) model of the tenant
    (C(/v1/llm/add_llm)), re-added when its base URL or O(models[].max_tokens) differ, and the
    defaults are the tenant's C(llm_id), C(embd_id) and C(rerank_id) (C(/v1/user/set_tenant_info)).
  - >-
    Every model is verified on its own, on every run: with v0.27 the module asks RAGFlow to test-call
    each model (C(POST /api/v1/providers/Xinference/connection), which saves nothing) before it
    creates or updates the instance, because RAGFlow's own check when it saves an instance stops at the
    first model that answers and would register the others unchecked. With v0.24 C(add_llm) test-calls
    the one model it adds. A model that does not answer from where RAGFlow runs fails the task, naming
    the model and what RAGFlow or Xinference said.
author:
  - llmops.ragstack developers (@llmops)
options:
  base_url:
    description:
      - RAGFlow's web address, the one the browser opens, for example V(http://ragflow.example:80).
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for RAGFlow to answer one request, test calls of the models included.
    type: int
    default: 60
  provider_url:
    description:
      - Xinference's base URL as the RAGFlow container reaches it, without C(/v1), for example
        V(http://xinference:9997) (the service name on a Docker network RAGFlow shares) or
        V(http://host.docker.internal:9997).
      - A loopback address (C(127.0.0.1), C(localhost), C(::1)) is refused, because inside the
        RAGFlow container it is the container itself.
    type: str
    required: true
  provider_api_key:
    description:
      - API key RAGFlow sends to Xinference; Xinference without authentication ignores it.
      - RAGFlow v0.24 does not show stored keys, so a changed key is sent there only when a model
        is re-added for another reason.
    type: str
  instance_name:
    description:
      - Name of the provider instance that holds the models, with RAGFlow v0.27. RAGFlow reserves
        V(default).
    type: str
    default: xinference
  models:
    description:
      - The models Xinference serves, by the model UID Xinference knows them by.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Model UID in Xinference, for example V(bge-m3).
        type: str
        required: true
      type:
        description:
          - What RAGFlow uses the model for.
        type: str
        required: true
        choices: [chat, embedding, rerank]
      max_tokens:
        description:
          - Context length RAGFlow assumes for the model.
        type: int
        default: 8192
  set_defaults:
    description:
      - Make the first model of each type in O(models) the tenant's default model of that type.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: >-
      In check mode nothing is written; the models are still test-called through RAGFlow (v0.27), and
      without O(api_key) the module still logs in, which replaces the user's web UI session.
  diff_mode:
    support: full
    details: The diff lists the writes the module makes (or, in check mode, would make), one a line.
  idempotent:
    support: full
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.ragflow
  - llmops.ragstack.ragflow.api_key
  - llmops.ragstack.proxy
seealso:
  - module: llmops.ragstack.ragflow_token
"""

EXAMPLES = r"""
- name: Register the Xinference models in RAGFlow and make them the defaults
  llmops.ragstack.ragflow_provider:
    base_url: http://127.0.0.1:80
    email: admin@example.com
    password: "{{ ragflow_admin_password }}"
    provider_url: http://xinference:9997
    models:
      - name: qwen2.5-instruct
        type: chat
        max_tokens: 32768
      - name: bge-m3
        type: embedding
      - name: bge-reranker-v2-m3
        type: rerank
"""

RETURN = r"""
changes:
  description: What was changed (or would be, in check mode), one line each; empty when nothing was.
  returned: success
  type: list
  elements: str
  sample:
    - "create instance xinference of Xinference at http://xinference:9997 with bge-m3 (embedding)"
    - "set default embedding model to bge-m3"
defaults:
  description: Model type -> name of the model that is (or, in check mode, would be) the tenant's default.
  returned: success
  type: dict
  sample: {"chat": "qwen2.5-instruct", "embedding": "bge-m3", "rerank": "bge-reranker-v2-m3"}
api_generation:
  description: Which RAGFlow API layout answered, V(v0.27) (C(/api/v1)) or V(v0.24) (C(/v1)).
  returned: success
  type: str
  sample: v0.27
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy]
"""


from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    client_from_params,
    login_argument_spec,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_provider import Registration, check_provider_url


def register(module):
    params = module.params
    # Refused before anything is sent: RAGFlow would only fail later, in its test call of the model.
    check_provider_url(params["provider_url"])
    if CRYPTOGRAPHY_IMPORT_ERROR and not params["api_key"]:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    api = client_from_params(params)
    generation = api.authenticate(params)
    registration = Registration(
        api,
        provider_url=params["provider_url"],
        api_key=params["provider_api_key"],
        instance_name=params["instance_name"],
        models=params["models"],
        set_defaults=params["set_defaults"],
        check_mode=module.check_mode,
    )
    result = registration.ensure()
    result["api_generation"] = generation
    if module._diff:
        result["diff"] = {"prepared": "".join("%s\n" % change for change in result["changes"])}
    return result


def main():
    argument_spec = login_argument_spec(timeout=60)
    argument_spec["base_url"]["required"] = True
    argument_spec.update(
        provider_url=dict(type="str", required=True),
        provider_api_key=dict(type="str", no_log=True),
        instance_name=dict(type="str", default="xinference"),
        models=dict(
            type="list",
            elements="dict",
            required=True,
            options=dict(
                name=dict(type="str", required=True),
                type=dict(type="str", required=True, choices=["chat", "embedding", "rerank"]),
                # Not a secret: a context length (the sanity test flags names with "token").
                max_tokens=dict(type="int", default=8192, no_log=False),
            ),
        ),
        set_defaults=dict(type="bool", default=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[("password", "api_key")],
        supports_check_mode=True,
    )
    ignored = ignored_proxy_variables(module.params["use_proxy"])
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout must be more than 0 seconds", proxy_variables_ignored=ignored)
    try:
        result = register(module)
    except RagflowError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed, proxy_variables_ignored=ignored)
    module.exit_json(proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
