"""The Xinference modules against a real Xinference 4.1 with advanced auth on (its default), the
first-run setup done by the test cluster: a user manages models, an API key reads and infers, and a
refused credential fails at once with one line that says which credential is needed."""

import time

import pytest
import requests

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import MANAGE, XinferenceApi
from testkit.support import ansible_adhoc
from testkit.xinference import ADMIN_USERNAME, embedding, run_module

pytestmark = pytest.mark.integration

# A refusal is never retried: far below wait_timeout (900 s by default).
AT_ONCE_S = 20
USER_NEEDED = (
    "set username and password of an Xinference user with the models:write scope (the admin of "
    "POST /v1/admin/setup has all of them) instead of api_key"
)
READER = "ragstack-reader"
READER_PASSWORD = "reader-password-1"


def timed(args, *flags):
    started = time.monotonic()
    result = run_module(args, *flags)
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        pytest.param(
            {},
            "Xinference at {endpoint} has authentication on and no credential was given: " + USER_NEEDED,
            id="none",
        ),
        pytest.param(
            {"api_key": "API_KEY"},
            "Xinference at {endpoint} has authentication on, and an api_key may not launch or terminate models "
            "(API keys get only models:read and models:list): " + USER_NEEDED,
            id="api-key-refused-launch",
        ),
        pytest.param(
            {"username": ADMIN_USERNAME, "password": "not-the-password"},
            "Xinference at {endpoint} refused the login of user ragstack-admin (HTTP 401: Incorrect username or "
            "password): check username and password",
            id="wrong-password",
        ),
        pytest.param(
            {"api_key": "sk-not-a-key-of-this-server"},
            "Xinference at {endpoint} has authentication on, and an api_key may not launch or terminate models",
            id="unknown-key",
        ),
    ],
)
def test_a_credential_that_cannot_manage_models_fails_at_once(xinference, tiny_models, credentials, message):
    credentials = {name: xinference.api_key if value == "API_KEY" else value for name, value in credentials.items()}
    args = {
        name: value
        for name, value in embedding(xinference, tiny_models).items()
        if name not in ("username", "password")
    }

    result, took = timed({**args, **credentials, "wait_timeout": 900})

    assert result.get("failed"), result
    assert result["msg"].startswith(message.format(endpoint=xinference.endpoint)), result["msg"]
    assert took < AT_ONCE_S
    assert not result["changed"]
    for secret in (xinference.api_key, xinference.admin_password, "not-the-password", "sk-not-a-key"):
        assert secret not in str(result)


def test_a_user_without_models_write_is_refused_at_once_with_the_scope_it_lacks(xinference, tiny_models):
    """The issue's case: a 403 to a launch or a terminate was retried until wait_timeout (900 s)."""
    created = requests.post(
        xinference.endpoint + "/v1/admin/users",
        json={"username": READER, "password": READER_PASSWORD, "permissions": ["models:list", "models:read"]},
        headers=xinference.auth_headers(),
        timeout=30,
    )
    assert created.status_code in (201, 409), created.text
    reader = {"username": READER, "password": READER_PASSWORD}

    launch, launch_took = timed({**embedding(xinference, tiny_models, model_uid="reader-made"), **reader})
    absent, absent_took = timed(
        {"endpoint": xinference.endpoint, **reader, "model_uid": "reader-made", "state": "absent", "wait_timeout": 900}
    )

    assert launch["msg"] == (
        "Xinference at %s refused POST /v1/models?wait_ready=false to user %s (HTTP 403: Not enough permissions): "
        "grant the user the models:write scope, or use the admin" % (xinference.endpoint, READER)
    )
    assert (launch["changed"], absent.get("failed"), absent["changed"]) == (False, None, False), absent
    assert max(launch_took, absent_took) < AT_ONCE_S


def test_verify_reads_and_infers_with_the_api_key_and_says_which_credential_failed(xinference):
    good = ansible_adhoc(
        "xinference_verify",
        {
            "endpoint": xinference.endpoint,
            "api_key": xinference.api_key,
            "models": [{"model_uid": "absent-model", "model_type": "embedding"}],
        },
    )
    bad = ansible_adhoc(
        "xinference_verify", {"endpoint": xinference.endpoint, "api_key": "sk-wrong", "models": [{"model_uid": "a"}]}
    )
    none = ansible_adhoc("xinference_verify", {"endpoint": xinference.endpoint, "models": [{"model_uid": "a"}]})

    assert good["checks"][0]["value"].endswith("0/1 planned (%d ms)" % good["checks"][0]["measured"]["latency_ms"])
    assert bad["checks"][0]["value"] == "credentials refused"
    assert "refused the credentials of the api_key for GET /v1/models (HTTP 401" in bad["checks"][0]["diagnosis"]
    assert none["checks"][0]["diagnosis"] == (
        "Xinference at %s has authentication on and no credential was given: set api_key to an API key of this "
        "server (POST /v1/admin/keys), or username and password of a user" % xinference.endpoint
    )


def test_the_token_is_renewed_before_it_expires_and_when_the_server_refuses_it(xinference):
    """A long load outlives the 30-minute token: the module logs in again, as a moved clock shows."""
    now = [time.time()]
    api = XinferenceApi(
        xinference.endpoint,
        username=ADMIN_USERNAME,
        password=xinference.admin_password,
        purpose=MANAGE,
        wall_clock=lambda: now[0],
    )
    api.list_models()
    first = api.token
    # A token's claims have whole seconds: a login in the same second would mint the same token.
    time.sleep(1.1)
    # The token's exp claim is in whole seconds, rounded up from the server's clock.
    assert 25 * 60 < api.token_expiry - now[0] <= 30 * 60 + 1, "Xinference's default token lifetime is 30 minutes"

    now[0] = api.token_expiry - 30
    api.list_models()
    renewed = api.token
    time.sleep(1.1)
    api.token = first[:-4] + "AAAA"
    api.list_models()

    assert renewed != first
    assert api.token not in (first, renewed)
