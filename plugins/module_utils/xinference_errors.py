# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every Xinference module_util shares: the error the modules report, and how to read the
server's error answers (the message without the actor prefix, the signs of a dead worker)."""

from __future__ import annotations

import json
import re

NOT_FOUND = "Model not found in the model list"
# The supervisor prefixes what an actor raised with where it ran; the message is what follows.
ACTOR_PREFIX = re.compile(r"^\[address=[^\]]*\]\s*")
ALREADY_LAUNCHED = "already in the model list"
# What the server's message or the transport says when the process behind a model is gone: the
# supervisor's actor call to the dead worker (Errno 111, "Connect call failed"), a connection the
# worker dropped (Errno 104), aiohttp's name for a peer that closed, and xoscar's ServerClosed
# ("Remote server unixsocket:///... closed", "Remote server 127.0.0.1:34875 closed").
DEAD_WORKER_SIGNS = (
    "connection refused",
    "errno 111",
    "connect call failed",
    "connection reset",
    "errno 104",
    "server disconnected",
    "serverdisconnectederror",
    "serverclosed",
)
REMOTE_SERVER_CLOSED = re.compile(r"remote server \S+ closed", re.IGNORECASE)


def dead_worker_sign(text):
    lowered = (text or "").lower()
    return any(sign in lowered for sign in DEAD_WORKER_SIGNS) or bool(REMOTE_SERVER_CLOSED.search(lowered))


class XinferenceError(Exception):
    """A failure the module reports as one line: what went wrong and what to do about it.

    `changed` is set by ensure_model: whether the server's state changed before it failed."""

    changed = False


def detail_of(status, payload):
    """The server's own message from an error answer ({"detail": ...}), without the actor prefix."""
    if isinstance(payload, dict) and payload.get("detail") is not None:
        detail = payload["detail"]
        text = detail if isinstance(detail, str) else json.dumps(detail)
    elif payload is None:
        text = "no message"
    else:
        text = json.dumps(payload)[:300]
    return "HTTP %s: %s" % (status, ACTOR_PREFIX.sub("", text))
