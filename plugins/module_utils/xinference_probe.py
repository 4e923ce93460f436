# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one probe of each kind of Xinference model, used by xinference_model (health check) and
xinference_verify (its checks): which request, with which body, what answer passes, and whether
the answer is streamed. The table is PROBES; probe_for() picks a model's entry from its type and
abilities, and Prober sends it.

What Xinference 4.1 answers, as seen on a real server: inference on a uid it does not know answers
404 "Model not found in the model list"; on a model whose worker is dead, 500 "[Errno 111] Connect
call failed (...)", streamed requests included (before any event is sent). A stream is server-sent
events, `data: {json}` lines separated by blank lines, ending with `data: [DONE]` for chat; a
failure once streaming has started is one event `data: {"error": ...}` on an HTTP 200 answer. The
first chat chunk carries only the role (empty "content").
"""

from __future__ import annotations

import json
import socket
import time
from http.client import HTTPException

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import CredentialsRefused, NoAnswer
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import ACTOR_PREFIX, detail_of

EMBEDDING_INPUT = "Xinference verification: a short sentence to embed."
RERANK_QUERY = "Which sentence is about a GPU?"
RERANK_DOCUMENTS = ["The GPU has 24 GB of memory.", "The cat sleeps on the sofa."]
CHAT_MESSAGE = "Say hello in five words."
MAX_TOKENS = 16


def timed_out(reason):
    return isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason).lower()


class ProbeFailed(Exception):
    """A probe that did not get the answer it needs.

    `text` is the server's message (detail_of) or the transport's; `status` the HTTP status when
    the server answered, else None; `transport` whether the connection itself failed (no answer,
    or a stream cut off); `bad_answer` a 200 that does not hold what was asked for."""

    def __init__(self, text, status=None, *, transport=False, timeout=False, bad_answer=False, measured=None):
        super().__init__(text)
        self.text = text
        self.status = status
        self.transport = transport
        self.timeout = timeout
        self.bad_answer = bad_answer
        self.measured = measured or {}


def sse_data(lines):
    """The data of each server-sent event, as soon as the blank line that ends it is read.

    `lines` are raw lines (bytes) as read; comments (": ping") and other fields are skipped, several
    data lines of one event are joined with newlines, as the SSE specification says."""
    data = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _colon, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def chat_token(chunk):
    """The first choice's delta text of a chat chunk: content, or reasoning_content (DeepSeek-R1
    style models stream their reasoning first, and that is the model's first token too)."""
    delta = first_choice(chunk).get("delta")
    if not isinstance(delta, dict):
        return None
    return delta.get("content") or delta.get("reasoning_content") or None


def completion_token(chunk):
    return first_choice(chunk).get("text") or None


def first_choice(chunk):
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def stream_error(chunk):
    """The message of an error event ({"error": "..."} or {"error": {"message": "..."}}), else None."""
    if not isinstance(chunk, dict) or chunk.get("error") is None:
        return None
    error = chunk["error"]
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error))
    return str(error)


class TtftExceeded(ProbeFailed):
    """No first token within ttft_timeout, or a stream that ended without any."""

    def __init__(self, waited, chunks, measured, ended_without_token=False):
        if ended_without_token:
            text = "the stream ended after %d chunks without any content" % chunks
        else:
            text = "no first token after %.2f s and %d chunks" % (waited, chunks)
        super().__init__(text, 200, measured=measured)
        self.waited = waited
        self.ended_without_token = ended_without_token


def measure_stream(events, started, clock, ttft_timeout, token_of):
    """Read the events of a stream until [DONE] or its end: {"ttft_s", "chunks", "stream_s"} when a
    first token came within ttft_timeout seconds of `started`, else TtftExceeded. Reading stops as
    soon as the bound has passed without a token; an error event, or a transport error while
    reading, is ProbeFailed (a read that times out before the first token is TtftExceeded)."""
    chunks = 0
    ttft = None
    cut = False
    try:
        for data in events:
            if data.strip() == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ProbeFailed(
                    "the stream sent an event that is not JSON: %s" % data[:200], 200, bad_answer=True
                ) from None
            error = stream_error(chunk)
            if error is not None:
                raise ProbeFailed(
                    "the stream failed after %d chunks: %s" % (chunks, ACTOR_PREFIX.sub("", error)),
                    200,
                    measured={"chunks": chunks},
                )
            chunks += 1
            elapsed = clock() - started
            if ttft is None and token_of(chunk):
                ttft = elapsed
            if (ttft is None and elapsed > ttft_timeout) or (ttft is not None and ttft > ttft_timeout):
                cut = True
                break
    except (OSError, HTTPException) as exc:
        measured = {"chunks": chunks}
        if ttft is None and timed_out(exc):
            raise TtftExceeded(clock() - started, chunks, measured) from exc
        if ttft is not None:
            measured["ttft_s"] = round(ttft, 3)
        raise ProbeFailed(
            "the stream broke after %d chunks: %s" % (chunks, exc or type(exc).__name__),
            transport=True,
            timeout=timed_out(exc),
            measured=measured,
        ) from exc
    measured = {"chunks": chunks, "stream_s": round(clock() - started, 3)}
    if ttft is not None:
        measured["ttft_s"] = round(ttft, 3)
    if ttft is None and not cut:
        raise TtftExceeded(clock() - started, chunks, measured, ended_without_token=True)
    if cut:
        raise TtftExceeded(ttft if ttft is not None else clock() - started, chunks, measured)
    return measured


def bad_answer(path, wanted, payload, latency):
    return ProbeFailed(
        "%s answered 200 without %s: %s" % (path, wanted, json.dumps(payload)[:200]),
        200,
        bad_answer=True,
        measured={"latency_ms": latency},
    )


def embedding_answer(payload, latency):
    data = payload.get("data") if isinstance(payload, dict) else None
    vector = (
        data[0].get("embedding") if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) else None
    )
    if not isinstance(vector, list) or not vector:
        raise bad_answer("/v1/embeddings", "one non-empty embedding", payload, latency)
    measured = {"latency_ms": latency, "dimension": len(vector)}
    return measured, "dim %d, %d ms" % (len(vector), latency)


def rerank_answer(payload, latency):
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or len(results) != len(RERANK_DOCUMENTS) or not isinstance(results[0], dict):
        raise bad_answer("/v1/rerank", "%d results" % len(RERANK_DOCUMENTS), payload, latency)
    top = results[0]
    measured = {
        "latency_ms": latency,
        "results": len(results),
        "top_index": top.get("index"),
        "top_score": top.get("relevance_score"),
    }
    return measured, "%d results, top index %s, %d ms" % (len(results), top.get("index"), latency)


class Probe:
    """One request of a kind: `path`, `body` (the model's uid in, the JSON body out), and either
    `answer` (a parsed 200 answer and its latency in, (measured, value) or ProbeFailed out) or, for
    a streamed answer, `token_of` (a chunk in, its text or None out)."""

    def __init__(self, path, body, answer=None, token_of=None):
        self.path = path
        self.body = body
        self.answer = answer
        self.token_of = token_of

    @property
    def streaming(self):
        return self.token_of is not None


PROBES = {
    "embedding": Probe(
        "/v1/embeddings",
        lambda uid: {"model": uid, "input": [EMBEDDING_INPUT]},
        answer=embedding_answer,
    ),
    "rerank": Probe(
        "/v1/rerank",
        lambda uid: {"model": uid, "query": RERANK_QUERY, "documents": RERANK_DOCUMENTS},
        answer=rerank_answer,
    ),
    "chat": Probe(
        "/v1/chat/completions",
        lambda uid: {
            "model": uid,
            "messages": [{"role": "user", "content": CHAT_MESSAGE}],
            "max_tokens": MAX_TOKENS,
            "stream": True,
        },
        token_of=chat_token,
    ),
    "completion": Probe(
        "/v1/completions",
        lambda uid: {"model": uid, "prompt": CHAT_MESSAGE, "max_tokens": MAX_TOKENS, "stream": True},
        token_of=completion_token,
    ),
}


def probe_for(model_type, abilities):
    """The PROBES entry for a model, or None: image, audio and video models have no request cheap
    enough to send as a check, and a successful describe is all the health there is to see."""
    if model_type in ("embedding", "rerank"):
        return PROBES[model_type]
    if model_type == "LLM":
        return PROBES["chat" if "chat" in (abilities or []) else "completion"]
    return None


class Prober:
    """Sends a model's probe through an XinferenceApi (or a double with request/stream/timeout)."""

    def __init__(self, api, ttft_timeout, clock=time.monotonic):
        self.api = api
        self.ttft_timeout = ttft_timeout
        self.clock = clock

    def elapsed_ms(self, started):
        return round((self.clock() - started) * 1000)

    def run(self, uid, probe):
        """(measured, value) once the model answered its probe, else ProbeFailed (TtftExceeded)."""
        if probe.streaming:
            return self.streamed(uid, probe)
        payload, latency = self.post(probe.path, probe.body(uid))
        return probe.answer(payload, latency)

    def post(self, path, body):
        """(parsed 200 answer, latency in ms), or ProbeFailed."""
        started = self.clock()
        try:
            status, payload = self.api.request("POST", path, body)
        except NoAnswer as exc:
            raise ProbeFailed(str(exc.reason), transport=True, timeout=timed_out(exc.reason)) from exc
        except CredentialsRefused as exc:
            raise ProbeFailed(str(exc), 401) from exc
        latency = self.elapsed_ms(started)
        if status != 200:
            raise ProbeFailed(
                "%s answered %s" % (path, detail_of(status, payload)), status, measured={"latency_ms": latency}
            )
        return payload, latency

    def streamed(self, uid, probe):
        """Stream a short generation; (measured, value) once its first token came within ttft_timeout."""
        path = probe.path
        # Each read of the stream may wait up to ttft_timeout for the first token.
        timeout = max(self.api.timeout, self.ttft_timeout)
        started = self.clock()
        try:
            status, payload, response = self.api.stream(path, probe.body(uid), timeout)
        except NoAnswer as exc:
            if timed_out(exc.reason):
                raise TtftExceeded(self.clock() - started, 0, {"chunks": 0}) from exc
            raise ProbeFailed(str(exc.reason), transport=True) from exc
        except CredentialsRefused as exc:
            raise ProbeFailed(str(exc), 401) from exc
        except (OSError, HTTPException) as exc:
            # Reading an error answer's body broke off.
            raise ProbeFailed(str(exc) or type(exc).__name__, transport=True, timeout=timed_out(exc)) from exc
        if status != 200:
            raise ProbeFailed("%s answered %s" % (path, detail_of(status, payload)), status)
        try:
            measured = measure_stream(
                sse_data(iter(response.readline, b"")), started, self.clock, self.ttft_timeout, probe.token_of
            )
        finally:
            response.close()
        return measured, "ttft %.2f s, %d chunks" % (measured["ttft_s"], measured["chunks"])
