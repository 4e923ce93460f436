"""Bad-input matrix of llmops.ragstack.ragflow_user (testkit/ragflow/matrix.py runs and judges each row)."""

import pytest

from testkit.ragflow.matrix import judge, run_row, target

pytestmark = pytest.mark.integration

ADMIN = "admin@ragflow.io"


def user(server, **overrides):
    args = {"base_url": server.url, "email": ADMIN, "password": "vaulted-Pa55", "timeout": 3}
    if server.fake:
        args["public_key"] = server.fake.public_key_pem
    args.update(overrides)
    return args


ROWS = [
    # id, server, arguments (from the server), environment, check mode, failed, changed, message pattern
    ("first-boot", "double-first-boot", user, None, False, False, True, r"^changed the password of admin@ragflow\.io"),
    ("first-boot-check-mode", "double-first-boot", user, None, True, False, True, r"^would change the password"),
    ("first-boot-v0.24", "double-first-boot-v0.24", user, None, False, False, True, r"^changed the password"),
    ("dead-proxy-ignored", "double-first-boot", user, "dead-proxy", False, False, True, r"^changed the password"),
    (
        "dead-proxy-used",
        "double-first-boot",
        lambda s: user(s, use_proxy=True),
        "dead-proxy",
        False,
        True,
        False,
        r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed",
    ),
    (
        "wrong-initial-password",
        "double-first-boot",
        lambda s: user(s, initial_password="not-admin"),
        None,
        False,
        True,
        False,
        r"^RAGFlow refused both password and initial_password for admin@ragflow\.io: someone else changed it",
    ),
    (
        "same-password-and-initial",
        "double-first-boot",
        lambda s: user(s, password="wrong", initial_password="wrong"),
        None,
        False,
        True,
        False,
        r"^RAGFlow refused the password of admin@ragflow\.io and there is no other initial_password to try",
    ),
    (
        "unknown-user",
        "double-first-boot",
        lambda s: user(s, email="nobody@example.com"),
        None,
        False,
        True,
        False,
        r"^RAGFlow at http://127\.0\.0\.1:\d+ has no user nobody@example\.com \(Email: nobody@example\.com is not "
        r"registered!\)",
    ),
    (
        "html-everywhere",
        "html",
        user,
        None,
        False,
        True,
        False,
        r"/api/v1/system/healthz answered HTTP 200 without a health report",
    ),
    ("silent-listener", "silent", user, None, False, True, False, r"^RAGFlow is not reachable at .*timed out$"),
    ("closed-port", "closed", user, None, False, True, False, r"Connection refused"),
    ("empty-password", "double-first-boot", lambda s: user(s, password=""), None, False, True, False, r"^password"),
    ("zero-timeout", "double-first-boot", lambda s: user(s, timeout=0), None, False, True, False, r"^timeout must be"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_ragflow_user_bad_input(tmp_path, row):
    _name, kind, arguments, env, check_mode, failed, changed, pattern = row
    with target(kind) as server:
        result, seconds = run_row("ragflow_user", tmp_path, arguments(server), env, check_mode)

    judge(result, seconds, failed, changed, pattern)
    assert "vaulted-Pa55" not in str(result)
