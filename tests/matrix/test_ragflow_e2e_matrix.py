"""Bad-input matrix of llmops.ragstack.ragflow_e2e (testkit/ragflow/matrix.py runs and judges each row).

A failed check is the module's result (failed=false, passed=false, the one line in `diagnosis`); only bad
input and a RAGFlow that does not answer at all fail the task."""

import pytest

from testkit.ragflow.matrix import EMAIL, judge, run_row, target

pytestmark = pytest.mark.integration


def e2e(server, **overrides):
    args = {"base_url": server.url, "api_key": "ragflow-not-a-key", "timeout": 3, "poll_interval": 0.01}
    if server.fake:
        users = list(server.fake.users.values())
        args["api_key"] = server.fake.add_token(users[0]["tenant_id"])
    args.update(overrides)
    return args


ROWS = [
    # id, server, arguments (from the server), environment, failed, passed, message pattern
    ("passes", "double", e2e, None, False, True, r"^$"),
    ("passes-v0.24", "double-v0.24", e2e, None, False, True, r"^$"),
    ("dead-proxy-ignored", "double", e2e, "dead-proxy", False, True, r"^$"),
    (
        "dead-proxy-used",
        "double",
        lambda s: e2e(s, use_proxy=True),
        "dead-proxy",
        True,
        None,
        r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed",
    ),
    (
        # v0.27 refuses a key of a user who never logged in (api/apps/__init__.py, access_token rule).
        "key-of-a-never-logged-in-admin",
        "double-first-boot",
        e2e,
        None,
        False,
        False,
        r"^the API key is wrong: .*HTTP 401",
    ),
    ("wrong-key", "double", lambda s: e2e(s, api_key="ragflow-wrong"), None, False, False, r"^the API key is wrong"),
    (
        "html-everywhere",
        "html",
        e2e,
        None,
        True,
        None,
        r"/api/v1/system/healthz answered HTTP 200 without a health report",
    ),
    ("silent-listener", "silent", e2e, None, True, None, r"^RAGFlow is not reachable at .*timed out$"),
    ("closed-port", "closed", e2e, None, True, None, r"Connection refused"),
    ("key-with-blanks", "double", lambda s: e2e(s, api_key="a b"), None, True, None, r"^api_key must be one word"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_ragflow_e2e_bad_input(tmp_path, row):
    _name, kind, arguments, env, failed, passed, pattern = row
    with target(kind) as server:
        args = arguments(server)
        result, seconds = run_row("ragflow_e2e", tmp_path, args, env)

    judge(result, seconds, failed, False, pattern)
    assert result.get("passed") is passed
    assert args["api_key"] not in str(result) or args["api_key"] == "a b"
    assert EMAIL not in str(result)
