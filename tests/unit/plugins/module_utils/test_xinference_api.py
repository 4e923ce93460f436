"""XinferenceApi without a server: what it says of an answer that is not Xinference's, the token's
expiry, the scope each call needs, and the unexpected-termination samples of /metrics."""

import base64
import json

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import (
    UNEXPECTED_TERMINATION,
    jwt_expiry,
    scope_of,
    what_answered,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "headers", "raw", "said"),
    [
        (
            200,
            {"Content-Type": "text/html; charset=utf-8"},
            b"<!DOCTYPE html><html><head><title>Grafana</title></head><body>" + b"x" * 5000,
            "HTTP 200 text/html, an HTML page titled 'Grafana'",
        ),
        (200, {"Content-Type": "text/html"}, b"<html><body>hi</body></html>", "HTTP 200 text/html, an HTML page"),
        (
            404,
            {"Content-Type": "application/json"},
            b'{"detail": "Not Found"}',
            "HTTP 404 application/json with the keys detail",
        ),
        (200, {}, b"\x00\x01", "HTTP 200 no Content-Type, 2 bytes"),
    ],
)
def test_what_answered_is_a_few_words_never_the_page(status, headers, raw, said):
    assert what_answered(status, headers, raw) == said


def token(claims):
    def segment(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return "%s.%s.signature" % (segment({"alg": "HS256", "typ": "JWT"}), segment(claims))


def test_the_token_expiry_is_read_from_its_claims():
    assert jwt_expiry(token({"sub": "admin", "exp": 1764466200, "type": "access"})) == 1764466200
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry(token({"sub": "admin"})) is None


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v1/models?wait_ready=false", "models:write"),
        ("DELETE", "/v1/models/minilm", "models:write"),
        ("GET", "/v1/workers", "admin"),
        ("GET", "/v1/models/minilm", "models:read"),
        ("POST", "/v1/embeddings", "models:read"),
    ],
)
def test_the_scope_each_call_needs(method, path, scope):
    assert scope_of(method, path) == scope


def test_unexpected_terminations_are_read_from_the_metrics_samples():
    # The sample lines prometheus_client writes for the gauge of core/metrics.py (labels sorted by name).
    metrics = "\n".join(
        [
            "# HELP xinference:model_unexpected_termination Replica currently down due to worker failure (value=1).",
            "# TYPE xinference:model_unexpected_termination gauge",
            'xinference:model_unexpected_termination{model_name="bge-small-en-v1.5",model_uid="minilm",'
            'replica_index="0"} 1.0',
            'xinference:model_unexpected_termination{model_name="qwen2.5-instruct",model_uid="tiny-qwen2",'
            'replica_index="0"} 1.0',
            'xinference:model_replica_count{model_uid="other"} 1.0',
        ]
    )

    assert set(UNEXPECTED_TERMINATION.findall(metrics)) == {"minilm", "tiny-qwen2"}
