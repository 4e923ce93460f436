#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ragflow_user
short_description: Ensure a RAGFlow user's password is the given one (first-boot admin password)
version_added: 0.2.0
description:
  - >-
    Ensures the RAGFlow user O(email) logs in with O(password). It logs in with O(password); when
    RAGFlow refuses it, it logs in with O(initial_password) and changes the password to O(password)
    through RAGFlow's own settings endpoint (C(PATCH /api/v1/users/me) on v0.27, C(POST /v1/user/setting)
    on v0.24 and v0.25, what the web UI's password page sends), then logs in with O(password) to
    confirm.
  - >-
    A new RAGFlow has one user, V(admin@ragflow.io) with the password V(admin), created by its admin
    server on first start; O(initial_password) defaults to that. Run this module before any other
    module logs in as the user (M(llmops.ragstack.ragflow_provider), M(llmops.ragstack.ragflow_token)).
  - It does not create users; an email RAGFlow does not know fails the task.
author:
  - llmops.ragstack developers (@llmops)
options:
  base_url:
    description:
      - RAGFlow's web or API address, for example V(http://127.0.0.1:9380).
    type: str
    required: true
  password:
    description:
      - The password the user must have.
    type: str
    required: true
  initial_password:
    description:
      - The password to log in with when RAGFlow refuses O(password), to change it from.
      - The default is RAGFlow's factory password of V(admin@ragflow.io).
    type: str
    default: admin
  timeout:
    description:
      - Seconds to wait for RAGFlow to answer one request.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    details: >-
      In check mode the password is not changed; the module still logs in (with O(password), and with
      O(initial_password) when that is refused) to tell whether it would change it.
  diff_mode:
    support: none
  idempotent:
    support: full
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.ragflow
  - llmops.ragstack.proxy
notes:
  - >-
    Each run logs in at least once, because only a login proves a password; RAGFlow gives the user a
    new session at every login, which ends the user's web UI session (sign-out). A password change also
    ends it. API keys of the user's tenant keep working.
  - >-
    O(password) and O(initial_password) are C(no_log), except the value V(admin): RAGFlow's factory password
    is public, and masking it would also mask the C(admin) in V(admin@ragflow.io) in every message.
seealso:
  - module: llmops.ragstack.ragflow_token
  - module: llmops.ragstack.ragflow_provider
"""

EXAMPLES = r"""
- name: Replace RAGFlow's factory admin password (admin) with the vaulted one
  llmops.ragstack.ragflow_user:
    base_url: http://127.0.0.1:9380
    email: admin@ragflow.io
    password: "{{ ragflow_admin_password }}"

- name: Rotate the admin password from the previous vaulted one
  llmops.ragstack.ragflow_user:
    base_url: http://127.0.0.1:9380
    email: admin@ragflow.io
    password: "{{ ragflow_admin_password }}"
    initial_password: "{{ ragflow_admin_previous_password }}"
"""

RETURN = r"""
msg:
  description: What the module found or did, in one line.
  returned: success
  type: str
  sample: changed the password of admin@ragflow.io from initial_password
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
    FACTORY_ADMIN_PASSWORD,
    client_from_params,
    login_argument_spec,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_user import ensure_password


def main():
    argument_spec = login_argument_spec(api_key=False)
    argument_spec["base_url"]["required"] = True
    argument_spec["password"].update(required=True)
    argument_spec["initial_password"] = dict(type="str", default=FACTORY_ADMIN_PASSWORD, no_log=True)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    # RAGFlow's factory password is public (its docs and sources); masked, it would turn every "admin"
    # in the output, admin@ragflow.io included, into ********.
    module.no_log_values.discard(FACTORY_ADMIN_PASSWORD)
    ignored = ignored_proxy_variables(params["use_proxy"])
    if CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    if not params["password"]:
        module.fail_json(msg="password must not be empty", proxy_variables_ignored=ignored)
    if params["timeout"] <= 0:
        module.fail_json(msg="timeout must be more than 0 seconds", proxy_variables_ignored=ignored)
    api = client_from_params(params)
    try:
        generation = api.detect()
        result = ensure_password(
            api,
            email=params["email"],
            password=params["password"],
            initial_password=params["initial_password"],
            public_key=params["public_key"],
            check_mode=module.check_mode,
        )
    except RagflowError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed, proxy_variables_ignored=ignored)
    module.exit_json(api_generation=generation, proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
