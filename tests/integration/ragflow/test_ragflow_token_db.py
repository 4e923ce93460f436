"""ragflow_token with method=db against a real MariaDB holding RAGFlow's tables."""

import re
import time
from datetime import datetime, timedelta

import pytest

from testkit.mariadb import DB_PASSWORD, DB_USER
from testkit.ragflow.ragflow_schema import RAGFLOW_TABLES, insert_never_logged_in_user
from testkit.support import free_port

pytestmark = pytest.mark.integration

DATABASE = "rag_flow"
EMAIL = "admin@example.com"
USER_ID = "a1" * 16
# RAGFlow gives the tenant a user owns the user's id (user_register, init_default_admin), and accepts a
# tenant's API keys only for the user with that id.
TENANT_ID = USER_ID
TOKEN_FORMAT = re.compile(r"^ragflow-[A-Za-z0-9_-]{43}$")
BETA_FORMAT = re.compile(r"^[A-Za-z0-9_-]{32}$")


@pytest.fixture
def ragflow_db(mariadb):
    """RAGFlow's tables with one user, as RAGFlow's admin server creates admin@ragflow.io: no
    access_token (never logged in); the user owns a tenant and is a member of another, listed first."""
    mariadb.create_database(DATABASE)
    with mariadb.root(DATABASE) as connection, connection.cursor() as cursor:
        insert_never_logged_in_user(cursor, USER_ID, EMAIL, member_of=["d4" * 16])
    return mariadb


def db_args(server, **overrides):
    args = {
        "method": "db",
        "email": EMAIL,
        "db_host": "127.0.0.1",
        "db_port": server.port,
        "db_user": DB_USER,
        "db_password": DB_PASSWORD,
    }
    args.update(overrides)
    return args


def token_rows(server):
    with server.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id, token, dialog_id, source, beta, create_time, create_date, update_time, update_date"
            " FROM api_token ORDER BY create_time"
        )
        return cursor.fetchall()


def test_creates_a_row_as_ragflow_does_then_leaves_it(ragflow_db, run_module):
    predicted = run_module(db_args(ragflow_db), check_mode=True)
    assert (predicted["changed"], predicted["token"], predicted["tenant_id"]) == (True, None, TENANT_ID)
    assert token_rows(ragflow_db) == ()

    before = time.time()
    created = run_module(db_args(ragflow_db))
    after = time.time()
    assert created["changed"] is True
    assert created["tenant_id"] == TENANT_ID
    [row] = token_rows(ragflow_db)
    tenant_id, token, dialog_id, source, beta, create_time, create_date, update_time, update_date = row
    assert (tenant_id, token, dialog_id, source) == (TENANT_ID, created["token"], None, None)
    assert TOKEN_FORMAT.match(token)
    assert BETA_FORMAT.match(beta)
    assert int(before * 1000) <= create_time <= int(after * 1000)
    assert update_time == create_time
    # RAGFlow writes local time to the second next to the epoch milliseconds.
    assert isinstance(create_date, datetime)
    assert create_date == update_date
    assert abs(create_date - datetime.fromtimestamp(create_time / 1000)) < timedelta(seconds=1)

    checked = run_module(db_args(ragflow_db), check_mode=True)
    again = run_module(db_args(ragflow_db))
    assert (checked["changed"], checked["token"]) == (False, token)
    assert (again["changed"], again["token"]) == (False, token)
    assert token_rows(ragflow_db) == (row,)


def key_user(server, token):
    """The user RAGFlow lets in with API key `token`, by its rule (api/apps/__init__.py _load_user at
    v0.27.0, lines 211-221; v0.24.0 lines 126-134): the user whose id is the key's tenant_id, and only
    while that user's access_token is not empty. None when RAGFlow would answer 401."""
    with server.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.email, u.access_token FROM api_token t JOIN `user` u ON u.id = t.tenant_id WHERE t.token = %s",
            (token,),
        )
        rows = cursor.fetchall()
    return rows[0][0] if rows and (rows[0][1] or "").strip() else None


def test_a_key_for_a_user_who_never_logged_in_works_at_once(ragflow_db, run_module):
    predicted = run_module(db_args(ragflow_db), check_mode=True)
    created = run_module(db_args(ragflow_db))
    again = run_module(db_args(ragflow_db))

    assert (predicted["changed"], predicted["access_token_set"]) == (True, True)
    assert (created["changed"], created["access_token_set"]) == (True, True)
    assert key_user(ragflow_db, created["token"]) == EMAIL
    assert (again["changed"], again["access_token_set"], again["token"]) == (False, False, created["token"])


def test_an_existing_key_of_a_user_who_never_logged_in_is_made_to_work(ragflow_db, run_module):
    with ragflow_db.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO api_token (tenant_id, token, create_time) VALUES (%s, 'ragflow-written-by-hand', 1)",
            (TENANT_ID,),
        )
    assert key_user(ragflow_db, "ragflow-written-by-hand") is None

    result = run_module(db_args(ragflow_db))

    assert (result["changed"], result["token"], result["access_token_set"]) == (True, "ragflow-written-by-hand", True)
    assert key_user(ragflow_db, "ragflow-written-by-hand") == EMAIL


def test_a_logged_in_users_session_is_left_alone(ragflow_db, run_module):
    with ragflow_db.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE `user` SET access_token = %s WHERE id = %s", ("9" * 32, USER_ID))

    result = run_module(db_args(ragflow_db))

    assert (result["changed"], result["access_token_set"]) == (True, False)
    with ragflow_db.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM `user` WHERE id = %s", (USER_ID,))
        assert cursor.fetchall() == (("9" * 32,),)


def test_rotate_replaces_the_api_keys_and_keeps_embed_tokens(ragflow_db, run_module):
    first = run_module(db_args(ragflow_db))["token"]
    with ragflow_db.root(DATABASE) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO api_token (tenant_id, token, dialog_id, source, create_time)"
            " VALUES (%s, 'ragflow-embed', %s, 'dialog', 1)",
            (TENANT_ID, "f6" * 16),
        )

    rotated = run_module(db_args(ragflow_db, rotate=True))

    assert (rotated["changed"], rotated["deleted_tokens"]) == (True, 1)
    assert sorted(row[1] for row in token_rows(ragflow_db)) == sorted(["ragflow-embed", rotated["token"]])
    assert rotated["token"] != first
    settled = run_module(db_args(ragflow_db))
    assert (settled["changed"], settled["token"]) == (False, rotated["token"])


def test_unknown_email(ragflow_db, run_module):
    result = run_module(db_args(ragflow_db, email="nobody@example.com"))

    assert result["failed"] is True
    assert result["msg"] == "no RAGFlow user with email nobody@example.com in database rag_flow"


def test_wrong_database_password(ragflow_db, run_module):
    result = run_module(db_args(ragflow_db, db_password="wrong"))

    assert result["failed"] is True
    assert result["msg"].startswith(
        "database %s@127.0.0.1:%d/rag_flow refused db_user/db_password: " % (DB_USER, ragflow_db.port)
    )


def test_unreachable_database(run_module):
    port = free_port()

    result = run_module({"method": "db", "email": EMAIL, "db_port": port, "db_password": "x", "timeout": 5})

    assert result["failed"] is True
    assert result["msg"].startswith("database root@127.0.0.1:%d/rag_flow is not reachable: " % port)


def test_missing_database(ragflow_db, run_module):
    result = run_module(db_args(ragflow_db, db_name="no_such_db"))

    assert result["msg"].startswith("database %s@127.0.0.1:%d/no_such_db does not exist" % (DB_USER, ragflow_db.port))


def test_database_without_ragflow_tables(mariadb, run_module):
    mariadb.create_database("other_app", tables=[RAGFLOW_TABLES[0]])

    result = run_module(db_args(mariadb, db_name="other_app"))

    assert result["msg"] == (
        "database other_app is not a RAGFlow database with API tokens: "
        "missing table other_app.user_tenant, table other_app.api_token"
    )


def test_api_token_table_without_beta_column(mariadb, run_module):
    mariadb.create_database("old_ragflow")
    with mariadb.root("old_ragflow") as connection, connection.cursor() as cursor:
        cursor.execute("ALTER TABLE api_token DROP COLUMN beta")

    result = run_module(db_args(mariadb, db_name="old_ragflow"))

    assert (
        result["msg"] == "database old_ragflow is not a RAGFlow database with API tokens: missing column api_token.beta"
    )
