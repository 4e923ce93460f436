"""xinference_auth under bad input and hostile networks: one row per case, each failing in seconds with
one line, no traceback, nothing changed. The rows talk to loopback servers that answer wrongly
(testkit/wrong_servers.py); the real server's setup, login, key and refusals are in
tests/integration/xinference/test_xinference_auth_setup.py."""

import re

import pytest

from testkit.xinference_matrix import WALL_TIME_BOUND_S, Row, assert_clean, endpoint_of, run_row

pytestmark = pytest.mark.integration

ADMIN = {"username": "ragstack-admin", "password": "pw-for-the-matrix"}
NOT_XINFERENCE = (
    r"^http://127\.0\.0\.1:\d+ does not answer as Xinference: GET /v1/cluster/auth answered HTTP 200 text/html, "
    r"an HTML page titled 'Dashboard', where Xinference answers \{\"auth\": true\|false\}; set endpoint to"
)
NOT_REACHABLE = r"^Xinference is not reachable at http://127\.0\.0\.1:\d+ \(GET /v1/cluster/auth, timeout=\d+s\): "
EMPTY_CREDENTIAL = r"^username and password must not be empty: set the Xinference admin's \(from a vault\)$"

ROWS = [
    ("html-server", Row("html", None, ADMIN, True, False, NOT_XINFERENCE)),
    ("silent-listener", Row("silent", None, {**ADMIN, "timeout": 2}, True, False, NOT_REACHABLE + r"timed out$")),
    ("closed-port", Row("closed", None, ADMIN, True, False, NOT_REACHABLE + r"\[Errno 111\] Connection refused$")),
    (
        "dead-proxy-used",
        Row(
            "html",
            "dead_proxy",
            {**ADMIN, "use_proxy": True},
            True,
            False,
            r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed while "
            r"reaching http://127\.0\.0\.1:\d+/v1/cluster/auth: \[Errno 111\] Connection refused; set use_proxy: "
            r"false to reach the service directly, or fix or unset http_proxy$",
        ),
    ),
    ("dead-proxy-ignored", Row("html", "dead_proxy", ADMIN, True, False, NOT_XINFERENCE)),
    ("timeout-0", Row("closed", None, {**ADMIN, "timeout": 0}, True, None, r"^timeout must be at least 1 second")),
    ("blank-username", Row("closed", None, {**ADMIN, "username": " "}, True, None, EMPTY_CREDENTIAL)),
    ("empty-password", Row("closed", None, {**ADMIN, "password": ""}, True, None, EMPTY_CREDENTIAL)),
]


@pytest.mark.parametrize("row", [row for _, row in ROWS], ids=[name for name, _ in ROWS])
def test_xinference_auth_bad_input(row, tmp_path):
    with endpoint_of(row.server, None) as endpoint:
        result, seconds, output = run_row(
            "xinference_auth", {"endpoint": endpoint, **row.options}, tmp_path, row.environment
        )
    assert_clean(output, result)
    assert seconds < WALL_TIME_BOUND_S
    assert result.get("failed", False) is row.failed, result
    assert result.get("changed") is row.changed, result
    assert re.search(row.message, result["msg"]), result["msg"]
    assert "\n" not in result["msg"]
    assert row.options["password"] not in output or not row.options["password"]
    if row.environment == "dead_proxy" and not row.options.get("use_proxy"):
        assert "http_proxy" in result["proxy_variables_ignored"]
