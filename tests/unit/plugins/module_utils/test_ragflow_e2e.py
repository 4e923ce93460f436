"""ragflow_e2e's logic without a server: the step sequence, cleanup, timeouts, and how answers are read."""

from __future__ import annotations

import re

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_e2e import (
    DEFAULT_DOCUMENT,
    DEFAULT_QUESTION,
    STEPS,
    ApiKeyRefused,
    Unanswered,
    Verification,
    answer_error,
    check_params,
    key_refusal,
    last_progress_line,
    new_marker,
    run_name,
    with_marker,
)

pytestmark = pytest.mark.unit

MARKER = "ragstackabcdefghij"


class StubApi:
    """Stands for RagflowSdk: answers by action name, from `answers` (a value, or an exception to raise,
    or a list of those taken in turn), and records every call."""

    def __init__(self, generation="v0.27", health=None, **answers):
        self.generation = generation
        self.timeout = 30
        self.health = health or {}
        self.calls = []
        self.answers = {
            "create dataset": {"id": "ds1", "name": "n"},
            "upload document": [{"id": "doc1", "run": "UNSTART"}],
            "start parsing": None,
            "read document": {"total": 1, "docs": [{"id": "doc1", "run": "DONE", "progress": 1, "chunk_count": 4}]},
            "retrieval": {"chunks": [{"content": "%s is a code word." % MARKER, "document_id": "doc1"}]},
            "create chat": {"id": "chat1"},
            "create session": {"id": "s1"},
            "ask": {"answer": "It is %s." % MARKER, "reference": {"chunks": [{}]}},
            "delete chat": {"success_count": 1},
            "delete dataset": {"success_count": 1},
        }
        self.answers.update({action.replace("_", " "): answer for action, answer in answers.items()})

    def unhealthy(self):
        return sorted(key for key, value in self.health.items() if value != "ok")

    def _answer(self, action):
        answer = self.answers[action]
        if isinstance(answer, list) and action != "upload document":
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def call(self, action, method, path, body=None):
        self.calls.append((action, method, path, body))
        return self._answer(action)

    def upload(self, action, path, filename, content):
        self.calls.append((action, "POST", path, {"filename": filename, "content": content}))
        return self._answer(action)


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def verify(api, clock=None, **overrides):
    clock = clock or Clock()
    options = {
        "name": "ragstack-verify-0a1b2c3d",
        "document_text": with_marker(DEFAULT_DOCUMENT, MARKER),
        "question": with_marker(DEFAULT_QUESTION, MARKER),
        "marker": MARKER,
        "parse_timeout": 10,
        "poll_interval": 2,
        "chat": True,
    }
    options.update(overrides)
    return Verification(api, clock=clock, sleep=clock.sleep, **options).run()


def verdicts(result):
    return {step["name"]: step["verdict"] for step in result["steps"]}


def deletes(api):
    return [(action, body) for action, method, _path, body in api.calls if method == "DELETE"]


def test_all_steps_pass_and_cleanup_deletes_the_chat_then_the_dataset():
    api = StubApi()

    result = verify(api)

    assert result["passed"] is True
    assert [step["name"] for step in result["steps"]] == list(STEPS)
    assert set(verdicts(result).values()) == {"pass"}
    assert result["created"] == {"dataset_id": "ds1", "document_id": "doc1", "chat_id": "chat1", "session_id": "s1"}
    assert deletes(api) == [("delete chat", {"ids": ["chat1"]}), ("delete dataset", {"ids": ["ds1"]})]
    assert result["cleanup"] == {"deleted": ["chat chat1", "dataset ds1"], "left": []}
    assert result["changed"] is False


def test_the_question_goes_where_each_generation_serves_it():
    new, old = StubApi("v0.27"), StubApi("v0.24")
    verify(new)
    verify(old)

    asked_new = next(call for call in new.calls if call[0] == "ask")
    asked_old = next(call for call in old.calls if call[0] == "ask")
    assert asked_new[2] == "/api/v1/chat/completions"
    assert asked_new[3] == {"question": "What is %s?" % MARKER, "stream": False, "session_id": "s1", "chat_id": "chat1"}
    assert asked_old[2] == "/api/v1/chats/chat1/completions"
    assert asked_old[3] == {"question": "What is %s?" % MARKER, "stream": False, "session_id": "s1"}


def test_the_document_is_uploaded_as_a_text_file_with_the_marker():
    api = StubApi()
    verify(api)

    upload = next(call for call in api.calls if call[0] == "upload document")
    assert upload[2] == "/api/v1/datasets/ds1/documents"
    assert upload[3]["filename"] == "ragstack-verify-0a1b2c3d.txt"
    assert MARKER in upload[3]["content"]
    assert "{marker}" not in upload[3]["content"]


def test_steps_after_a_failure_are_skipped_and_cleanup_deletes_only_what_exists():
    api = StubApi(create_chat=RagflowError("create chat: RAGFlow answered code 102: `name` is required"))

    result = verify(api)

    assert result["passed"] is False
    assert result["failed_step"] == "create_chat"
    assert [verdicts(result)[name] for name in STEPS] == ["pass"] * 5 + ["fail", "skip", "skip", "pass"]
    assert result["diagnosis"].startswith("RAGFlow could not create a chat assistant: create chat: ")
    assert deletes(api) == [("delete dataset", {"ids": ["ds1"]})]
    assert result["created"]["chat_id"] is None


def test_nothing_created_means_nothing_deleted():
    api = StubApi(create_dataset=ApiKeyRefused("create dataset: RAGFlow refused the API key (HTTP 401)"))

    result = verify(api)

    assert result["failed_step"] == "create_dataset"
    assert result["diagnosis"] == (
        "the API key is wrong: create dataset: RAGFlow refused the API key (HTTP 401); "
        "get one with llmops.ragstack.ragflow_token"
    )
    assert verdicts(result)["cleanup"] == "skip"
    assert deletes(api) == []


def test_a_crash_inside_a_step_still_cleans_up():
    api = StubApi(retrieval=RuntimeError("a bug"))

    with pytest.raises(RuntimeError):
        verify(api)

    assert deletes(api) == [("delete dataset", {"ids": ["ds1"]})]


def test_cleanup_that_cannot_delete_fails_the_check_and_says_what_is_left():
    api = StubApi(delete_dataset=RagflowError("delete dataset: RAGFlow answered code 102: Database operation failed"))

    result = verify(api)

    assert result["passed"] is False
    assert result["failed_step"] == "cleanup"
    assert result["cleanup"] == {"deleted": ["chat chat1"], "left": ["dataset ds1"]}
    assert "Database operation failed" in result["steps"][-1]["detail"]
    assert result["diagnosis"].startswith(
        "the check could not delete what it created: deleted chat chat1; left dataset"
    )


def test_a_v027_delete_that_deleted_nothing_is_left():
    api = StubApi(delete_chat={"success_count": 0})

    result = verify(api)

    assert result["cleanup"] == {"deleted": ["dataset ds1"], "left": ["chat chat1"]}
    assert result["failed_step"] == "cleanup"


def test_what_an_earlier_failure_left_behind_is_added_to_its_diagnosis():
    api = StubApi(ask={"answer": ""}, delete_dataset=Unanswered("RAGFlow is not reachable at http://r: timed out"))

    result = verify(api)

    assert result["failed_step"] == "ask"
    assert result["diagnosis"].endswith("; the check also left dataset ds1 in RAGFlow")
    assert verdicts(result)["cleanup"] == "fail"


def test_parsing_is_polled_until_done():
    running = {"docs": [{"id": "doc1", "run": "RUNNING", "progress": 0.4, "progress_msg": "Start to parse."}]}
    done = {"docs": [{"id": "doc1", "run": "DONE", "progress": 1.0, "chunk_count": 3, "token_count": 40}]}
    clock = Clock()
    api = StubApi(read_document=[running, running, done])

    result = verify(api, clock)

    assert result["steps"][3]["detail"] == "run DONE after 3 polls: 3 chunks, 40 tokens"
    assert clock.sleeps == [2, 2]


def test_parsing_timeout_names_the_last_status_without_waiting_for_real():
    stuck = {"docs": [{"id": "doc1", "run": "RUNNING", "progress": 0.4, "progress_msg": "a\n10:00:01 Start to parse."}]}
    clock = Clock()
    api = StubApi(read_document=[stuck])

    result = verify(api, clock, parse_timeout=5, poll_interval=2)

    step = result["steps"][3]
    assert step["verdict"] == "fail"
    assert step["detail"] == "not parsed within 5 s: last run RUNNING, progress 0.4: 10:00:01 Start to parse."
    assert step["seconds"] == 5.0
    assert clock.sleeps == [2, 2, 1]
    assert "parsing is slow or stuck" in result["diagnosis"]
    assert "raise parse_timeout" in result["diagnosis"]


def test_a_document_that_never_starts_points_at_the_task_executor():
    queued = {
        "docs": [{"id": "doc1", "run": "UNSTART", "progress": 0, "progress_msg": "3 tasks are ahead in the queue..."}]
    }

    result = verify(StubApi(read_document=[queued]), parse_timeout=1, poll_interval=1)

    assert "no task executor took the document up" in result["diagnosis"]


@pytest.mark.parametrize("run", ["FAIL", "CANCEL"])
def test_a_failed_or_cancelled_parse_reports_its_error_line(run):
    message = "10:00:00 Task has been received.\n10:00:02 Page(1~100000001): [ERROR]Fail to bind embedding model\n"
    failed = {"docs": [{"id": "doc1", "run": run, "progress": -1, "progress_msg": message}]}

    result = verify(StubApi(read_document=[failed]))

    assert result["failed_step"] == "wait_parsed"
    assert result["diagnosis"] == (
        "the document failed to parse: 10:00:02 Page(1~100000001): [ERROR]Fail to bind embedding model; "
        "check the ragflow-cpu/ragflow-gpu container log and the embedding model"
    )


def test_done_without_chunks_fails():
    empty = {"docs": [{"id": "doc1", "run": "DONE", "progress": 1, "chunk_count": 0, "progress_msg": "Task done"}]}

    result = verify(StubApi(read_document=[empty]))

    assert result["failed_step"] == "wait_parsed"
    assert result["diagnosis"].startswith("the document parsed into no chunks")


def test_a_document_missing_from_the_list_fails():
    result = verify(StubApi(read_document={"total": 0, "docs": []}))

    assert result["steps"][3]["detail"] == "read document: RAGFlow does not list document doc1"


def test_retrieval_without_the_marker_chunk_fails():
    api = StubApi(retrieval={"chunks": [{"content": "something else", "document_id": "doc1"}]})

    result = verify(api)

    assert result["failed_step"] == "retrieval"
    assert result["steps"][4]["detail"] == "1 chunks returned, none is a chunk with the marker %s" % MARKER
    assert "document engine" in result["diagnosis"]


def test_retrieval_of_own_text_without_marker_needs_a_chunk_of_the_document():
    api = StubApi(
        retrieval={"chunks": [{"content": "x", "document_id": "other"}, {"content": "y", "document_id": "doc1"}]}
    )

    result = verify(api, document_text="Our gateway is vpn.example.com.")

    assert verdicts(result)["retrieval"] == "pass"
    assert "rank 2 is a chunk of document doc1" in result["steps"][4]["detail"]


@pytest.mark.parametrize(
    "answer", [{"answer": ""}, {"answer": "   "}, {"answer": "**ERROR**: Connection refused"}, {"reference": {}}, None]
)
def test_an_empty_or_failed_answer_fails_ask(answer):
    result = verify(StubApi(ask=answer))

    assert result["failed_step"] == "ask"
    assert "default chat model" in result["diagnosis"]


def test_without_chat_the_chat_steps_are_skipped_on_purpose():
    api = StubApi()

    result = verify(api, chat=False)

    assert result["passed"] is True
    assert [verdicts(result)[name] for name in ("create_chat", "create_session", "ask")] == ["skip"] * 3
    assert result["steps"][5]["detail"] == "chat: false"
    assert deletes(api) == [("delete dataset", {"ids": ["ds1"]})]


def test_ragflow_going_away_mid_run_is_named():
    api = StubApi(start_parsing=Unanswered("RAGFlow is not reachable at http://r: [Errno 111] Connection refused"))

    result = verify(api)

    assert result["diagnosis"].startswith("RAGFlow stopped answering during start_parsing: ")


def test_an_answer_slower_than_timeout_says_to_raise_it():
    api = StubApi(ask=Unanswered("RAGFlow is not reachable at http://r: timed out"))

    result = verify(api)

    assert result["diagnosis"].startswith("RAGFlow did not answer within timeout=30 s during ask: ")
    assert "raise timeout" in result["diagnosis"]
    assert result["cleanup"]["left"] == []


def test_components_reported_down_are_added_to_the_diagnosis():
    api = StubApi(health={"db": "ok", "doc_engine": "nok", "storage": "nok"}, upload_document=RagflowError("upload"))

    result = verify(api)

    assert result["diagnosis"].endswith("(RAGFlow's healthz reports doc_engine=nok, storage=nok)")


def test_answers_without_the_expected_data_fail_the_step():
    result = verify(StubApi(create_dataset=False))

    assert result["failed_step"] == "create_dataset"
    assert result["steps"][0]["detail"] == "create dataset: RAGFlow answered without a dataset: False"


UNAUTHORIZED = "<Unauthorized '401: Unauthorized'>"
INVALID_KEY = "Authentication error: API key is invalid!"
NO_HEADER = "`Authorization` can't be empty"


@pytest.mark.parametrize(
    ("status", "envelope", "refusal"),
    [
        (401, {"code": 401, "message": UNAUTHORIZED}, "HTTP 401 " + UNAUTHORIZED),
        (401, None, "HTTP 401"),
        (200, {"code": 109, "data": False, "message": INVALID_KEY}, INVALID_KEY),
        (200, {"code": 0, "data": False, "message": NO_HEADER}, NO_HEADER),
        # v0.27's code 109 for a chat the tenant does not own is not about the key.
        (200, {"code": 109, "data": False, "message": "no authorization"}, None),
        (200, {"code": 102, "message": "You don't own the dataset x."}, None),
        (200, {"code": 0, "data": False, "message": "success"}, None),
    ],
)
def test_key_refusals_of_both_generations_are_recognised(status, envelope, refusal):
    assert key_refusal(status, envelope) == refusal


def test_the_telling_line_of_a_progress_message():
    assert last_progress_line("a\n[ERROR]first\nb\n[ERROR]second\nc\n") == "[ERROR]second"
    assert last_progress_line("a\nb\n\n") == "b"
    assert last_progress_line(None) == "no progress message"
    assert len(last_progress_line("x" * 1000)) == 300


def test_errors_inside_answers():
    assert answer_error("It is blue.") is None
    assert answer_error("**ERROR**: Connection refused") == "Connection refused"
    assert answer_error("Partial answer\n**ERROR**: timeout") == "timeout"
    assert answer_error("**ERROR**") == "an error without a message"


def test_markers_and_names_are_fresh_each_run():
    assert re.fullmatch(r"ragstack[a-z]{10}", new_marker())
    assert new_marker() != new_marker()
    assert re.fullmatch(r"ragstack-verify-[0-9a-f]{8}", run_name("ragstack-verify"))
    assert with_marker("a {marker} b {marker}", "M") == "a M b M"


GOOD = {
    "base_url": "http://127.0.0.1:9380",
    "api_key": "ragflow-abc",
    "timeout": 30,
    "parse_timeout": 300,
    "poll_interval": 2.0,
    "name_prefix": "ragstack-verify",
    "document_text": None,
    "question": None,
}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"base_url": "127.0.0.1:9380"}, "base_url must be RAGFlow's http(s) API address"),
        ({"base_url": "http://"}, "base_url must be RAGFlow's http(s) API address"),
        ({"api_key": ""}, "api_key must be one word"),
        ({"api_key": "Bearer ragflow-abc"}, "api_key must be one word"),
        ({"timeout": 0}, "timeout must be more than 0 seconds"),
        ({"parse_timeout": -1}, "parse_timeout must be more than 0 seconds"),
        ({"poll_interval": 0.0}, "poll_interval must be more than 0 seconds"),
        ({"name_prefix": " "}, "name_prefix must not be empty"),
        ({"name_prefix": "x" * 101}, "name_prefix must be at most 100 bytes long"),
        ({"question": " "}, "question must not be empty"),
        ({"document_text": ""}, "document_text must not be empty"),
    ],
)
def test_bad_input_is_refused_with_the_reason(override, message):
    with pytest.raises(RagflowError, match=re.escape(message)):
        check_params({**GOOD, **override})


def test_good_input_passes():
    check_params(GOOD)
    check_params({**GOOD, "base_url": "https://ragflow.example/", "document_text": "t", "question": "q"})
