"""ragflow_e2e against the FAKE RAGFlow with datasets and chats, in both API generations (v0.27, v0.24)."""

from __future__ import annotations

import json

import pytest

from testkit.ragflow.fake_ragflow_datasets import FakeRagflowDatasets
from testkit.support import ModuleRunner, ansible_adhoc, free_port

pytestmark = pytest.mark.integration

STEPS = [
    "create_dataset",
    "upload_document",
    "start_parsing",
    "wait_parsed",
    "retrieval",
    "create_chat",
    "create_session",
    "ask",
    "cleanup",
]
PARSE_ERROR = "Fail to bind embedding model: bge-m3@Xinference is not reachable"


@pytest.fixture
def run_e2e(tmp_path) -> ModuleRunner:
    return ModuleRunner("ragflow_e2e", tmp_path)


@pytest.fixture(params=["v0.27", "v0.24"])
def fake(request):
    server = FakeRagflowDatasets(request.param).start()
    server.tenant = server.add_user("admin@example.com", "s3cret-Pa55")
    server.key = server.add_token(server.tenant)
    yield server
    server.stop()


@pytest.fixture
def fake_v027():
    server = FakeRagflowDatasets("v0.27").start()
    server.tenant = server.add_user("admin@example.com", "s3cret-Pa55")
    server.key = server.add_token(server.tenant)
    yield server
    server.stop()


def e2e_args(fake, **overrides):
    args = {"base_url": fake.url, "api_key": fake.key, "poll_interval": 0.01, "timeout": 10}
    args.update(overrides)
    return args


def verdicts(result):
    return [(step["name"], step["verdict"]) for step in result["steps"]]


def assert_left_nothing(fake):
    assert fake.datasets_of(fake.tenant) == []
    assert fake.documents == {}
    assert fake.live_chats(fake.tenant) == []


def test_a_working_ragflow_passes_every_step_and_is_left_as_found(fake, run_e2e):
    result = run_e2e(e2e_args(fake))

    assert result["passed"] is True, result
    assert result["changed"] is False
    assert verdicts(result) == [(name, "pass") for name in STEPS]
    assert (result["failed_step"], result["diagnosis"]) == (None, None)
    assert result["api_generation"] == fake.generation
    assert all(isinstance(step["seconds"], float) for step in result["steps"])
    assert all(result["created"][key] for key in ("dataset_id", "document_id", "chat_id", "session_id"))
    assert result["cleanup"] == {
        "deleted": ["chat %s" % result["created"]["chat_id"], "dataset %s" % result["created"]["dataset_id"]],
        "left": [],
    }
    assert_left_nothing(fake)
    # The question goes where each generation documents it.
    asked = "/api/v1/chat/completions" if fake.generation == "v0.27" else "/api/v1/chats/%s/completions"
    assert ("POST", asked.replace("%s", result["created"]["chat_id"])) in fake.requests


def test_through_ansible_as_an_operator_runs_it(fake_v027):
    result = ansible_adhoc("ragflow_e2e", e2e_args(fake_v027))

    assert result["passed"] is True, result
    assert result["changed"] is False
    assert not result.get("failed")
    assert_left_nothing(fake_v027)


def test_a_parsing_failure_is_reported_with_its_progress_msg_and_cleaned_up(fake, run_e2e):
    fake.fail_parsing_with = PARSE_ERROR

    result = run_e2e(e2e_args(fake))

    assert result["passed"] is False
    assert not result.get("failed"), "a failed step must not fail the task"
    assert result["failed_step"] == "wait_parsed"
    assert verdicts(result) == [
        ("create_dataset", "pass"),
        ("upload_document", "pass"),
        ("start_parsing", "pass"),
        ("wait_parsed", "fail"),
        ("retrieval", "skip"),
        ("create_chat", "skip"),
        ("create_session", "skip"),
        ("ask", "skip"),
        ("cleanup", "pass"),
    ]
    wait_parsed = result["steps"][3]
    assert "run FAIL" in wait_parsed["detail"] and PARSE_ERROR in wait_parsed["detail"]
    assert result["diagnosis"].startswith("the document failed to parse: ")
    assert PARSE_ERROR in result["diagnosis"]
    assert "ragflow-cpu/ragflow-gpu container log" in result["diagnosis"]
    assert "\n" not in result["diagnosis"]
    assert result["cleanup"] == {"deleted": ["dataset %s" % result["created"]["dataset_id"]], "left": []}
    assert result["created"]["chat_id"] is None
    assert_left_nothing(fake)


def test_own_text_and_question_with_the_fakes_failure_marker(fake_v027, run_e2e):
    text = "The gateway is vpn.example.com. %s The code word is {marker}." % FakeRagflowDatasets.FAIL_MARKER

    result = run_e2e(e2e_args(fake_v027, document_text=text, question="What is the code word {marker}?"))

    assert result["failed_step"] == "wait_parsed"
    assert FakeRagflowDatasets.FAIL_MARKER in result["diagnosis"]
    assert_left_nothing(fake_v027)


def test_parsing_that_never_finishes_times_out_naming_the_last_status(fake_v027, run_e2e):
    fake_v027.stall_parsing = True

    result = run_e2e(e2e_args(fake_v027, parse_timeout=1, poll_interval=0.2))

    assert result["failed_step"] == "wait_parsed"
    step = result["steps"][3]
    assert step["verdict"] == "fail"
    assert 1.0 <= step["seconds"] < 5
    assert "not parsed within 1 s: last run RUNNING, progress 0.0" in step["detail"]
    assert "tasks are ahead in the queue" in step["detail"]
    assert "no task executor took the document up" in result["diagnosis"]
    assert result["cleanup"]["left"] == []
    assert_left_nothing(fake_v027)


def test_a_wrong_api_key_is_diagnosed_as_such(fake, run_e2e):
    result = run_e2e(e2e_args(fake, api_key="ragflow-" + "x" * 43))

    assert result["passed"] is False
    assert not result.get("failed")
    assert result["failed_step"] == "create_dataset"
    assert result["diagnosis"].startswith("the API key is wrong: ")
    assert "llmops.ragstack.ragflow_token" in result["diagnosis"]
    assert verdicts(result)[-1] == ("cleanup", "skip")
    assert result["cleanup"] == {"deleted": [], "left": []}
    assert fake.datasets == {}


def test_the_chat_model_failing_fails_ask_and_everything_is_deleted(fake_v027, run_e2e):
    fake_v027.fail_chat_with = "Connection error: xinference:9997 refused"

    result = run_e2e(e2e_args(fake_v027))

    assert result["failed_step"] == "ask"
    assert "Connection error: xinference:9997 refused" in result["steps"][7]["detail"]
    assert "default chat model" in result["diagnosis"]
    assert result["cleanup"]["deleted"] == [
        "chat %s" % result["created"]["chat_id"],
        "dataset %s" % result["created"]["dataset_id"],
    ]
    assert_left_nothing(fake_v027)


def test_without_chat_the_chat_steps_are_skipped_and_it_passes(fake_v027, run_e2e):
    result = run_e2e(e2e_args(fake_v027, chat=False))

    assert result["passed"] is True
    assert [verdict for name, verdict in verdicts(result) if name in ("create_chat", "create_session", "ask")] == [
        "skip"
    ] * 3
    assert not any("/chats" in path for _method, path in fake_v027.requests)
    assert_left_nothing(fake_v027)


def test_check_mode_sends_nothing(fake, run_e2e):
    result = run_e2e(e2e_args(fake), check_mode=True)

    assert result["skipped"] is True
    assert result["passed"] is None
    assert result["changed"] is False
    assert result["steps"] == []
    assert "check mode" in result["msg"]
    assert fake.requests == []


def test_nothing_answering_at_base_url_fails_in_one_line(run_e2e):
    result = run_e2e({"base_url": "http://127.0.0.1:%d" % free_port(), "api_key": "ragflow-abc", "timeout": 5})

    assert result["failed"] is True
    assert "RAGFlow is not reachable at http://127.0.0.1:" in result["msg"]
    assert "\n" not in result["msg"]
    assert "exception" not in result


def test_bad_input_fails_before_anything_is_sent(fake_v027, run_e2e):
    result = run_e2e(e2e_args(fake_v027, poll_interval=0))

    assert result["failed"] is True
    assert result["msg"] == "poll_interval must be more than 0 seconds"
    assert fake_v027.requests == []


@pytest.mark.parametrize("key_kind", ["right", "wrong"])
def test_the_api_key_never_appears_in_the_output(fake_v027, run_e2e, key_kind):
    key = fake_v027.key if key_kind == "right" else "ragflow-" + "W" * 43
    process = run_e2e.start(e2e_args(fake_v027, api_key=key))
    stdout, stderr = process.communicate(timeout=120)

    assert key not in stdout + stderr
    result = json.loads(stdout)
    assert result["passed"] is (key_kind == "right")
