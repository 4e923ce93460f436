#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xinference_auth
short_description: Complete a new Xinference server's setup and keep a named API key for its clients
version_added: 0.3.0
description:
  - >-
    Xinference 4.x runs with advanced authentication by default: a new server has no account, and
    every API call needs a credential. This module brings such a server to a known state, idempotently.
  - >-
    When the server has no account yet (C(GET /v1/admin/setup/status)), it creates the first admin
    O(username) with O(password) through C(POST /v1/admin/setup), with the server's setup token:
    O(setup_token), or the one the server keeps in its auth database O(auth_db) until the first
    account exists. Once set up, it logs in as that admin (C(POST /token)); a wrong password fails
    and names the fix.
  - >-
    With O(api_key_name), it makes sure an enabled API key of that name exists (created once, found
    by name afterwards, enabled when disabled) and returns its plaintext in RV(api_key), for
    inference clients (RAGFlow's model provider, verification). Xinference lets API keys reach only
    the model query and inference endpoints; launching and terminating models needs the admin.
  - >-
    A server that runs without advanced authentication (C(XINFERENCE_AUTH_ADVANCED=0)) has none of
    these routes: the module changes nothing and returns RV(auth_enabled=false) and an empty RV(api_key).
author:
  - llmops.ragstack developers (@llmops)
options:
  endpoint:
    description:
      - Xinference's HTTP address (the supervisor's in a cluster), for example V(http://127.0.0.1:9997).
    type: str
    required: true
  validate_certs:
    description:
      - Verify the TLS certificate of an V(https) O(endpoint).
    type: bool
    default: true
  username:
    description:
      - The admin account, created on a new server and logged in as afterwards.
    type: str
    required: true
  password:
    description:
      - The admin's password (at least C(XINFERENCE_PASSWORD_MIN_LENGTH), 8 by default, characters). Keep it in a vault.
    type: str
    required: true
  setup_token:
    description:
      - The setup token of a server without any account, as its log prints it under C(FIRST-RUN SETUP REQUIRED).
      - Takes precedence over O(auth_db).
    type: str
  auth_db:
    description:
      - Path of the server's auth database on the host the module runs on (C(XINFERENCE_HOME/auth/auth.db)),
        read-only, to take the setup token from when the server has no account yet.
    type: path
  api_key_name:
    description:
      - Name of the API key for inference clients; omitted, no key is made or read.
      - Xinference compares key names trimmed and case-insensitively.
    type: str
  api_key_description:
    description:
      - Description of a key created by this module.
    type: str
    default: Inference clients, managed by llmops.ragstack
  timeout:
    description:
      - Seconds to wait for one HTTP answer.
    type: int
    default: 30
extends_documentation_fragment:
  - llmops.ragstack.proxy
  - llmops.ragstack.attributes
attributes:
  check_mode:
    support: full
    details: >-
      Reports the admin and the key it would create without creating them; RV(api_key) is then empty
      unless the key exists already.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - >-
    RV(api_key) is a secret the module obtains: set C(no_log: true) on the task that registers it
    (the module cannot hide a value it must return).
  - The admin's access token is used for this run only and never returned.
seealso:
  - module: llmops.ragstack.xinference_model
  - module: llmops.ragstack.xinference_verify
"""

EXAMPLES = r"""
- name: Set up Xinference's admin and the inference key
  llmops.ragstack.xinference_auth:
    endpoint: http://127.0.0.1:9997
    username: admin
    password: "{{ vault_xinference_admin_password }}"
    auth_db: /opt/xinference/home/auth/auth.db
    api_key_name: ragstack-inference
  register: xinference_auth_result
  no_log: true

- name: Hand the key to the inference clients
  ansible.builtin.set_fact:
    xinference_api_key: "{{ xinference_auth_result.api_key }}"
  no_log: true
"""

RETURN = r"""
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy]
auth_enabled:
  description: Whether the server runs with advanced authentication.
  returned: always
  type: bool
admin_created:
  description: Whether the server had no account and the admin was created (would be, in check mode).
  returned: always
  type: bool
api_key:
  description:
    - Plaintext of the key O(api_key_name); empty without O(api_key_name), with advanced auth off, and
      in check mode when the key does not exist yet. A secret.
  returned: always
  type: str
api_key_name:
  description: O(api_key_name) as given.
  returned: always
  type: str
api_key_id:
  description: The server's id of the key; null when none was read or made.
  returned: always
  type: int
api_key_created:
  description: Whether the key was created by this run (would be, in check mode).
  returned: always
  type: bool
api_key_enabled:
  description: Whether the key is enabled at the end of the run.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_auth import (
    XinferenceAuth,
    ensure_auth,
    new_result,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import XinferenceError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoint=dict(type="str", required=True),
            validate_certs=dict(type="bool", default=True),
            username=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            setup_token=dict(type="str", no_log=True),
            auth_db=dict(type="path"),
            api_key_name=dict(type="str", no_log=False),
            # A label shown beside the key in Xinference, not the key.
            api_key_description=dict(type="str", default="Inference clients, managed by llmops.ragstack", no_log=False),
            timeout=dict(type="int", default=30),
            use_proxy=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second, not %d" % params["timeout"])
    if not params["username"].strip() or not params["password"]:
        module.fail_json(msg="username and password must not be empty: set the Xinference admin's (from a vault)")
    auth = XinferenceAuth(
        params["endpoint"],
        params["username"],
        params["password"],
        timeout=params["timeout"],
        validate_certs=params["validate_certs"],
        use_proxy=params["use_proxy"],
    )
    result = new_result(params["api_key_name"])
    result["proxy_variables_ignored"] = ignored_proxy_variables(params["use_proxy"])
    try:
        ensure_auth(
            auth,
            result,
            setup_token=params["setup_token"],
            auth_db=params["auth_db"],
            key_description=params["api_key_description"],
            check_mode=module.check_mode,
        )
    except XinferenceError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
