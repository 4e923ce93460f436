#!/usr/bin/python
# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ragflow_token
short_description: Ensure a RAGFlow API key exists for a user's tenant and return it
version_added: 0.1.0
description:
  - >-
    Ensures the tenant owned by the RAGFlow user O(email) has an API key (the C(ragflow-...) token
    that RAGFlow's HTTP API and SDK take as C(Authorization: Bearer)), and returns it.
  - An existing key is returned unchanged (the newest one when there are several). With none, one
    is created. With O(rotate=true) a new key is created and every older API key of the tenant is
    deleted. Tokens RAGFlow made for one chat or agent (embed links, with a C(dialog_id)) are
    neither returned nor deleted.
  - O(method=api) logs into the RAGFlow web API as the user, as the web UI does (or uses O(api_key)).
    It works with RAGFlow v0.27 (C(/api/v1/auth/login), C(/api/v1/system/tokens)) and with v0.24 and
    v0.25 (C(/v1/user/login), C(/v1/system/new_token)).
  - O(method=db) reads and writes RAGFlow's MySQL database directly, for when no user password is
    at hand. The rows it writes are those RAGFlow writes (format of RAGFlow v0.24 and later).
  - >-
    A key written with O(method=db) works at once, also for a user who never logged in (the
    V(admin@ragflow.io) a new RAGFlow creates). RAGFlow accepts an API key only while the user that owns
    the key's tenant has a non-empty C(access_token) in its C(user) row, and only a login sets one. When
    it is empty, the module writes one (a fresh uuid, as a login does) and reports C(changed). No login
    session carries that value, so nobody is signed in or out by it.
author:
  - llmops.ragstack developers (@llmops)
options:
  method:
    description:
      - How to reach RAGFlow's tokens. V(api) needs O(base_url) and O(password) (or O(api_key)); V(db)
        needs the C(db_*) options.
    type: str
    choices: [api, db]
    default: api
  rotate:
    description:
      - Create a new key and delete all older API keys of the tenant, even when one exists.
      - Not idempotent by design; use it in a task that runs on purpose (a tag or a C(when)).
    type: bool
    default: false
  base_url:
    description:
      - RAGFlow's web address, the one the browser opens, for example V(http://ragflow.example:80).
      - Required with O(method=api).
    type: str
  timeout:
    description:
      - Seconds to wait for RAGFlow or the database to answer; with O(method=db) it bounds the connect
        and every read and write, so a port that is not MySQL fails within it.
    type: int
    default: 30
  db_host:
    description:
      - Host of RAGFlow's MySQL server, with O(method=db).
    type: str
    default: 127.0.0.1
  db_port:
    description:
      - Port of RAGFlow's MySQL server. RAGFlow v0.27's Docker Compose publishes it on the host as C(3306)
        (C(EXPOSE_MYSQL_PORT); v0.24 used C(5455)); inside the Compose network it is C(3306). The
        llmops.ragstack.ragflow role publishes it on C(127.0.0.1) only.
    type: int
    default: 3306
  db_user:
    description:
      - MySQL user, with O(method=db).
    type: str
    default: root
  db_password:
    description:
      - Password of O(db_user). Required with O(method=db).
    type: str
  db_name:
    description:
      - RAGFlow's database (C(MYSQL_DBNAME)).
    type: str
    default: rag_flow
attributes:
  check_mode:
    support: full
    details: >-
      In check mode nothing is written; RV(token) is the existing key when one would be returned
      unchanged, else V(null). O(method=api) without O(api_key) still logs in, which replaces the
      user's web UI session.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: Idempotent unless O(rotate=true), which replaces the key on every run.
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.ragflow
  - llmops.ragstack.ragflow.api_key
  - llmops.ragstack.proxy
requirements:
  - C(PyMySQL) on the host the module runs on, for O(method=db)
notes:
  - >-
    The returned RV(token) is a secret that the module obtains. It is not added to the module's
    C(no_log) values, because that would mask it in the result that later tasks need. Set
    C(no_log: true) on the task instead, as in the examples, so that it does not appear in the output.
  - >-
    With O(api_key), the module authenticates with that key; when it is the tenant's newest key, RV(token)
    is that same value, which Ansible masks as a C(no_log) value. Use O(api_key) to list, create or rotate
    keys without a login, not to read back the key given.
  - With O(method=db), write access to RAGFlow's database bypasses RAGFlow; a RAGFlow server
    running at the same time sees the new key at once, as it reads keys from the database.
seealso:
  - name: RAGFlow HTTP API reference
    description: "How the key is used: C(Authorization: Bearer <token>)."
    link: https://ragflow.io/docs/dev/http_api_reference
"""

EXAMPLES = r"""
- name: Get the RAGFlow API key of the admin user (created on first run)
  llmops.ragstack.ragflow_token:
    base_url: http://127.0.0.1:80
    email: admin@example.com
    password: "{{ ragflow_admin_password }}"
  register: ragflow_key
  no_log: true

- name: Same, straight from RAGFlow's database
  llmops.ragstack.ragflow_token:
    method: db
    email: admin@example.com
    db_host: 127.0.0.1
    db_port: 3306
    db_password: "{{ ragflow_mysql_password }}"
  register: ragflow_key
  no_log: true

- name: Replace the key (the old one stops working)
  llmops.ragstack.ragflow_token:
    base_url: https://ragflow.example
    email: admin@example.com
    password: "{{ ragflow_admin_password }}"
    rotate: true
  register: ragflow_key
  no_log: true
"""

RETURN = r"""
token:
  description:
    - The API key, C(ragflow-) and 43 URL-safe characters. V(null) in check mode when a key would be created.
    - "A secret: run the task with C(no_log: true)."
  returned: success
  type: str
  sample: ragflow-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdE
tenant_id:
  description: The tenant the key belongs to; V(null) when not known (check mode with no key via the API).
  returned: success
  type: str
  sample: 5f0ecb52d45a11ef9b2a0242ac120006
deleted_tokens:
  description:
    - How many older API keys were deleted (or would be, in check mode) by O(rotate=true).
    - The keys are listed again after deleting; when one is still there the task fails instead.
  returned: success
  type: int
  sample: 0
api_generation:
  description: Which RAGFlow API layout answered, V(v0.27) (C(/api/v1)) or V(v0.24) (C(/v1)), with O(method=api).
  returned: when O(method=api)
  type: str
  sample: v0.27
proxy_variables_ignored:
  description: Proxy variables set in the module's environment that it did not use (O(use_proxy=false)).
  returned: always
  type: list
  elements: str
  sample: [https_proxy]
access_token_set:
  description: With O(method=db), whether the user's empty C(access_token) was (or would be) set so that its keys work.
  returned: when O(method=db)
  type: bool
  sample: false
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import ignored_proxy_variables
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError, ensure_token
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import (
    CRYPTOGRAPHY_IMPORT_ERROR,
    client_from_params,
    login_argument_spec,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_db import RagflowDatabase, connect


def import_pymysql(module):
    try:
        import pymysql
    except ImportError:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=traceback.format_exc())
    return pymysql


def token_through_api(module):
    params = module.params
    if CRYPTOGRAPHY_IMPORT_ERROR and not params["api_key"]:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    api = client_from_params(params)
    generation = api.authenticate(params)
    result = ensure_token(api, params["rotate"], module.check_mode)
    result.update(tenant_id=api.tenant_id, api_generation=generation)
    return result


def token_through_db(module):
    params = module.params
    pymysql = import_pymysql(module)
    connection = connect(
        pymysql,
        host=params["db_host"],
        port=params["db_port"],
        user=params["db_user"],
        password=params["db_password"],
        database=params["db_name"],
        timeout=params["timeout"],
    )
    try:
        database = RagflowDatabase(connection, params["db_name"], params["email"])
        database.check_schema()
        database.find_tenant()
        result = ensure_token(database, params["rotate"], module.check_mode)
        result["access_token_set"] = database.make_keys_usable(module.check_mode)
        result["changed"] = result["changed"] or result["access_token_set"]
        # The new key, the deletion of the old ones and the access_token become visible together, or not at all.
        database.commit()
    except pymysql.err.MySQLError as exc:
        raise RagflowError("database %s: %s" % (params["db_name"], exc)) from exc
    finally:
        connection.close()
    result["tenant_id"] = database.tenant_id
    return result


def main():
    argument_spec = login_argument_spec()
    argument_spec.update(
        method=dict(type="str", default="api", choices=["api", "db"]),
        rotate=dict(type="bool", default=False),
        db_host=dict(type="str", default="127.0.0.1"),
        db_port=dict(type="int", default=3306),
        db_user=dict(type="str", default="root"),
        db_password=dict(type="str", no_log=True),
        db_name=dict(type="str", default="rag_flow"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[
            ("method", "api", ("base_url",)),
            ("method", "api", ("password", "api_key"), True),
            ("method", "db", ("db_password",)),
        ],
        supports_check_mode=True,
    )
    ignored = ignored_proxy_variables(module.params["use_proxy"])
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout must be more than 0 seconds", proxy_variables_ignored=ignored)
    try:
        if module.params["method"] == "api":
            result = token_through_api(module)
        else:
            result = token_through_db(module)
    except RagflowError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed, proxy_variables_ignored=ignored)
    module.exit_json(proxy_variables_ignored=ignored, **result)


if __name__ == "__main__":
    main()
