# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON over HTTP for the REST-driven modules, with Ansible's own URL opener (no extra library on
the managed host). An HTTP error status is an answer like any other; only no answer at all raises."""

from __future__ import annotations

import json
from urllib.error import HTTPError

from ansible.module_utils.urls import open_url

from ansible_collections.llmops.ragstack.plugins.module_utils.proxy import describe_proxy_failure


class Unreachable(Exception):
    """No HTTP answer: connection refused, DNS, TLS, timeout, or a URL urllib cannot parse."""

    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = reason


class ProxyFailed(Unreachable):
    """No answer through a proxy taken from the environment (use_proxy: true); the message names it."""


def open_request(url, method, data, headers, *, timeout, validate_certs, use_proxy=False):
    """The response to `data` (bytes or None), unread, for any HTTP status; Unreachable on no answer.

    Proxy variables are ignored unless `use_proxy` (module_utils/proxy.py says why)."""
    try:
        return open_url(
            url,
            data=data,
            method=method,
            headers=headers,
            timeout=timeout,
            validate_certs=validate_certs,
            use_proxy=use_proxy,
        )
    except HTTPError as exc:
        return exc
    # URLError (refused, DNS, TLS) and socket timeouts are OSErrors; ValueError is a URL urllib
    # cannot parse.
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        through_proxy = describe_proxy_failure(url, reason) if use_proxy else None
        if through_proxy:
            raise ProxyFailed(through_proxy) from exc
        raise Unreachable(reason) from exc


def open_json_request(url, method, body=None, headers=None, *, timeout=30, validate_certs=True, use_proxy=False):
    """Send `body` as JSON; return (status, response headers, the unread response) for any status.

    For reading an answer as it arrives (server-sent events): each read waits at most `timeout`
    seconds, and may raise what a socket raises (timeout, reset). The caller closes the response."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    data = json.dumps(body).encode("utf-8") if body is not None else None
    response = open_request(
        url, method, data, all_headers, timeout=timeout, validate_certs=validate_certs, use_proxy=use_proxy
    )
    return response.getcode(), response.headers, response


def json_request(url, method, body=None, headers=None, *, timeout=30, validate_certs=True, use_proxy=False):
    """Send `body` as JSON; return (status, response headers, raw response body) for any status."""
    status, response_headers, response = open_json_request(
        url, method, body, headers, timeout=timeout, validate_certs=validate_certs, use_proxy=use_proxy
    )
    return status, response_headers, response.read()


def parse_json(raw, not_json=None):
    """The parsed body (None for an empty one), or `not_json` when the body is not JSON."""
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        return not_json


def multipart_request(url, fields, headers=None, *, method="POST", timeout=30, validate_certs=True, use_proxy=False):
    """Send `fields` as multipart/form-data; return (status, response headers, raw response body) for any status.

    `fields` maps a form field name to a str (a plain field) or to (filename, bytes, content type) (a file).
    The body is built here, byte for byte, without a Content-Transfer-Encoding: servers (Werkzeug, Quart)
    read parts as they are sent.
    """
    from secrets import token_hex

    boundary = "ragstack-" + token_hex(16)
    parts = []
    for name, value in fields.items():
        if isinstance(value, str):
            disposition, content_type, content = 'form-data; name="%s"' % _form_quote(name), None, value.encode("utf-8")
        else:
            filename, content, content_type = value
            disposition = 'form-data; name="%s"; filename="%s"' % (_form_quote(name), _form_quote(filename))
        head = "--%s\r\nContent-Disposition: %s\r\n" % (boundary, disposition)
        if content_type:
            head += "Content-Type: %s\r\n" % content_type
        parts.append(head.encode("utf-8") + b"\r\n" + content + b"\r\n")
    data = b"".join(parts) + ("--%s--\r\n" % boundary).encode("ascii")
    all_headers = dict(headers or {})
    all_headers["Content-Type"] = "multipart/form-data; boundary=%s" % boundary
    response = open_request(
        url, method, data, all_headers, timeout=timeout, validate_certs=validate_certs, use_proxy=use_proxy
    )
    return response.getcode(), response.headers, response.read()


def _form_quote(text):
    """A name or filename inside the quotes of Content-Disposition, escaped as browsers do (WHATWG)."""
    return text.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
