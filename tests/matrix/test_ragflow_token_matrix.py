"""Bad-input matrix of llmops.ragstack.ragflow_token: each row points the module at a server (the
RAGFlow double, a real MariaDB, or a loopback server that answers wrongly) in an environment, and
asserts failed/changed, a one-line message, no traceback, and a wall-time bound (testkit/ragflow/matrix.py)."""

import pytest

from testkit.mariadb import DB_PASSWORD, DB_USER, MariaDB, find_programs
from testkit.ragflow.matrix import EMAIL, PASSWORD, judge, run_row, target
from testkit.ragflow.ragflow_schema import insert_never_logged_in_user

pytestmark = pytest.mark.integration

DATABASE = "rag_flow"
USER_ID = "a1" * 16


def api(server, **overrides):
    args = {"base_url": server.url, "email": EMAIL, "password": PASSWORD, "timeout": 3}
    if server.fake:
        args["public_key"] = server.fake.public_key_pem
    args.update(overrides)
    return args


def db(server, **overrides):
    args = {
        "method": "db",
        "email": EMAIL,
        "db_port": server.port,
        "db_user": DB_USER,
        "db_password": DB_PASSWORD,
        "timeout": 3,
    }
    args.update(overrides)
    return args


ROWS = [
    # id, server, arguments (from the server), environment, check mode, failed, changed, message pattern
    ("api-creates", "double", api, None, False, False, True, r"^$"),
    ("api-check-mode", "double", api, None, True, False, True, r"^$"),
    ("api-v0.24", "double-v0.24", api, None, False, False, True, r"^$"),
    ("dead-proxy-ignored", "double", api, "dead-proxy", False, False, True, r"^$"),
    (
        "dead-proxy-used",
        "double",
        lambda s: api(s, use_proxy=True),
        "dead-proxy",
        False,
        True,
        False,
        r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed while "
        r"reaching http://127\.0\.0\.1:\d+/api/v1/system/healthz: .*set use_proxy: false",
    ),
    (
        "html-everywhere",
        "html",
        api,
        None,
        False,
        True,
        False,
        r"^http://127\.0\.0\.1:\d+/api/v1/system/healthz answered HTTP 200 without a health report: is base_url "
        r"RAGFlow's API address\?$",
    ),
    ("silent-http", "silent", api, None, False, True, False, r"^RAGFlow is not reachable at .*: timed out$"),
    ("closed-port", "closed", api, None, False, True, False, r"^RAGFlow is not reachable at .*Connection refused"),
    (
        "wrong-password",
        "double",
        lambda s: api(s, password="wrong"),
        None,
        False,
        True,
        False,
        r"^login: RAGFlow refused the credentials \(code 109\): Email and password do not match!$",
    ),
    (
        "unknown-user",
        "double",
        lambda s: api(s, email="nobody@example.com"),
        None,
        False,
        True,
        False,
        r"^login: .*Email: nobody@example\.com is not registered!$",
    ),
    ("wrong-api-key", "double", lambda s: api(s, password=None, api_key="ragflow-x"), None, False, True, False, r"401"),
    ("zero-timeout", "double", lambda s: api(s, timeout=0), None, False, True, False, r"^timeout must be more than 0"),
    (
        "no-password",
        "double",
        lambda s: api(s, password=None),
        None,
        False,
        True,
        False,
        r"^give password \(or api_key\) to authenticate to RAGFlow at http://127\.0\.0\.1:\d+$",
    ),
    (
        "db-silent-listener",
        "silent",
        db,
        None,
        False,
        True,
        False,
        r"^database ragflow_admin@127\.0\.0\.1:\d+/rag_flow did not answer as MySQL within timeout=3 s: .*is "
        r"db_host:db_port RAGFlow's MySQL server\?$",
    ),
    (
        "db-foreign-service",
        "foreign",
        db,
        None,
        False,
        True,
        False,
        r"^database ragflow_admin@127\.0\.0\.1:\d+/rag_flow did not answer .*is db_host:db_port RAGFlow's MySQL",
    ),
    (
        "db-http-server",
        "html",
        lambda s: db(s, db_port=int(s.url.rsplit(":", 1)[1])),
        None,
        False,
        True,
        False,
        r"^database .* did not answer .*RAGFlow's MySQL server\?$",
    ),
    ("db-closed-port", "closed", db, None, False, True, False, r"^database .* is not reachable: "),
]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDB(tmp_path_factory.mktemp("mariadb"), find_programs())
    yield server
    server.stop()


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_ragflow_token_bad_input(tmp_path, row):
    _name, kind, arguments, env, check_mode, failed, changed, pattern = row
    with target(kind) as server:
        result, seconds = run_row("ragflow_token", tmp_path, arguments(server), env, check_mode)

    judge(result, seconds, failed, changed, pattern)
    if env == "dead-proxy" and not failed:
        assert "http_proxy" in result["proxy_variables_ignored"]


DB_ROWS = [
    # id, arguments, failed, changed, pattern
    ("db-never-logged-in", {}, False, True, r"^$"),
    ("db-wrong-password", {"db_password": "wrong"}, True, False, r"refused db_user/db_password"),
    ("db-unknown-user", {"email": "nobody@example.com"}, True, False, r"^no RAGFlow user with email nobody@"),
    ("db-missing-database", {"db_name": "nope"}, True, False, r"does not exist \(db_name\)"),
]


@pytest.mark.parametrize("row", DB_ROWS, ids=[row[0] for row in DB_ROWS])
def test_ragflow_token_db_bad_input(tmp_path, mariadb, row):
    _name, overrides, failed, changed, pattern = row
    mariadb.create_database(DATABASE)
    with mariadb.root(DATABASE) as connection, connection.cursor() as cursor:
        insert_never_logged_in_user(cursor, USER_ID, EMAIL)

    class Port:
        port = mariadb.port

    result, seconds = run_row("ragflow_token", tmp_path, db(Port, **overrides), None)

    judge(result, seconds, failed, changed, pattern)
