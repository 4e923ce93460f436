# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Xinference's RESTful API (4.x), the calls that manage one model and probe it.

Every error answer is {"detail": "..."}; the supervisor prefixes what an actor raised with
"[address=..., pid=...]". Describe answers 400 "Model not found" for an unknown uid (not 404) and
503 while the model loads. A worker that died leaves calls to its models answering 500
"[Errno 111] Connect call failed" until the supervisor drops it or it rejoins.

Authentication (Xinference 4.1, api/oauth2/advanced/): advanced auth is on unless the server runs
with XINFERENCE_AUTH_ADVANCED=0, and GET /v1/cluster/auth (no credential) says which. A user logs in
with POST /token, a JSON body {"username", "password"} (routes.py advanced_login), and gets a JWT
valid for XINFERENCE_ACCESS_TOKEN_EXPIRE_MINUTES (30 by default). An API key (sk-...) carries only
the models:read and models:list scopes: launching, terminating (models:write) and listing workers
(admin) answer it 403 "API keys can only access model query and inference endpoints"
(auth_service.py). 401 and 403 are never retried: waiting does not grant a scope.
"""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import quote

from ansible_collections.llmops.ragstack.plugins.module_utils.rest import (
    ProxyFailed,
    Unreachable,
    json_request,
    open_json_request,
    parse_json,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import XinferenceError, detail_of

# What a module does with the server, so what credential a refusal asks for.
MANAGE = "manage"
READ = "read"
# Log in again this long before the token's own expiry, so that no request carries a token that
# expires on the way.
TOKEN_MARGIN_S = 60
IDENTITY_PATH = "/v1/cluster/auth"
# The scope each call needs (api/routers/models.py, admin.py); models:list and models:read are all
# an API key can have.
SCOPES = (
    ("POST", "/v1/models", "models:write"),
    ("DELETE", "/v1/models/", "models:write"),
    ("GET", "/v1/workers", "admin"),
)


def xinference_connection_argument_spec():
    """The options of every module that calls Xinference (doc fragments llmops.ragstack.xinference
    and llmops.ragstack.proxy); use with XINFERENCE_CONNECTION_RULES."""
    return dict(
        endpoint=dict(type="str", required=True),
        api_key=dict(type="str", no_log=True),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        use_proxy=dict(type="bool", default=False),
    )


# AnsibleModule keyword arguments that go with xinference_connection_argument_spec().
XINFERENCE_CONNECTION_RULES = dict(
    mutually_exclusive=[("api_key", "username")],
    required_together=[("username", "password")],
)


def api_from_params(params, purpose):
    """The XinferenceApi of a module's connection options."""
    return XinferenceApi(
        params["endpoint"],
        params["api_key"],
        params["timeout"],
        params["validate_certs"],
        username=params["username"],
        password=params["password"],
        use_proxy=params["use_proxy"],
        purpose=purpose,
    )


class NoAnswer(XinferenceError):
    """Xinference did not answer at all; `reason` is what the transport said (refused, timeout...).
    `through_proxy`: the request went through a proxy from the environment, and the message names it."""

    def __init__(self, message, reason, through_proxy=False):
        super().__init__(message)
        self.reason = reason
        self.through_proxy = through_proxy


class NotXinference(XinferenceError):
    """Something answered at the endpoint, but not as Xinference does."""


class CredentialsRefused(XinferenceError):
    """Xinference refused the credential (401) or its scope (403); never worth retrying."""


def what_answered(status, headers, raw):
    """A few words on an answer that is not Xinference's: status, type, an HTML page's title; never the page."""
    content_type = (headers.get("Content-Type") if headers else None) or "no Content-Type"
    text = raw.decode("utf-8", "replace") if raw else ""
    title = re.search(r"<title[^>]*>([^<]{0,80})", text, re.IGNORECASE)
    if title:
        return "HTTP %s %s, an HTML page titled %r" % (status, content_type.split(";")[0], title.group(1).strip())
    if "<html" in text.lower() or "<!doctype" in text.lower():
        return "HTTP %s %s, an HTML page" % (status, content_type.split(";")[0])
    payload = parse_json(raw)
    if isinstance(payload, dict):
        return "HTTP %s %s with the keys %s" % (status, content_type.split(";")[0], ", ".join(sorted(payload)[:6]))
    return "HTTP %s %s, %d bytes" % (status, content_type.split(";")[0], len(raw or b""))


def jwt_expiry(token):
    """The `exp` (seconds since the epoch) of a JWT, or None when it cannot be read."""
    try:
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def scope_of(method, path):
    for scope_method, prefix, scope in SCOPES:
        if method == scope_method and path.split("?")[0].startswith(prefix.rstrip("/") if method == "POST" else prefix):
            return scope
    return "models:read"


class XinferenceApi:
    """One Xinference endpoint (the supervisor's, in a cluster), as one credential."""

    def __init__(
        self,
        endpoint,
        api_key=None,
        timeout=30,
        validate_certs=True,
        *,
        username=None,
        password=None,
        use_proxy=False,
        purpose=READ,
        wall_clock=time.time,
    ):
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self.username = username
        self.password = password
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.use_proxy = use_proxy
        self.purpose = purpose
        self.wall_clock = wall_clock
        self.auth_on = None
        self.token = None
        self.token_expiry = None

    # --- transport ---------------------------------------------------------------------------

    def no_answer(self, method, path, timeout, exc):
        if isinstance(exc, ProxyFailed):
            return NoAnswer(str(exc), exc.reason, through_proxy=True)
        return NoAnswer(
            "Xinference is not reachable at %s (%s %s, timeout=%ss): %s"
            % (self.endpoint, method, path, timeout, exc.reason),
            exc.reason,
        )

    def send(self, method, path, body, headers, *, timeout=None, stream=False):
        """(status, response headers, raw body or, with `stream`, the unread response); NoAnswer."""
        timeout = timeout or self.timeout
        call = open_json_request if stream else json_request
        try:
            return call(
                self.endpoint + path,
                method,
                body,
                headers,
                timeout=timeout,
                validate_certs=self.validate_certs,
                use_proxy=self.use_proxy,
            )
        except Unreachable as exc:
            raise self.no_answer(method, path, timeout, exc) from exc

    # --- who answers, and as whom --------------------------------------------------------------

    def identify(self):
        """Make sure Xinference answers at the endpoint, and learn whether it requires credentials.

        GET /v1/cluster/auth needs no credential and answers {"auth": bool} (api/routers/admin.py);
        anything else (a web UI answering HTML to every path, another API) is not Xinference, and
        no later answer from it is trusted."""
        if self.auth_on is not None:
            return
        status, headers, raw = self.send("GET", IDENTITY_PATH, None, {})
        payload = parse_json(raw) if status == 200 else None
        if not isinstance(payload, dict) or not isinstance(payload.get("auth"), bool):
            raise NotXinference(
                "%s does not answer as Xinference: GET %s answered %s, where Xinference answers "
                '{"auth": true|false}; set endpoint to the address of Xinference\'s RESTful API '
                "(the supervisor's, port 9997 by default)"
                % (self.endpoint, IDENTITY_PATH, what_answered(status, headers, raw))
            )
        self.auth_on = payload["auth"]
        if self.auth_on and not (self.api_key or self.username):
            raise CredentialsRefused(
                "Xinference at %s has authentication on and no credential was given: %s"
                % (self.endpoint, self.credential_needed())
            )
        # Known before any call: Xinference never grants an API key models:write, so a module that
        # manages models fails now rather than on the day a model needs relaunching.
        if self.auth_on and self.api_key and self.purpose == MANAGE:
            raise CredentialsRefused(
                "Xinference at %s has authentication on, and an api_key may not launch or terminate models "
                "(API keys get only models:read and models:list): %s" % (self.endpoint, self.credential_needed())
            )

    def credential_needed(self, scope=None):
        if self.purpose == MANAGE or scope in ("models:write", "admin"):
            return (
                "set username and password of an Xinference user with the %s scope (the admin of "
                "POST /v1/admin/setup has all of them) instead of api_key"
                % (scope if scope in ("models:write", "admin") else "models:write")
            )
        return "set api_key to an API key of this server (POST /v1/admin/keys), or username and password of a user"

    def login(self):
        """A fresh access token for username/password (POST /token, JSON as the server reads it)."""
        status, _headers, raw = self.send("POST", "/token", {"username": self.username, "password": self.password}, {})
        payload = parse_json(raw, not_json={"detail": "an answer that is not JSON"})
        if status != 200 or not isinstance(payload, dict) or not payload.get("access_token"):
            raise CredentialsRefused(
                "Xinference at %s refused the login of user %s (%s): check username and password"
                % (self.endpoint, self.username, detail_of(status, payload))
            )
        if payload.get("must_change_password"):
            raise CredentialsRefused(
                "Xinference at %s wants user %s to change its password before anything else: change it "
                "(web UI, or PUT /v1/admin/users/{id}/password) and set the new one as password"
                % (self.endpoint, self.username)
            )
        self.token = payload["access_token"]
        expiry = jwt_expiry(self.token)
        # Without a readable expiry, assume the server's default lifetime (30 minutes).
        self.token_expiry = expiry if expiry is not None else self.wall_clock() + 30 * 60

    def headers(self):
        """The Authorization header of the credential, logging in when the token is (nearly) expired."""
        self.identify()
        if not self.auth_on:
            return {}
        if self.username:
            if self.token is None or self.wall_clock() > self.token_expiry - TOKEN_MARGIN_S:
                self.login()
            return {"Authorization": "Bearer %s" % self.token}
        return {"Authorization": "Bearer %s" % self.api_key}

    def refused(self, method, path, status, payload):
        """CredentialsRefused for a 401 or 403 answer to METHOD PATH."""
        detail = detail_of(status, payload)
        scope = scope_of(method, path)
        if status == 401:
            who = "user %s" % self.username if self.username else ("the api_key" if self.api_key else "no credential")
            return CredentialsRefused(
                "Xinference at %s refused the credentials of %s for %s %s (%s): %s"
                % (self.endpoint, who, method, path, detail, self.credential_needed(scope))
            )
        if self.api_key:
            return CredentialsRefused(
                "Xinference at %s refused %s %s to the api_key (%s): %s"
                % (self.endpoint, method, path, detail, self.credential_needed(scope))
            )
        return CredentialsRefused(
            "Xinference at %s refused %s %s to user %s (%s): grant the user the %s scope, or use the admin"
            % (self.endpoint, method, path, self.username, detail, scope)
        )

    def authorized(self, method, path, body, *, timeout=None, stream=False):
        """send() with the credential; once more with a fresh token when the token was refused.

        A 401 to a token the module believes valid means the server stopped honouring it early (a
        restart with a new secret, a password reset): one new login settles it. Any other 401 or
        403 is CredentialsRefused at once."""
        status, headers, answer = self.send(method, path, body, self.headers(), timeout=timeout, stream=stream)
        if status == 401 and self.username and self.auth_on:
            if stream:
                answer.close()
            self.token = None
            status, headers, answer = self.send(method, path, body, self.headers(), timeout=timeout, stream=stream)
        if status in (401, 403):
            raw = answer.read() if stream else answer
            if stream:
                answer.close()
            raise self.refused(method, path, status, parse_json(raw, not_json={"detail": "(not JSON)"}))
        return status, headers, answer

    # --- calls -------------------------------------------------------------------------------

    def request(self, method, path, body=None):
        """(status, parsed JSON or None) for any HTTP status but 401/403; XinferenceError when unreachable."""
        status, _headers, raw = self.authorized(method, path, body)
        return status, parse_json(raw, not_json={"detail": raw.decode("utf-8", "replace")[:300]})

    def stream(self, path, body, timeout=None):
        """POST `body` and leave a 200 answer unread, for reading server-sent events as they arrive.

        (200, None, response) or (status, parsed error body, None); the caller closes the response.
        Each read of it waits at most `timeout` seconds (default: the API's) and may raise what a
        socket raises. NoAnswer and CredentialsRefused as for request()."""
        status, _headers, response = self.authorized("POST", path, body, timeout=timeout, stream=True)
        if status == 200:
            return status, None, response
        try:
            raw = response.read()
        finally:
            response.close()
        return status, parse_json(raw, not_json={"detail": raw.decode("utf-8", "replace")[:300]}), None

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

    def unexpectedly_terminated(self):
        """The uids Xinference records as down because their worker failed (GET /metrics,
        xinference:model_unexpected_termination, refreshed every 15 s and cleared on relaunch);
        an empty set when the server exports no metrics (XINFERENCE_DISABLE_METRICS=1)."""
        try:
            status, _headers, raw = self.send("GET", "/metrics", None, {})
        except NoAnswer:
            return set()
        if status != 200:
            return set()
        return set(UNEXPECTED_TERMINATION.findall(raw.decode("utf-8", "replace")))


# One sample line: xinference:model_unexpected_termination{model_name="..",model_uid="..",replica_index="0"} 1.0
UNEXPECTED_TERMINATION = re.compile(
    r'^xinference:model_unexpected_termination\{[^}]*\bmodel_uid="((?:[^"\\]|\\.)*)"[^}]*\}\s+1(?:\.0)?\s*$',
    re.MULTILINE,
)
