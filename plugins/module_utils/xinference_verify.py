# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only verification of an Xinference gateway and its models: the checks an operator does by
hand with curl (list the models, one embedding, one rerank, one streamed chat), each with a verdict,
what was measured, and what to do when it fails.

What Xinference 4.1 answers, as seen on a real server:
- GET /v1/models lists {"data": [{"id": uid, "model_type", "model_ability", "address", "accelerators",
  ...}]} from what each worker last reported; a worker that stopped answering keeps its models
  listed from the supervisor's cache.
- GET /v1/models/{uid} (describe) reports the same fields plus "n_worker" and "replica"; "address"
  is the model process's host:port on its worker, "accelerators" the GPU indexes it was given
  ([] on CPU). It answers 400 "Model not found in the model list" for an unknown uid, 503 while the
  model loads, and 500 "[Errno 111] Connect call failed (...)" once the model's worker is dead.
- Inference on a uid it does not know answers 404 "Model not found in the model list" (cached for
  a few seconds); on a model whose worker is dead, 500 "[Errno 111] Connect call failed (...)",
  streamed requests included (before any event is sent).
- A stream is server-sent events, `data: {json}` lines separated by blank lines, ending with
  `data: [DONE]` for chat; a failure once streaming has started is one event `data: {"error": ...}`
  on an HTTP 200 answer. The first chat chunk carries only the role (empty "content").
"""

from __future__ import annotations

import json
import socket
import time
from http.client import HTTPException

from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import (
    ACTOR_PREFIX,
    XinferenceError,
    detail_of,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import CredentialsRefused, NoAnswer

EMBEDDING_INPUT = "Xinference verification: a short sentence to embed."
RERANK_QUERY = "Which sentence is about a GPU?"
RERANK_DOCUMENTS = ["The GPU has 24 GB of memory.", "The cat sleeps on the sofa."]
CHAT_MESSAGE = "Say hello in five words."
MAX_TOKENS = 16
XINFERENCE_STAGE = "run the xinference stage (site.yml --tags xinference)"
HEAL_HINT = "stack_verify_heal: true does it through llmops.ragstack.xinference_model"

# What the server's message or the transport says when the process behind a model is gone: the
# supervisor's actor call to the dead worker (Errno 111, "Connect call failed"), a connection the
# worker dropped (Errno 104), aiohttp's name for a peer that closed.
DEAD_WORKER_SIGNS = (
    "connection refused",
    "errno 111",
    "connect call failed",
    "connection reset",
    "errno 104",
    "server disconnected",
    "serverdisconnectederror",
)
NOT_FOUND = "Model not found in the model list"


def dead_worker_sign(text):
    lowered = (text or "").lower()
    return any(sign in lowered for sign in DEAD_WORKER_SIGNS)


def timed_out(reason):
    return isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason).lower()


def make_check(
    name, verdict, value, diagnosis=None, measured=None, *, dead_worker=False, model_uid=None, model_type=None
):
    return {
        "name": name,
        "verdict": verdict,
        "value": value,
        "diagnosis": diagnosis,
        "measured": measured or {},
        "dead_worker": dead_worker,
        "model_uid": model_uid,
        "model_type": model_type,
    }


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


def diagnose(model_uid, failure, gateway_answers, *, endpoint, timeout, address=None):
    """(dead_worker, diagnosis) of a failed probe, in what-to-do terms.

    `gateway_answers` says whether GET /v1/models still answers: a refused connection to the
    gateway itself is Xinference gone, not one worker."""
    if dead_worker_sign(failure.text) and (failure.status is not None or gateway_answers):
        return True, (
            "gateway lists %s but its worker does not answer (%s): the worker process died; terminate and "
            "relaunch the model (%s)" % (model_uid, failure.text, HEAL_HINT)
        )
    if failure.transport and not gateway_answers:
        return False, (
            "Xinference stopped answering at %s while %s was probed (%s): is it still running? see the "
            "xinference stage" % (endpoint, model_uid, failure.text)
        )
    return False, what_to_do(model_uid, failure, timeout, address)


def what_to_do(model_uid, failure, timeout, address):
    """The diagnosis of a failure that is not the server or a worker gone."""
    where = " (%s)" % address if address else ""
    if failure.status == 401:
        return failure.text
    if failure.status in (400, 404) and NOT_FOUND in failure.text:
        return "not launched: %s; %s" % (model_uid, XINFERENCE_STAGE)
    if failure.status == 503:
        return "%s is still loading (%s): wait for it and verify again" % (model_uid, failure.text)
    if failure.timeout:
        return (
            "%s did not answer within timeout=%ss (%s): the model is overloaded or running on CPU; see the "
            "worker log%s" % (model_uid, timeout, failure.text, where)
        )
    return "%s: %s; see the worker log%s" % (model_uid, failure.text, where)


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


class Verifier:
    """Runs the checks against one endpoint through an XinferenceApi (or a double with its methods)."""

    def __init__(self, api, ttft_timeout, clock=time.monotonic):
        self.api = api
        self.ttft_timeout = ttft_timeout
        self.clock = clock

    def elapsed_ms(self, started):
        return round((self.clock() - started) * 1000)

    def run(self, planned):
        """The module's result for `planned`, a list of {"model_uid", "model_type" (or None)}."""
        uids = [model["model_uid"] for model in planned]
        gateway, listed, reached = self.gateway(uids)
        checks = [gateway]
        models = {}
        for model in planned:
            uid = model["model_uid"]
            if not reached:
                models[uid] = {}
                checks.append(
                    make_check(
                        "model %s" % uid,
                        "skip",
                        "not checked: the gateway check failed",
                        model_uid=uid,
                        model_type=model.get("model_type"),
                    )
                )
                continue
            check, description = self.model(uid, model.get("model_type"), listed)
            models[uid] = description
            checks.append(check)
        return {
            "changed": False,
            "checks": checks,
            "dead_workers": [check["model_uid"] for check in checks if check["dead_worker"]],
            "models": models,
            "failed_checks": sum(1 for check in checks if check["verdict"] == "fail"),
        }

    def gateway(self, uids):
        """(check, {uid: entry} or None when the list could not be read, whether the server answered)."""
        started = self.clock()
        try:
            listed = self.api.list_models()
        except NoAnswer as exc:
            return (
                make_check(
                    "gateway",
                    "fail",
                    "not reachable",
                    "Xinference does not answer at %s (%s): is it running there? see the xinference stage"
                    % (self.api.endpoint, exc.reason),
                ),
                None,
                False,
            )
        except CredentialsRefused as exc:
            return make_check("gateway", "fail", "HTTP 401", str(exc)), None, False
        except XinferenceError as exc:
            return (
                make_check(
                    "gateway",
                    "fail",
                    "GET /v1/models failed",
                    "%s; see the supervisor log" % exc,
                    {"latency_ms": self.elapsed_ms(started)},
                ),
                None,
                True,
            )
        latency = self.elapsed_ms(started)
        missing = [uid for uid in uids if uid not in listed]
        value = "%d listed, %d/%d planned (%d ms)" % (len(listed), len(uids) - len(missing), len(uids), latency)
        measured = {"latency_ms": latency, "listed": len(listed), "planned_listed": len(uids) - len(missing)}
        if missing:
            diagnosis = "not launched: %s; %s" % (", ".join(missing), XINFERENCE_STAGE)
            return make_check("gateway", "fail", value, diagnosis, measured), listed, True
        return make_check("gateway", "pass", value, None, measured), listed, True

    def gateway_answers(self):
        try:
            self.api.list_models()
        except NoAnswer:
            return False
        except XinferenceError:
            return True
        return True

    def describe(self, uid):
        """(description or {}, ProbeFailed of the describe or None)."""
        try:
            status, payload = self.api.describe(uid)
        except NoAnswer as exc:
            return {}, ProbeFailed(str(exc.reason), transport=True, timeout=timed_out(exc.reason))
        except CredentialsRefused as exc:
            return {}, ProbeFailed(str(exc), 401)
        if status == 200 and isinstance(payload, dict):
            return payload, None
        return {}, ProbeFailed("describe answered %s" % detail_of(status, payload), status)

    def model(self, uid, planned_type, listed):
        """(check of one planned model, its description or {})."""
        description, describe_failure = self.describe(uid)
        entry = (listed or {}).get(uid) or {}
        reported_type = description.get("model_type") or entry.get("model_type")
        model_type = planned_type or reported_type
        name = "model %s" % uid

        def failed(value, diagnosis, measured=None, dead_worker=False):
            return (
                make_check(
                    name,
                    "fail",
                    value,
                    diagnosis,
                    measured,
                    dead_worker=dead_worker,
                    model_uid=uid,
                    model_type=model_type,
                ),
                description,
            )

        if describe_failure is not None and describe_failure.status == 503:
            return failed("loading", self.diagnose(uid, describe_failure, True)[1])
        if listed is not None and uid not in listed:
            return failed("not listed", "not launched: %s; %s" % (uid, XINFERENCE_STAGE))
        if planned_type and reported_type and planned_type != reported_type:
            return failed(
                "runs as %s" % reported_type,
                "%s is planned as %s but the server runs it as %s: relaunch it as planned (%s)"
                % (uid, planned_type, reported_type, XINFERENCE_STAGE),
            )
        abilities = description.get("model_ability") or entry.get("model_ability") or []
        try:
            if model_type is None:
                raise describe_failure or ProbeFailed("the server does not say its model_type", bad_answer=True)
            measured, value = self.probe(uid, model_type, abilities, describe_failure)
        except TtftExceeded as exc:
            value = "no content" if exc.ended_without_token else "ttft over %g s" % self.ttft_timeout
            return failed(value, self.ttft_diagnosis(uid, exc), exc.measured)
        except ProbeFailed as exc:
            evidence = self.dead_worker_evidence(uid, exc, describe_failure)
            answers = evidence.status is not None or self.gateway_answers()
            address = description.get("address") or entry.get("address")
            dead, diagnosis = self.diagnose(uid, evidence, answers, address)
            if not dead:
                diagnosis = self.diagnose(uid, exc, answers, address)[1]
            return failed(failure_value(exc, dead), diagnosis, exc.measured, dead)
        return make_check(name, "pass", value, None, measured, model_uid=uid, model_type=model_type), description

    def diagnose(self, uid, failure, gateway_answers, address=None):
        return diagnose(
            uid, failure, gateway_answers, endpoint=self.api.endpoint, timeout=self.api.timeout, address=address
        )

    def dead_worker_evidence(self, uid, failure, describe_failure):
        """The failure that shows a dead worker when the probe's own text does not (a stream's error
        event is only "The chat completion request failed"): describe's, before or after the probe."""
        if dead_worker_sign(failure.text):
            return failure
        if describe_failure is not None:
            return describe_failure if dead_worker_sign(describe_failure.text) else failure
        again = self.describe(uid)[1]
        return again if again is not None and dead_worker_sign(again.text) else failure

    def ttft_diagnosis(self, uid, exc):
        if exc.ended_without_token:
            return "%s streamed %d chunks without any content within max_tokens=%d: see the worker log" % (
                uid,
                exc.measured.get("chunks", 0),
                MAX_TOKENS,
            )
        return "first token took longer than ttft_timeout=%gs (%.2f s): the model is overloaded or running on CPU" % (
            self.ttft_timeout,
            exc.waited,
        )

    def probe(self, uid, model_type, abilities, describe_failure):
        """(measured, value) of the probe of the model's kind, or ProbeFailed."""
        if model_type == "embedding":
            return self.embedding(uid)
        if model_type == "rerank":
            return self.rerank(uid)
        if model_type == "LLM" and "chat" in abilities:
            body = {"messages": [{"role": "user", "content": CHAT_MESSAGE}]}
            return self.streamed(uid, "/v1/chat/completions", body, chat_token)
        if model_type == "LLM":
            return self.streamed(uid, "/v1/completions", {"prompt": CHAT_MESSAGE}, completion_token)
        if describe_failure is not None:
            raise describe_failure
        return {}, "no probe for %s" % model_type

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

    def embedding(self, uid):
        payload, latency = self.post("/v1/embeddings", {"model": uid, "input": [EMBEDDING_INPUT]})
        data = payload.get("data") if isinstance(payload, dict) else None
        vector = (
            data[0].get("embedding")
            if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict)
            else None
        )
        if not isinstance(vector, list) or not vector:
            raise bad_answer("/v1/embeddings", "one non-empty embedding", payload, latency)
        measured = {"latency_ms": latency, "dimension": len(vector)}
        return measured, "dim %d, %d ms" % (len(vector), latency)

    def rerank(self, uid):
        body = {"model": uid, "query": RERANK_QUERY, "documents": RERANK_DOCUMENTS}
        payload, latency = self.post("/v1/rerank", body)
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

    def streamed(self, uid, path, body, token_of):
        """Stream a short generation; (measured, value) once its first token came within ttft_timeout."""
        body = {"model": uid, "max_tokens": MAX_TOKENS, "stream": True, **body}
        # Each read of the stream may wait up to ttft_timeout for the first token.
        timeout = max(self.api.timeout, self.ttft_timeout)
        started = self.clock()
        try:
            status, payload, response = self.api.stream(path, body, timeout)
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
                sse_data(iter(response.readline, b"")), started, self.clock, self.ttft_timeout, token_of
            )
        finally:
            response.close()
        return measured, "ttft %.2f s, %d chunks" % (measured["ttft_s"], measured["chunks"])


def failure_value(failure, dead_worker):
    """The short value of a failed model check."""
    if dead_worker:
        return "dead worker"
    if failure.timeout:
        return "timeout"
    if failure.transport:
        return "no answer"
    if failure.bad_answer:
        return "unexpected answer"
    if failure.status not in (None, 200):
        return "HTTP %s" % failure.status
    return "failed"


def bad_answer(path, wanted, payload, latency):
    return ProbeFailed(
        "%s answered 200 without %s: %s" % (path, wanted, json.dumps(payload)[:200]),
        200,
        bad_answer=True,
        measured={"latency_ms": latency},
    )


def planned_models(models):
    """The module's `models` option checked: XinferenceError (one line) for bad input."""
    if not models:
        raise XinferenceError("models is empty: list at least one {model_uid: ...} to verify")
    seen = set()
    for model in models:
        uid = model.get("model_uid")
        if not uid or not uid.strip():
            raise XinferenceError("every entry of models needs a non-empty model_uid")
        if uid in seen:
            raise XinferenceError("model_uid %s is listed twice in models" % uid)
        seen.add(uid)
    return models


def verify(api, models, ttft_timeout, clock=time.monotonic):
    """The module's result: every check, read-only."""
    if ttft_timeout <= 0:
        raise XinferenceError("ttft_timeout must be a positive number of seconds, not %g" % ttft_timeout)
    if api.timeout <= 0:
        raise XinferenceError("timeout must be a positive number of seconds, not %s" % api.timeout)
    return Verifier(api, ttft_timeout, clock).run(planned_models(models))
