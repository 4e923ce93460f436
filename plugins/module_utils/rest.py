# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON over HTTP for the REST-driven modules, with Ansible's own URL opener (no extra library on
the managed host). An HTTP error status is an answer like any other; only no answer at all raises."""

from __future__ import annotations

import json
from urllib.error import HTTPError

from ansible.module_utils.urls import open_url


class Unreachable(Exception):
    """No HTTP answer: connection refused, DNS, TLS, timeout, or a URL urllib cannot parse."""

    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = reason


def json_request(url, method, body=None, headers=None, *, timeout=30, validate_certs=True):
    """Send `body` as JSON; return (status, response headers, raw response body) for any status."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    data = json.dumps(body).encode("utf-8") if body is not None else None
    try:
        response = open_url(
            url, data=data, method=method, headers=all_headers, timeout=timeout, validate_certs=validate_certs
        )
    except HTTPError as exc:
        response = exc
    # URLError (refused, DNS, TLS) and socket timeouts are OSErrors; ValueError is a URL urllib
    # cannot parse.
    except (OSError, ValueError) as exc:
        raise Unreachable(getattr(exc, "reason", exc)) from exc
    return response.getcode(), response.headers, response.read()


def parse_json(raw, not_json=None):
    """The parsed body (None for an empty one), or `not_json` when the body is not JSON."""
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return not_json
