"""xinference_verify under bad input and hostile networks: one row per case. The module fails only on
bad options; a server that is wrong, silent, unreachable or refuses the credential fails the gateway
check with one clear diagnosis and skips the models. Each row: no traceback, within WALL_TIME_BOUND_S.

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

MODELS = {"models": [{"model_uid": "matrix-minilm", "model_type": "embedding"}]}
NOT_XINFERENCE = (
    r"^http://127\.0\.0\.1:\d+ does not answer as Xinference: GET /v1/cluster/auth answered HTTP 200 text/html, "
    r"an HTML page titled 'Dashboard'"
)

# A Row's `message` is the gateway check's diagnosis when the module does not fail, else its msg.
ROWS = [
    ("html-server", Row("html", None, MODELS, False, False, NOT_XINFERENCE)),
    (
        "silent-listener",
        Row(
            "silent",
            None,
            {**MODELS, "timeout": 2},
            False,
            False,
            r"^Xinference does not answer at http://127\.0\.0\.1:\d+ \(.*timed out\): is it running there\?",
        ),
    ),
    (
        "closed-port",
        Row("closed", None, MODELS, False, False, r"^Xinference does not answer at \S+ \(.*Connection refused\)"),
    ),
    (
        "dead-proxy-used",
        Row(
            "html",
            "dead_proxy",
            {**MODELS, "use_proxy": True},
            False,
            False,
            r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed while "
            r"reaching http://127\.0\.0\.1:\d+/v1/cluster/auth: ",
        ),
    ),
    ("dead-proxy-ignored", Row("html", "dead_proxy", MODELS, False, False, NOT_XINFERENCE)),
    ("no-models", Row("closed", None, {"models": []}, True, False, r"^models is empty")),
    ("empty-uid", Row("closed", None, {"models": [{"model_uid": " "}]}, True, False, r"non-empty model_uid")),
    ("ttft-timeout-0", Row("closed", None, {**MODELS, "ttft_timeout": 0}, True, False, r"^ttft_timeout must be")),
    ("timeout-0", Row("closed", None, {**MODELS, "timeout": 0}, True, False, r"^timeout must be a positive")),
    (
        "key-and-user",
        Row(
            "closed",
            None,
            {**MODELS, "api_key": "sk-matrix-key", "username": "u", "password": "pw-for-matrix"},
            True,
            False,
            r"parameters are mutually exclusive: api_key\|username",
        ),
    ),
    (
        "no-credential",
        Row(
            "xinference",
            None,
            MODELS,
            False,
            False,
            r"^Xinference at \S+ has authentication on and no credential was given: set api_key to an API key",
        ),
    ),
    (
        "unknown-api-key",
        Row(
            "xinference",
            None,
            {**MODELS, "api_key": "sk-wrong-key-of-the-matrix"},
            False,
            False,
            r"^Xinference at \S+ refused the credentials of the api_key for GET /v1/models \(HTTP 401: ",
        ),
    ),
    (
        "wrong-password",
        Row(
            "xinference",
            None,
            {**MODELS, "username": "ragstack-admin", "password": "wrong-password"},
            False,
            False,
            r"^Xinference at \S+ refused the login of user ragstack-admin \(HTTP 401: Incorrect username or password\)",
        ),
    ),
    (
        "api-key-reads",
        Row(
            "xinference",
            None,
            {**MODELS, "api_key": "API_KEY"},
            False,
            False,
            r"^not launched: matrix-minilm; run the xinference stage",
        ),
    ),
]


@pytest.fixture(scope="module")
def xinference_factory(tmp_path_factory):
    with lazy_secured_xinference(tmp_path_factory) as get:
        yield get


@pytest.mark.parametrize("row", [pytest.param(row, id=name) for name, row in ROWS])
def test_xinference_verify_row(xinference_factory, tmp_path, row):
    with endpoint_of(row.server, xinference_factory) as endpoint:
        cluster = xinference_factory() if row.server == "xinference" else None
        args = {"endpoint": endpoint, **credentials_of(row.options, cluster)}
        result, took, output = run_row("xinference_verify", args, tmp_path, row.environment)

    assert bool(result.get("failed")) is row.failed, result
    assert result.get("changed", False) is row.changed, result
    if row.failed:
        text = result["msg"]
    else:
        gateway = result["checks"][0]
        assert (gateway["name"], gateway["verdict"]) == ("gateway", "fail"), result["checks"]
        assert [check["verdict"] for check in result["checks"][1:]] in (["skip"], ["fail"]), result["checks"]
        text = gateway["diagnosis"]
    assert re.search(row.message, text), text
    assert "\n" not in text
    assert took < WALL_TIME_BOUND_S, took
    assert_clean(output, result)
    if row.environment == "dead_proxy" and not row.options.get("use_proxy"):
        assert "http_proxy" in result.get("proxy_variables_ignored", []), result
    for secret in ("wrong-password", "sk-wrong-key", getattr(cluster, "api_key", None)):
        assert not secret or secret not in output
