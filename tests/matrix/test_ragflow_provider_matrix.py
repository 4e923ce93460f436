"""Bad-input matrix of llmops.ragstack.ragflow_provider (testkit/ragflow/matrix.py runs and judges each row)."""

import pytest

from testkit.ragflow.matrix import EMAIL, PASSWORD, XINFERENCE, judge, run_row, target

pytestmark = pytest.mark.integration

MODELS = [{"name": "qwen2.5-instruct", "type": "chat"}, {"name": "bge-m3", "type": "embedding"}]


def provider(server, **overrides):
    args = {
        "base_url": server.url,
        "email": EMAIL,
        "password": PASSWORD,
        "provider_url": XINFERENCE,
        "models": MODELS,
        "timeout": 3,
    }
    if server.fake:
        args["public_key"] = server.fake.public_key_pem
    args.update(overrides)
    return args


ROWS = [
    # id, server, arguments (from the server), environment, check mode, failed, changed, message pattern
    ("registers", "double", provider, None, False, False, True, r"^$"),
    ("check-mode", "double", provider, None, True, False, True, r"^$"),
    ("v0.24", "double-v0.24", provider, None, False, False, True, r"^$"),
    ("dead-proxy-ignored", "double", provider, "dead-proxy", False, False, True, r"^$"),
    (
        "dead-proxy-used",
        "double",
        lambda s: provider(s, use_proxy=True),
        "dead-proxy",
        False,
        True,
        False,
        r"^the proxy http://127\.0\.0\.1:\d+ \(from http_proxy, used because use_proxy is true\) failed",
    ),
    (
        "model-not-served-after-one-that-is",
        "double",
        lambda s: provider(s, models=[*MODELS, {"name": "not-served", "type": "rerank"}]),
        None,
        False,
        True,
        False,
        r"^RAGFlow could not use 1 of 3 models at http://xinference:9997: not-served \(rerank\): .*Fail to access "
        r"model\(not-served\)",
    ),
    (
        "model-not-served-v0.24",
        "double-v0.24",
        lambda s: provider(s, models=[*MODELS, {"name": "not-served", "type": "rerank"}]),
        None,
        False,
        True,
        True,
        r"^add model not-served: RAGFlow answered code 102: .*\(done before: add chat model qwen2\.5-instruct",
    ),
    (
        "html-everywhere",
        "html",
        provider,
        None,
        False,
        True,
        False,
        r"/api/v1/system/healthz answered HTTP 200 without a health report",
    ),
    ("silent-listener", "silent", provider, None, False, True, False, r"^RAGFlow is not reachable at .*timed out$"),
    ("closed-port", "closed", provider, None, False, True, False, r"Connection refused"),
    (
        "wrong-password",
        "double",
        lambda s: provider(s, password="wrong"),
        None,
        False,
        True,
        False,
        r"^login: RAGFlow refused the credentials \(code 109\)",
    ),
    (
        "unknown-user",
        "double",
        lambda s: provider(s, email="nobody@example.com"),
        None,
        False,
        True,
        False,
        r"nobody@example\.com is not registered",
    ),
    (
        "loopback-provider-url",
        "double",
        lambda s: provider(s, provider_url="http://127.0.0.1:9997"),
        None,
        False,
        True,
        False,
        r"^provider_url http://127\.0\.0\.1:9997 points at 127\.0\.0\.1",
    ),
    (
        "provider-url-with-v1",
        "double",
        lambda s: provider(s, provider_url="http://xinference:9997/v1"),
        None,
        False,
        True,
        False,
        r"ends in /v1",
    ),
    (
        "bad-model-type",
        "double",
        lambda s: provider(s, models=[{"name": "x", "type": "tts"}]),
        None,
        False,
        True,
        False,
        r"value of type must be one of: chat, embedding, rerank",
    ),
    ("zero-timeout", "double", lambda s: provider(s, timeout=0), None, False, True, False, r"^timeout must be more"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_ragflow_provider_bad_input(tmp_path, row):
    _name, kind, arguments, env, check_mode, failed, changed, pattern = row
    with target(kind) as server:
        result, seconds = run_row("ragflow_provider", tmp_path, arguments(server), env, check_mode)

    judge(result, seconds, failed, changed, pattern)
    if env == "dead-proxy" and not failed:
        assert "http_proxy" in result["proxy_variables_ignored"]
