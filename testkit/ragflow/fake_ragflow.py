"""A FAKE RAGFlow web API on 127.0.0.1, for testing the ragflow modules without a RAGFlow stack.

It follows RAGFlow's implementation at v0.27.0 and v0.24.0; UPSTREAM.md beside it names the upstream
file and line of every route and behaviour it serves. What the modules use:

- URL layouts: generation "v0.27" serves GET /api/v1/system/healthz, POST /api/v1/auth/login,
  GET/POST /api/v1/system/tokens and DELETE /api/v1/system/tokens/<token>; generation "v0.24" serves
  GET /v1/system/healthz, POST /v1/user/login, GET /v1/system/token_list, POST /v1/system/new_token
  and DELETE /v1/system/token/<token>. Any other path is HTTP 404.
- healthz: a bare JSON report {db, redis, doc_engine, storage, status} with "ok"/"nok", HTTP 500
  when anything is "nok".
- Every other answer is the envelope {code, data, message}. Login takes {email, password} where
  password is base64(RSA PKCS#1 v1.5(base64(plaintext))) under this fake's own key pair, generated
  per instance; an unknown email and a wrong password are code 109 (AUTHENTICATION_ERROR) with
  RAGFlow's messages, an undecryptable password is code 500. A good login returns the user and a
  JWT-shaped session in the Authorization response header.
- Users: add_user() is a registered user (it has an access_token, as registration sets one);
  add_factory_admin() is admin@ragflow.io / "admin" as a new RAGFlow's admin server creates it, with
  no access_token until it logs in.
- login_required (current_user): the session of the user's latest login (each login gives the user
  a new access_token, so older sessions stop working; a password change on v0.27 invalidates it), or
  an API key, "Bearer <key>" or bare, whose tenant_id is the id of a user with a non-empty
  access_token. Else HTTP 401 with code 401. A known path asked with another method is HTTP 405.
- Tokens: list and create work in the tenant the user owns, delete in the user's first tenant
  (tenants[0]); new tokens have RAGFlow's format and fields (tenant_id, token, beta, create_time,
  create_date, update_time, update_date; dialog_id and source null).
- Password change: PATCH /api/v1/users/me (v0.27) or POST /v1/user/setting (v0.24) with the old and
  new password RSA-encrypted; a wrong old password is code 109 "Password error!".

It keeps state in memory and logs every request in `requests` for assertions.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROUTES = {
    "v0.27": {
        ("GET", "/api/v1/system/healthz"): "healthz",
        ("POST", "/api/v1/auth/login"): "login",
        ("GET", "/api/v1/system/tokens"): "list_tokens",
        ("POST", "/api/v1/system/tokens"): "create_token",
        ("PATCH", "/api/v1/users/me"): "change_password",
    },
    "v0.24": {
        ("GET", "/v1/system/healthz"): "healthz",
        ("POST", "/v1/user/login"): "login",
        ("GET", "/v1/system/token_list"): "list_tokens",
        ("POST", "/v1/system/new_token"): "create_token",
        ("POST", "/v1/user/setting"): "change_password",
    },
}
DELETE_PREFIX = {"v0.27": "/api/v1/system/tokens/", "v0.24": "/v1/system/token/"}
AUTHENTICATION_ERROR = 109
FACTORY_ADMIN = ("admin@ragflow.io", "admin")
UNAUTHORIZED_ANSWER = (401, {"code": 401, "data": None, "message": "<Unauthorized '401: Unauthorized'>"}, {})


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def ragflow_token() -> str:
    return "ragflow-" + secrets.token_urlsafe(32)


class FakeRagflow:
    def __init__(self, generation: str = "v0.27"):
        # v0.25 (and v0.26) serve the /v1 layout, and already the health check under /api/v1 too.
        self.extra_routes = {("GET", "/api/v1/system/healthz"): "healthz"} if generation == "v0.25" else {}
        self.generation = "v0.24" if generation == "v0.25" else generation
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.users: dict[str, dict] = {}
        self.tokens: list[dict] = []
        # session -> (email, the access_token it carries); valid while the user still has that access_token.
        self.sessions: dict[str, tuple[str, str]] = {}
        self.health = {"db": "ok", "redis": "ok", "doc_engine": "ok", "storage": "ok"}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    @property
    def public_key_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def add_user(self, email: str, password: str, tenant_id: str | None = None) -> str:
        """A registered user who owns a tenant (whose id is the user's, as RAGFlow makes it); returns it."""
        user_id = tenant_id or secrets.token_hex(16)
        # RAGFlow stores (a hash of) base64(password): what the login decrypts to.
        self.users[email] = {
            "id": user_id,
            "password": base64.b64encode(password.encode()).decode(),
            "tenant_id": user_id,
            "tenants": [user_id],
            "access_token": secrets.token_hex(16),
        }
        return user_id

    def add_factory_admin(self) -> str:
        """admin@ragflow.io / admin as a new RAGFlow's admin server creates it: no access_token yet."""
        tenant = self.add_user(*FACTORY_ADMIN)
        self.users[FACTORY_ADMIN[0]]["access_token"] = None
        return tenant

    def join_tenant(self, email: str, tenant_id: str) -> None:
        """Make `email` a member of another tenant, listed first (as the older membership would be)."""
        self.users[email]["tenants"].insert(0, tenant_id)

    def password_of(self, email: str) -> str:
        return base64.b64decode(self.users[email]["password"]).decode()

    def current_user(self, authorization: str | None) -> dict | None:
        """The user login_required lets in: a live session, else an API key of a user with an access_token."""
        authorization = authorization or ""
        parts = authorization.split(maxsplit=1)
        key = parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else authorization
        session = self.sessions.get(key)
        if session:
            email, access_token = session
            user = self.users[email]
            return user if user["access_token"] == access_token else None
        rows = [row for row in self.tokens if row["token"] == key]
        if not rows:
            return None
        owners = [user for user in self.users.values() if user["id"] == rows[0]["tenant_id"]]
        if owners and (owners[0]["access_token"] or "").strip():
            return owners[0]
        return None

    def add_token(self, tenant_id: str, dialog_id: str | None = None, create_time: int | None = None) -> str:
        row = self._token_row(tenant_id)
        row.update(dialog_id=dialog_id, source="dialog" if dialog_id else None)
        if create_time is not None:
            row["create_time"] = row["update_time"] = create_time
        self.tokens.append(row)
        return row["token"]

    def tokens_of(self, tenant_id: str) -> list[str]:
        return [row["token"] for row in self.tokens if row["tenant_id"] == tenant_id]

    def writes(self) -> list[tuple[str, str]]:
        return [request for request in self.requests if request[0] in ("POST", "DELETE") and "login" not in request[1]]

    def start(self) -> FakeRagflow:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @staticmethod
    def _token_row(tenant_id: str) -> dict:
        millis = int(time.time() * 1000)
        date = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        return {
            "tenant_id": tenant_id,
            "token": ragflow_token(),
            "dialog_id": None,
            "source": None,
            "beta": ragflow_token().replace("ragflow-", "")[:32],
            "create_time": millis,
            "create_date": date,
            "update_time": millis,
            "update_date": date,
        }

    def _decrypt(self, password: str) -> str:
        return self.private_key.decrypt(base64.b64decode(password), padding.PKCS1v15()).decode()

    def _session(self, user_id: str) -> str:
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = b64url(json.dumps({"sub": user_id, "iat": int(time.time())}).encode())
        return "%s.%s.%s" % (header, claims, b64url(secrets.token_bytes(32)))

    # Each endpoint returns (HTTP status, JSON body, extra headers).
    def healthz(self, _tenant, _body):
        report = dict(self.health)
        all_ok = all(value == "ok" for value in report.values())
        report["status"] = "ok" if all_ok else "nok"
        return (200 if all_ok else 500), report, {}

    def login(self, _user, body):
        email = body.get("email", "")
        user = self.users.get(email)
        if user is None:
            return 200, envelope(AUTHENTICATION_ERROR, False, "Email: %s is not registered!" % email), {}
        try:
            password = self._decrypt(body.get("password", ""))
        except ValueError:
            return 200, envelope(500, False, "Fail to crypt password"), {}
        if password != user["password"]:
            return 200, envelope(AUTHENTICATION_ERROR, False, "Email and password do not match!"), {}
        user["access_token"] = secrets.token_hex(16)
        session = self._session(user["id"])
        self.sessions[session] = (email, user["access_token"])
        return 200, envelope(0, {"id": user["id"], "email": email}, "Welcome back!"), {"Authorization": session}

    def change_password(self, user, body):
        try:
            old = self._decrypt(body.get("password", ""))
            new = self._decrypt(body["new_password"]) if body.get("new_password") else None
        except ValueError:
            return 200, envelope(500, False, "Fail to crypt password"), {}
        if body.get("password") and old != user["password"]:
            return 200, envelope(AUTHENTICATION_ERROR, False, "Password error!"), {}
        if new:
            user["password"] = new
            if self.generation == "v0.27":
                user["access_token"] = "INVALID_" + secrets.token_hex(16)
        return 200, envelope(0, True), {}

    def list_tokens(self, user, _body):
        tenant = user["tenant_id"]
        return 200, envelope(0, [dict(row) for row in self.tokens if row["tenant_id"] == tenant]), {}

    def create_token(self, user, _body):
        row = self._token_row(user["tenant_id"])
        self.tokens.append(row)
        return 200, envelope(0, dict(row)), {}

    def delete_token(self, user, token):
        tenant = user["tenants"][0]
        self.tokens = [row for row in self.tokens if not (row["tenant_id"] == tenant and row["token"] == token)]
        return 200, envelope(0, True), {}

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _answer(self, status, body, headers):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _dispatch(self):
                fake.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                routes = {**ROUTES[fake.generation], **fake.extra_routes}
                endpoint = routes.get((self.command, self.path))
                argument = body
                prefix = DELETE_PREFIX[fake.generation]
                if endpoint is None and self.command == "DELETE" and self.path.startswith(prefix):
                    endpoint, argument = "delete_token", self.path[len(prefix) :]
                if endpoint is None:
                    if any(path == self.path for _method, path in routes):
                        return self._answer(405, envelope(405, None, "Method Not Allowed"), {})
                    return self._answer(404, envelope(404, None, "Not Found"), {})
                user = None
                if endpoint not in ("healthz", "login"):
                    user = fake.current_user(self.headers.get("Authorization"))
                    if user is None:
                        return self._answer(*UNAUTHORIZED_ANSWER)
                return self._answer(*getattr(fake, endpoint)(user, argument))

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _dispatch

        return Handler


def envelope(code: int, data, message: str = "success") -> dict:
    return {"code": code, "data": data, "message": message}
