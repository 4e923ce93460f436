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
from ansible_collections.llmops.ragstack.plugins.module_utils.rest import Unreachable, json_request, parse_json

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
        "list": ("GET", "/api/v1/system/tokens"),
        "create": ("POST", "/api/v1/system/tokens"),
        "delete": ("DELETE", "/api/v1/system/tokens/%s"),
    },
    "v0.24": {
        "healthz": "/v1/system/healthz",
        "login": "/v1/user/login",
        "list": ("GET", "/v1/system/token_list"),
        "create": ("POST", "/v1/system/new_token"),
        "delete": ("DELETE", "/v1/system/token/%s"),
    },
}


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
    message = envelope.get("message") or "no message"
    if code == CODE_AUTHENTICATION_ERROR:
        raise RagflowError("%s: RAGFlow refused the credentials (code 109): %s" % (action, message))
    raise RagflowError("%s: RAGFlow answered code %s: %s" % (action, code, message))


class RagflowApi:
    """Token store over HTTP for the tenant of the user who logs in."""

    def __init__(self, base_url, timeout=30, validate_certs=True):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
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
                self.base_url + path, method, body, headers, timeout=self.timeout, validate_certs=self.validate_certs
            )
        except Unreachable as exc:
            raise RagflowError("RAGFlow is not reachable at %s: %s" % (self.base_url, exc.reason)) from exc
        return status, response_headers, parse_json(raw)

    def probe(self):
        """Pick the URL layout from where /system/healthz answers; keep its report in `health`
        ({component: "ok"/"nok"}) without judging it. Returns the generation."""
        for generation, layout in API_LAYOUTS.items():
            status, _headers, health = self._request("GET", layout["healthz"])
            if status == 404:
                continue
            if not isinstance(health, dict):
                raise RagflowError(
                    "%s%s answered HTTP %s without a health report: is base_url RAGFlow's API address?"
                    % (self.base_url, layout["healthz"], status)
                )
            self.generation = generation
            self.layout = layout
            self.health = {key: value for key, value in health.items() if isinstance(value, str)}
            return generation
        raise RagflowError(
            "no RAGFlow health check at %s (tried %s): is base_url RAGFlow's API address?"
            % (self.base_url, " and ".join(layout["healthz"] for layout in API_LAYOUTS.values()))
        )

    def detect(self):
        """probe(), insisting the database is up."""
        generation = self.probe()
        # Tokens live in RAGFlow's database; other components (doc engine, storage) may be
        # down without stopping token management, so only the database must be healthy.
        if self.health.get("db") != "ok":
            report = ", ".join("%s=%s" % item for item in sorted(self.health.items()))
            raise RagflowError("RAGFlow at %s is not ready, its database is not ok: %s" % (self.base_url, report))
        return generation

    def sign_in(self, email, password, public_key):
        """Detect the API generation, then log in as the web UI does; returns the generation."""
        generation = self.detect()
        self.login(email, encrypt_password(password, load_public_key(public_key)))
        return generation

    def login(self, email, encrypted_password):
        status, headers, envelope = self._request(
            "POST", self.layout["login"], {"email": email, "password": encrypted_password}
        )
        unwrap(envelope if envelope is not None else {"code": status, "message": "HTTP %s" % status}, "login")
        session = headers.get("Authorization")
        if not session:
            raise RagflowError("login: RAGFlow accepted %s but sent no Authorization header" % email)
        self.session = session

    def _call(self, action, *path_args):
        method, path = self.layout[action]
        status, _headers, envelope = self._request(method, path % path_args if path_args else path)
        if envelope is None:
            raise RagflowError("%s tokens: RAGFlow answered HTTP %s without JSON" % (action, status))
        return unwrap(envelope, "%s tokens" % action)

    def list_tokens(self):
        rows = self._call("list") or []
        if rows:
            self.tenant_id = rows[0].get("tenant_id")
        return rows

    def create_token(self):
        row = self._call("create")
        self.tenant_id = row.get("tenant_id") or self.tenant_id
        return row["token"]

    def delete_token(self, token):
        self._call("delete", token)
