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
  - O(method=api) logs into the RAGFlow web API as the user, as the web UI does. It works with
    RAGFlow v0.27 (C(/api/v1/auth/login), C(/api/v1/system/tokens)) and with v0.24 and older
    (C(/v1/user/login), C(/v1/system/new_token)); which one is read from where
    C(/system/healthz) answers.
  - O(method=db) reads and writes RAGFlow's MySQL database directly, for when no user password is
    at hand. The rows it writes are those RAGFlow writes (format of RAGFlow v0.24 and later).
author:
  - llmops.ragstack developers (@llmops)
options:
  method:
    description:
      - How to reach RAGFlow's tokens. V(api) needs O(base_url) and O(password); V(db) needs the
        C(db_*) options.
    type: str
    choices: [api, db]
    default: api
  email:
    description:
      - Email of the RAGFlow user whose own tenant gets the key.
    type: str
    required: true
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
  password:
    description:
      - The user's RAGFlow password, in plain text. It is sent RSA-encrypted with O(public_key).
      - Required with O(method=api).
    type: str
  timeout:
    description:
      - Seconds to wait for RAGFlow or the database to answer.
    type: int
    default: 30
  db_host:
    description:
      - Host of RAGFlow's MySQL server, with O(method=db).
    type: str
    default: 127.0.0.1
  db_port:
    description:
      - Port of RAGFlow's MySQL server. RAGFlow's Docker Compose publishes it on the host as C(5455)
        by default (C(MYSQL_PORT)); inside the Compose network it is C(3306).
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
      unchanged, else V(null). O(method=api) still logs in, which RAGFlow records as the user's last
      login time.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: Idempotent unless O(rotate=true), which replaces the key on every run.
extends_documentation_fragment:
  - llmops.ragstack.attributes
  - llmops.ragstack.ragflow
requirements:
  - C(PyMySQL) on the host the module runs on, for O(method=db)
notes:
  - >-
    The returned RV(token) is a secret that the module obtains. It is not added to the module's
    C(no_log) values, because that would mask it in the result that later tasks need. Set
    C(no_log: true) on the task instead, as in the examples, so that it does not appear in the output.
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
    db_port: 5455
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
  description: How many older API keys were deleted (or would be, in check mode) by O(rotate=true).
  returned: success
  type: int
  sample: 0
api_generation:
  description: Which RAGFlow API layout answered, V(v0.27) (C(/api/v1)) or V(v0.24) (C(/v1)), with O(method=api).
  returned: when O(method=api)
  type: str
  sample: v0.27
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError, ensure_token
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import CRYPTOGRAPHY_IMPORT_ERROR, RagflowApi
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_db import RagflowDatabase, connect


def import_pymysql(module):
    try:
        import pymysql
    except ImportError:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=traceback.format_exc())
    return pymysql


def token_through_api(module):
    params = module.params
    if CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    api = RagflowApi(params["base_url"], params["timeout"], params["validate_certs"])
    generation = api.sign_in(params["email"], params["password"], params["public_key"])
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
        # The new key and the deletion of the old ones become visible together, or not at all.
        database.commit()
    except pymysql.err.MySQLError as exc:
        raise RagflowError("database %s: %s" % (params["db_name"], exc)) from exc
    finally:
        connection.close()
    result["tenant_id"] = database.tenant_id
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            method=dict(type="str", default="api", choices=["api", "db"]),
            email=dict(type="str", required=True),
            rotate=dict(type="bool", default=False),
            base_url=dict(type="str"),
            password=dict(type="str", no_log=True),
            public_key=dict(type="str"),
            validate_certs=dict(type="bool", default=True),
            timeout=dict(type="int", default=30),
            db_host=dict(type="str", default="127.0.0.1"),
            db_port=dict(type="int", default=3306),
            db_user=dict(type="str", default="root"),
            db_password=dict(type="str", no_log=True),
            db_name=dict(type="str", default="rag_flow"),
        ),
        required_if=[
            ("method", "api", ("base_url", "password")),
            ("method", "db", ("db_password",)),
        ],
        supports_check_mode=True,
    )
    try:
        if module.params["method"] == "api":
            result = token_through_api(module)
        else:
            result = token_through_db(module)
    except RagflowError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
