# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Xinference 4.x advanced authentication: a new server's first admin, a user session, a named API key.

What the server does (xinference 4.1.0, api/oauth2/advanced/):
- routes.py register_advanced_auth_routes: the routes below exist only with advanced auth on; with
  XINFERENCE_AUTH_ADVANCED=0 they are not registered (404) and every endpoint is open.
- GET /v1/admin/setup/status (no login) says {"needs_setup": bool} until the first user exists.
- POST /v1/admin/setup {setup_token, username, password} creates that first user with every
  permission (auth_service.py INITIAL_ADMIN_PERMISSIONS): 201; 403 "Invalid setup token." or
  "Setup already completed"; 400 for a password under XINFERENCE_PASSWORD_MIN_LENGTH (8).
- The setup token is never in an API answer: the server prints it to its log and keeps it in its
  auth database (XINFERENCE_HOME/auth/auth.db, table system_config, key "setup_token"; database.py
  get_or_create_setup_token) until the first user exists, across restarts.
- POST /token {username, password}: {"access_token"} valid 30 minutes; 401 "Incorrect username or password".
- GET /v1/admin/keys lists keys (no secret); POST /v1/admin/keys {name} answers 201 with the new
  key's plaintext once; names are unique, compared trimmed and case-insensitively (database.py
  idx_api_keys_name_unique; 409 "API key name already exists"); GET /v1/admin/keys/{id}/reveal
  gives a key's plaintext again to an admin; PUT /v1/admin/keys/{id} {"enabled": true} enables it.
- An API key only reaches the model query and inference endpoints (auth_service.py
  _API_KEY_ALLOWED_SCOPES): the key made here is for inference clients, the admin manages models.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

from ansible_collections.llmops.ragstack.plugins.module_utils.rest import parse_json
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_api import MANAGE, XinferenceApi
from ansible_collections.llmops.ragstack.plugins.module_utils.xinference_errors import XinferenceError, detail_of

SETUP_TOKEN_QUERY = "SELECT value FROM system_config WHERE key = 'setup_token'"


def key_name_matches(name, wanted):
    """Whether two API key names are the same to Xinference (trimmed, case-insensitive)."""
    return isinstance(name, str) and name.strip().lower() == wanted.strip().lower()


def read_setup_token(auth_db):
    """The pending setup token in Xinference's auth database; None when it holds none (or no such file)."""
    try:
        connection = sqlite3.connect("file:%s?mode=ro" % quote(auth_db), uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        row = connection.execute(SETUP_TOKEN_QUERY).fetchone()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return row[0] if row else None


class XinferenceAuth:
    """The advanced-auth routes of one Xinference server (the supervisor's, in a cluster), through the
    modules' one client (XinferenceApi: identifies the server, logs in as the admin, never retries 401/403)."""

    def __init__(self, endpoint, username, password, *, timeout=30, validate_certs=True, use_proxy=False):
        self.api = XinferenceApi(
            endpoint,
            timeout=timeout,
            validate_certs=validate_certs,
            username=username,
            password=password,
            use_proxy=use_proxy,
            purpose=MANAGE,
        )
        self.endpoint = self.api.endpoint

    def anonymous(self, method, path, body=None):
        """(status, parsed JSON) of a route that takes no credential (the setup routes)."""
        status, _headers, raw = self.api.send(method, path, body, {})
        return status, parse_json(raw, not_json={"detail": raw.decode("utf-8", "replace")[:200]})

    def failed(self, what, status, payload, hint):
        return XinferenceError("%s at %s: %s; %s" % (what, self.endpoint, detail_of(status, payload), hint))

    def needs_setup(self):
        """True for a server without any account, False once set up, None when advanced auth is off."""
        self.api.identify()
        if not self.api.auth_on:
            return None
        status, payload = self.anonymous("GET", "/v1/admin/setup/status")
        if status != 200 or not isinstance(payload, dict) or "needs_setup" not in payload:
            raise self.failed(
                "reading the setup status (GET /v1/admin/setup/status)", status, payload, "is this Xinference 4.x?"
            )
        return bool(payload["needs_setup"])

    def create_admin(self, setup_token):
        status, payload = self.anonymous(
            "POST",
            "/v1/admin/setup",
            {"setup_token": setup_token, "username": self.api.username, "password": self.api.password},
        )
        if status not in (200, 201):
            raise self.failed(
                "creating the first admin %s (POST /v1/admin/setup)" % self.api.username,
                status,
                payload,
                "check the setup token and the password policy (XINFERENCE_PASSWORD_MIN_LENGTH)",
            )

    def login(self):
        self.api.login()

    def keys(self):
        status, payload = self.api.request("GET", "/v1/admin/keys")
        if status != 200 or not isinstance(payload, list):
            raise self.failed("listing API keys (GET /v1/admin/keys)", status, payload, "see the server's log")
        return payload

    def create_key(self, name, description):
        status, payload = self.api.request("POST", "/v1/admin/keys", {"name": name, "description": description})
        if status not in (200, 201) or not isinstance(payload, dict) or not payload.get("key"):
            raise self.failed(
                "creating the API key %r (POST /v1/admin/keys)" % name, status, payload, "see the server's log"
            )
        return payload

    def reveal_key(self, key_id):
        status, payload = self.api.request("GET", "/v1/admin/keys/%d/reveal" % key_id)
        if status != 200 or not isinstance(payload, dict) or not payload.get("key"):
            raise self.failed(
                "reading the API key %d (GET /v1/admin/keys/%d/reveal)" % (key_id, key_id),
                status,
                payload,
                "see the server's log",
            )
        return payload["key"]

    def enable_key(self, key_id):
        status, payload = self.api.request("PUT", "/v1/admin/keys/%d" % key_id, {"enabled": True})
        if status != 200:
            raise self.failed(
                "enabling the API key %d (PUT /v1/admin/keys/%d)" % (key_id, key_id),
                status,
                payload,
                "see the server's log",
            )


def new_result(key_name):
    """What ensure_auth fills in; the caller keeps it, so that a failure still says what changed."""
    return dict(
        changed=False,
        auth_enabled=True,
        admin_created=False,
        api_key="",
        api_key_name=key_name or "",
        api_key_id=None,
        api_key_created=False,
        api_key_enabled=False,
    )


def ensure_auth(auth, result, *, setup_token=None, auth_db=None, key_description="", check_mode=False):
    """Bring the server to: the admin exists, and (with result's api_key_name) an enabled API
    key of that name. Fills in `result` (new_result) as it goes: `changed` is true as soon as the
    server changed, even when a later step raises; `api_key` holds the key's plaintext ("" in check
    mode while the admin or the key does not exist yet, and when advanced auth is off)."""
    key_name = result["api_key_name"]
    needs_setup = auth.needs_setup()
    if needs_setup is None:
        result["auth_enabled"] = False
        return result
    if needs_setup:
        token = setup_token or (read_setup_token(auth_db) if auth_db else None)
        if not token:
            raise XinferenceError(
                "Xinference at %s has no admin yet and no setup token was found%s: set setup_token to the token "
                "its log prints under FIRST-RUN SETUP REQUIRED, or auth_db to its XINFERENCE_HOME/auth/auth.db"
                % (auth.endpoint, " in %s" % auth_db if auth_db else "")
            )
        if check_mode:
            result.update(changed=True, admin_created=True, api_key_created=bool(key_name))
            return result
        auth.create_admin(token)
        result.update(changed=True, admin_created=True)
    auth.login()
    if not key_name:
        return result
    found = [entry for entry in auth.keys() if key_name_matches(entry.get("name"), key_name)]
    if found:
        entry = found[0]
        result["api_key_id"] = entry["id"]
        if not entry.get("enabled", True):
            if not check_mode:
                auth.enable_key(entry["id"])
            result["changed"] = True
        result.update(api_key_enabled=True, api_key=auth.reveal_key(entry["id"]))
        return result
    if check_mode:
        result.update(changed=True, api_key_created=True)
        return result
    created = auth.create_key(key_name, key_description)
    result.update(
        changed=True, api_key_created=True, api_key_enabled=True, api_key=created["key"], api_key_id=created.get("id")
    )
    return result
