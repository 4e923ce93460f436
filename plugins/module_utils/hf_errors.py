# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One-line explanations of what went wrong between us and a Hugging Face mirror.

The Hub (and mirrors that copy it) name the failure in an ``X-Error-Code`` header: ``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``. An anonymous request for a private or missing repo
gets 401 with ``RepoNotFound``, which is why a 401 says "not found or private".
"""

from __future__ import annotations

import traceback

try:
    import requests
except ImportError:
    # The module reports this with missing_required_lib() instead of failing to import.
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
else:
    REQUESTS_IMPORT_ERROR = None

TOKEN_HINT = (
    "the mirror has no login of its own: accept the model's terms on huggingface.co with your account "
    "and pass that account's read token in the module's `token` option"
)


class MirrorError(Exception):
    """A failure the operator can act on; str() is the whole explanation on one line."""


class DiskFull(MirrorError):
    pass


class RepoNotFound(MirrorError):
    """The mirror answered RepoNotFound; olah answers so for a missing revision of a repo that exists, too."""


class DownloadFailed(MirrorError):
    """A failure after files were written: `written` of them are in place (the task changed the host)."""

    def __init__(self, message, written, bytes_fetched):
        super().__init__(message)
        self.written = written
        self.bytes_fetched = bytes_fetched


class TransientHTTPError(Exception):
    """An answer worth retrying (5xx, 429): the request may succeed a moment later."""

    def __init__(self, status, url):
        super().__init__("the mirror answered HTTP %d for %s on every attempt" % (status, url))
        self.status = status


RETRYABLE_STATUS = (408, 429, 500, 502, 503, 504)


def is_html(response):
    return "html" in response.headers.get("Content-Type", "").lower()


def describe_http_error(response, repo_label, revision, token_given):
    status = response.status_code
    code = response.headers.get("X-Error-Code", "")
    server_says = response.headers.get("X-Error-Message", "")
    detail = " (%s)" % server_says if server_says else ""
    if not code and is_html(response):
        # A web server, a proxy's error page or a wrong path prefix: the page itself is no use in a message.
        problem = (
            "%s answered HTTP %d with an HTML page, not the Hub API: check that endpoint is the base URL of a "
            "Hugging Face mirror (such as https://hf-mirror.com, without a path)" % (response.url.split("?")[0], status)
        )
    elif code == "RevisionNotFound":
        problem = "revision %r not found in %s%s" % (revision, repo_label, detail)
    elif code == "EntryNotFound":
        problem = "file not found in %s at revision %r: %s%s" % (repo_label, revision, response.url, detail)
    elif (code == "GatedRepo" or (status in (401, 403) and code != "RepoNotFound")) and token_given:
        problem = (
            "%s refused the token (HTTP %d, gated or private repo)%s: check that the token's account has "
            "accepted the model's terms; %s" % (repo_label, status, detail, TOKEN_HINT)
        )
    elif code == "GatedRepo" or (status in (401, 403) and code != "RepoNotFound"):
        problem = "%s is gated or private (HTTP %d)%s: %s" % (repo_label, status, detail, TOKEN_HINT)
    elif status == 401:
        problem = "%s not found, or private (HTTP 401)%s: check the name; if it is private, %s" % (
            repo_label,
            detail,
            TOKEN_HINT,
        )
    elif status == 404 and not code:
        # The Hub names every missing repo, revision or file in X-Error-Code: a bare 404 is a wrong path.
        server = repo_label.rsplit(" on ", 1)[-1]
        problem = (
            "%s answered HTTP 404 for %s%s with no Hub error code: check that endpoint is the base URL of a "
            "Hugging Face mirror (no path), then repo_id and repo_type" % (server, response.url.split("?")[0], detail)
        )
    elif status == 404:
        problem = "%s not found (HTTP 404)%s: check repo_id, repo_type and revision" % (repo_label, detail)
    else:
        problem = "the mirror answered HTTP %d for %s%s" % (status, response.url, detail)
    return problem


def describe_request_exception(exc, endpoint, proxy, timeout):
    """Explain a requests exception; `proxy` is the proxy URL that carried the request, or None."""
    reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if "SOCKS" in reason or "socks" in reason:
        return (
            "a SOCKS proxy (%s) was picked up from the environment and cannot be used here (%s): "
            "set use_proxy: false to reach %s directly" % (proxy or "ALL_PROXY", reason, endpoint)
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy %s failed while reaching %s (%s): set use_proxy: false to reach the mirror directly" % (
            proxy,
            endpoint,
            reason,
        )
    if isinstance(exc, requests.exceptions.SSLError):
        if proxy:
            return (
                "TLS failure reaching %s through the proxy %s, which likely intercepts TLS (%s): set "
                "use_proxy: false, or ca_bundle to the proxy's CA certificate" % (endpoint, proxy, reason)
            )
        return (
            "TLS failure reaching %s (%s): set ca_bundle to the CA certificate that signed the mirror's "
            "certificate" % (endpoint, reason)
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return "the mirror %s did not answer within %s s (%s): raise timeout, or check the network path" % (
            endpoint,
            timeout,
            reason,
        )
    via = " through the proxy %s" % proxy if proxy else " (proxies ignored, use_proxy: false)"
    return "the mirror %s is unreachable%s: %s" % (endpoint, via, reason)
