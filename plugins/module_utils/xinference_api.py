# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Xinference's RESTful API (4.x), the calls that manage one model and probe it.

Every error answer is {"detail": "..."}; the supervisor prefixes what an actor raised with
"[address=..., pid=...]". Describe answers 400 "Model not found" for an unknown uid (not 404) and
503 while the model loads. A worker that died leaves calls to its models answering 500
"[Errno 111] Connect call failed" until the supervisor drops it or it rejoins.
"""

from __future__ import annotations

from urllib.parse import quote

from ansible_collections.llmops.ragstack.plugins.module_utils.rest import (
    Unreachable,
    json_request,
    open_json_request,
    parse_json,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference import XinferenceError, detail_of

PROBE_TEXT = "ping"


def xinference_connection_argument_spec():
    """The options of every module that calls Xinference (doc fragment llmops.ragstack.xinference)."""
    return dict(
        endpoint=dict(type="str", required=True),
        api_key=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
    )


class NoAnswer(XinferenceError):
    """Xinference did not answer at all; `reason` is what the transport said (refused, timeout...)."""

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


class CredentialsRefused(XinferenceError):
    """Xinference answered 401 to the api_key (or to its absence)."""


class XinferenceApi:
    """One Xinference endpoint (the supervisor's, in a cluster)."""

    def __init__(self, endpoint, api_key=None, timeout=30, validate_certs=True):
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.validate_certs = validate_certs

    def headers(self):
        return {"Authorization": "Bearer %s" % self.api_key} if self.api_key else {}

    def no_answer(self, method, path, timeout, exc):
        return NoAnswer(
            "Xinference is not reachable at %s (%s %s, timeout=%ss): %s"
            % (self.endpoint, method, path, timeout, exc.reason),
            exc.reason,
        )

    def answer(self, status, raw):
        """The parsed error or JSON body; CredentialsRefused for a 401."""
        payload = parse_json(raw, not_json={"detail": raw.decode("utf-8", "replace")[:300]})
        if status == 401:
            raise CredentialsRefused(
                "Xinference at %s refused the credentials (%s): set api_key to a valid key%s"
                % (
                    self.endpoint,
                    detail_of(status, payload),
                    "" if self.api_key else " (none was given, and the server requires one)",
                )
            )
        return payload

    def request(self, method, path, body=None):
        """(status, parsed JSON or None) for any HTTP status but 401; XinferenceError when unreachable."""
        try:
            status, _headers, raw = json_request(
                self.endpoint + path,
                method,
                body,
                self.headers(),
                timeout=self.timeout,
                validate_certs=self.validate_certs,
            )
        except Unreachable as exc:
            raise self.no_answer(method, path, self.timeout, exc) from exc
        return status, self.answer(status, raw)

    def stream(self, path, body, timeout=None):
        """POST `body` and leave a 200 answer unread, for reading server-sent events as they arrive.

        (200, None, response) or (status, parsed error body, None); the caller closes the response.
        Each read of it waits at most `timeout` seconds (default: the API's) and may raise what a
        socket raises. NoAnswer and CredentialsRefused as for request()."""
        timeout = timeout or self.timeout
        try:
            status, _headers, response = open_json_request(
                self.endpoint + path,
                "POST",
                body,
                self.headers(),
                timeout=timeout,
                validate_certs=self.validate_certs,
            )
        except Unreachable as exc:
            raise self.no_answer("POST", path, timeout, exc) from exc
        if status == 200:
            return status, None, response
        try:
            raw = response.read()
        finally:
            response.close()
        return status, self.answer(status, raw), None

    def model_path(self, model_uid):
        return "/v1/models/%s" % quote(model_uid, safe="")

    def list_models(self):
        """{uid: description} of the models /v1/models lists (those the supervisor holds as ready)."""
        status, payload = self.request("GET", "/v1/models")
        if status != 200 or not isinstance(payload, dict):
            raise XinferenceError("listing models: %s" % detail_of(status, payload))
        return {entry["id"]: entry for entry in payload.get("data") or [] if "id" in entry}

    def describe(self, model_uid):
        return self.request("GET", self.model_path(model_uid))

    def launch(self, spec):
        """POST without waiting: the caller follows the load through instances and progress."""
        return self.request("POST", "/v1/models?wait_ready=false", spec)

    def terminate(self, model_uid):
        return self.request("DELETE", self.model_path(model_uid))

    def instance(self, model_uid):
        """The launch record of a uid (status CREATING/READY/ERROR and per-replica errors), or None."""
        status, payload = self.request("GET", "/v1/models/instances?model_uid=%s" % quote(model_uid, safe=""))
        if status != 200:
            raise XinferenceError("reading the launch status of %s: %s" % (model_uid, detail_of(status, payload)))
        return payload[-1] if isinstance(payload, list) and payload else None

    def progress(self, model_uid):
        """(fraction loaded, what it is doing) of a launch; (None, None) when the server cannot tell."""
        status, payload = self.request("GET", self.model_path(model_uid) + "/progress")
        if status != 200 or not isinstance(payload, dict):
            return None, None
        stage = payload.get("stage")
        replicas = payload.get("replicas") or []
        info = replicas[0].get("info") if replicas and isinstance(replicas[0], dict) else None
        return payload.get("progress"), info or stage

    def engines(self, model_name, model_type):
        """Engine names the server can run `model_name` on; [] for a name it does not know."""
        path = "/v1/engines/%s" % quote(model_name, safe="")
        if model_type != "LLM":
            path = "/v1/engines/%s/%s" % (quote(model_type, safe=""), quote(model_name, safe=""))
        status, payload = self.request("GET", path)
        if status != 200 or not isinstance(payload, dict):
            return []
        return sorted(payload)

    def probe(self, model_uid, model_type, abilities):
        """None when the model answers one minimal request of its kind, else what went wrong."""
        if model_type == "embedding":
            path, body = "/v1/embeddings", {"model": model_uid, "input": PROBE_TEXT}
        elif model_type == "rerank":
            path = "/v1/rerank"
            body = {"model": model_uid, "query": PROBE_TEXT, "documents": [PROBE_TEXT, "pong"]}
        elif model_type == "LLM" and "chat" in abilities:
            path = "/v1/chat/completions"
            body = {"model": model_uid, "messages": [{"role": "user", "content": PROBE_TEXT}], "max_tokens": 1}
        elif model_type == "LLM":
            path, body = "/v1/completions", {"model": model_uid, "prompt": PROBE_TEXT, "max_tokens": 1}
        else:
            # Image, audio and video models have no request cheap enough to send as a check:
            # a successful describe is all the health there is to see.
            return None
        status, payload = self.request("POST", path, body)
        if status == 200:
            return None
        return "%s probe %s answered %s" % (model_type, path, detail_of(status, payload))
