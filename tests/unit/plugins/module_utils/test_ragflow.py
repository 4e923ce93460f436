"""RAGFlow token format, the ensure rules, SQL building and the API envelope, without any server."""

import base64
import re
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import (
    RagflowError,
    ensure_token,
    new_beta,
    new_token,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import (
    RAGFLOW_PUBLIC_KEY,
    encrypt_password,
    load_public_key,
    unwrap,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_db import (
    insert_token_query,
    missing_columns,
    owner_tenant_query,
    schema_query,
    user_query,
)

pytestmark = pytest.mark.unit


class MemoryStore:
    """A token store in memory; `undeletable` tokens survive delete_token, as keys of another tenant
    do when RAGFlow deletes in the user's first tenant."""

    def __init__(self, rows=(), undeletable=()):
        self.rows = [dict(row) for row in rows]
        self.undeletable = set(undeletable)
        self.created = []
        self.deleted = []

    def list_tokens(self):
        return list(self.rows)

    def create_token(self):
        token = "ragflow-new%d" % len(self.created)
        self.created.append(token)
        self.rows.append({"token": token, "dialog_id": None, "create_time": 9})
        return token

    def delete_token(self, token):
        self.deleted.append(token)
        if token not in self.undeletable:
            self.rows = [row for row in self.rows if row["token"] != token]


OLD = {"token": "ragflow-old", "dialog_id": None, "create_time": 1}
NEW = {"token": "ragflow-newer", "dialog_id": None, "create_time": 2}
EMBED = {"token": "ragflow-embed", "dialog_id": "d" * 32, "create_time": 3}


def test_token_and_beta_have_ragflows_format():
    assert re.fullmatch(r"ragflow-[A-Za-z0-9_-]{43}", new_token())
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", new_beta())
    assert new_token() != new_token()


def test_existing_api_key_is_returned_unchanged_newest_first():
    store = MemoryStore([OLD, NEW, EMBED])

    assert ensure_token(store, rotate=False, check_mode=False) == {
        "changed": False,
        "token": "ragflow-newer",
        "deleted_tokens": 0,
    }
    assert (store.created, store.deleted) == ([], [])


def test_only_embed_tokens_means_a_key_is_created():
    store = MemoryStore([EMBED])

    result = ensure_token(store, rotate=False, check_mode=False)

    assert result == {"changed": True, "token": "ragflow-new0", "deleted_tokens": 0}
    assert store.deleted == []


def test_check_mode_predicts_without_writing():
    store = MemoryStore([OLD, EMBED])

    assert ensure_token(store, rotate=True, check_mode=True) == {"changed": True, "token": None, "deleted_tokens": 1}
    assert ensure_token(MemoryStore(), rotate=False, check_mode=True)["changed"] is True
    assert (store.created, store.deleted) == ([], [])


def test_rotate_creates_first_then_deletes_every_old_api_key():
    store = MemoryStore([OLD, NEW, EMBED])

    result = ensure_token(store, rotate=True, check_mode=False)

    assert result == {"changed": True, "token": "ragflow-new0", "deleted_tokens": 2}
    assert store.deleted == ["ragflow-old", "ragflow-newer"]


def test_tenant_lookup_goes_through_the_owner_row():
    assert user_query("a@b.c") == ("SELECT id FROM `user` WHERE email = %s", ("a@b.c",))
    assert owner_tenant_query("u1") == (
        "SELECT tenant_id FROM user_tenant WHERE user_id = %s AND role = %s",
        ("u1", "owner"),
    )


def test_schema_query_is_parameterised_for_the_three_tables():
    sql, params = schema_query("rag_flow")

    assert sql.endswith("WHERE table_schema = %s AND table_name IN (%s, %s, %s)")
    assert params == ("rag_flow", "user", "user_tenant", "api_token")


def test_missing_columns_names_tables_and_columns():
    present = [("USER", "ID"), ("user", "email"), ("user_tenant", "user_id"), ("user_tenant", "tenant_id")]

    assert missing_columns("db", present) == [
        "column user.access_token",
        "column user_tenant.role",
        "table db.api_token",
    ]


def test_insert_writes_milliseconds_and_local_datetimes_to_the_second():
    now = 1_700_000_000.987
    sql, params = insert_token_query("t1", "ragflow-x", "beta", now)

    assert sql == (
        "INSERT INTO api_token (tenant_id, token, dialog_id, source, beta, create_time, create_date, "
        "update_time, update_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    local = datetime.fromtimestamp(1_700_000_000)
    assert params == ("t1", "ragflow-x", None, None, "beta", 1_700_000_000_987, local, 1_700_000_000_987, local)


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (
            {"code": 109, "data": False, "message": "Email and password do not match!"},
            "login: RAGFlow refused the credentials (code 109): Email and password do not match!",
        ),
        (
            {"code": 102, "data": None, "message": "Tenant not found!"},
            "login: RAGFlow answered code 102: Tenant not found!",
        ),
        ({"code": 401}, "login: RAGFlow answered code 401: no message"),
        ("<html>", "login: the answer is not a RAGFlow envelope {code, data, message}: '<html>'"),
    ],
)
def test_envelope_errors_become_one_line(envelope, message):
    with pytest.raises(RagflowError) as caught:
        unwrap(envelope, "login")
    assert str(caught.value) == message


def test_envelope_success_is_its_data():
    assert unwrap({"code": 0, "data": [1], "message": "success"}, "list tokens") == [1]


def test_password_is_encrypted_the_way_ragflow_decrypts_it():
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    sent = encrypt_password("pässword", pem)

    decrypted = private_key.decrypt(base64.b64decode(sent), padding.PKCS1v15())
    assert base64.b64decode(decrypted).decode() == "pässword"


def test_public_key_from_text_file_or_ragflows_default(tmp_path):
    key_file = tmp_path / "public.pem"
    key_file.write_text(RAGFLOW_PUBLIC_KEY)

    assert load_public_key(None) == RAGFLOW_PUBLIC_KEY
    assert load_public_key(str(key_file)) == RAGFLOW_PUBLIC_KEY
    assert load_public_key(RAGFLOW_PUBLIC_KEY) == RAGFLOW_PUBLIC_KEY
    assert encrypt_password("x", RAGFLOW_PUBLIC_KEY)
    with pytest.raises(RagflowError, match=r"cannot read public_key file /nonexistent\.pem: No such file"):
        load_public_key("/nonexistent.pem")
    with pytest.raises(RagflowError, match="public_key is not a PEM RSA public key"):
        encrypt_password("x", "-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n")


def test_rotate_fails_changed_when_an_old_key_survives_its_deletion():
    store = MemoryStore([OLD, NEW], undeletable=["ragflow-old"])

    with pytest.raises(
        RagflowError,
        match=r"1 of 2 older keys are still there: RAGFlow deletes keys in the user's "
        r"first tenant",
    ) as raised:
        ensure_token(store, rotate=True, check_mode=False)

    assert raised.value.changed is True
