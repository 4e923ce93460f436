# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A RAGFlow user's password is the one given: log in with it, else with the initial password and
change it through RAGFlow's own settings endpoint (what the web UI's "Password" page does).

A new RAGFlow's admin server creates admin@ragflow.io with the password "admin"
(admin/server/auth.py init_default_admin); nothing else sets it, so a deployment that never changes it
runs with a password everybody knows.
"""

from __future__ import annotations

from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow import RagflowError
from ansible_collections.llmops.ragstack.plugins.module_utils.ragflow_api import CODE_AUTHENTICATION_ERROR

CODE_SUCCESS = 0
NOT_REGISTERED = "is not registered"


def try_login(api, email, password, public_key):
    """True when RAGFlow lets `email` in with `password` (api then holds the session), False when it
    refuses the password; RagflowError for anything else (unknown user, server error)."""
    envelope, session = api.login_envelope(email, password, public_key)
    code = envelope.get("code")
    message = str(envelope.get("message") or "no message")
    if code == CODE_SUCCESS and session:
        api.session = session
        return True
    if code == CODE_AUTHENTICATION_ERROR and NOT_REGISTERED in message:
        raise RagflowError(
            "RAGFlow at %s has no user %s (%s); a new RAGFlow's first user is admin@ragflow.io"
            % (api.base_url, email, message)
        )
    if code == CODE_AUTHENTICATION_ERROR:
        return False
    raise RagflowError("login as %s: RAGFlow answered code %s: %s" % (email, code, message))


def ensure_password(api, *, email, password, initial_password, public_key, check_mode):
    """The result dict for: `email` logs in with `password`. Logs in at most three times (desired,
    initial, desired again to confirm the change); each login replaces the user's web UI session."""
    if try_login(api, email, password, public_key):
        return {"changed": False, "msg": "%s logs in with the given password" % email}
    if not initial_password or initial_password == password:
        raise RagflowError(
            "RAGFlow refused the password of %s and there is no other initial_password to try; set "
            "initial_password to the user's current password" % email
        )
    if not try_login(api, email, initial_password, public_key):
        raise RagflowError(
            "RAGFlow refused both password and initial_password for %s: someone else changed it; set "
            "initial_password to the user's current password (or reset it in RAGFlow's admin UI)" % email
        )
    if check_mode:
        return {"changed": True, "msg": "would change the password of %s from initial_password" % email}
    api.change_password(initial_password, password, public_key)
    # RAGFlow ends the session on a password change; a new login proves the change took.
    try:
        confirmed = try_login(api, email, password, public_key)
    except RagflowError as exc:
        raise RagflowError("changed the password of %s, then: %s" % (email, exc), changed=True) from exc
    if not confirmed:
        raise RagflowError(
            "RAGFlow accepted the password change of %s but refuses the new password at login" % email, changed=True
        )
    return {"changed": True, "msg": "changed the password of %s from initial_password" % email}
