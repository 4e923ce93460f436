"""xinference_auth against a real, new Xinference 4.1 with advanced auth on (its default).

One server for the module, in order: check mode on the new server, the setup itself, the same run
again (nothing changes, the same key comes back), the key's reach (inference yes, management no),
and the failures an operator meets. Plus the auth-off cluster of the other tests.
"""

import re
import time

import pytest
import requests

from testkit.support import ansible_adhoc
from testkit.xinference import Cluster

pytestmark = pytest.mark.integration

ADMIN = "ragstack-admin"
PASSWORD = "test-admin-password-8f2c"
KEY_NAME = "ragstack-inference"


class NewServer(Cluster):
    """An Xinference left as a new server is: advanced auth on and no account yet (Cluster would
    complete the setup itself, as the other tests need)."""

    def __init__(self, workdir):
        super().__init__(workdir, auth_advanced=True)

    def complete_setup(self):
        """Left to the module under test."""


def run_auth(args, *flags):
    return ansible_adhoc("xinference_auth", args, *flags)


@pytest.fixture(scope="module")
def new_server(xinference_venv, tmp_path_factory):
    server = NewServer(tmp_path_factory.mktemp("new-xinference"))
    try:
        server.start_local()
        yield server
    finally:
        left = server.stop()
        assert not left, "Xinference processes left after teardown: %s" % left


def auth_args(server, **options):
    return {
        "endpoint": server.endpoint,
        "username": ADMIN,
        "password": PASSWORD,
        "auth_db": str(server.workdir / "home" / "auth" / "auth.db"),
        "api_key_name": KEY_NAME,
        **options,
    }


def test_setup_then_login_one_key_by_name(new_server):
    check = run_auth(auth_args(new_server), "--check")
    still_new = requests.get(new_server.endpoint + "/v1/admin/setup/status", timeout=10).json()["needs_setup"]
    started = time.monotonic()
    first = run_auth(auth_args(new_server))
    first_wall = time.monotonic() - started
    second = run_auth(auth_args(new_server, api_key_name=" RAGSTACK-inference "))
    second_check = run_auth(auth_args(new_server), "--check")

    assert check["changed"] and check["admin_created"] and check["api_key_created"]
    assert check["api_key"] == ""
    assert still_new, "check mode created the admin"
    assert first["changed"] and first["admin_created"] and first["api_key_created"], first
    assert first["api_key"].startswith(("sk-", "xf-")), "not a key: %s..." % first["api_key"][:3]
    assert first_wall < 30
    assert not second["changed"] and not second["admin_created"] and not second["api_key_created"]
    assert second["api_key"] == first["api_key"]
    assert second["api_key_id"] == first["api_key_id"]
    assert not second_check["changed"] and second_check["api_key"] == first["api_key"]

    key = {"Authorization": "Bearer %s" % first["api_key"]}
    assert requests.get(new_server.endpoint + "/v1/models", headers=key, timeout=10).status_code == 200
    refused = requests.get(new_server.endpoint + "/v1/workers", headers=key, timeout=10)
    assert refused.status_code == 403, "an API key reached a management route"
    # The password never shows in the result, the key only where the module returns it.
    assert PASSWORD not in str(first)


def test_a_disabled_key_is_enabled_again(new_server):
    token = requests.post(
        new_server.endpoint + "/token", json={"username": ADMIN, "password": PASSWORD}, timeout=10
    ).json()["access_token"]
    admin = {"Authorization": "Bearer %s" % token}
    before = run_auth(auth_args(new_server))
    assert (
        requests.put(
            new_server.endpoint + "/v1/admin/keys/%d" % before["api_key_id"],
            json={"enabled": False},
            headers=admin,
            timeout=10,
        ).status_code
        == 200
    )

    enabled = run_auth(auth_args(new_server))

    assert enabled["changed"] and enabled["api_key_enabled"] and enabled["api_key"] == before["api_key"]
    key = {"Authorization": "Bearer %s" % enabled["api_key"]}
    assert requests.get(new_server.endpoint + "/v1/models", headers=key, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"password": "not-the-admin-password"},
            r"^Xinference at http://127\.0\.0\.1:\d+ refused the login of user ragstack-admin \(HTTP 401: "
            r"Incorrect username or password\): check username and password$",
            id="wrong-password",
        ),
        pytest.param({"timeout": 0}, r"^timeout must be at least 1 second, not 0$", id="timeout-0"),
        pytest.param({"password": ""}, r"^username and password must not be empty", id="empty-password"),
    ],
)
def test_refusals_are_one_line(new_server, options, message):
    started = time.monotonic()
    result = run_auth(auth_args(new_server, **options))

    assert result["failed"] and not result.get("changed")
    assert re.search(message, result["msg"]), result["msg"]
    assert "\n" not in result["msg"]
    assert time.monotonic() - started < 30


def test_a_new_server_without_setup_token_fails_naming_where_to_find_it(xinference_venv, tmp_path):
    server = NewServer(tmp_path)
    try:
        server.start_local()
        result = run_auth(auth_args(server, auth_db=str(tmp_path / "elsewhere.db")))
        assert result["failed"] and not result.get("changed")
        assert "has no admin yet and no setup token was found in %s" % (tmp_path / "elsewhere.db") in result["msg"]
        assert "FIRST-RUN SETUP REQUIRED" in result["msg"]
        with_token = run_auth(auth_args(server, auth_db=None, setup_token="not-the-token"))
        assert with_token["failed"] and not with_token.get("changed")
        assert "HTTP 403: Invalid setup token." in with_token["msg"]
    finally:
        left = server.stop()
        assert not left, "Xinference processes left after teardown: %s" % left


def test_auth_off_changes_nothing_and_returns_no_key(xinference_venv, tmp_path):
    server = Cluster(tmp_path, auth_advanced=False)
    try:
        server.start_local()
        result = run_auth(auth_args(server))
    finally:
        left = server.stop()
        assert not left, "Xinference processes left after teardown: %s" % left

    assert not result["changed"] and result["auth_enabled"] is False and result["api_key"] == ""
