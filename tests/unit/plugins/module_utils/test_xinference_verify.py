"""xinference_verify without a server: the event stream and time to first token, the diagnosis of
each failure, and the checks over a scripted API; one loopback HTTP server for the incremental read.

The server's answers below are what Xinference 4.1.0 sent in the integration runs (a worker killed
with SIGKILL for the dead-worker texts); the chat stream is sse_starlette's framing ("\\r\\n").
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import XinferenceError
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import (
    CredentialsRefused,
    NoAnswer,
    XinferenceApi,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_probe import (
    MAX_TOKENS,
    RERANK_DOCUMENTS,
    ProbeFailed,
    TtftExceeded,
    chat_token,
    completion_token,
    measure_stream,
    sse_data,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_verify import diagnose, verify
from testkit.support import ModuleRunner, free_port

pytestmark = pytest.mark.unit

ENDPOINT = "http://10.0.0.5:9997"
DEAD = "[address=127.0.0.1:12660, pid=26868] [Errno 111] Connect call failed ('127.0.0.1', 34875)"
DEAD_ANSWER = (500, {"detail": DEAD})
NOT_FOUND_PROBE = (
    404,
    {
        "detail": "[address=127.0.0.1:12660, pid=26868] Model not found in the model list, uid: ghost. "
        "Available model uids: ['minilm', 'tiny-reranker', 'tiny-qwen2']"
    },
)
SANITIZED_CHAT_ERROR = "The chat completion request failed. Check the server logs for details."


def chunk(delta, finish=None):
    return {
        "id": "chata822de9d",
        "model": "tiny-qwen2",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def event(payload):
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return [b"data: " + data.encode() + b"\r\n", b"\r\n"]


def chat_stream(*deltas, done=True):
    """The lines of a chat stream as sse_starlette frames them: role chunk, deltas, finish, [DONE]."""
    lines = event(chunk({"role": "assistant", "content": ""}))
    for delta in deltas:
        lines += event(chunk(delta))
    lines += event(chunk({"content": ""}, finish="length"))
    if done:
        lines += event("[DONE]")
    return lines


# The real stream of the tiny random Qwen2 (max_tokens 16): 10 chunks, the first one role only.
RECORDED_CHAT = chat_stream(
    *(
        {"content": text}
        for text in ["\x7f", "\ufffdtrievm", "mo", "\ufffd\t f", ";\x0b", "\ufffdd", "q rerank", "\x7f\x7f"]
    )
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class TimedLines:
    """Lines read one by one, the clock moving by `step` seconds before each; `fail` raised instead
    of the line at that index. Records how many were read."""

    def __init__(self, lines, clock, step, fail=None):
        self.lines = list(lines)
        self.clock = clock
        self.step = step
        self.fail = fail or {}
        self.read = 0

    def readline(self):
        if self.read in self.fail:
            raise self.fail[self.read]
        if self.read >= len(self.lines):
            return b""
        self.clock.now += self.step
        self.read += 1
        return self.lines[self.read - 1]

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self):
        self.closed = True


# --- the event stream --------------------------------------------------------------------------


def test_sse_data_joins_data_lines_skips_comments_and_keeps_an_unterminated_last_event():
    lines = [
        b": ping - 2026-01-01 00:00:00.000000+00:00\r\n",
        b"\r\n",
        b'data: {"a": 1}\r\n',
        b"\r\n",
        b"event: message\n",
        b"data: line one\n",
        b"data:line two\n",
        b"\n",
        b"data: [DONE]",
    ]

    assert list(sse_data(lines)) == ['{"a": 1}', "line one\nline two", "[DONE]"]


def test_recorded_chat_stream_ttft_is_the_first_chunk_with_content_not_the_role_chunk():
    clock = FakeClock()
    started = clock()
    lines = TimedLines(RECORDED_CHAT, clock, step=0.05)

    measured = measure_stream(sse_data(lines), started, clock, 120, chat_token)

    # An event is complete at the blank line after its data: the second one at the 4th line read,
    # [DONE] at the 22nd.
    assert measured == {"ttft_s": 0.2, "chunks": 10, "stream_s": 1.1}


def test_reasoning_content_counts_as_the_first_token():
    clock = FakeClock()
    stream = chat_stream({"reasoning_content": "Okay, the user"}, {"content": "Hello"})

    measured = measure_stream(sse_data(TimedLines(stream, clock, 1.0)), clock(), clock, 120, chat_token)

    assert measured["ttft_s"] == 4.0
    assert measured["chunks"] == 4


def test_completion_chunks_count_their_text():
    clock = FakeClock()
    lines = event({"choices": [{"index": 0, "text": ""}]}) + event({"choices": [{"index": 0, "text": "Hi"}]})

    measured = measure_stream(sse_data(TimedLines(lines, clock, 0.5)), clock(), clock, 10, completion_token)

    assert (measured["ttft_s"], measured["chunks"]) == (2.0, 2)


def test_no_first_token_within_the_bound_stops_reading_at_the_bound():
    clock = FakeClock()
    lines = TimedLines(chat_stream(*[{"content": ""}] * 20, {"content": "late"}), clock, step=1.0)

    with pytest.raises(TtftExceeded) as raised:
        measure_stream(sse_data(lines), clock(), clock, 5, chat_token)

    assert not raised.value.ended_without_token
    assert raised.value.waited == 6.0
    assert lines.read == 6, "read on past the bound"


def test_a_first_token_after_the_bound_is_measured_and_fails():
    clock = FakeClock()
    lines = TimedLines(chat_stream({"content": "Hi"}), clock, step=4.0)

    with pytest.raises(TtftExceeded) as raised:
        measure_stream(sse_data(lines), clock(), clock, 10, chat_token)

    assert raised.value.measured["ttft_s"] == 16.0
    assert raised.value.waited == 16.0


def test_a_stream_without_any_content_is_not_a_pass():
    clock = FakeClock()

    with pytest.raises(TtftExceeded) as raised:
        measure_stream(sse_data(TimedLines(chat_stream(), clock, 0.01)), clock(), clock, 10, chat_token)

    assert raised.value.ended_without_token
    assert raised.value.measured["chunks"] == 2


def test_an_error_event_is_the_servers_message_without_the_actor_address():
    clock = FakeClock()
    # What /v1/completions streamed for a chat-only model on Xinference 4.1, with HTTP 200.
    lines = event({"error": "[address=127.0.0.1:44297, pid=27406] 'str' object has no attribute 'get'"})

    with pytest.raises(ProbeFailed) as raised:
        measure_stream(sse_data(TimedLines(lines, clock, 0.01)), clock(), clock, 10, completion_token)

    assert raised.value.text == "the stream failed after 0 chunks: 'str' object has no attribute 'get'"
    assert raised.value.status == 200


@pytest.mark.parametrize(
    ("error", "first_token", "expected"),
    [
        (TimeoutError("timed out"), False, TtftExceeded),
        (ConnectionResetError(104, "Connection reset by peer"), True, ProbeFailed),
    ],
    ids=["read-timeout-before-first-token", "reset-after-first-token"],
)
def test_transport_errors_while_reading(error, first_token, expected):
    clock = FakeClock()
    fail_at = 4 if first_token else 2
    lines = TimedLines(chat_stream({"content": "Hi"}, {"content": "there"}), clock, 0.1, fail={fail_at: error})

    with pytest.raises(expected) as raised:
        measure_stream(sse_data(lines), clock(), clock, 60, chat_token)

    if expected is ProbeFailed:
        assert raised.value.transport
        assert raised.value.text == "the stream broke after 2 chunks: [Errno 104] Connection reset by peer"
        assert raised.value.measured == {"chunks": 2, "ttft_s": 0.4}


# --- diagnosis -----------------------------------------------------------------------------------


def probe_failure(status, detail, **flags):
    return ProbeFailed("/v1/embeddings answered HTTP %s: %s" % (status, detail), status, **flags)


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(probe_failure(500, "[Errno 111] Connect call failed ('127.0.0.1', 41235)"), id="errno-111"),
        # A call the REST layer does not catch reaches its 500 handler as plain text.
        pytest.param(
            probe_failure(500, "Internal Server Error: [Errno 111] Connect call failed ('10.0.0.7', 30001)"),
            id="plain-text-500",
        ),
        pytest.param(probe_failure(500, "Server disconnected"), id="server-disconnected"),
        pytest.param(probe_failure(500, "ServerDisconnectedError()"), id="aiohttp-name"),
        pytest.param(probe_failure(500, "[Errno 104] Connection reset by peer"), id="errno-104"),
        pytest.param(ProbeFailed("[Errno 111] Connection refused", transport=True), id="socket-refused"),
        pytest.param(
            ProbeFailed("the stream broke after 3 chunks: [Errno 104] Connection reset by peer", transport=True),
            id="socket-reset",
        ),
    ],
)
def test_connection_level_errors_while_the_gateway_answers_are_a_dead_worker(failure):
    dead, diagnosis = diagnose("qwen-14b", failure, True, endpoint=ENDPOINT, timeout=60)

    assert dead
    assert diagnosis == (
        "gateway lists qwen-14b but its worker does not answer (%s): the worker process died; terminate and "
        "relaunch the model (stack_verify_heal: true does it through llmops.ragstack.xinference_model)" % failure.text
    )


def test_a_refused_socket_while_the_gateway_is_gone_is_not_a_dead_worker():
    failure = ProbeFailed("[Errno 111] Connection refused", transport=True)

    dead, diagnosis = diagnose("qwen-14b", failure, False, endpoint=ENDPOINT, timeout=60)

    assert not dead
    assert diagnosis.startswith("Xinference stopped answering at http://10.0.0.5:9997 while qwen-14b was probed")


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        pytest.param(
            probe_failure(*NOT_FOUND_PROBE[0:1], NOT_FOUND_PROBE[1]["detail"]),
            "not launched: ghost; run the xinference stage (site.yml --tags xinference)",
            id="not-found",
        ),
        pytest.param(
            probe_failure(404, "Model not found in the model list, uid: ghost (cached, retry after 10.0s)"),
            "not launched: ghost; run the xinference stage (site.yml --tags xinference)",
            id="not-found-cached",
        ),
        pytest.param(
            probe_failure(503, "Model is loading, please retry later: Model ghost is loading, please retry later"),
            "ghost is still loading (",
            id="loading",
        ),
        pytest.param(
            probe_failure(500, "CUDA out of memory. Tried to allocate 2.00 GiB"),
            "ghost: /v1/embeddings answered HTTP 500: CUDA out of memory. Tried to allocate 2.00 GiB; see the "
            "worker log (10.0.0.7:41235)",
            id="other-500",
        ),
        pytest.param(
            ProbeFailed("timed out", transport=True, timeout=True),
            "ghost did not answer within timeout=60s (timed out): the model is overloaded or running on CPU; "
            "see the worker log (10.0.0.7:41235)",
            id="timeout",
        ),
    ],
)
def test_other_failures_say_what_to_do(failure, expected):
    dead, diagnosis = diagnose("ghost", failure, True, endpoint=ENDPOINT, timeout=60, address="10.0.0.7:41235")

    assert not dead
    assert diagnosis.startswith(expected)


# --- the checks over a scripted API ----------------------------------------------------------


LISTED = {
    "minilm": {"id": "minilm", "model_type": "embedding", "model_ability": ["embed"], "address": "127.0.0.1:46019"},
    "tiny-reranker": {"id": "tiny-reranker", "model_type": "rerank", "model_ability": ["rerank"]},
    "tiny-qwen2": {"id": "tiny-qwen2", "model_type": "LLM", "model_ability": ["chat", "tools"]},
}


class ScriptedApi:
    """XinferenceApi's surface for the verifier: answers from dicts, the clock moving `step` s per call."""

    endpoint = ENDPOINT
    timeout = 60

    def __init__(
        self, clock, *, listed=None, describe=None, posts=None, streams=None, list_error=None, step=0.01, died=()
    ):
        self.clock = clock
        self.died = set(died)
        self.listed = dict(LISTED) if listed is None else listed
        self.describes = describe or {}
        self.posts = posts or {}
        self.streams = streams or {}
        self.list_error = list_error
        self.step = step
        self.calls = []

    def list_models(self):
        self.calls.append(("GET", "/v1/models"))
        self.clock.now += self.step
        if self.list_error:
            raise self.list_error
        return self.listed

    def unexpectedly_terminated(self):
        self.calls.append(("GET", "/metrics"))
        return self.died

    def describe(self, uid):
        self.calls.append(("GET", "/v1/models/" + uid))
        answer = self.describes.get(uid)
        if isinstance(answer, list):
            answer = answer.pop(0)
        if answer is None:
            answer = (200, {"address": "127.0.0.1:1", **self.listed[uid]})
        return answer

    def request(self, method, path, body=None):
        self.calls.append((method, path, body))
        self.clock.now += self.step
        answer = self.posts[body["model"]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stream(self, path, body, timeout=None):
        self.calls.append(("POST", path, body, timeout))
        answer = self.streams[body["model"]]
        if isinstance(answer, tuple):
            return answer[0], answer[1], None
        return 200, None, TimedLines(answer, self.clock, self.step)


HEALTHY_POSTS = {
    "minilm": (200, {"object": "list", "data": [{"index": 0, "object": "embedding", "embedding": [0.1] * 384}]}),
    "tiny-reranker": (
        200,
        {
            "results": [
                {"index": 0, "relevance_score": 0.91, "document": None},
                {"index": 1, "relevance_score": 0.02, "document": None},
            ]
        },
    ),
}
PLANNED = [
    {"model_uid": "minilm", "model_type": "embedding"},
    {"model_uid": "tiny-reranker", "model_type": "rerank"},
    {"model_uid": "tiny-qwen2", "model_type": None},
]


def run(api, clock, planned=None, ttft_timeout=120):
    return verify(api, PLANNED if planned is None else planned, ttft_timeout, clock)


def by_name(result):
    return {check["name"]: check for check in result["checks"]}


def test_all_three_kinds_pass_with_their_numbers():
    clock = FakeClock()
    api = ScriptedApi(clock, posts=HEALTHY_POSTS, streams={"tiny-qwen2": RECORDED_CHAT})

    result = run(api, clock)
    checks = by_name(result)

    assert [check["verdict"] for check in result["checks"]] == ["pass"] * 4
    assert (result["failed_checks"], result["dead_workers"], result["changed"]) == (0, [], False)
    assert checks["gateway"]["value"] == "3 listed, 3/3 planned (10 ms)"
    assert checks["model minilm"]["value"] == "dim 384, 10 ms"
    assert checks["model minilm"]["measured"] == {"latency_ms": 10, "dimension": 384}
    assert checks["model tiny-reranker"]["value"] == "2 results, top index 0, 10 ms"
    assert checks["model tiny-reranker"]["measured"]["top_score"] == 0.91
    assert checks["model tiny-qwen2"]["value"] == "ttft 0.04 s, 10 chunks"
    assert checks["model tiny-qwen2"]["measured"]["ttft_s"] == 0.04
    assert checks["model tiny-qwen2"]["model_type"] == "LLM", "the type the server reports"
    assert result["models"]["minilm"]["address"] == "127.0.0.1:46019"
    # What the probes sent: one input, two documents, a short streamed chat.
    posts = {call[1]: call[2] for call in api.calls if call[0] == "POST"}
    assert len(posts["/v1/embeddings"]["input"]) == 1
    assert posts["/v1/rerank"]["documents"] == RERANK_DOCUMENTS
    chat = posts["/v1/chat/completions"]
    assert (chat["stream"], chat["max_tokens"], chat["model"]) == (True, MAX_TOKENS, "tiny-qwen2")
    assert chat["messages"][0]["role"] == "user"


def test_an_llm_without_chat_gets_a_streamed_completion():
    clock = FakeClock()
    listed = {"base": {"id": "base", "model_type": "LLM", "model_ability": ["generate"]}}
    lines = event({"choices": [{"text": "Hello"}]}) + event("[DONE]")
    api = ScriptedApi(clock, listed=listed, streams={"base": lines})

    result = run(api, clock, [{"model_uid": "base", "model_type": "LLM"}])

    stream_call = next(call for call in api.calls if call[0] == "POST")
    assert stream_call[1] == "/v1/completions"
    assert stream_call[2]["prompt"] and stream_call[2]["stream"] is True
    assert by_name(result)["model base"]["value"] == "ttft 0.02 s, 1 chunks"


def test_a_stream_read_may_wait_for_the_ttft_bound_when_it_is_longer_than_timeout():
    clock = FakeClock()
    api = ScriptedApi(clock, streams={"tiny-qwen2": RECORDED_CHAT})

    run(api, clock, [{"model_uid": "tiny-qwen2"}], ttft_timeout=300)

    assert next(call for call in api.calls if call[0] == "POST")[3] == 300


def test_other_model_types_are_described_only():
    clock = FakeClock()
    api = ScriptedApi(clock, listed={"sd": {"id": "sd", "model_type": "image"}})

    check = by_name(run(api, clock, [{"model_uid": "sd"}]))["model sd"]

    assert (check["verdict"], check["value"]) == ("pass", "no probe for image")
    assert not [call for call in api.calls if call[0] == "POST"]


def test_a_model_that_is_not_launched_fails_the_gateway_check_by_name():
    clock = FakeClock()
    api = ScriptedApi(clock, posts=HEALTHY_POSTS, streams={"tiny-qwen2": RECORDED_CHAT})
    planned = [*PLANNED, {"model_uid": "bge-m3", "model_type": "embedding"}, {"model_uid": "qwen-14b"}]
    api.describes = {
        uid: (400, {"detail": "Model not found in the model list, uid: %s" % uid}) for uid in ("bge-m3", "qwen-14b")
    }

    result = run(api, clock, planned)
    checks = by_name(result)

    assert checks["gateway"]["verdict"] == "fail"
    assert checks["gateway"]["value"] == "3 listed, 3/5 planned (10 ms)"
    assert checks["gateway"]["diagnosis"] == (
        "not launched: bge-m3, qwen-14b; run the xinference stage (site.yml --tags xinference)"
    )
    assert checks["model bge-m3"]["verdict"] == "fail"
    assert (
        checks["model bge-m3"]["diagnosis"]
        == "not launched: bge-m3; run the xinference stage (site.yml --tags xinference)"
    )
    assert checks["model qwen-14b"]["model_type"] is None
    assert result["models"]["bge-m3"] == {}
    assert result["failed_checks"] == 3
    assert checks["model minilm"]["verdict"] == "pass"


def test_a_model_dropped_with_its_dead_worker_is_a_dead_worker_not_never_launched():
    """After the supervisor drops a dead worker, its models are not listed; /metrics still says why."""
    clock = FakeClock()
    listed = {uid: entry for uid, entry in LISTED.items() if uid != "tiny-qwen2"}
    api = ScriptedApi(clock, listed=listed, posts=HEALTHY_POSTS, died={"tiny-qwen2", "other"})
    api.describes = {"tiny-qwen2": (400, {"detail": "Model not found in the model list, uid: tiny-qwen2"})}

    result = run(api, clock)
    checks = by_name(result)

    assert checks["gateway"]["diagnosis"].startswith(
        "tiny-qwen2 is no longer listed because its worker died (Xinference records it as unexpectedly terminated)"
    )
    assert (checks["model tiny-qwen2"]["value"], checks["model tiny-qwen2"]["dead_worker"]) == ("worker died", True)
    assert result["dead_workers"] == ["tiny-qwen2"]


@pytest.mark.parametrize(
    ("error", "value", "diagnosis"),
    [
        pytest.param(
            NoAnswer("not reachable", ConnectionRefusedError(111, "Connection refused")),
            "not reachable",
            "Xinference does not answer at http://10.0.0.5:9997 ([Errno 111] Connection refused): is it running "
            "there? see the xinference stage",
            id="unreachable",
        ),
        pytest.param(
            CredentialsRefused(
                "Xinference at http://10.0.0.5:9997 refused the credentials (HTTP 401: ...): set api_key"
            ),
            "credentials refused",
            "Xinference at http://10.0.0.5:9997 refused the credentials (HTTP 401: ...): set api_key",
            id="401",
        ),
    ],
)
def test_a_gateway_that_does_not_answer_skips_the_models(error, value, diagnosis):
    clock = FakeClock()
    api = ScriptedApi(clock, list_error=error)

    result = run(api, clock)

    assert [check["verdict"] for check in result["checks"]] == ["fail", "skip", "skip", "skip"]
    assert (result["checks"][0]["value"], result["checks"][0]["diagnosis"]) == (value, diagnosis)
    assert result["failed_checks"] == 1
    assert result["models"] == {"minilm": {}, "tiny-reranker": {}, "tiny-qwen2": {}}
    assert api.calls == [("GET", "/v1/models")]


def test_listed_models_whose_worker_died_are_dead_workers_with_the_servers_text():
    """The field notes' case, as Xinference 4.1 answered it after the worker's SIGKILL."""
    clock = FakeClock()
    api = ScriptedApi(
        clock,
        describe={uid: DEAD_ANSWER for uid in LISTED},
        posts={"minilm": DEAD_ANSWER, "tiny-reranker": DEAD_ANSWER},
        streams={"tiny-qwen2": DEAD_ANSWER},
    )

    result = run(api, clock)
    checks = by_name(result)

    assert checks["gateway"]["verdict"] == "pass"
    assert result["dead_workers"] == ["minilm", "tiny-reranker", "tiny-qwen2"]
    assert result["models"]["tiny-qwen2"] == {}
    assert result["failed_checks"] == 3
    qwen = checks["model tiny-qwen2"]
    assert (qwen["verdict"], qwen["value"], qwen["dead_worker"], qwen["model_type"]) == (
        "fail",
        "dead worker",
        True,
        "LLM",
    )
    assert qwen["diagnosis"] == (
        "gateway lists tiny-qwen2 but its worker does not answer (/v1/chat/completions answered HTTP 500: "
        "[Errno 111] Connect call failed ('127.0.0.1', 34875)): the worker process died; terminate and relaunch "
        "the model (stack_verify_heal: true does it through llmops.ragstack.xinference_model)"
    )


def test_a_stream_that_fails_without_saying_why_is_a_dead_worker_when_describe_then_says_so():
    clock = FakeClock()
    lines = event(chunk({"role": "assistant", "content": ""})) + event({"error": SANITIZED_CHAT_ERROR})
    api = ScriptedApi(
        clock,
        describe={"tiny-qwen2": [(200, LISTED["tiny-qwen2"]), DEAD_ANSWER]},
        streams={"tiny-qwen2": lines},
    )

    check = by_name(run(api, clock, [{"model_uid": "tiny-qwen2"}]))["model tiny-qwen2"]

    assert check["dead_worker"]
    assert "(describe answered HTTP 500: [Errno 111] Connect call failed" in check["diagnosis"]
    assert check["measured"] == {"chunks": 1}


def test_a_stream_error_with_a_healthy_describe_is_the_servers_message():
    clock = FakeClock()
    api = ScriptedApi(clock, streams={"tiny-qwen2": event({"error": SANITIZED_CHAT_ERROR})})

    check = by_name(run(api, clock, [{"model_uid": "tiny-qwen2"}]))["model tiny-qwen2"]

    assert not check["dead_worker"]
    assert check["diagnosis"] == (
        "tiny-qwen2: the stream failed after 0 chunks: %s; see the worker log (127.0.0.1:1)" % SANITIZED_CHAT_ERROR
    )
    assert [call[1] for call in api.calls].count("/v1/models/tiny-qwen2") == 2


def test_a_refused_socket_is_a_dead_worker_only_while_the_gateway_still_answers():
    clock = FakeClock()
    refused = NoAnswer("not reachable", ConnectionRefusedError(111, "Connection refused"))
    api = ScriptedApi(clock, posts={"minilm": refused})

    check = by_name(run(api, clock, [{"model_uid": "minilm"}]))["model minilm"]

    assert check["dead_worker"]
    assert "([Errno 111] Connection refused)" in check["diagnosis"]

    # Now the gateway answers the first listing, then goes away with the probe.
    answers = iter([LISTED, refused])

    def list_models():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    api.list_models = list_models
    check = by_name(run(api, clock, [{"model_uid": "minilm"}]))["model minilm"]

    assert not check["dead_worker"]
    assert check["value"] == "no answer"
    assert check["diagnosis"].startswith("Xinference stopped answering at http://10.0.0.5:9997 while minilm")


def test_ttft_over_the_bound_says_the_model_is_overloaded():
    clock = FakeClock()
    api = ScriptedApi(clock, streams={"tiny-qwen2": RECORDED_CHAT}, step=2.0)

    check = by_name(run(api, clock, [{"model_uid": "tiny-qwen2"}], ttft_timeout=3))["model tiny-qwen2"]

    assert (check["verdict"], check["value"], check["dead_worker"]) == ("fail", "ttft over 3 s", False)
    assert check["diagnosis"] == (
        "first token took longer than ttft_timeout=3s (4.00 s): the model is overloaded or running on CPU"
    )


@pytest.mark.parametrize(
    ("describe", "expected"),
    [
        pytest.param(
            (503, {"detail": "Model is loading, please retry later: Model tiny-qwen2 is loading"}),
            "tiny-qwen2 is still loading (describe answered HTTP 503: Model is loading",
            id="loading",
        ),
        pytest.param(
            (200, {"model_type": "embedding"}),
            "tiny-qwen2 is planned as LLM but the server runs it as embedding",
            id="other-type",
        ),
    ],
)
def test_a_model_not_ready_as_planned_is_not_probed(describe, expected):
    clock = FakeClock()
    api = ScriptedApi(clock, describe={"tiny-qwen2": describe})

    check = by_name(run(api, clock, [{"model_uid": "tiny-qwen2", "model_type": "LLM"}]))["model tiny-qwen2"]

    assert check["verdict"] == "fail"
    assert check["diagnosis"].startswith(expected)
    assert not [call for call in api.calls if call[0] == "POST"]


def test_a_probe_refused_for_its_credentials_fails_the_check_not_the_module():
    clock = FakeClock()
    refused = CredentialsRefused(
        "Xinference at http://10.0.0.5:9997 refused the credentials (HTTP 401: Invalid token): set api_key to a "
        "valid key"
    )
    api = ScriptedApi(clock, posts={"minilm": refused})

    check = by_name(run(api, clock, [{"model_uid": "minilm"}]))["model minilm"]

    assert (check["verdict"], check["value"], check["dead_worker"]) == ("fail", "HTTP 401", False)
    assert check["diagnosis"] == str(refused)


def test_an_embedding_answer_without_a_vector_fails():
    clock = FakeClock()
    api = ScriptedApi(clock, posts={"minilm": (200, {"data": [{"embedding": []}]})})

    check = by_name(run(api, clock, [{"model_uid": "minilm"}]))["model minilm"]

    assert (check["verdict"], check["value"]) == ("fail", "unexpected answer")
    assert "/v1/embeddings answered 200 without one non-empty embedding" in check["diagnosis"]


@pytest.mark.parametrize(
    ("models", "ttft_timeout", "message"),
    [
        ([], 120, "models is empty"),
        ([{"model_uid": "a"}, {"model_uid": "a"}], 120, "model_uid a is listed twice in models"),
        ([{"model_uid": " "}], 120, "every entry of models needs a non-empty model_uid"),
        ([{"model_uid": "a"}], 0, "ttft_timeout must be a positive number of seconds, not 0"),
    ],
)
def test_bad_input_is_an_error(models, ttft_timeout, message):
    with pytest.raises(XinferenceError, match=message):
        verify(ScriptedApi(FakeClock()), models, ttft_timeout)


# --- the real transport on loopback ---------------------------------------------------------------


class SlowStream(BaseHTTPRequestHandler):
    """A chat stream whose first content comes at once and the rest after a pause; or silence. It
    answers the identity check as Xinference with auth off does."""

    pause = 0.4

    def do_GET(self):
        body = b'{"auth": false}'
        self.send_response(200 if self.path == "/v1/cluster/auth" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if body["model"] == "silent":
            time.sleep(self.pause * 3)
            return
        lines = chat_stream({"content": "Hi"}, {"content": "there"})
        self.wfile.write(b"".join(lines[:4]))
        self.wfile.flush()
        time.sleep(self.pause)
        self.wfile.write(b"".join(lines[4:]))

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowStream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_first_token_is_timed_as_it_arrives_not_when_the_stream_ends(slow_server, monkeypatch):
    api = XinferenceApi(slow_server, timeout=5)
    api.identify()  # as the gateway check does first, outside the timed stream
    monkeypatch.setattr(api, "list_models", lambda: {"tiny": {"model_type": "LLM", "model_ability": ["chat"]}})
    monkeypatch.setattr(api, "describe", lambda uid: (200, {"model_type": "LLM", "model_ability": ["chat"]}))

    check = by_name(verify(api, [{"model_uid": "tiny"}], 10))["model tiny"]

    assert check["verdict"] == "pass", check
    assert check["measured"]["ttft_s"] < SlowStream.pause / 2
    assert check["measured"]["stream_s"] >= SlowStream.pause
    assert check["measured"]["chunks"] == 4


def test_a_silent_stream_is_cut_by_the_read_timeout_and_fails_the_ttft_bound(slow_server, monkeypatch):
    api = XinferenceApi(slow_server, timeout=0.3)
    monkeypatch.setattr(api, "list_models", lambda: {"silent": {"model_type": "LLM", "model_ability": ["chat"]}})
    monkeypatch.setattr(api, "describe", lambda uid: (200, {"model_type": "LLM", "model_ability": ["chat"]}))
    started = time.monotonic()

    check = by_name(verify(api, [{"model_uid": "silent"}], 0.2))["model silent"]

    assert time.monotonic() - started < SlowStream.pause * 3
    assert (check["verdict"], check["value"]) == ("fail", "ttft over 0.2 s")
    assert check["diagnosis"].startswith("first token took longer than ttft_timeout=0.2s")


def test_a_refused_port_is_no_answer():
    port = free_port()
    result = verify(XinferenceApi("http://127.0.0.1:%d" % port, timeout=5), [{"model_uid": "a"}], 10)

    assert result["checks"][0]["value"] == "not reachable"
    assert "Connection refused" in result["checks"][0]["diagnosis"]
    assert result["checks"][1]["verdict"] == "skip"


# --- the module ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"models": []}, "models is empty"),
        ({"models": [{"model_uid": "a", "model_type": "chat"}]}, "value of model_type must be one of"),
        ({"models": [{"model_uid": "a"}], "timeout": 0}, "timeout must be a positive number of seconds, not 0"),
    ],
)
def test_module_fails_on_bad_input_only(tmp_path, args, message):
    result = ModuleRunner("xinference_verify", tmp_path)({"endpoint": "http://127.0.0.1:9", **args})

    assert result["failed"]
    assert message in result["msg"]


def test_module_reports_an_unreachable_gateway_without_failing(tmp_path):
    port = free_port()
    args = {"endpoint": "http://127.0.0.1:%d" % port, "api_key": "sk-secret-key", "models": [{"model_uid": "a"}]}

    result = ModuleRunner("xinference_verify", tmp_path)(args, check_mode=True)

    assert not result.get("failed"), result
    assert (result["changed"], result["failed_checks"], result["dead_workers"]) == (False, 1, [])
    assert "sk-secret-key" not in json.dumps(result)
