"""Launch spec, drift, error wording and the heal loop of xinference_model, without a server.

The server's answers below are the texts Xinference 4.1.0 sent in the integration runs.
"""

import re

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import (
    ModelManager,
    Observation,
    XinferenceError,
    cli_typed,
    dead_worker_sign,
    detail_of,
    drifted_fields,
    ensure_model,
    explain_launch_failure,
    instance_error,
    launch_spec,
    parse_n_gpu,
    relaunch_reason,
    size_in_billions,
)

pytestmark = pytest.mark.unit

NOT_FOUND_ANSWER = (400, {"detail": "[address=127.0.0.1:58380, pid=21489] Model not found in the model list, uid: m"})
DEAD_WORKER_ANSWER = (
    500,
    {"detail": "[address=127.0.0.1:58380, pid=21489] [Errno 111] Connect call failed ('127.0.0.1', 19999)"},
)
ALREADY_ANSWER = (400, {"detail": "[address=127.0.0.1:58380, pid=21489] Model is already in the model list, uid: m"})


def params(**overrides):
    base = {
        "model_uid": None,
        "model_name": "deepseek-r1-distill-qwen",
        "model_type": "LLM",
        "model_engine": "transformers",
        "model_format": "pytorch",
        "model_size_in_billions": "14",
        "quantization": "none",
        "model_path": None,
        "n_gpu": "auto",
        "gpu_idx": None,
        "replica": 1,
        "worker_ip": None,
        "trust_remote_code": None,
        "quantization_config": None,
        "extra": None,
        "state": "present",
        "recreate": "on_change",
    }
    base.update(overrides)
    return base


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ScriptedApi:
    """Answers each call from a list, in order, and records the calls."""

    timeout = 60

    def __init__(self, terminate=(), launch=(), instances=(), engines=(), describe=()):
        self.answers = {
            "terminate": list(terminate),
            "launch": list(launch),
            "instance": list(instances),
            "describe": list(describe),
        }
        self.offered_engines = list(engines)
        self.calls = []

    def _next(self, name):
        self.calls.append(name)
        return self.answers[name].pop(0)

    def terminate(self, model_uid):
        return self._next("terminate")

    def launch(self, spec):
        return self._next("launch")

    def instance(self, model_uid):
        return self._next("instance")

    def describe(self, model_uid):
        return self._next("describe")

    def list_models(self):
        self.calls.append("list")
        return {}

    def progress(self, model_uid):
        return 0.4, "Loading model"

    def engines(self, model_name, model_type):
        return self.offered_engines


def manager(api, wait_timeout=30):
    clock = FakeClock()
    return ModelManager(api, "m", wait_timeout, 2.0, clock=clock, sleep=clock.sleep), clock


@pytest.mark.parametrize(
    ("text", "typed"),
    [("true", True), ("False", False), ("None", None), ("4", 4), ("0.5", 0.5), ("nf4", "nf4"), (True, True)],
)
def test_cli_typed_types_strings_like_xinference_launch_qc(text, typed):
    assert cli_typed(text) == typed
    assert type(cli_typed(text)) is type(typed)


def test_sizes_and_gpu_counts_are_sent_as_the_cli_sends_them():
    assert size_in_billions("14") == 14
    assert size_in_billions("1_5") == "1_5"
    assert parse_n_gpu("auto") == "auto"
    assert parse_n_gpu("CPU") is None
    assert parse_n_gpu("2") == 2
    with pytest.raises(XinferenceError, match="n_gpu must be auto, cpu or a number of GPUs, not 'many'"):
        parse_n_gpu("many")


def test_launch_spec_of_the_field_notes_llm():
    spec = launch_spec(
        params(
            model_uid="deepseek-r1-distill-qwen-14b",
            model_path="/models/DeepSeek-R1-Distill-Qwen-14B",
            trust_remote_code=False,
            quantization_config={"load_in_4bit": "true", "bnb_4bit_quant_type": "nf4"},
            extra={"max_new_tokens": 512},
        )
    )

    assert spec == {
        "model_uid": "deepseek-r1-distill-qwen-14b",
        "model_name": "deepseek-r1-distill-qwen",
        "model_type": "LLM",
        "model_engine": "transformers",
        "model_format": "pytorch",
        "model_size_in_billions": 14,
        "quantization": "none",
        "model_path": "/models/DeepSeek-R1-Distill-Qwen-14B",
        "replica": 1,
        "n_gpu": "auto",
        "trust_remote_code": False,
        "quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
        "max_new_tokens": 512,
    }


def test_uid_defaults_to_the_model_name_and_unset_options_are_not_sent():
    spec = launch_spec(params(model_engine=None, model_format=None, model_size_in_billions=None, quantization=None))

    assert spec == {
        "model_uid": "deepseek-r1-distill-qwen",
        "model_name": "deepseek-r1-distill-qwen",
        "model_type": "LLM",
        "replica": 1,
        "n_gpu": "auto",
    }


def test_extra_may_not_override_an_option():
    with pytest.raises(XinferenceError, match="extra may not set model_path, n_gpu: use the module option"):
        launch_spec(params(extra={"n_gpu": 1, "model_path": "/x", "max_model_len": 8192}))


def test_drift_is_judged_on_reported_fields_only():
    spec = launch_spec(params(model_path="/models/x", quantization_config={"load_in_4bit": True}))
    reported = {
        "model_name": "deepseek-r1-distill-qwen",
        "model_type": "LLM",
        "model_engine": "Transformers",
        "model_format": "pytorch",
        "model_size_in_billions": 14,
        "quantization": "none",
        "replica": 1,
        "address": "127.0.0.1:35397",
    }

    assert drifted_fields(spec, reported) == []
    assert drifted_fields(spec, {**reported, "model_format": "awq", "replica": 2}) == ["model_format", "replica"]


def test_recreate_never_warns_and_on_change_names_the_drift():
    spec = launch_spec(params(model_size_in_billions="7"))
    running = Observation("ready", {"model_name": "deepseek-r1-distill-qwen", "model_size_in_billions": 14})
    warnings = []

    assert relaunch_reason(params(recreate="never"), running, spec, warnings.append) is None
    assert warnings == [
        "deepseek-r1-distill-qwen runs with model_size_in_billions 14 -> 7; recreate=never keeps it that way "
        "(use recreate=on_change to relaunch)"
    ]
    assert relaunch_reason(params(), running, spec, warnings.append) == "changed: model_size_in_billions 14 -> 7"
    assert relaunch_reason(params(state="restarted", recreate="never"), running, spec, warnings.append) == "restarted"
    assert relaunch_reason(params(recreate="always"), running, spec, warnings.append) == "recreate=always"
    assert relaunch_reason(params(recreate="never"), Observation("unhealthy"), spec, warnings.append) == "unhealthy"
    assert len(warnings) == 1


def test_detail_drops_the_actor_address():
    assert detail_of(*DEAD_WORKER_ANSWER) == "HTTP 500: [Errno 111] Connect call failed ('127.0.0.1', 19999)"
    assert detail_of(502, None) == "HTTP 502: no message"


def test_instance_error_is_the_replicas_message():
    instance = {
        "status": "ERROR",
        "replica_statuses": [
            {"error_message": "[address=127.0.0.1:19999, pid=24680] Model not found, name: x, format: None"}
        ],
    }
    assert instance_error(instance) == "Model not found, name: x, format: None"


@pytest.mark.parametrize(
    ("message", "engines", "expected"),
    [
        (
            "No module named 'bitsandbytes'",
            [],
            "the Xinference server cannot use bitsandbytes, which quantization_config needs",
        ),
        ("CUDA out of memory. Tried to allocate 2.00 GiB", [], "out of GPU memory (n_gpu=auto, gpu_idx=None)"),
        ("Model not found, name: nope, format: None", [], "unknown model_name deepseek-r1-distill-qwen"),
        (
            "Model deepseek-r1-distill-qwen cannot be run on engine nosuch.",
            ["Transformers", "vLLM"],
            "engines it offers for it: Transformers, vLLM",
        ),
        ("something else broke", [], "launching deepseek-r1-distill-qwen failed: something else broke"),
    ],
)
def test_launch_failures_name_their_cause(message, engines, expected):
    error = explain_launch_failure(ScriptedApi(engines=engines), launch_spec(params()), message)

    assert expected in str(error)
    assert message in str(error)


def test_terminate_retries_while_the_dead_worker_holds_the_uid():
    api = ScriptedApi(terminate=[DEAD_WORKER_ANSWER, DEAD_WORKER_ANSWER, NOT_FOUND_ANSWER])
    model, clock = manager(api)

    model.terminate()

    assert api.calls == ["terminate"] * 3
    assert clock.now == 4.0


def test_terminate_gives_up_at_the_deadline_with_the_last_answer():
    api = ScriptedApi(terminate=[DEAD_WORKER_ANSWER] * 10)
    model = manager(api, wait_timeout=5)[0]

    with pytest.raises(XinferenceError) as raised:
        model.terminate()

    assert str(raised.value) == (
        "terminating m: gave up after wait_timeout=5s; the server's last answer: "
        "HTTP 500: [Errno 111] Connect call failed ('127.0.0.1', 19999)"
    )


def test_launch_of_a_uid_still_in_the_list_terminates_it_first_then_follows_the_load():
    api = ScriptedApi(
        launch=[ALREADY_ANSWER, (200, {"model_uid": "m"})],
        describe=[NOT_FOUND_ANSWER],
        terminate=[NOT_FOUND_ANSWER],
        instances=[{"status": "CREATING"}, {"status": "READY"}],
    )
    model = manager(api)[0]

    model.launch(launch_spec(params()))

    assert api.calls == ["launch", "describe", "list", "terminate", "launch", "instance", "instance"]


def test_a_failed_load_reports_xinferences_error():
    api = ScriptedApi(
        launch=[(200, {"model_uid": "m"})],
        instances=[{"status": "ERROR", "replica_statuses": [{"error_message": "No module named 'bitsandbytes'"}]}],
    )
    model = manager(api)[0]

    with pytest.raises(XinferenceError, match=r"cannot use bitsandbytes.*No module named 'bitsandbytes'"):
        model.launch(launch_spec(params()))


def test_an_error_without_message_is_retried_until_a_worker_takes_the_launch():
    api = ScriptedApi(
        launch=[(200, {"model_uid": "m"}), (200, {"model_uid": "m"})],
        instances=[{"status": "ERROR", "replica_statuses": []}, {"status": "READY"}],
    )
    model, clock = manager(api)

    model.launch(launch_spec(params()))

    assert api.calls == ["launch", "instance", "launch", "instance"]
    assert clock.now == 2.0


def test_a_load_timeout_says_how_far_loading_got():
    api = ScriptedApi(launch=[(200, {"model_uid": "m"})], instances=[{"status": "CREATING"}] * 10)
    model = manager(api, wait_timeout=3)[0]

    with pytest.raises(XinferenceError, match="waiting for m to load: gave up after wait_timeout=3s"):
        model.launch(launch_spec(params()))
    with pytest.raises(XinferenceError, match=r"status CREATING, loading 40% done \(Loading model\)"):
        manager(ScriptedApi(launch=[(200, {})], instances=[{"status": "CREATING"}] * 3), wait_timeout=1)[0].launch(
            launch_spec(params())
        )


# --- options checked first, what is retried, changed on failure (issue 11 point 8) ----------


def module_params(**overrides):
    return params(
        **{"wait_timeout": 900, "timeout": 60, "health_check": False, **overrides},
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"wait_timeout": 0}, "wait_timeout must be at least 1 second, not 0"),
        ({"wait_timeout": -5}, "wait_timeout must be at least 1 second, not -5"),
        ({"timeout": 0}, "timeout must be at least 1 second, not 0"),
        ({"replica": 0}, "replica must be at least 1, not 0"),
        ({"model_uid": ""}, "model_uid is empty: give the model's uid, or leave it out to use model_name"),
        ({"model_uid": "  ", "state": "absent"}, "model_uid is empty"),
        ({"model_uid": "a/b"}, "model_uid a/b holds a '/'"),
        ({"model_name": "BAAI/bge-m3"}, "model_uid BAAI/bge-m3 holds a '/'"),
    ],
)
def test_options_the_server_cannot_take_fail_before_any_call(overrides, message):
    api = ScriptedApi()

    with pytest.raises(XinferenceError, match=re.escape(message)):
        ensure_model(api, module_params(**overrides), False, print)
    assert api.calls == []


@pytest.mark.parametrize(
    "answer",
    [
        (405, {"detail": "Method Not Allowed"}),
        (501, {"detail": "Unsupported method ('DELETE')"}),
        (500, {"detail": "[address=127.0.0.1:1, pid=1] Invalid model uid"}),
    ],
)
def test_terminate_fails_at_once_on_what_waiting_does_not_heal(answer):
    api = ScriptedApi(terminate=[answer])
    model, clock = manager(api, wait_timeout=900)

    with pytest.raises(XinferenceError, match=r"^terminating m failed: HTTP %d: " % answer[0]):
        model.terminate()
    assert (api.calls, clock.now, model.changed) == (["terminate"], 0.0, False)


@pytest.mark.parametrize(
    "text",
    [
        "[address=127.0.0.1:40000, pid=1] Remote server unixsocket:///2881904640 closed",
        "[address=127.0.0.1:40000, pid=1] Remote server 127.0.0.1:34875 closed",
        "xoscar.errors.ServerClosed: ...",
        "[Errno 111] Connect call failed ('127.0.0.1', 34875)",
        "[Errno 104] Connection reset by peer",
    ],
)
def test_dead_worker_signs_include_xoscar_server_closed(text):
    assert dead_worker_sign(text)


def test_a_launch_answered_with_a_dead_worker_sign_is_retried():
    closed = (500, {"detail": "[address=127.0.0.1:1, pid=1] Remote server 127.0.0.1:34875 closed"})
    api = ScriptedApi(launch=[closed, (200, {})], instances=[{"status": "READY"}])
    model, clock = manager(api)

    model.launch(launch_spec(params()))

    assert (api.calls, clock.now, model.changed) == (["launch", "launch", "instance"], 2.0, True)


class ServerApi(ScriptedApi):
    """ScriptedApi plus what ensure_model asks first: describe, the model list, the engines, /metrics."""

    def __init__(self, describe, listed=None, died=(), **answers):
        super().__init__(describe=describe, **answers)
        self.listed = listed or {}
        self.died = set(died)

    def list_models(self):
        self.calls.append("list")
        return self.listed

    def unexpectedly_terminated(self):
        self.calls.append("metrics")
        return self.died


RUNNING = (200, {"model_name": "deepseek-r1-distill-qwen", "model_type": "LLM", "model_engine": "transformers"})


@pytest.mark.parametrize(
    ("overrides", "engines", "message"),
    [
        (
            {"model_engine": "transformerz"},
            ["Transformers", "vLLM"],
            "model_engine=transformerz is not an engine the server offers for deepseek-r1-distill-qwen (LLM): "
            "Transformers, vLLM; nothing was terminated",
        ),
        (
            {"model_type": "rerank"},
            [],
            "the server knows no rerank model named deepseek-r1-distill-qwen (GET /v1/engines): nothing was "
            "terminated; check model_name and model_type",
        ),
    ],
)
def test_a_typo_that_looks_like_drift_is_checked_before_terminating(overrides, engines, message):
    api = ServerApi(describe=[RUNNING], engines=engines)

    with pytest.raises(XinferenceError) as raised:
        ensure_model(api, module_params(**overrides), False, print)

    assert str(raised.value) == message
    assert (raised.value.changed, "terminate" in api.calls) == (False, False)


def test_a_failure_after_the_terminate_went_through_says_changed():
    api = ServerApi(
        describe=[RUNNING],
        engines=["Transformers"],
        terminate=[(200, None)],
        launch=[(400, {"detail": "Model not found, name: deepseek-r1-distill-qwen, size: 77"})],
    )

    with pytest.raises(XinferenceError, match="deepseek-r1-distill-qwen cannot run LLM") as raised:
        ensure_model(api, module_params(state="restarted"), False, print)

    assert raised.value.changed


def test_a_launch_after_a_dead_worker_names_the_last_real_cause():
    api = ServerApi(
        describe=[DEAD_WORKER_ANSWER],
        listed={"m": {"id": "m"}},
        engines=["Transformers"],
        terminate=[NOT_FOUND_ANSWER],
        launch=[(200, {})] * 3,
        instances=[{"status": "ERROR", "replica_statuses": []}] * 3,
    )
    clock = FakeClock()
    overrides = {"model_uid": "m", "wait_timeout": 5}

    with pytest.raises(XinferenceError) as raised:
        ensure_model(api, module_params(**overrides), False, print, clock=clock, sleep=clock.sleep)

    assert str(raised.value).startswith("launching m: gave up after wait_timeout=5s; the server's last answer: ")
    assert str(raised.value).endswith(
        "; the last cause seen: describe m answered HTTP 500: [Errno 111] Connect call failed ('127.0.0.1', 19999)"
    )
    assert raised.value.changed


def test_a_model_dropped_with_its_dead_worker_is_healed_not_just_launched():
    api = ServerApi(
        describe=[NOT_FOUND_ANSWER],
        died={"m"},
        launch=[(200, {})],
        instances=[{"status": "READY"}],
    )
    api.answers["describe"].append((200, {"model_type": "LLM"}))

    result = ensure_model(api, module_params(model_uid="m"), False, print)

    assert (result["changed"], result["healed"], result["relaunch_reason"]) == (True, True, "unhealthy")
    assert (
        result["unhealthy_reason"] == "m was dropped with its worker: Xinference records it as unexpectedly terminated"
    )
