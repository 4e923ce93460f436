"""llmops.ragstack.xinference_model against a real Xinference 4.1 cluster on CPU, with advanced auth
on as Xinference 4.x runs by default: the module authenticates as the admin user (username and
password), the test's own requests use the cluster's API key.

The tests share one cluster and run in file order: the models one test launches are the ones the
next tests change, restart, terminate and heal, so that the set stays within a few minutes.
"""

import time
from pathlib import Path

import pytest
import requests

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu
from testkit.support import free_port
from testkit.xinference import embedding, processes_marked, run_module, tiny_llm

pytestmark = pytest.mark.integration


def key(cluster):
    return {"Authorization": "Bearer %s" % cluster.api_key}


def describe(cluster, model_uid):
    return requests.get("%s/v1/models/%s" % (cluster.endpoint, model_uid), headers=key(cluster), timeout=30)


def quartet(args):
    """check, real, check, real: the four results, each run asserted to have succeeded."""
    results = []
    for flags in (("--check", "--diff"), ("--diff",), ("--check", "--diff"), ("--diff",)):
        result = run_module(args, *flags)
        assert not result.get("failed"), result.get("msg")
        results.append(result)
    return results


def assert_changed_then_idempotent(check, real, check_again, real_again):
    assert [check["changed"], real["changed"], check_again["changed"], real_again["changed"]] == [
        True,
        True,
        False,
        False,
    ]


def test_embedding_present_is_launched_once_and_probed(xinference, tiny_models):
    args = embedding(xinference, tiny_models)
    check, real, check_again, real_again = quartet(args)

    assert_changed_then_idempotent(check, real, check_again, real_again)
    assert check["relaunch_reason"] == "absent"
    assert check["diff"]["before"] == {}
    assert check["diff"]["after"]["n_gpu"] is None
    assert real["model"]["model_engine"] == "sentence_transformers"
    assert real_again["model"]["address"] == real["model"]["address"], "an idempotent run relaunched the model"
    assert not real_again["healed"]
    answer = requests.post(
        xinference.endpoint + "/v1/embeddings",
        json={"model": "minilm", "input": "hello"},
        headers=key(xinference),
        timeout=30,
    )
    assert len(answer.json()["data"][0]["embedding"]) == 384


def test_the_model_process_title_is_parsed_into_uid_and_replica(xinference, tiny_models):
    """Xinference 4.1 titles a model's process `Model: <uid>-rep<N>` (setproctitle in core/model.py),
    which overwrites the process's argv and environment: the process is found as a child of the
    cluster's worker, and gpu.py reads its real /proc entry as gpu_facts does for a GPU process."""
    workers = set(processes_marked(xinference.session))
    children = [
        int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and parent_of(entry) in workers
    ]
    described = [gpu.describe_process(pid) for pid in children]
    # Earlier tests of the session may have left other models running.
    titled = [entry for entry in described if (entry["cmdline"] or "").startswith("Model: minilm")]
    assert [(entry["cmdline"], entry["model_uid"], entry["model_replica"]) for entry in titled] == [
        ("Model: minilm-rep0", "minilm", 0)
    ], described


def parent_of(proc_entry):
    try:
        # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        return int((proc_entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_llm_launches_in_bnb_4bit_through_transformers(xinference, tiny_models):
    check, real, check_again, real_again = quartet(tiny_llm(xinference, tiny_models))

    assert_changed_then_idempotent(check, real, check_again, real_again)
    assert real["launch_spec"]["quantization_config"] == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "float16",
        "bnb_4bit_use_double_quant": True,
    }
    assert real["model"]["model_engine"] == "transformers"
    # transformers names its bitsandbytes 4-bit quantizer when it loads weights through it.
    assert "quantizer_bnb_4bit" in xinference.worker_log.read_text()
    chat = requests.post(
        xinference.endpoint + "/v1/chat/completions",
        json={"model": "tiny-qwen2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
        headers=key(xinference),
        timeout=60,
    )
    assert chat.status_code == 200, chat.text


def test_rerank_is_launched_and_probed_with_two_documents(xinference, tiny_models):
    args = {
        "endpoint": xinference.endpoint,
        **xinference.credentials(),
        "model_uid": "tiny-reranker",
        "model_name": "bge-reranker-base",
        "model_type": "rerank",
        "model_path": tiny_models["reranker"],
        "n_gpu": "cpu",
    }
    first = run_module(args)
    second = run_module(args)

    assert (first["changed"], second["changed"]) == (True, False), first.get("msg")
    assert second["model"]["model_type"] == "rerank"


def test_drift_warns_with_recreate_never_and_relaunches_on_change(xinference, tiny_models):
    drifted = embedding(xinference, tiny_models, model_name="bge-small-zh-v1.5")

    kept = run_module({**drifted, "recreate": "never"})
    predicted = run_module({**drifted, "recreate": "on_change"}, "--check")
    assert describe(xinference, "minilm").json()["model_name"] == "bge-small-en-v1.5"
    relaunched = run_module({**drifted, "recreate": "on_change"})

    assert not kept["changed"]
    assert any("model_name bge-small-en-v1.5 -> bge-small-zh-v1.5" in warning for warning in kept["warnings"])
    assert predicted["changed"]
    assert relaunched["changed"], relaunched.get("msg")
    assert relaunched["relaunch_reason"] == "changed: model_name bge-small-en-v1.5 -> bge-small-zh-v1.5"
    assert describe(xinference, "minilm").json()["model_name"] == "bge-small-zh-v1.5"


def test_restarted_relaunches_on_every_run(xinference, tiny_models):
    args = embedding(xinference, tiny_models, model_name="bge-small-zh-v1.5", state="restarted")
    address_before = describe(xinference, "minilm").json()["address"]

    results = quartet(args)

    assert [result["changed"] for result in results] == [True, True, True, True]
    assert {result["relaunch_reason"] for result in results} == {"restarted"}
    assert results[0]["model"]["address"] == address_before, "check mode relaunched the model"
    assert results[1]["model"]["address"] != address_before
    assert results[3]["model"]["address"] != results[1]["model"]["address"]


@pytest.mark.parametrize(
    ("typo", "message"),
    [
        pytest.param(
            {"model_engine": "sentence_transformerz"},
            "model_engine=sentence_transformerz is not an engine the server offers for bge-small-zh-v1.5 "
            "(embedding): {offered}; nothing was terminated",
            id="engine",
        ),
        pytest.param(
            {"model_type": "rerank"},
            "the server knows no rerank model named bge-small-zh-v1.5 (GET /v1/engines): nothing was terminated; "
            "check model_name and model_type",
            id="type",
        ),
    ],
)
def test_a_typo_in_engine_or_type_fails_and_leaves_the_running_model_alone(xinference, tiny_models, typo, message):
    address = describe(xinference, "minilm").json()["address"]
    started = time.monotonic()

    result = run_module(embedding(xinference, tiny_models, model_name="bge-small-zh-v1.5", **typo))

    assert time.monotonic() - started < 30
    assert (result.get("failed"), result["changed"]) == (True, False), result
    offered = requests.get(
        xinference.endpoint + "/v1/engines/embedding/bge-small-zh-v1.5", headers=key(xinference), timeout=30
    ).json()
    assert result["msg"] == message.format(offered=", ".join(sorted(offered)))
    assert describe(xinference, "minilm").json()["address"] == address


def test_a_relaunch_that_fails_after_the_terminate_says_changed(xinference, tiny_models):
    """The terminate went through, the launch failed: the server's state changed, and the result says so."""
    wrong_size = tiny_llm(xinference, tiny_models, model_size_in_billions="77", state="restarted")

    failed = run_module(wrong_size)
    relaunched = run_module(tiny_llm(xinference, tiny_models))

    assert (failed.get("failed"), failed["changed"]) == (True, True), failed
    assert "qwen2.5-instruct" in failed["msg"] and "\n" not in failed["msg"]
    assert (relaunched["changed"], relaunched["relaunch_reason"]) == (True, "absent"), relaunched.get("msg")


def test_absent_terminates_once(xinference, tiny_models):
    args = {"endpoint": xinference.endpoint, **xinference.credentials(), "model_uid": "minilm", "state": "absent"}

    check, real, check_again, real_again = quartet(args)

    assert_changed_then_idempotent(check, real, check_again, real_again)
    assert check["diff"] == {"before": real["diff"]["before"], "after": {}}
    assert check["diff"]["before"]["model_name"] == "bge-small-zh-v1.5"
    assert describe(xinference, "minilm").status_code == 400


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"model_uid": "ghost", "model_name": "no-such-model", "model_engine": "transformers"},
            "unknown model_name no-such-model for model_type LLM",
            id="unknown-model-name",
        ),
        pytest.param(
            {"model_uid": "no-engine", "model_name": "qwen2.5-instruct"},
            "model_engine is required for an LLM; engines the server offers for qwen2.5-instruct: ",
            id="llm-without-engine",
        ),
        pytest.param(
            {"model_name": "qwen2.5-instruct", "model_engine": "transformers", "extra": {"n_gpu": 1}},
            "extra may not set n_gpu: use the module option of that name",
            id="extra-sets-an-option",
        ),
    ],
)
def test_bad_input_fails_with_one_clear_line(xinference, options, message):
    result = run_module(
        {"endpoint": xinference.endpoint, **xinference.credentials(), "n_gpu": "cpu", "wait_timeout": 60, **options}
    )

    assert result.get("failed"), result
    assert message in result["msg"]
    assert "\n" not in result["msg"]


def test_unknown_engine_lists_what_the_server_offers(xinference):
    result = run_module(
        {
            "endpoint": xinference.endpoint,
            **xinference.credentials(),
            "model_uid": "wrong-engine",
            "model_name": "qwen2.5-instruct",
            "model_engine": "no-such-engine",
            "model_size_in_billions": "0_5",
            "n_gpu": "cpu",
        }
    )
    offered = sorted(
        requests.get(xinference.endpoint + "/v1/engines/qwen2.5-instruct", headers=key(xinference), timeout=30).json()
    )

    assert result["msg"].split("engines it offers for it: ")[1].startswith(", ".join(offered))
    assert "cannot be run on engine no-such-engine" in result["msg"]
    assert "\n" not in result["msg"]


def test_server_down_is_one_clear_line():
    result = run_module({"endpoint": "http://127.0.0.1:%d" % free_port(), "model_name": "bge-m3"})

    assert result["failed"]
    assert result["msg"].startswith("Xinference is not reachable at http://127.0.0.1:")
    assert "Connection refused" in result["msg"]


def test_dead_worker_is_healed_by_the_next_run(xinference, tiny_models):
    """The field notes' case: the worker dies, a restart policy starts a new one, the module runs."""
    args = tiny_llm(xinference, tiny_models)
    assert describe(xinference, "tiny-qwen2").status_code == 200

    xinference.kill_worker()
    xinference.spawn_worker()
    healed = run_module(args)
    after = run_module(args)

    assert not healed.get("failed"), healed.get("msg")
    assert healed["changed"]
    assert healed["healed"]
    assert "Connect call failed" in healed["unhealthy_reason"]
    assert healed["relaunch_reason"] == "unhealthy"
    assert (after["changed"], after["healed"]) == (False, False)
    chat = requests.post(
        xinference.endpoint + "/v1/chat/completions",
        json={"model": "tiny-qwen2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
        headers=key(xinference),
        timeout=60,
    )
    assert chat.status_code == 200, chat.text
