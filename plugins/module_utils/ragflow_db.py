# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RAGFlow's MySQL database as a token store, for when the web API cannot be logged into.

Rows are written the way RAGFlow's own POST /system/tokens writes them (api/apps and its peewee
models in api/db/db_models.py): token and beta from ragflow.new_token()/new_beta(), create_time and
update_time in epoch milliseconds with the matching local datetimes, dialog_id and source NULL.
The tenant of a user is the tenant the user owns: user.email -> user.id -> user_tenant(role='owner').

RAGFlow accepts an API key only while the user whose id is the key's tenant_id has a non-empty
access_token (api/apps/__init__.py _load_user, v0.24 and v0.27), and only a login sets it; RAGFlow's
admin server creates admin@ragflow.io without one. So a key written for a user who never logged in
would be refused: the module gives such a user an access_token, a fresh uuid as the login writes one.
No session carries it (a session is that value signed with the server's secret key), so nobody is
signed in or out by it; the user's next login replaces it.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError, new_beta, new_token

# The columns this module reads or writes; a database without them is not a RAGFlow database
# (or one too old to have API tokens).
REQUIRED_COLUMNS = {
    "user": ("id", "email", "access_token"),
    "user_tenant": ("user_id", "tenant_id", "role"),
    "api_token": (
        "tenant_id",
        "token",
        "dialog_id",
        "source",
        "beta",
        "create_time",
        "create_date",
        "update_time",
        "update_date",
    ),
}
TOKEN_COLUMNS = REQUIRED_COLUMNS["api_token"]
OWNER_ROLE = "owner"
# MySQL client error numbers (PyMySQL raises them as OperationalError args[0]).
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
CR_CONN_HOST_ERROR = 2003
CR_SERVER_LOST = 2013


def schema_query(database):
    placeholders = ", ".join(["%s"] * len(REQUIRED_COLUMNS))
    sql = (
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = %%s AND table_name IN (%s)" % placeholders
    )
    return sql, (database, *REQUIRED_COLUMNS)


def missing_columns(database, present):
    """Human-readable list of what `present` ((table, column) pairs) lacks, empty when complete."""
    present = {(table.lower(), column.lower()) for table, column in present}
    tables = {table for table, _column in present}
    missing = []
    for table, columns in REQUIRED_COLUMNS.items():
        if table not in tables:
            missing.append("table %s.%s" % (database, table))
            continue
        missing.extend("column %s.%s" % (table, column) for column in columns if (table, column) not in present)
    return missing


def user_query(email):
    return "SELECT id FROM `user` WHERE email = %s", (email,)


def access_token_query(user_id):
    return "SELECT access_token FROM `user` WHERE id = %s", (user_id,)


def set_access_token_query(user_id, access_token):
    return "UPDATE `user` SET access_token = %s WHERE id = %s", (access_token, user_id)


def owner_tenant_query(user_id):
    return "SELECT tenant_id FROM user_tenant WHERE user_id = %s AND role = %s", (user_id, OWNER_ROLE)


def list_tokens_query(tenant_id):
    sql = "SELECT %s FROM api_token WHERE tenant_id = %%s ORDER BY create_time" % ", ".join(TOKEN_COLUMNS)
    return sql, (tenant_id,)


def insert_token_query(tenant_id, token, beta, now):
    """INSERT of a token row as RAGFlow writes it; `now` is the epoch time in seconds."""
    millis = int(now * 1000)
    date = datetime.fromtimestamp(now).replace(microsecond=0)
    row = {
        "tenant_id": tenant_id,
        "token": token,
        "dialog_id": None,
        "source": None,
        "beta": beta,
        "create_time": millis,
        "create_date": date,
        "update_time": millis,
        "update_date": date,
    }
    sql = "INSERT INTO api_token (%s) VALUES (%s)" % (", ".join(row), ", ".join(["%s"] * len(row)))
    return sql, tuple(row.values())


def delete_token_query(tenant_id, token):
    return "DELETE FROM api_token WHERE tenant_id = %s AND token = %s", (tenant_id, token)


def connect(pymysql, *, host, port, user, password, database, timeout):
    """A PyMySQL connection (no autocommit), or RagflowError saying why there is none.

    `timeout` bounds the connect and every read and write: a port that accepts and never answers, or
    a service that is not MySQL, fails in seconds instead of hanging the play."""
    where = "%s@%s:%s/%s" % (user, host, port, database)
    try:
        return pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            autocommit=False,
            charset="utf8mb4",
        )
    except pymysql.err.OperationalError as exc:
        number = exc.args[0] if exc.args else None
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        if number == ER_ACCESS_DENIED:
            raise RagflowError("database %s refused db_user/db_password: %s" % (where, detail)) from exc
        if number == ER_BAD_DB:
            raise RagflowError("database %s does not exist (db_name): %s" % (where, detail)) from exc
        if number == CR_SERVER_LOST:
            raise RagflowError(
                "database %s did not answer as MySQL within timeout=%s s: %s; is db_host:db_port RAGFlow's "
                "MySQL server?" % (where, timeout, detail)
            ) from exc
        raise RagflowError("database %s is not reachable: %s" % (where, detail)) from exc
    except (pymysql.err.MySQLError, OSError, ValueError, LookupError) as exc:
        # A TCP service that is not MySQL: PyMySQL fails while it parses the greeting.
        raise RagflowError(
            "database %s did not answer as a MySQL server (%s: %s); is db_host:db_port RAGFlow's MySQL server?"
            % (where, type(exc).__name__, exc)
        ) from exc


class RagflowDatabase:
    """Token store over SQL for the tenant owned by the user with `email`."""

    def __init__(self, connection, database, email):
        self.connection = connection
        self.database = database
        self.email = email
        self.tenant_id = None

    def _rows(self, query):
        with self.connection.cursor() as cursor:
            cursor.execute(*query)
            return cursor.fetchall()

    def _execute(self, query):
        with self.connection.cursor() as cursor:
            cursor.execute(*query)

    def check_schema(self):
        missing = missing_columns(self.database, self._rows(schema_query(self.database)))
        if missing:
            raise RagflowError(
                "database %s is not a RAGFlow database with API tokens: missing %s"
                % (self.database, ", ".join(missing))
            )

    def find_tenant(self):
        users = self._rows(user_query(self.email))
        if not users:
            raise RagflowError("no RAGFlow user with email %s in database %s" % (self.email, self.database))
        tenants = self._rows(owner_tenant_query(users[0][0]))
        if not tenants:
            raise RagflowError("RAGFlow user %s owns no tenant (no user_tenant row with role 'owner')" % self.email)
        self.tenant_id = tenants[0][0]
        return self.tenant_id

    def make_keys_usable(self, check_mode):
        """Give the tenant's owner an access_token when it has none (never logged in), so that RAGFlow
        accepts the tenant's API keys; the module docstring says why. True when it did (or would)."""
        rows = self._rows(access_token_query(self.tenant_id))
        if rows and (rows[0][0] or "").strip():
            return False
        if not rows:
            raise RagflowError(
                "no RAGFlow user with id %s, the owner of tenant %s: RAGFlow accepts a tenant's API keys only "
                "for the user whose id is the tenant id" % (self.tenant_id, self.tenant_id)
            )
        if not check_mode:
            self._execute(set_access_token_query(self.tenant_id, uuid.uuid4().hex))
        return True

    def list_tokens(self):
        return [dict(zip(TOKEN_COLUMNS, row)) for row in self._rows(list_tokens_query(self.tenant_id))]

    def create_token(self):
        token = new_token()
        self._execute(insert_token_query(self.tenant_id, token, new_beta(), time.time()))
        return token

    def delete_token(self, token):
        self._execute(delete_token_query(self.tenant_id, token))

    def commit(self):
        self.connection.commit()
