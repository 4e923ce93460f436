"""What the two Xinference bad-input matrices share: the servers a row talks to, and running a module
once with its environment, timed, its raw output kept (no "Traceback", no "Module failed").

A row names its server: `html` (a web UI answering 200 HTML to every GET), `silent` (accepts and
never answers), `closed` (nothing listens), `xinference` (a real Xinference 4.1 with advanced auth
on, started once per matrix module, its first-run setup done). Its environment is `dead_proxy` (proxy
variables an operator left behind, all pointing at a closed port) or none.
"""

import collections
import contextlib
import json
import subprocess
import time

from .support import ModuleRunner, free_port, module_environment
from .wrong_servers import dead_proxy_environment, html_everywhere, silent_listener
from .xinference import Cluster

Row = collections.namedtuple("Row", "server environment options failed changed message")
# Generous: every row answers in seconds; the bound catches a retry loop (wait_timeout is 900 s by default).
WALL_TIME_BOUND_S = 30


@contextlib.contextmanager
def endpoint_of(server, xinference_factory):
    """The endpoint URL of the row's server, for the duration of the row."""
    if server == "html":
        with html_everywhere() as url:
            yield url
    elif server == "silent":
        with silent_listener() as port:
            yield "http://127.0.0.1:%d" % port
    elif server == "closed":
        yield "http://127.0.0.1:%d" % free_port()
    else:
        yield xinference_factory().endpoint


@contextlib.contextmanager
def lazy_secured_xinference(tmp_path_factory):
    """Yields a function that starts (on its first call) and returns one xinference-local with advanced
    auth on and its setup done, so that a matrix starts Xinference only when a row needs it; stops it."""
    started = []

    def get():
        if not started:
            cluster = Cluster(tmp_path_factory.mktemp("matrix-xinference"), auth_advanced=True)
            started.append(cluster)
            cluster.start_local()
        return started[0]

    try:
        yield get
    finally:
        for cluster in started:
            left = cluster.stop()
            assert not left, "Xinference processes left after teardown: %s" % left


def credentials_of(row_credentials, cluster):
    """The row's options; the values "ADMIN_PASSWORD"/"API_KEY" stand for the cluster's own."""
    values = {"ADMIN_PASSWORD": getattr(cluster, "admin_password", None), "API_KEY": getattr(cluster, "api_key", None)}
    return {
        name: values[value] if isinstance(value, str) and value in values else value
        for name, value in row_credentials.items()
    }


def run_row(module, args, tmp_path, environment):
    """(result, seconds, raw stdout+stderr) of one run of `module` with `args`."""
    env = dead_proxy_environment() if environment == "dead_proxy" else {}
    runner = ModuleRunner(module, tmp_path)
    started = time.monotonic()
    process = subprocess.run(
        runner.command(args), env=module_environment(env), capture_output=True, text=True, timeout=120, check=False
    )
    took = time.monotonic() - started
    try:
        result = json.loads(process.stdout)
    except ValueError:
        raise AssertionError("module printed no JSON: %s %s" % (process.stdout, process.stderr)) from None
    return result, took, process.stdout + process.stderr


def assert_clean(output, result):
    assert "Traceback" not in output, output
    assert "Module failed" not in output, output
    for text in (result.get("msg") or "", json.dumps(result.get("checks") or [])):
        assert "<html" not in text.lower() and "<!doctype" not in text.lower(), text
