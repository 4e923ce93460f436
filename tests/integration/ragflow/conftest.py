"""A fake RAGFlow API and a real MariaDB on 127.0.0.1 for the ragflow_token tests, and the module runner."""

from __future__ import annotations

import os
import shutil

import pytest

from testkit.mariadb import MARIADB_PROGRAMS, MariaDB
from testkit.ragflow.fake_ragflow import FakeRagflow
from testkit.support import ModuleRunner


@pytest.fixture
def run_module(tmp_path) -> ModuleRunner:
    return ModuleRunner("ragflow_token", tmp_path)


@pytest.fixture(params=["v0.27", "v0.24"])
def fake_ragflow(request):
    fake = FakeRagflow(request.param).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory):
    # mariadbd lives in /usr/sbin, which a non-root user's PATH often lacks.
    search_path = os.environ["PATH"] + os.pathsep + "/usr/sbin"
    programs = {program: shutil.which(program, path=search_path) for program in MARIADB_PROGRAMS}
    missing = [program for program, path in programs.items() if path is None]
    if missing:
        pytest.fail(
            "%s not found: install MariaDB with `apt-get install -y mariadb-server`" % ", ".join(missing),
            pytrace=False,
        )
    server = MariaDB(tmp_path_factory.mktemp("mariadb"), programs)
    yield server
    server.stop()
