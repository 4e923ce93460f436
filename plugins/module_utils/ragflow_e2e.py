# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An end-to-end check of a RAGFlow deployment through its HTTP API (the /api/v1 SDK API, API key auth).

The steps are the ones operators run by hand: create a dataset, upload a text document, start
parsing it, poll it until its run status is DONE, retrieve its chunk with a question, then (optionally)
create a chat assistant on the dataset, open a session and ask the question. Whatever was created is
deleted at the end, also after a failed step. A failed step is a result, not an error: every step
reports a verdict, and the first failure gets a one-line diagnosis of what to do.

RAGFlow v0.24 (api/apps/sdk/*.py, auth by api/utils/api_utils.py token_required) and v0.27
(api/apps/restful_apis/*.py, auth by api/apps/__init__.py login_required) serve the same paths for
all of this, except the completion: v0.27 documents POST /api/v1/chat/completions with the chat_id
in the body and keeps POST /api/v1/chats/<chat_id>/completions only as a deprecated alias, which
is all v0.24 has. A wrong key is HTTP 200 with code 109 on v0.24 and HTTP 401 (code 401) on v0.27.
"""

from __future__ import annotations

import secrets
import string
import time
from http.client import HTTPException
from urllib.parse import quote, urlsplit

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import (
    CODE_AUTHENTICATION_ERROR,
    RagflowApi,
    unwrap,
)

PASS, FAIL, SKIP = "pass", "fail", "skip"
STEPS = (
    "create_dataset",
    "upload_document",
    "start_parsing",
    "wait_parsed",
    "retrieval",
    "create_chat",
    "create_session",
    "ask",
    "cleanup",
)
CHAT_STEPS = ("create_chat", "create_session", "ask")
# A document's `run` as the documents list reports it (RAGFlow's TaskStatus "0".."4").
RUN_DONE, RUN_FAILED = "DONE", ("FAIL", "CANCEL")
MARKER_PLACEHOLDER = "{marker}"
DEFAULT_DOCUMENT = (
    "{marker} is the code word of one ragstack verification run. "
    "The llmops.ragstack.ragflow_e2e module uploaded this document to check that RAGFlow parses, embeds and "
    "retrieves text. "
    "No other document contains the code word {marker}. "
    "The dataset that holds this document is deleted when the run ends."
)
DEFAULT_QUESTION = "What is {marker}?"
# What RAGFlow puts into an answer when the chat model call failed (rag/llm/chat_model.py ERROR_PREFIX).
ANSWER_ERROR = "**ERROR**"
KEY_HINT = "get one with llmops.ragstack.ragflow_token"
HINTS = {
    "create_dataset": "RAGFlow could not create a dataset: %s; check the tenant's default embedding model "
    "(llmops.ragstack.ragflow_provider) and the ragflow container log",
    "upload_document": "RAGFlow could not store the document: %s; check the object storage (minio) and the "
    "ragflow container log",
    "start_parsing": "RAGFlow did not start parsing: %s; check redis (the task queue) and the ragflow container log",
    "wait_parsed": "the document failed to parse: %s; check the ragflow-cpu/ragflow-gpu container log and the "
    "embedding model",
    "retrieval": "retrieval did not work: %s; check the document engine (es01, infinity or opensearch) and the "
    "embedding model",
    "create_chat": "RAGFlow could not create a chat assistant: %s; check the tenant's default chat model "
    "(llmops.ragstack.ragflow_provider)",
    "create_session": "RAGFlow could not open a chat session: %s; check the ragflow container log",
    "ask": "the chat assistant did not answer: %s; check the tenant's default chat model and the Xinference "
    "model behind it",
    "cleanup": "the check could not delete what it created: %s; delete it in RAGFlow's web UI",
}


class ApiKeyRefused(RagflowError):
    """RAGFlow did not accept the API key."""


class Unanswered(RagflowError):
    """RAGFlow stopped answering at all (connection refused, timeout)."""


class StepFailed(Exception):
    """A step's check failed: `detail` for the step, `diagnosis` when the step's default hint does not fit."""

    def __init__(self, detail, diagnosis=None):
        super().__init__(detail)
        self.detail = detail
        self.diagnosis = diagnosis


def new_marker():
    """A word no real document contains: letters only, so that every tokenizer keeps it whole."""
    return "ragstack" + "".join(secrets.choice(string.ascii_lowercase) for _letter in range(10))


def run_name(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(4))


def with_marker(text, marker):
    return text.replace(MARKER_PLACEHOLDER, marker)


def check_params(params):
    """Refuse input that cannot work, before anything is sent; RagflowError with the reason."""
    parts = urlsplit(params["base_url"] or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RagflowError("base_url must be RAGFlow's http(s) API address, for example http://127.0.0.1:9380")
    api_key = params["api_key"] or ""
    # RAGFlow takes the second word of "Bearer <key>": an empty key or one with blanks cannot work.
    if not api_key or len(api_key.split()) != 1:
        raise RagflowError("api_key must be one word, the RAGFlow API key (%s)" % KEY_HINT)
    for name in ("timeout", "parse_timeout"):
        if params[name] <= 0:
            raise RagflowError("%s must be more than 0 seconds" % name)
    if params["poll_interval"] <= 0:
        raise RagflowError("poll_interval must be more than 0 seconds")
    if not (params["name_prefix"] or "").strip():
        raise RagflowError("name_prefix must not be empty")
    # RAGFlow limits dataset names to 128 bytes (DATASET_NAME_LIMIT); the suffix takes 9.
    if len(params["name_prefix"].encode("utf-8")) > 100:
        raise RagflowError("name_prefix must be at most 100 bytes long")
    for name in ("document_text", "question"):
        if params[name] is not None and not params[name].strip():
            raise RagflowError("%s must not be empty" % name)


def key_refusal(status, envelope):
    """RAGFlow's message when the answer says the API key was not accepted, else None.

    v0.24 token_required: HTTP 200, code 109 "Authentication error: API key is invalid!" (and code 0,
    data false, for a missing or malformed Authorization header). v0.27 login_required: HTTP 401,
    code 401 "<Unauthorized '401: Unauthorized'>". Code 109 "no authorization" on v0.27 is about
    owning a chat, not about the key.
    """
    envelope = envelope if isinstance(envelope, dict) else {}
    code, message = envelope.get("code"), str(envelope.get("message") or "")
    if status == 401 or code == 401:
        return "HTTP 401 %s" % message if message else "HTTP 401"
    if code == CODE_AUTHENTICATION_ERROR and "api key" in message.lower():
        return message
    if code == 0 and envelope.get("data") is False and "authorization" in message.lower():
        return message
    return None


def last_progress_line(progress_msg):
    """The line of a document's progress_msg that says the most: its last [ERROR] line, else its last line."""
    lines = [line.strip() for line in str(progress_msg or "").splitlines() if line.strip()]
    errors = [line for line in lines if "[ERROR]" in line]
    chosen = (errors or lines or ["no progress message"])[-1]
    return chosen if len(chosen) <= 300 else chosen[:297] + "..."


def short(text, limit=200):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def answer_error(answer):
    """What follows RAGFlow's **ERROR** marker in an answer, or None for an answer without one."""
    if ANSWER_ERROR not in answer:
        return None
    return answer.split(ANSWER_ERROR, 1)[1].lstrip(": ").strip() or "an error without a message"


class RagflowSdk(RagflowApi):
    """The RAGFlow client with an API key, telling a refused key and a server that stopped answering
    apart from other refusals (the steps diagnose them differently)."""

    def __init__(self, base_url, api_key, timeout=30, validate_certs=True, use_proxy=False):
        super().__init__(base_url, timeout, validate_certs, use_proxy)
        self.session = "Bearer %s" % api_key

    def _request(self, method, path, body=None):
        try:
            return super()._request(method, path, body)
        except RagflowError as exc:
            raise Unanswered(str(exc)) from exc
        except (OSError, HTTPException) as exc:
            # The answer broke off while it was read (timeout, reset): the request itself got through.
            raise Unanswered("RAGFlow's answer to %s %s broke off: %s" % (method, path, exc)) from exc

    def unhealthy(self):
        return sorted(key for key, value in self.health.items() if key != "status" and value != "ok")

    def _answer(self, action, status, envelope):
        refusal = key_refusal(status, envelope)
        if refusal:
            raise ApiKeyRefused("%s: RAGFlow refused the API key (%s)" % (action, refusal))
        if envelope is None:
            raise RagflowError("%s: RAGFlow answered HTTP %s without JSON" % (action, status))
        return unwrap(envelope, action)

    def call(self, action, method, path, body=None):
        status, _headers, envelope = self._request(method, path, body)
        return self._answer(action, status, envelope)

    def upload(self, action, path, filename, content):
        """POST one file as the multipart field `file`, as RAGFlow's upload endpoint takes it."""
        try:
            status, envelope = super().upload(path, filename, content)
        except RagflowError as exc:
            raise Unanswered(str(exc)) from exc
        except (OSError, HTTPException) as exc:
            raise Unanswered("RAGFlow's answer to POST %s broke off: %s" % (path, exc)) from exc
        return self._answer(action, status, envelope)


def expect(data, kind, what, action):
    if not isinstance(data, kind):
        raise StepFailed("%s: RAGFlow answered without %s: %s" % (action, what, short(repr(data))))
    return data


class Verification:
    """One run of the steps against RAGFlow; run() returns the module's result."""

    def __init__(
        self,
        api,
        *,
        name,
        document_text,
        question,
        marker,
        parse_timeout,
        poll_interval,
        chat,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        self.api = api
        self.name = name
        self.document_text = document_text
        self.question = question
        self.marker = marker
        self.parse_timeout = parse_timeout
        self.poll_interval = poll_interval
        self.chat = chat
        self.clock = clock
        self.sleep = sleep
        self.steps = []
        self.failed_step = None
        self.diagnosis = None
        self.created = dict.fromkeys(("dataset_id", "document_id", "chat_id", "session_id"))
        self.cleanup = {"deleted": [], "left": []}

    def run(self):
        try:
            for name in STEPS[:-1]:
                if name in CHAT_STEPS and not self.chat:
                    self.record(name, SKIP, 0.0, "chat: false")
                else:
                    self.step(name, getattr(self, name))
        finally:
            self.step("cleanup", self.clean_up, always=True)
            if self.cleanup["left"] and self.failed_step != "cleanup":
                self.diagnosis += "; the check also left %s in RAGFlow" % ", ".join(self.cleanup["left"])
        return {
            "changed": False,
            "passed": self.failed_step is None,
            "steps": self.steps,
            "failed_step": self.failed_step,
            "diagnosis": self.diagnosis,
            "created": self.created,
            "cleanup": self.cleanup,
            "api_generation": self.api.generation,
        }

    def record(self, name, verdict, seconds, detail):
        self.steps.append({"name": name, "verdict": verdict, "seconds": round(seconds, 3), "detail": detail})

    def step(self, name, action, always=False):
        if self.failed_step and not always:
            self.record(name, SKIP, 0.0, "skipped: %s failed" % self.failed_step)
            return
        started = self.clock()
        diagnosis = None
        try:
            verdict, detail = action()
        except StepFailed as exc:
            verdict, detail, diagnosis = FAIL, exc.detail, exc.diagnosis
        except RagflowError as exc:
            verdict, detail, diagnosis = FAIL, str(exc), self.diagnose(name, exc)
        self.record(name, verdict, self.clock() - started, detail)
        if verdict == FAIL and self.failed_step is None:
            self.failed_step = name
            self.diagnosis = self.with_health(diagnosis or HINTS[name] % detail)

    def diagnose(self, name, exc):
        """The diagnosis of a refusal that is not the step's own business; None for the step's hint."""
        if isinstance(exc, ApiKeyRefused):
            return "the API key is wrong: %s; %s" % (exc, KEY_HINT)
        if isinstance(exc, Unanswered) and "timed out" in str(exc):
            return (
                "RAGFlow did not answer within timeout=%s s during %s: %s; raise timeout (for a slow chat model) "
                "or check the ragflow container log" % (self.api.timeout, name, exc)
            )
        if isinstance(exc, Unanswered):
            return "RAGFlow stopped answering during %s: %s; check that the ragflow container runs" % (name, exc)
        return None

    def with_health(self, diagnosis):
        unhealthy = self.api.unhealthy()
        if not unhealthy:
            return diagnosis
        return "%s (RAGFlow's healthz reports %s)" % (
            diagnosis,
            ", ".join("%s=%s" % (key, self.api.health[key]) for key in unhealthy),
        )

    # The steps: each returns (verdict, detail) or raises.
    def create_dataset(self):
        data = self.api.call("create dataset", "POST", "/api/v1/datasets", {"name": self.name, "chunk_method": "naive"})
        dataset = expect(data, dict, "a dataset", "create dataset")
        if not dataset.get("id"):
            raise StepFailed("create dataset: RAGFlow answered without a dataset id: %s" % short(repr(data)))
        self.created["dataset_id"] = dataset["id"]
        model = dataset.get("embedding_model") or "the tenant's default"
        return PASS, "dataset %s (%s), embedding model %s" % (dataset["id"], self.name, model)

    def upload_document(self):
        filename = self.name + ".txt"
        data = self.api.upload(
            "upload document",
            "/api/v1/datasets/%s/documents" % self.created["dataset_id"],
            filename,
            self.document_text,
        )
        documents = expect(data, list, "the uploaded document", "upload document")
        if not documents or not isinstance(documents[0], dict) or not documents[0].get("id"):
            raise StepFailed("upload document: RAGFlow answered without a document id: %s" % short(repr(data)))
        self.created["document_id"] = documents[0]["id"]
        return PASS, "document %s (%s, %d bytes)" % (
            documents[0]["id"],
            filename,
            len(self.document_text.encode("utf-8")),
        )

    def start_parsing(self):
        self.api.call(
            "start parsing",
            "POST",
            "/api/v1/datasets/%s/chunks" % self.created["dataset_id"],
            {"document_ids": [self.created["document_id"]]},
        )
        return PASS, "parsing of document %s started" % self.created["document_id"]

    def document(self):
        path = "/api/v1/datasets/%s/documents?id=%s" % (
            quote(self.created["dataset_id"], safe=""),
            quote(self.created["document_id"], safe=""),
        )
        data = expect(self.api.call("read document", "GET", path), dict, "a document list", "read document")
        for document in data.get("docs") or []:
            if isinstance(document, dict) and document.get("id") == self.created["document_id"]:
                return document
        raise StepFailed("read document: RAGFlow does not list document %s" % self.created["document_id"])

    def wait_parsed(self):
        deadline = self.clock() + self.parse_timeout
        polls = 0
        while True:
            document = self.document()
            polls += 1
            run, progress = document.get("run"), document.get("progress")
            message = last_progress_line(document.get("progress_msg"))
            if run == RUN_DONE:
                chunks = document.get("chunk_count") or 0
                if chunks < 1:
                    raise StepFailed(
                        "run DONE but 0 chunks: %s" % message,
                        "the document parsed into no chunks: %s; check the ragflow-cpu/ragflow-gpu container log"
                        % message,
                    )
                return PASS, "run DONE after %d polls: %d chunks, %s tokens" % (
                    polls,
                    chunks,
                    document.get("token_count", "?"),
                )
            if run in RUN_FAILED:
                raise StepFailed("run %s, progress %s: %s" % (run, progress, message), HINTS["wait_parsed"] % message)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return self.parse_timed_out(run, progress, message)
            self.sleep(min(self.poll_interval, remaining))

    def parse_timed_out(self, run, progress, message):
        detail = "not parsed within %s s: last run %s, progress %s: %s" % (self.parse_timeout, run, progress, message)
        if run == "UNSTART" or not progress:
            hint = "no task executor took the document up"
        else:
            hint = "parsing is slow or stuck"
        raise StepFailed(
            detail,
            "the document was not parsed within %s s (last run %s, progress %s: %s): %s; check the "
            "ragflow-cpu/ragflow-gpu container log and redis, or raise parse_timeout"
            % (self.parse_timeout, run, progress, message, hint),
        )

    def retrieval(self):
        data = self.api.call(
            "retrieval",
            "POST",
            "/api/v1/retrieval",
            {
                "question": self.question,
                "dataset_ids": [self.created["dataset_id"]],
                "document_ids": [self.created["document_id"]],
            },
        )
        chunks = [
            chunk for chunk in expect(data, dict, "chunks", "retrieval").get("chunks") or [] if isinstance(chunk, dict)
        ]
        if self.marker.lower() in self.document_text.lower():
            wanted = "a chunk with the marker %s" % self.marker
            hits = [chunk for chunk in chunks if self.marker.lower() in str(chunk.get("content", "")).lower()]
        else:
            wanted = "a chunk of document %s" % self.created["document_id"]
            hits = [chunk for chunk in chunks if chunk.get("document_id") == self.created["document_id"]]
        if not hits:
            raise StepFailed("%d chunks returned, none is %s" % (len(chunks), wanted))
        best = hits[0]
        return PASS, "%d chunks returned; rank %d is %s (similarity %s)" % (
            len(chunks),
            chunks.index(best) + 1,
            wanted,
            best.get("similarity"),
        )

    def create_chat(self):
        data = self.api.call(
            "create chat", "POST", "/api/v1/chats", {"name": self.name, "dataset_ids": [self.created["dataset_id"]]}
        )
        chat = expect(data, dict, "a chat", "create chat")
        if not chat.get("id"):
            raise StepFailed("create chat: RAGFlow answered without a chat id: %s" % short(repr(data)))
        self.created["chat_id"] = chat["id"]
        return PASS, "chat assistant %s (%s)" % (chat["id"], self.name)

    def create_session(self):
        data = self.api.call(
            "create session", "POST", "/api/v1/chats/%s/sessions" % self.created["chat_id"], {"name": self.name}
        )
        session = expect(data, dict, "a session", "create session")
        if not session.get("id"):
            raise StepFailed("create session: RAGFlow answered without a session id: %s" % short(repr(data)))
        self.created["session_id"] = session["id"]
        return PASS, "session %s" % session["id"]

    def ask(self):
        body = {"question": self.question, "stream": False, "session_id": self.created["session_id"]}
        if self.api.generation == "v0.27":
            body["chat_id"] = self.created["chat_id"]
            path = "/api/v1/chat/completions"
        else:
            path = "/api/v1/chats/%s/completions" % self.created["chat_id"]
        data = expect(self.api.call("ask", "POST", path, body), dict, "an answer", "ask")
        answer = data.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise StepFailed("the answer is empty: %s" % short(repr(data)))
        error = answer_error(answer)
        if error:
            raise StepFailed("RAGFlow reports an error in the answer: %s" % short(error))
        reference = data.get("reference") if isinstance(data.get("reference"), dict) else {}
        cited = len(reference.get("chunks") or [])
        mentions = "mentions" if self.marker.lower() in answer.lower() else "does not mention"
        return PASS, "the answer %s the marker and cites %d chunk%s: %s" % (
            mentions,
            cited,
            "" if cited == 1 else "s",
            short(answer),
        )

    def clean_up(self):
        chat_id, dataset_id = self.created["chat_id"], self.created["dataset_id"]
        if not chat_id and not dataset_id:
            return SKIP, "nothing was created"
        reasons = []
        # Only ever with one id: an empty id list deletes every chat (v0.24) or dataset (v0.24, ids null).
        for kind, ident, path in (("chat", chat_id, "/api/v1/chats"), ("dataset", dataset_id, "/api/v1/datasets")):
            if not ident:
                continue
            label = "%s %s" % (kind, ident)
            try:
                data = self.api.call("delete %s" % kind, "DELETE", path, {"ids": [ident]})
                # v0.27 counts what it deleted; v0.24 answers code 0 without data.
                if isinstance(data, dict) and data.get("success_count", 1) < 1:
                    raise RagflowError("delete %s: RAGFlow deleted nothing: %s" % (kind, short(repr(data))))
            except RagflowError as exc:
                self.cleanup["left"].append(label)
                reasons.append(str(exc))
            else:
                self.cleanup["deleted"].append(label)
        deleted = "deleted %s" % (", ".join(self.cleanup["deleted"]) or "nothing")
        if reasons:
            raise StepFailed("%s; left %s: %s" % (deleted, ", ".join(self.cleanup["left"]), "; ".join(reasons)))
        return PASS, deleted + (" (with its document)" if self.created["document_id"] else "")
