"""A fake RAGFlow API and a real MariaDB on 127.0.0.1 for the ragflow_token tests, and the module runner."""

from __future__ import annotations

import pytest

from testkit.mariadb import MariaDB, find_programs
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
    try:
        programs = find_programs()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = MariaDB(tmp_path_factory.mktemp("mariadb"), programs)
    yield server
    server.stop()
