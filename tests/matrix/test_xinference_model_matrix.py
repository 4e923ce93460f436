"""xinference_model under bad input and hostile networks: one row per case, each asserted to fail (or
not) with one clear line, `changed` as it happened, no traceback, within WALL_TIME_BOUND_S.

Rows on `xinference` run against a real Xinference 4.1 with advanced auth on (started once, only when
such a row runs: hold /tmp/ragstack-heavy.lock); the others against loopback servers that answer
wrongly (testkit/wrong_servers.py).
"""

import re

import pytest

from testkit.xinference_matrix import (
    WALL_TIME_BOUND_S,
    Row,
    assert_clean,
    credentials_of,
    endpoint_of,
    lazy_secured_xinference,
    run_row,
)

pytestmark = pytest.mark.integration

EMBEDDING = {"model_uid": "matrix-minilm", "model_name": "bge-small-en-v1.5", "model_type": "embedding", "n_gpu": "cpu"}
NOT_XINFERENCE = (
    r"^http://127\.0\.0\.1:\d+ does not answer as Xinference: GET /v1/cluster/auth answered HTTP 200 text/html, "
    r"an HTML page titled 'Dashboard', where Xinference answers \{\"auth\": true\|false\}; set endpoint to "
)
USER_NEEDED = r"set username and password of an Xinference user with the models:write scope"

ROWS = [
    # id, then a Row: server, environment, options, failed, changed, message regex
    ("html-server", "html", None, {**EMBEDDING, "health_check": True}, True, False, NOT_XINFERENCE),
    ("html-server-absent", "html", None, {"model_uid": "m", "state": "absent"}, True, False, NOT_XINFERENCE),
    (
        "silent-listener",
        "silent",
        None,
        {**EMBEDDING, "timeout": 2},
        True,
        False,
        r"^Xinference is not reachable at http://127\.0\.0\.1:\d+ \(GET /v1/cluster/auth, timeout=2s\): .*timed out",
    ),
    (
        "closed-port",
        "closed",
        None,
        EMBEDDING,
        True,
        False,
        r"^Xinference is not reachable at http://127\.0\.0\.1:\d+ \(GET /v1/cluster/auth, timeout=60s\): "
        r".*Connection refused",
    ),
    (
        "dead-proxy-used",
        "html",
        "dead_proxy",
        {**EMBEDDING, "use_proxy": True},
        True,
        False,
        r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed while "
        r"reaching http://127\.0\.0\.1:\d+/v1/cluster/auth: .*; set use_proxy: false",
    ),
    ("dead-proxy-ignored", "html", "dead_proxy", EMBEDDING, True, False, NOT_XINFERENCE),
    (
        "wait-timeout-0",
        "closed",
        None,
        {**EMBEDDING, "wait_timeout": 0},
        True,
        False,
        r"^wait_timeout must be at least 1 second, not 0$",
    ),
    (
        "wait-timeout-negative",
        "closed",
        None,
        {**EMBEDDING, "wait_timeout": -5},
        True,
        False,
        r"^wait_timeout must be at least 1 second, not -5$",
    ),
    (
        "timeout-0",
        "closed",
        None,
        {**EMBEDDING, "timeout": 0},
        True,
        False,
        r"^timeout must be at least 1 second, not 0$",
    ),
    ("empty-uid", "closed", None, {**EMBEDDING, "model_uid": ""}, True, False, r"^model_uid is empty: "),
    ("empty-uid-absent", "closed", None, {"model_uid": "", "state": "absent"}, True, False, r"^model_uid is empty: "),
    (
        "slashed-uid",
        "closed",
        None,
        {"model_uid": "a/b", "state": "absent"},
        True,
        False,
        r"^model_uid a/b holds a '/'",
    ),
    (
        "slashed-name",
        "closed",
        None,
        {**EMBEDDING, "model_uid": None, "model_name": "BAAI/bge-m3"},
        True,
        False,
        r"^model_uid BAAI/bge-m3 holds a '/'",
    ),
    (
        "key-and-user",
        "closed",
        None,
        {**EMBEDDING, "api_key": "sk-matrix-key", "username": "u", "password": "pw-for-matrix"},
        True,
        False,
        r"parameters are mutually exclusive: api_key\|username",
    ),
    (
        "user-without-password",
        "closed",
        None,
        {**EMBEDDING, "username": "u"},
        True,
        False,
        r"parameters are required together: username, password",
    ),
    (
        "no-credential",
        "xinference",
        None,
        EMBEDDING,
        True,
        False,
        r"^Xinference at http://127\.0\.0\.1:\d+ has authentication on and no credential was given: " + USER_NEEDED,
    ),
    (
        "api-key-for-management",
        "xinference",
        None,
        {**EMBEDDING, "api_key": "API_KEY"},
        True,
        False,
        r"^Xinference at \S+ has authentication on, and an api_key may not launch or terminate models .*" + USER_NEEDED,
    ),
    (
        "wrong-password",
        "xinference",
        None,
        {**EMBEDDING, "username": "ragstack-admin", "password": "wrong-password"},
        True,
        False,
        r"^Xinference at \S+ refused the login of user ragstack-admin \(HTTP 401: Incorrect username or password\): "
        r"check username and password$",
    ),
    (
        "admin-absent-of-an-unknown-uid",
        "xinference",
        None,
        {"model_uid": "never-there", "state": "absent", "username": "ragstack-admin", "password": "ADMIN_PASSWORD"},
        False,
        False,
        None,
    ),
]


@pytest.fixture(scope="module")
def xinference_factory(tmp_path_factory):
    with lazy_secured_xinference(tmp_path_factory) as get:
        yield get


@pytest.mark.parametrize("row", [pytest.param(Row(*row[1:]), id=row[0]) for row in ROWS])
def test_xinference_model_row(xinference_factory, tmp_path, row):
    with endpoint_of(row.server, xinference_factory) as endpoint:
        cluster = xinference_factory() if row.server == "xinference" else None
        args = {"endpoint": endpoint, **credentials_of(row.options, cluster)}
        args = {name: value for name, value in args.items() if value is not None}
        result, took, output = run_row("xinference_model", args, tmp_path, row.environment)

    assert bool(result.get("failed")) is row.failed, result
    assert result.get("changed", False) is row.changed, result
    if row.message:
        assert re.search(row.message, result["msg"]), result["msg"]
        assert "\n" not in result["msg"]
    assert took < WALL_TIME_BOUND_S, took
    assert_clean(output, result)
    if row.environment == "dead_proxy" and not row.options.get("use_proxy"):
        assert "http_proxy" in result.get("proxy_variables_ignored", []), result
    for secret in ("wrong-password", getattr(cluster, "api_key", None), getattr(cluster, "admin_password", None)):
        assert not secret or secret not in output
