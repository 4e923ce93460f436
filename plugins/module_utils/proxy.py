# Copyright: contributors to llmops.ragstack
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rule for proxy variables across the modules: the private service endpoints this collection
talks to (a mirror, Xinference, RAGFlow) are reached directly unless a task sets use_proxy: true,
because operators behind restrictive networks keep http(s)_proxy/ALL_PROXY in their environment and
such a proxy breaks TLS to the mirror or cannot reach a loopback or LAN address at all."""

from __future__ import annotations

import os
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def proxy_variables_set(environ=None):
    """The proxy variables (either case) set to a non-empty value in `environ` (default: os.environ)."""
    environ = os.environ if environ is None else environ
    return sorted(name for name, value in environ.items() if name.lower() in PROXY_VARIABLES and value)


def ignored_proxy_variables(use_proxy, environ=None):
    """What a module reports as `proxy_variables_ignored`: every proxy variable set, unless it uses them."""
    return [] if use_proxy else proxy_variables_set(environ)


def proxy_for(url, schemes=None, environ=None):
    """(variable name, proxy URL) of the proxy an environment-honouring client would send `url` to,
    or (None, None) when none applies (none set, or NO_PROXY matches the host).

    `schemes` are the variables' prefixes in the order the client reads them: urllib reads only
    `<scheme>_proxy`; requests also falls back to `all_proxy`. Lower case wins, as in urllib."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if no_proxy and proxy_bypass_environment(parts.hostname or "", {"no": no_proxy}):
        return None, None
    for prefix in schemes or (scheme,):
        for name in ("%s_proxy" % prefix, "%s_PROXY" % prefix.upper()):
            if environ.get(name):
                return name, environ[name]
    return None, None


def describe_proxy_failure(url, reason, schemes=None, environ=None):
    """The one line for a request to `url` that failed through a proxy taken from the environment,
    naming the proxy and its variable; None when no proxy was in the way."""
    variable, proxy = proxy_for(url, schemes, environ)
    if proxy is None:
        return None
    return (
        "the proxy %s (from %s, used because use_proxy is true) failed while reaching %s: %s; "
        "set use_proxy: false to reach the service directly, or fix or unset %s"
        % (proxy, variable, url, reason, variable)
    )
