# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""RAGFlow API tokens: what a token looks like, and ensuring one exists through any token store.

A token store is either the RAGFlow HTTP API (ragflow_api.py) or RAGFlow's MySQL database
(ragflow_db.py). Both offer list_tokens(), create_token() and delete_token(token) for the tenant of
one user, so the idempotence rules live here once.
"""

from __future__ import annotations

import secrets

TOKEN_PREFIX = "ragflow-"
# RAGFlow stores a second, shorter secret with every token: the embed ("beta") key.
BETA_LENGTH = 32


class RagflowError(Exception):
    """Anything that stops the module; the message is the one line the user sees, and `changed` says
    whether the module had changed something before it stopped."""

    def __init__(self, message, changed=False):
        super().__init__(message)
        self.changed = changed


def new_token():
    """A token as RAGFlow (>= v0.24) makes one: the prefix and 32 random bytes, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_beta():
    """The beta key as RAGFlow makes it: another token without its prefix, cut to 32 characters."""
    return new_token()[len(TOKEN_PREFIX) :][:BETA_LENGTH]


def is_api_key(row):
    """True for a tenant-wide API key; tokens bound to one chat or agent (embed links) have a dialog_id."""
    return not row.get("dialog_id")


def newest(rows):
    return max(rows, key=lambda row: row.get("create_time") or 0)


def ensure_token(store, rotate, check_mode):
    """Return the result dict for: the tenant has an API key (the newest one), or a new one when rotating.

    Rotating deletes every tenant-wide API key that existed before, so afterwards exactly one remains
    and the next run returns it unchanged. Chat and agent embed tokens are never touched. The keys are
    listed again after deleting, and only the deletions that happened are reported: RAGFlow's HTTP
    delete works in the user's first tenant, which need not be the one the keys belong to.
    """
    existing = [row for row in store.list_tokens() if is_api_key(row)]
    if existing and not rotate:
        return {"changed": False, "token": newest(existing)["token"], "deleted_tokens": 0}
    if check_mode:
        return {"changed": True, "token": None, "deleted_tokens": len(existing)}
    token = store.create_token()
    for row in existing:
        store.delete_token(row["token"])
    old = {row["token"] for row in existing}
    left = [row for row in store.list_tokens() if row["token"] in old] if old else []
    if left:
        raise RagflowError(
            "rotate created a new API key but %d of %d older keys are still there: RAGFlow deletes keys in the "
            "user's first tenant, not in the tenant the keys belong to (a user in several tenants); delete them "
            "with method: db or in RAGFlow's web UI" % (len(left), len(existing)),
            changed=True,
        )
    return {"changed": True, "token": token, "deleted_tokens": len(existing)}
