# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RAGFlow's HTTP API as a token store, for both URL layouts RAGFlow has had.

RAGFlow v0.27 serves its web API under /api/v1 (POST /api/v1/auth/login, /api/v1/system/tokens);
up to v0.24 it was /v1/<app>/... (POST /v1/user/login, /v1/system/new_token, ...). Which one a
server speaks is read from where its health check answers. Every JSON answer is an envelope
{code, data, message}; code 0 is success. Login sends the password RSA-encrypted with the server's
public key and gets a session back in the Authorization response header.
"""

from __future__ import annotations

import base64
import os
import traceback

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.rest import (
    ProxyFailed,
    Unreachable,
    json_request,
    multipart_request,
    parse_json,
)

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding
except ImportError:
    # Modules report it with missing_required_lib() before they log in.
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None

CODE_SUCCESS = 0
CODE_AUTHENTICATION_ERROR = 109

# The key pair RAGFlow ships in conf/public.pem and conf/private.pem; its web frontend embeds the
# same public key (web/src/utils), so every stock deployment accepts passwords encrypted with it.
RAGFLOW_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArq9XTUSeYr2+N1h3Afl/
z8Dse/2yD0ZGrKwx+EEEcdsBLca9Ynmx3nIB5obmLlSfmskLpBo0UACBmB5rEjBp
2Q2f3AG3Hjd4B+gNCG6BDaawuDlgANIhGnaTLrIqWrrcm4EMzJOnAOI1fgzJRsOO
UEfaS318Eq9OVO3apEyCCt0lOQK6PuksduOjVxtltDav+guVAA068NrPYmRNabVK
RNLJpL8w4D44sfth5RvZ3q9t+6RTArpEtc5sh5ChzvqPOzKGMXW83C95TxmXqpbK
6olN4RevSfVjEAgCydH6HN6OhtOQEcnrU97r9H0iZOWwbw3pVrZiUkuRD1R56Wzs
2wIDAQAB
-----END PUBLIC KEY-----
"""

API_LAYOUTS = {
    "v0.27": {
        "healthz": "/api/v1/system/healthz",
        "login": "/api/v1/auth/login",
        "change_password": ("PATCH", "/api/v1/users/me"),
        "list": ("GET", "/api/v1/system/tokens"),
        "create": ("POST", "/api/v1/system/tokens"),
        "delete": ("DELETE", "/api/v1/system/tokens/%s"),
    },
    # Also v0.25 and v0.26: they serve the health check under /api/v1 too, but log in here.
    "v0.24": {
        "healthz": "/v1/system/healthz",
        "login": "/v1/user/login",
        "change_password": ("POST", "/v1/user/setting"),
        "list": ("GET", "/v1/system/token_list"),
        "create": ("POST", "/v1/system/new_token"),
        "delete": ("DELETE", "/v1/system/token/%s"),
    },
}
# The factory password of RAGFlow's first user, admin@ragflow.io (admin/server/auth.py init_default_admin).
FACTORY_ADMIN_PASSWORD = "admin"


def login_argument_spec(timeout=30, api_key=True):
    """The options of every module that authenticates to RAGFlow as a user: doc fragments
    llmops.ragstack.ragflow (and its API_KEY part with `api_key`) and llmops.ragstack.proxy, plus
    base_url and timeout, which each module describes for its own use."""
    spec = dict(
        base_url=dict(type="str"),
        email=dict(type="str", required=True),
        password=dict(type="str", no_log=True),
        public_key=dict(type="str"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=timeout),
        use_proxy=dict(type="bool", default=False),
    )
    if api_key:
        spec["api_key"] = dict(type="str", no_log=True)
    return spec


def client_from_params(params):
    return RagflowApi(params["base_url"], params["timeout"], params["validate_certs"], params["use_proxy"])


def load_public_key(public_key):
    """PEM text as given, or read from a file when `public_key` is a path; the stock key when empty."""
    if not public_key:
        return RAGFLOW_PUBLIC_KEY
    if "-----BEGIN" in public_key:
        return public_key
    try:
        with open(os.path.expanduser(public_key)) as handle:
            return handle.read()
    except OSError as exc:
        raise RagflowError("cannot read public_key file %s: %s" % (public_key, exc.strerror)) from exc


def encrypt_password(password, public_key_pem):
    """What RAGFlow's frontend sends: base64(RSA-PKCS#1 v1.5(base64(password)))."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    except ValueError as exc:
        raise RagflowError("public_key is not a PEM RSA public key: %s" % exc) from exc
    plaintext = base64.b64encode(password.encode("utf-8"))
    return base64.b64encode(key.encrypt(plaintext, padding.PKCS1v15())).decode("ascii")


def unwrap(envelope, action):
    """The `data` of a RAGFlow envelope, or RagflowError saying what the server refused."""
    if not isinstance(envelope, dict) or "code" not in envelope:
        raise RagflowError(
            "%s: the answer is not a RAGFlow envelope {code, data, message}: %.200r" % (action, envelope)
        )
    code = envelope["code"]
    if code == CODE_SUCCESS:
        return envelope.get("data")
    # One line: RAGFlow joins its test-call failures with newlines ("\nFail to access ...").
    message = " ".join(str(envelope.get("message") or "no message").split())
    if code == CODE_AUTHENTICATION_ERROR:
        raise RagflowError("%s: RAGFlow refused the credentials (code 109): %s" % (action, message))
    raise RagflowError("%s: RAGFlow answered code %s: %s" % (action, code, message))


class RagflowApi:
    """The one RAGFlow client: detects the API generation, authenticates (login or API key), and sends
    every request through one path: request -> envelope -> unwrap. Also the HTTP token store."""

    def __init__(self, base_url, timeout=30, validate_certs=True, use_proxy=False):
        self.base_url = (base_url or "").rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.use_proxy = use_proxy
        self.layout = None
        self.generation = None
        self.session = None
        self.tenant_id = None
        self.health = {}

    def _request(self, method, path, body=None):
        """(status, headers, parsed JSON or None) for any HTTP status; RagflowError when unreachable."""
        headers = {"Authorization": self.session} if self.session else {}
        try:
            status, response_headers, raw = json_request(
                self.base_url + path,
                method,
                body,
                headers,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                use_proxy=self.use_proxy,
            )
        except Unreachable as exc:
            raise self._no_answer(exc) from exc
        return status, response_headers, parse_json(raw)

    def _no_answer(self, exc):
        """The error of a request that got no answer: a proxy's failure names the proxy itself."""
        if isinstance(exc, ProxyFailed):
            return RagflowError(str(exc.reason))
        return RagflowError("RAGFlow is not reachable at %s: %s" % (self.base_url, exc.reason))

    def _serves(self, path):
        """Whether the server routes `path` at all: an unrouted path is 404, a GET of a POST-only route 405."""
        status, _headers, _body = self._request("GET", path)
        return status != 404

    def probe(self):
        """Pick the URL layout by the routes the server really serves (its health check and its login:
        v0.25 and v0.26 answer /api/v1/system/healthz yet log in at /v1/user/login); keep the health
        report in `health` ({component: "ok"/"nok"}) without judging it. Returns the generation."""
        for generation, layout in API_LAYOUTS.items():
            status, _headers, health = self._request("GET", layout["healthz"])
            if status == 404:
                continue
            if not isinstance(health, dict):
                raise RagflowError(
                    "%s%s answered HTTP %s without a health report: is base_url RAGFlow's API address?"
                    % (self.base_url, layout["healthz"], status)
                )
            if not self._serves(layout["login"]):
                continue
            self.generation = generation
            self.layout = layout
            self.health = {key: value for key, value in health.items() if isinstance(value, str)}
            return generation
        raise RagflowError(
            "no RAGFlow API at %s (tried %s): is base_url RAGFlow's API address?"
            % (
                self.base_url,
                " and ".join("%s with %s" % (layout["healthz"], layout["login"]) for layout in API_LAYOUTS.values()),
            )
        )

    def detect(self):
        """probe(), insisting the database is up."""
        generation = self.probe()
        # Users and tokens live in RAGFlow's database; other components (doc engine, storage) may be
        # down without stopping user and token management, so only the database must be healthy.
        if self.health.get("db") != "ok":
            report = ", ".join("%s=%s" % item for item in sorted(self.health.items()))
            raise RagflowError("RAGFlow at %s is not ready, its database is not ok: %s" % (self.base_url, report))
        return generation

    def authenticate(self, params):
        """Detect the generation, then use O(api_key) when given, else log in as O(email); returns the generation.

        Both generations accept an API key wherever a login session is accepted (login_required tries
        the key after the session), and a login replaces the user's session: it signs the user out of
        the web UI. So a key, once there is one, is the better credential."""
        generation = self.detect()
        if params.get("api_key"):
            self.session = "Bearer %s" % params["api_key"]
        else:
            if not params.get("password"):
                raise RagflowError("give password (or api_key) to authenticate to RAGFlow at %s" % self.base_url)
            self.login(params["email"], params["password"], params.get("public_key"))
        return generation

    def login_envelope(self, email, password, public_key):
        """(envelope, session header) of a login as the web UI does it, without judging the envelope."""
        encrypted = encrypt_password(password, load_public_key(public_key))
        status, headers, envelope = self._request("POST", self.layout["login"], {"email": email, "password": encrypted})
        if not isinstance(envelope, dict):
            envelope = {"code": status, "message": "HTTP %s without a RAGFlow envelope" % status}
        return envelope, headers.get("Authorization")

    def login(self, email, password, public_key):
        envelope, session = self.login_envelope(email, password, public_key)
        unwrap(envelope, "login")
        if not session:
            raise RagflowError("login: RAGFlow accepted %s but sent no Authorization header" % email)
        self.session = session

    def call(self, action, method, path, body=None):
        """The `data` of RAGFlow's answer to one request, or RagflowError naming `action`."""
        status, _headers, envelope = self._request(method, path, body)
        if envelope is None:
            raise RagflowError("%s: RAGFlow answered HTTP %s without JSON" % (action, status))
        return unwrap(envelope, action)

    def upload(self, path, filename, content):
        """(status, parsed JSON or None) of POSTing one file as the multipart field `file`, as RAGFlow's
        upload endpoints take it."""
        try:
            status, _headers, raw = multipart_request(
                self.base_url + path,
                {"file": (filename, content.encode("utf-8"), "text/plain")},
                {"Authorization": self.session} if self.session else {},
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                use_proxy=self.use_proxy,
            )
        except Unreachable as exc:
            raise self._no_answer(exc) from exc
        return status, parse_json(raw)

    def _layout_call(self, action, what, *path_args, body=None):
        method, path = self.layout[action]
        return self.call(what, method, path % path_args if path_args else path, body)

    def change_password(self, old_password, new_password, public_key):
        """Change the logged-in user's password through RAGFlow's own settings endpoint (PATCH
        /api/v1/users/me on v0.27, POST /v1/user/setting up to v0.25): both passwords RSA-encrypted."""
        key = load_public_key(public_key)
        body = {"password": encrypt_password(old_password, key), "new_password": encrypt_password(new_password, key)}
        self._layout_call("change_password", "change password", body=body)

    def list_tokens(self):
        rows = self._layout_call("list", "list tokens") or []
        if rows:
            self.tenant_id = rows[0].get("tenant_id")
        return rows

    def create_token(self):
        row = self._layout_call("create", "create tokens")
        self.tenant_id = row.get("tenant_id") or self.tenant_id
        return row["token"]

    def delete_token(self, token):
        self._layout_call("delete", "delete tokens", token)
