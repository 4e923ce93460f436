"""xinference_auth without a server: the setup token read from an auth database laid out as
Xinference 4.1 lays it out (api/oauth2/advanced/database.py: table system_config, key setup_token),
and key names compared as the server compares them (trimmed, case-insensitive)."""

import sqlite3

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_auth import key_name_matches, read_setup_token

pytestmark = pytest.mark.unit


def auth_db(path, token):
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE system_config (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    connection.execute("INSERT INTO system_config (key, value) VALUES ('schema_version', '3')")
    if token:
        connection.execute("INSERT INTO system_config (key, value) VALUES ('setup_token', ?)", (token,))
    connection.commit()
    connection.close()
    return str(path)


def test_the_pending_setup_token_is_read(tmp_path):
    assert read_setup_token(auth_db(tmp_path / "auth.db", "tok-123_abc")) == "tok-123_abc"


def test_a_server_set_up_already_holds_no_token(tmp_path):
    assert read_setup_token(auth_db(tmp_path / "auth.db", None)) is None


@pytest.mark.parametrize("where", ["missing.db", "not-a-database.db", "a folder with spaces/auth.db"])
def test_no_database_means_no_token(tmp_path, where):
    (tmp_path / "not-a-database.db").write_text("plain text")
    assert read_setup_token(str(tmp_path / where)) is None


def test_reading_leaves_the_database_as_it_was(tmp_path):
    path = auth_db(tmp_path / "auth.db", "tok")
    before = (tmp_path / "auth.db").read_bytes()
    read_setup_token(path)
    assert (tmp_path / "auth.db").read_bytes() == before
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["auth.db"]


@pytest.mark.parametrize(
    ("name", "wanted", "same"),
    [
        ("llmops-ragstack-inference", "llmops-ragstack-inference", True),
        ("  LLMOPS-ragstack-Inference\t", "llmops-ragstack-inference", True),
        ("llmops-ragstack-inference-2", "llmops-ragstack-inference", False),
        (None, "llmops-ragstack-inference", False),
    ],
)
def test_key_names_compare_as_the_server_compares_them(name, wanted, same):
    assert key_name_matches(name, wanted) is same
