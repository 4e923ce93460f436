"""ragflow_provider against the fake RAGFlow, in both API generations (v0.27 /api/v1 and v0.24 /v1)."""

import pytest

from testkit.support import free_port

pytestmark = pytest.mark.integration

EMAIL = "admin@example.com"
PASSWORD = "s3cret-Pa55"
XINFERENCE = "http://xinference:9997"
MODELS = [
    {"name": "qwen2.5-instruct", "type": "chat", "max_tokens": 32768},
    {"name": "bge-m3", "type": "embedding"},
    {"name": "bge-reranker-v2-m3", "type": "rerank", "max_tokens": 512},
]


def provider_args(fake, **overrides):
    args = {
        "base_url": fake.url,
        "email": EMAIL,
        "password": PASSWORD,
        "public_key": fake.public_key_pem,
        "provider_url": XINFERENCE,
        "models": MODELS,
    }
    args.update(overrides)
    return args


def registered(fake, tenant):
    """(model name, type, base URL, max_tokens) of every Xinference model the tenant has, either generation."""
    if fake.generation == "v0.27":
        instances = fake.providers.get(tenant, {}).get("Xinference", {})
        return sorted(
            (name, model["model_type"][0], row["base_url"], model["max_tokens"])
            for row in instances.values()
            for name, model in row["models"].items()
        )
    return sorted(
        (row["llm_name"], row["model_type"], row["api_base"], row["max_tokens"])
        for row in fake.tenant_llms.get(tenant, [])
        if row["llm_factory"] == "Xinference"
    )


def tenant_defaults(fake, tenant):
    if fake.generation == "v0.27":
        return {kind: composite.split("@")[0] for kind, composite in fake.defaults.get(tenant, {}).items()}
    fields = {"chat": "llm_id", "embedding": "embd_id", "rerank": "rerank_id"}
    info = fake.tenant_fields.get(tenant, {})
    return {kind: info[field].split("@")[0] for kind, field in fields.items() if info.get(field)}


WANTED = sorted(
    [
        ("bge-m3", "embedding", XINFERENCE, 8192),
        ("bge-reranker-v2-m3", "rerank", XINFERENCE, 512),
        ("qwen2.5-instruct", "chat", XINFERENCE, 32768),
    ]
)
WANTED_DEFAULTS = {"chat": "qwen2.5-instruct", "embedding": "bge-m3", "rerank": "bge-reranker-v2-m3"}


def test_check_real_check_real(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")

    predicted = run_provider_module(provider_args(fake_ragflow), check_mode=True)
    assert predicted["changed"] is True
    assert predicted["api_generation"] == fake_ragflow.generation
    assert predicted["changes"]
    assert fake_ragflow.writes() == []

    applied = run_provider_module(provider_args(fake_ragflow))
    assert applied["changed"] is True
    assert applied["changes"] == predicted["changes"]
    assert applied["defaults"] == WANTED_DEFAULTS
    assert registered(fake_ragflow, tenant) == WANTED
    assert tenant_defaults(fake_ragflow, tenant) == WANTED_DEFAULTS
    writes = len(fake_ragflow.writes())

    checked = run_provider_module(provider_args(fake_ragflow), check_mode=True)
    again = run_provider_module(provider_args(fake_ragflow))
    assert (checked["changed"], checked["changes"]) == (False, [])
    assert (again["changed"], again["changes"]) == (False, [])
    assert len(fake_ragflow.writes()) == writes


def test_a_moved_xinference_is_registered_again(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    moved = "http://host.docker.internal:9997"
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")
    fake_ragflow.serve(moved, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")
    run_provider_module(provider_args(fake_ragflow))

    result = run_provider_module(provider_args(fake_ragflow, provider_url=moved))

    assert result["changed"] is True
    assert {url for _name, _type, url, _tokens in registered(fake_ragflow, tenant)} == {moved}
    assert tenant_defaults(fake_ragflow, tenant) == WANTED_DEFAULTS
    assert run_provider_module(provider_args(fake_ragflow, provider_url=moved))["changed"] is False


def test_defaults_set_by_hand_are_put_back(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")
    run_provider_module(provider_args(fake_ragflow))
    if fake_ragflow.generation == "v0.27":
        fake_ragflow.defaults[tenant]["chat"] = "other@default@OpenAI"
    else:
        fake_ragflow.tenant_fields[tenant]["llm_id"] = "gpt-4o@OpenAI"

    result = run_provider_module(provider_args(fake_ragflow))

    assert result["changed"] is True
    assert any("chat" in change or "llm_id" in change for change in result["changes"])
    assert tenant_defaults(fake_ragflow, tenant) == WANTED_DEFAULTS


def test_without_set_defaults_the_tenant_defaults_stay(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")

    result = run_provider_module(provider_args(fake_ragflow, set_defaults=False))

    assert result["changed"] is True
    assert registered(fake_ragflow, tenant) == WANTED
    assert tenant_defaults(fake_ragflow, tenant) == {}


def test_a_model_xinference_does_not_serve_fails_with_ragflows_message(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-reranker-v2-m3")

    result = run_provider_module(provider_args(fake_ragflow))

    assert result["failed"] is True
    assert "RAGFlow answered code 102" in result["msg"]
    assert "Fail to access embedding model(bge-m3)" in result["msg"]
    assert "bge-m3" not in [name for name, *_rest in registered(fake_ragflow, tenant)]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9997", "http://localhost:9997"])
def test_a_loopback_provider_url_is_refused_before_anything_is_sent(fake_ragflow, run_provider_module, url):
    fake_ragflow.add_user(EMAIL, PASSWORD)

    result = run_provider_module(provider_args(fake_ragflow, provider_url=url))

    assert result["failed"] is True
    assert result["msg"].startswith("provider_url %s points at " % url)
    assert "inside its container" in result["msg"]
    assert fake_ragflow.requests == []


def test_wrong_password_is_ragflows_answer(fake_ragflow, run_provider_module):
    fake_ragflow.add_user(EMAIL, PASSWORD)

    result = run_provider_module(provider_args(fake_ragflow, password="wrong"))

    assert result["msg"] == "login: RAGFlow refused the credentials (code 109): Email and password do not match!"
    assert fake_ragflow.writes() == []


def test_unknown_user_is_ragflows_answer(fake_ragflow, run_provider_module):
    result = run_provider_module(provider_args(fake_ragflow, email="nobody@example.com"))

    assert result["msg"] == (
        "login: RAGFlow refused the credentials (code 109): Email: nobody@example.com is not registered!"
    )


def test_unreachable_ragflow(run_provider_module):
    url = "http://127.0.0.1:%d" % free_port()

    result = run_provider_module(
        {"base_url": url, "email": EMAIL, "password": PASSWORD, "provider_url": XINFERENCE, "models": MODELS}
    )

    assert result["failed"] is True
    assert result["msg"].startswith("RAGFlow is not reachable at %s: " % url)


def test_a_model_after_one_that_answers_is_still_verified(fake_ragflow, run_provider_module):
    """v0.27 saves an instance once its FIRST model answers; the module tests every model on its own."""
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-reranker-v2-m3")

    result = run_provider_module(provider_args(fake_ragflow))

    assert result["failed"] is True
    assert "bge-m3" in result["msg"]
    assert "bge-m3" not in [name for name, *_rest in registered(fake_ragflow, tenant)]
    if fake_ragflow.generation == "v0.27":
        # Every model is tested before anything is saved.
        assert "bge-m3 (embedding): " in result["msg"]
        assert "qwen2.5-instruct" not in result["msg"]
        assert (result["changed"], registered(fake_ragflow, tenant)) == (False, [])
    else:
        # add_llm saved the chat model before the embedding model failed: that is a change, and said.
        assert result["changed"] is True
        assert "(done before: add chat model qwen2.5-instruct" in result["msg"]


def test_the_double_saves_what_follows_the_first_answering_model_as_ragflow_does(fake_ragflow):
    """The upstream behaviour the module guards against, served by the double (UPSTREAM.md)."""
    if fake_ragflow.generation != "v0.27":
        pytest.skip("v0.24's add_llm takes one model at a time")
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct")
    fake_ragflow.providers[tenant] = {"Xinference": {}}
    model_info = [
        {"model_name": "qwen2.5-instruct", "model_type": ["chat"]},
        {"model_name": "not-served", "model_type": ["embedding"]},
    ]

    answer = fake_ragflow.create_instance(
        tenant, {"instance_name": "x", "base_url": XINFERENCE, "model_info": model_info}, {"provider": "Xinference"}
    )

    assert answer[1]["code"] == 0
    assert sorted(fake_ragflow.providers[tenant]["Xinference"]["x"]["models"]) == ["not-served", "qwen2.5-instruct"]


def test_an_api_key_is_used_instead_of_a_login(fake_ragflow, run_provider_module):
    tenant = fake_ragflow.add_user(EMAIL, PASSWORD)
    key = fake_ragflow.add_token(tenant)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")

    result = run_provider_module(provider_args(fake_ragflow, password=None, api_key=key))

    assert result["changed"] is True
    assert registered(fake_ragflow, tenant) == WANTED
    assert [path for method, path in fake_ragflow.requests if method == "POST" and "login" in path] == []


def test_the_plan_is_the_diff_and_check_mode_writes_nothing(fake_ragflow, run_provider_module):
    fake_ragflow.add_user(EMAIL, PASSWORD)
    fake_ragflow.serve(XINFERENCE, "qwen2.5-instruct", "bge-m3", "bge-reranker-v2-m3")

    planned = run_provider_module({**provider_args(fake_ragflow), "_ansible_diff": True}, check_mode=True)
    assert fake_ragflow.writes() == []
    assert planned["diff"]["prepared"].splitlines() == planned["changes"]
    assert any(line.startswith("set default") or line.startswith("set tenant defaults") for line in planned["changes"])

    applied = run_provider_module({**provider_args(fake_ragflow), "_ansible_diff": True})
    assert applied["diff"] == planned["diff"]
    assert len(fake_ragflow.writes()) == len(applied["changes"])
    assert run_provider_module({**provider_args(fake_ragflow), "_ansible_diff": True})["diff"] == {"prepared": ""}
