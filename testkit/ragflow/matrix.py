"""What the RAGFlow modules' bad-input matrices (tests/matrix/test_ragflow_*_matrix.py) talk to, and
how a row is run and judged: one place for the servers, one for the assertions."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field

from testkit.ragflow.fake_ragflow_datasets import FakeRagflowDatasets
from testkit.support import ModuleRunner, free_port
from testkit.wrong_servers import (
    dead_proxy_environment,
    foreign_tcp_service,
    html_everywhere,
    silent_listener,
)

EMAIL = "admin@example.com"
PASSWORD = "s3cret-Pa55"
XINFERENCE = "http://xinference:9997"
SERVED = ("qwen2.5-instruct", "bge-m3")
# Generous: the slowest rows wait for a timeout of 3 s, some twice (probe, then login).
WALL_BOUND_S = 30
MASKED_BY_NO_LOG = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


@dataclass
class Target:
    """Where a row's module is pointed: `url` for HTTP, `port` for TCP, `fake` when it is the double."""

    url: str
    port: int = 0
    fake: FakeRagflowDatasets | None = None
    extra: dict = field(default_factory=dict)


@contextlib.contextmanager
def target(kind):
    """The server of one row: double (v0.27), double-v0.24, double-first-boot[-v0.24] (only
    admin@ragflow.io / admin, never logged in), html, silent, foreign, closed."""
    if kind.startswith("double"):
        fake = FakeRagflowDatasets("v0.24" if kind.endswith("v0.24") else "v0.27").start()
        try:
            if kind.startswith("double-first-boot"):
                fake.add_factory_admin()
            else:
                fake.add_user(EMAIL, PASSWORD)
            fake.serve(XINFERENCE, *SERVED)
            yield Target(fake.url, fake.server.server_address[1], fake)
        finally:
            fake.stop()
    elif kind == "html":
        with html_everywhere() as url:
            yield Target(url)
    elif kind in ("silent", "foreign"):
        with silent_listener() if kind == "silent" else foreign_tcp_service() as port:
            yield Target("http://127.0.0.1:%d" % port, port)
    elif kind == "closed":
        port = free_port()
        yield Target("http://127.0.0.1:%d" % port, port)
    else:
        raise ValueError(kind)


def environment(kind):
    return dead_proxy_environment() if kind == "dead-proxy" else None


def run_row(module, tmp_path, args, env_kind, check_mode=False):
    """(result, seconds) of one run of `module` with `args` in the row's environment."""
    started = time.monotonic()
    result = ModuleRunner(module, tmp_path)(args, check_mode=check_mode, env=environment(env_kind))
    return result, time.monotonic() - started


def judge(result, seconds, failed, changed, pattern):
    """The assertions every row makes: failed/changed as expected, the message, one line, no crash, in time."""
    assert seconds < WALL_BOUND_S, seconds
    assert bool(result.get("failed")) is failed, result
    assert bool(result.get("changed")) is changed, result
    # ragflow_e2e reports a failed check as its result, with the one line in `diagnosis`.
    message = result.get("msg") or result.get("diagnosis") or ""
    assert re.search(pattern, message), message
    assert "\n" not in message.strip()
    text = str(result)
    assert "Traceback" not in text and "Module failed" not in text
