"""xinference_model against a real Xinference with its default API key authentication on."""

import pytest

from testkit.xinference import Cluster, run_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured_xinference(xinference_venv, tmp_path_factory):
    server = Cluster(tmp_path_factory.mktemp("secured-xinference"), auth_advanced=True)
    try:
        server.start_local()
        yield server
    finally:
        left = server.stop()
        assert not left, "Xinference processes left after teardown: %s" % left


@pytest.mark.parametrize(
    ("api_key", "hint"),
    [
        pytest.param(None, "set api_key to a valid key (none was given, and the server requires one)", id="no-key"),
        pytest.param("sk-not-a-key-of-this-server", "set api_key to a valid key", id="wrong-key"),
    ],
)
def test_refused_credentials_name_api_key(secured_xinference, api_key, hint):
    args = {"endpoint": secured_xinference.endpoint, "model_name": "bge-m3", "model_type": "embedding"}
    if api_key:
        args["api_key"] = api_key

    result = run_module(args)

    assert result["failed"]
    assert result["msg"].startswith(
        "Xinference at %s refused the credentials (HTTP 401: " % secured_xinference.endpoint
    )
    assert result["msg"].endswith(hint)
    assert "sk-not-a-key" not in str(result)
