"""xinference_auth without a server: the setup token read from an auth database laid out as
Xinference 4.1 lays it out (api/oauth2/advanced/database.py: table system_config, key setup_token),
and key names compared as the server compares them (trimmed, case-insensitive)."""

import sqlite3

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_auth import (
    ensure_auth,
    key_name_matches,
    new_result,
    read_setup_token,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import XinferenceError

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


class ServerState:
    """What ensure_auth reads and changes, in the shape of XinferenceAuth's calls (the real server's
    behaviour is tested in tests/integration/xinference/test_xinference_auth_setup.py)."""

    def __init__(self, auth_on=True, admin=False, keys=()):
        self.endpoint = "http://127.0.0.1:9997"
        self.auth_on = auth_on
        self.admin = admin
        self.keys_held = [dict(entry) for entry in keys]
        self.calls = []

    def needs_setup(self):
        return None if not self.auth_on else not self.admin

    def create_admin(self, setup_token):
        self.calls.append(("setup", setup_token))
        self.admin = True

    def login(self):
        self.calls.append(("login",))

    def keys(self):
        return self.keys_held

    def create_key(self, name, description):
        self.calls.append(("create", name))
        self.keys_held.append({"id": 7, "name": name, "enabled": True, "key": "sk-new"})
        return {"id": 7, "key": "sk-new"}

    def reveal_key(self, key_id):
        return next(entry["key"] for entry in self.keys_held if entry["id"] == key_id)

    def enable_key(self, key_id):
        self.calls.append(("enable", key_id))


def ensure(state, **options):
    result = new_result("inference")
    ensure_auth(state, result, **options)
    return result


def test_a_new_server_gets_its_admin_then_the_key():
    state = ServerState()
    result = ensure(state, setup_token="tok")
    assert state.calls == [("setup", "tok"), ("login",), ("create", "inference")]
    assert result["changed"] and result["admin_created"] and result["api_key_created"]
    assert result["api_key"] == "sk-new"


def test_check_mode_on_a_new_server_changes_nothing():
    state = ServerState()
    result = ensure(state, setup_token="tok", check_mode=True)
    assert state.calls == []
    assert result["changed"] and result["admin_created"] and result["api_key"] == ""


def test_a_set_up_server_with_its_key_changes_nothing():
    state = ServerState(admin=True, keys=[{"id": 3, "name": " Inference ", "enabled": True, "key": "sk-old"}])
    result = ensure(state)
    assert state.calls == [("login",)]
    assert not result["changed"] and result["api_key"] == "sk-old" and result["api_key_id"] == 3


def test_a_disabled_key_is_enabled():
    state = ServerState(admin=True, keys=[{"id": 3, "name": "inference", "enabled": False, "key": "sk-old"}])
    result = ensure(state)
    assert ("enable", 3) in state.calls and result["changed"] and result["api_key_enabled"]


def test_auth_off_changes_nothing():
    state = ServerState(auth_on=False)
    result = ensure(state)
    assert state.calls == [] and not result["changed"] and result["auth_enabled"] is False


def test_no_setup_token_fails_before_any_change(tmp_path):
    state = ServerState()
    with pytest.raises(XinferenceError, match="has no admin yet and no setup token was found in"):
        ensure(state, auth_db=str(tmp_path / "auth.db"))
    assert state.calls == []
