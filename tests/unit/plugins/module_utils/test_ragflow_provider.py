"""Which Xinference base URLs ragflow_provider accepts, and which models become the tenant defaults."""

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_provider import (
    check_provider_url,
    wanted_defaults,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9997",
        "http://127.0.0.53:9997",
        "http://localhost:9997",
        "http://LOCALHOST:9997/",
        "http://xinference.localhost:9997",
        "http://[::1]:9997",
        "http://0.0.0.0:9997",
    ],
)
def test_loopback_urls_are_refused_with_the_reason(url):
    with pytest.raises(RagflowError) as refused:
        check_provider_url(url)

    message = str(refused.value)
    assert "inside its container" in message
    assert "is the container itself" in message
    assert "http://xinference:9997" in message
    assert "host.docker.internal" in message


@pytest.mark.parametrize(
    "url", ["http://xinference:9997", "http://host.docker.internal:9997/", "https://10.0.0.7:443", "http://gpu01"]
)
def test_urls_reachable_from_a_container_pass(url):
    check_provider_url(url)


def test_a_v1_suffix_is_refused():
    with pytest.raises(RagflowError, match="adds /v1 itself"):
        check_provider_url("http://xinference:9997/v1/")


@pytest.mark.parametrize("url", ["xinference:9997", "ftp://xinference", "http://"])
def test_urls_without_http_scheme_or_host_are_refused(url):
    with pytest.raises(RagflowError, match="is not an http"):
        check_provider_url(url)


def test_the_first_model_of_each_type_becomes_the_default():
    models = [
        {"name": "bge-m3", "type": "embedding"},
        {"name": "qwen", "type": "chat"},
        {"name": "bge-small", "type": "embedding"},
    ]

    assert wanted_defaults(models) == {"embedding": "bge-m3", "chat": "qwen"}
