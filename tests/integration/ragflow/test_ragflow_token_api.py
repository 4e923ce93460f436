"""ragflow_token with method=api against the fake RAGFlow, in both API generations (v0.27 and v0.24)."""

import re

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import encrypt_password
from testkit.ragflow.fake_ragflow import FakeRagflow
from testkit.support import free_port

pytestmark = pytest.mark.integration

EMAIL = "admin@example.com"
PASSWORD = "s3cret-Pa55"
TOKEN_FORMAT = re.compile(r"^ragflow-[A-Za-z0-9_-]{43}$")


def api_args(fake, **overrides):
    args = {"base_url": fake.url, "email": EMAIL, "password": PASSWORD, "public_key": fake.public_key_pem}
    args.update(overrides)
    return args


def test_creates_once_then_returns_the_same_token(fake_ragflow, run_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)

    predicted = run_module(api_args(fake_ragflow), check_mode=True)
    assert predicted["changed"] is True
    assert predicted["token"] is None
    assert fake_ragflow.writes() == []

    created = run_module(api_args(fake_ragflow))
    assert created["changed"] is True
    assert TOKEN_FORMAT.match(created["token"])
    assert created["tenant_id"] == tenant
    assert created["api_generation"] == fake_ragflow.generation
    assert fake_ragflow.tokens_of(tenant) == [created["token"]]

    checked = run_module(api_args(fake_ragflow), check_mode=True)
    again = run_module(api_args(fake_ragflow))
    assert (checked["changed"], checked["token"]) == (False, created["token"])
    assert (again["changed"], again["token"]) == (False, created["token"])
    assert fake_ragflow.tokens_of(tenant) == [created["token"]]


def test_returns_the_newest_api_key_and_ignores_embed_tokens(fake_ragflow, run_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.add_token(tenant, create_time=1_000)
    newest = fake_ragflow.add_token(tenant, create_time=2_000)
    fake_ragflow.add_token(tenant, dialog_id="d" * 32, create_time=3_000)

    result = run_module(api_args(fake_ragflow))

    assert (result["changed"], result["token"]) == (False, newest)
    assert fake_ragflow.writes() == []


def test_rotate_replaces_every_api_key_but_keeps_embed_tokens(fake_ragflow, run_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    old_keys = [fake_ragflow.add_token(tenant), fake_ragflow.add_token(tenant)]
    embed = fake_ragflow.add_token(tenant, dialog_id="d" * 32)

    predicted = run_module(api_args(fake_ragflow, rotate=True), check_mode=True)
    assert (predicted["changed"], predicted["deleted_tokens"]) == (True, 2)
    assert fake_ragflow.writes() == []

    rotated = run_module(api_args(fake_ragflow, rotate=True))
    assert (rotated["changed"], rotated["deleted_tokens"]) == (True, 2)
    assert rotated["token"] not in old_keys
    assert sorted(fake_ragflow.tokens_of(tenant)) == sorted([embed, rotated["token"]])

    settled = run_module(api_args(fake_ragflow))
    assert (settled["changed"], settled["token"]) == (False, rotated["token"])


def test_wrong_password_is_one_line_from_ragflow(fake_ragflow, run_module):
    fake_ragflow.add_user(EMAIL, PASSWORD)

    result = run_module(api_args(fake_ragflow, password="wrong"))

    assert result["failed"] is True
    assert result["msg"] == "login: RAGFlow refused the credentials (code 109): Email and password do not match!"
    assert "wrong" not in str(result.get("invocation", ""))


def test_unknown_user_is_one_line_from_ragflow(fake_ragflow, run_module):
    result = run_module(api_args(fake_ragflow, email="nobody@example.com"))

    assert result["failed"] is True
    assert result["msg"] == (
        "login: RAGFlow refused the credentials (code 109): Email: nobody@example.com is not registered!"
    )


def test_password_for_another_key_pair_is_refused(fake_ragflow, run_module):
    """Without public_key the module uses RAGFlow's stock key, which this fake does not hold."""
    fake_ragflow.add_user(EMAIL, PASSWORD)

    result = run_module(api_args(fake_ragflow, public_key=None))

    assert result["msg"] == "login: RAGFlow answered code 500: Fail to crypt password"


def test_database_down_in_healthz_stops_before_login(fake_ragflow, run_module):
    fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.health["db"] = "nok"

    result = run_module(api_args(fake_ragflow))

    assert result["failed"] is True
    assert result["msg"].startswith("RAGFlow at %s is not ready, its database is not ok: db=nok" % fake_ragflow.url)
    # The probe asks whether the login route exists (GET); nobody logs in (POST).
    assert [path for method, path in fake_ragflow.requests if "login" in path and method == "POST"] == []


def test_unreachable_ragflow(run_module):
    url = "http://127.0.0.1:%d" % free_port()

    result = run_module({"base_url": url, "email": EMAIL, "password": PASSWORD})

    assert result["failed"] is True
    assert result["msg"].startswith("RAGFlow is not reachable at %s: " % url)
    assert "Connection refused" in result["msg"]


def test_api_options_are_required(run_module):
    result = run_module({"email": EMAIL})

    assert result["failed"] is True
    assert result["msg"].startswith("method is api but ")
    assert "base_url" in result["msg"]


def test_rotate_in_a_user_of_several_tenants_reports_the_keys_left(fake_ragflow, run_module):
    """RAGFlow deletes in the user's first tenant (tenants[0]); a membership listed first keeps the keys."""
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    old = fake_ragflow.add_token(tenant)
    fake_ragflow.join_tenant(EMAIL, "f" * 32)

    result = run_module(api_args(fake_ragflow, rotate=True))

    assert (result["failed"], result["changed"]) == (True, True)
    assert result["msg"].startswith("rotate created a new API key but 1 of 1 older keys are still there")
    assert old in fake_ragflow.tokens_of(tenant)


def test_rotate_reports_the_deletions_that_happened(fake_ragflow, run_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    old = [fake_ragflow.add_token(tenant) for _key in range(2)]

    result = run_module(api_args(fake_ragflow, rotate=True))

    assert (result["changed"], result["deleted_tokens"]) == (True, 2)
    assert fake_ragflow.tokens_of(tenant) == [result["token"]]
    assert not set(old) & set(fake_ragflow.tokens_of(tenant))


def test_an_api_key_is_used_instead_of_a_login(fake_ragflow, run_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    key = fake_ragflow.add_token(tenant)

    result = run_module(api_args(fake_ragflow, password=None, api_key=key))

    # The key found is the key given, a no_log value: Ansible masks it in the result.
    assert (result["changed"], result["tenant_id"]) == (False, tenant)
    assert result["token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert [path for method, path in fake_ragflow.requests if method == "POST" and "login" in path] == []


def test_a_login_ends_the_users_earlier_session(fake_ragflow):
    """What the docs warn about: each login replaces the user's access_token (user_api.py login)."""
    fake_ragflow.add_user(EMAIL, PASSWORD)
    first = fake_ragflow.login(None, {"email": EMAIL, "password": encrypt_for(fake_ragflow, PASSWORD)})[2]
    assert fake_ragflow.current_user(first["Authorization"])["id"]
    second = fake_ragflow.login(None, {"email": EMAIL, "password": encrypt_for(fake_ragflow, PASSWORD)})[2]

    assert fake_ragflow.current_user(first["Authorization"]) is None
    assert fake_ragflow.current_user(second["Authorization"]) is not None


def test_v025_which_serves_healthz_under_api_v1_logs_in_at_v1(run_module):
    fake = FakeRagflow("v0.25").start()
    try:
        fake.add_user(EMAIL, PASSWORD)
        result = run_module(api_args(fake))
    finally:
        fake.stop()

    assert (result["changed"], result["api_generation"]) == (True, "v0.24")
    assert ("POST", "/v1/user/login") in fake.requests


def encrypt_for(fake, password):
    return encrypt_password(password, fake.public_key_pem)
