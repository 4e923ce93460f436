#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ragflow_e2e
short_description: Check a RAGFlow deployment end to end through its HTTP API, and clean up after itself
version_added: 0.2.0
description:
  - >-
    Runs through RAGFlow's HTTP API (C(/api/v1), with an API key) what an operator checks by hand after
    a deployment, one step after the other: V(create_dataset), V(upload_document) (a short text file),
    V(start_parsing), V(wait_parsed) (polls the document until its C(run) status is C(DONE)), V(retrieval)
    (asks for the document's chunk), V(create_chat), V(create_session) and V(ask) (a chat assistant on
    the dataset answers the question), then V(cleanup).
  - >-
    The document contains a marker word made up for each run; V(retrieval) passes when a returned chunk
    contains it. V(ask) passes when the answer is not empty and carries no C(**ERROR**) from the chat model.
  - >-
    Each step gets a verdict (V(pass), V(fail), V(skip)); the steps after a failed one are skipped, and
    RV(diagnosis) says in one line what to do about the first failure. A failed step does not fail the
    task: it is the result (RV(passed=false)), so that a play can write a report first and then decide.
    The task fails only on bad input or when nothing answers at O(base_url).
  - >-
    V(cleanup) always runs, also after a failed step: it deletes the chat assistant (its session goes with
    it) and the dataset (its document goes with it), and reports what it deleted and what it could not.
    Dataset and chat names get a random suffix, so runs never collide and nothing else is deleted.
  - >-
    The module reports C(changed=false) although it writes to RAGFlow, because it deletes what
    it created: RAGFlow is left as it was found.
  - >-
    Works with RAGFlow v0.27 and v0.24 (both serve these C(/api/v1) paths); the question goes to
    C(POST /api/v1/chat/completions) on v0.27 and to C(POST /api/v1/chats/<chat_id>/completions) on v0.24.
    Which one a server speaks is read from the routes it serves (its health check and its login route).
author:
  - llmops.ragstack developers (@llmops)
options:
  base_url:
    description:
      - RAGFlow's API address, for example V(http://127.0.0.1:9380) (the ragflow container's API port)
        or the web address that proxies C(/api/v1), for example V(http://ragflow.example:80).
    type: str
    required: true
  api_key:
    description:
      - >-
        RAGFlow API key (C(ragflow-...)), sent as C(Authorization: Bearer <api_key>). Get one with
        M(llmops.ragstack.ragflow_token).
      - The datasets and chats are created in the tenant the key belongs to.
    type: str
    required: true
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https) O(base_url).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for one HTTP answer. The V(ask) step waits for the whole answer of the chat
        model, so give a slow model more.
    type: int
    default: 30
  parse_timeout:
    description:
      - Seconds the document may take to reach C(run=DONE) after parsing started.
    type: int
    default: 300
  poll_interval:
    description:
      - Seconds between two reads of the document's parsing status.
    type: float
    default: 2.0
  name_prefix:
    description:
      - Start of the dataset and chat names; a dash and 8 random hex digits follow.
    type: str
    default: ragstack-verify
  document_text:
    description:
      - Text of the uploaded document (a C(.txt) file). C({marker}) in it is replaced with the run's
        marker word.
      - When not set, a few sentences that contain the marker word.
      - With a text without C({marker}), V(retrieval) passes when any chunk of the document comes back.
    type: str
  question:
    description:
      - The question for V(retrieval) and V(ask). C({marker}) in it is replaced with the run's marker word.
      - When not set, a question about the marker word.
    type: str
  chat:
    description:
      - Also create a chat assistant on the dataset and ask it the question. With V(false) the steps
        V(create_chat), V(create_session) and V(ask) are skipped, for a RAGFlow without a chat model.
    type: bool
    default: true
attributes:
  check_mode:
    support: partial
    details: >-
      The check writes to RAGFlow, so in check mode the module sends nothing at all and returns
      RV(passed=null) and C(skipped=true) with a message.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Every run creates and deletes its own dataset and chat, and reports no change.
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.proxy
notes:
  - O(api_key) is never shown in the result; the module does not add it to any message.
  - A run with a real embedding and chat model takes seconds to minutes, mostly parsing and the answer.
seealso:
  - module: llmops.ragstack.ragflow_token
  - module: llmops.ragstack.ragflow_provider
  - name: RAGFlow HTTP API reference
    description: The endpoints the steps use.
    link: https://ragflow.io/docs/dev/http_api_reference
"""

EXAMPLES = r"""
- name: Get the RAGFlow API key
  llmops.ragstack.ragflow_token:
    base_url: http://127.0.0.1:80
    email: admin@example.com
    password: "{{ ragflow_admin_password }}"
  register: ragflow_key
  no_log: true

- name: Check RAGFlow end to end
  llmops.ragstack.ragflow_e2e:
    base_url: http://127.0.0.1:9380
    api_key: "{{ ragflow_key.token }}"
    parse_timeout: 600
  register: ragflow_check

- name: Write the report
  ansible.builtin.copy:
    content: "{{ ragflow_check.steps | to_nice_yaml }}"
    dest: /var/tmp/ragflow-check.yml
    mode: "0644"

- name: Stop when the check failed
  ansible.builtin.assert:
    that: ragflow_check.passed
    fail_msg: "{{ ragflow_check.failed_step }}: {{ ragflow_check.diagnosis }}"

- name: Only the dataset steps, with my own text (no chat model yet)
  llmops.ragstack.ragflow_e2e:
    base_url: http://127.0.0.1:9380
    api_key: "{{ ragflow_key.token }}"
    chat: false
    document_text: "Our VPN gateway is vpn.example.com. The code word is {marker}."
    question: "What is the code word {marker}?"
"""

RETURN = r"""
passed:
  description:
    - V(true) when every step passed or was skipped on purpose (O(chat=false)), cleanup included.
    - V(null) in check mode.
  returned: always
  type: bool
  sample: false
skipped:
  description: V(true) in check mode, where nothing is sent.
  returned: in check mode
  type: bool
  sample: true
msg:
  description: Why nothing was done.
  returned: in check mode
  type: str
  sample: check mode; ragflow_e2e writes to RAGFlow (and deletes it again), so it sends nothing
steps:
  description: Every step in order, each with its verdict. Empty in check mode.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: >-
        V(create_dataset), V(upload_document), V(start_parsing), V(wait_parsed), V(retrieval),
        V(create_chat), V(create_session), V(ask) or V(cleanup).
      type: str
      sample: wait_parsed
    verdict:
      description: V(pass), V(fail) or V(skip).
      type: str
      sample: fail
    seconds:
      description: How long the step took.
      type: float
      sample: 4.021
    detail:
      description: What the step saw, in one line.
      type: str
      sample: "run FAIL, progress -1: 10:02:11 Page(1~100000001): [ERROR]Fail to bind embedding model"
failed_step:
  description: Name of the first step that failed; V(null) when none did.
  returned: always
  type: str
  sample: wait_parsed
diagnosis:
  description: What to do about the first failure, in one line; V(null) when none failed.
  returned: always
  type: str
  sample: >-
    the document failed to parse: 10:02:11 Page(1~100000001): [ERROR]Fail to bind embedding model;
    check the ragflow-cpu/ragflow-gpu container log and the embedding model
created:
  description: IDs of what the run created; V(null) for what it did not get to.
  returned: always
  type: dict
  contains:
    dataset_id:
      description: The dataset.
      type: str
      sample: 2b5e1f2c9a3d11f0b1a20242ac120006
    document_id:
      description: The uploaded document.
      type: str
      sample: 2c0a8e449a3d11f0b1a20242ac120006
    chat_id:
      description: The chat assistant.
      type: str
      sample: 3e71b0d09a3d11f0b1a20242ac120006
    session_id:
      description: The chat session.
      type: str
      sample: 3f2c4a6e9a3d11f0b1a20242ac120006
cleanup:
  description: What the V(cleanup) step deleted and what it left in RAGFlow, as C(chat <id>) and C(dataset <id>).
  returned: always
  type: dict
  contains:
    deleted:
      description: Deleted, the chat first.
      type: list
      elements: str
      sample: ["chat 3e71b0d09a3d11f0b1a20242ac120006", "dataset 2b5e1f2c9a3d11f0b1a20242ac120006"]
    left:
      description: Could not be deleted; the V(cleanup) step's detail says why.
      type: list
      elements: str
      sample: []
api_generation:
  description: Which RAGFlow API layout answered, V(v0.27) or V(v0.24).
  returned: when not in check mode
  type: str
  sample: v0.27
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_e2e import (
    DEFAULT_DOCUMENT,
    DEFAULT_QUESTION,
    RagflowSdk,
    Verification,
    check_params,
    new_marker,
    run_name,
    with_marker,
)

CHECK_MODE_MSG = "check mode; ragflow_e2e writes to RAGFlow (and deletes it again), so it sends nothing"


def verify(params):
    api = RagflowSdk(
        params["base_url"], params["api_key"], params["timeout"], params["validate_certs"], params["use_proxy"]
    )
    api.probe()
    marker = new_marker()
    verification = Verification(
        api,
        name=run_name(params["name_prefix"]),
        document_text=with_marker(params["document_text"] or DEFAULT_DOCUMENT, marker),
        question=with_marker(params["question"] or DEFAULT_QUESTION, marker),
        marker=marker,
        parse_timeout=params["parse_timeout"],
        poll_interval=params["poll_interval"],
        chat=params["chat"],
    )
    return verification.run()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            base_url=dict(type="str", required=True),
            api_key=dict(type="str", required=True, no_log=True),
            validate_certs=dict(type="bool", default=True),
            timeout=dict(type="int", default=30),
            parse_timeout=dict(type="int", default=300),
            poll_interval=dict(type="float", default=2.0),
            name_prefix=dict(type="str", default="ragstack-verify"),
            document_text=dict(type="str"),
            question=dict(type="str"),
            chat=dict(type="bool", default=True),
            use_proxy=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    ignored = ignored_proxy_variables(module.params["use_proxy"])
    try:
        check_params(module.params)
        if module.check_mode:
            module.exit_json(
                changed=False,
                skipped=True,
                msg=CHECK_MODE_MSG,
                passed=None,
                steps=[],
                failed_step=None,
                diagnosis=None,
                created=dict.fromkeys(("dataset_id", "document_id", "chat_id", "session_id")),
                cleanup={"deleted": [], "left": []},
                proxy_variables_ignored=ignored,
            )
        result = verify(module.params)
    except RagflowError as exc:
        module.fail_json(msg=str(exc), proxy_variables_ignored=ignored)
    module.exit_json(proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
