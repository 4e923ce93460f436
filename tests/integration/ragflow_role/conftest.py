"""The fake RAGFlow with provider endpoints on 127.0.0.1, and ragflow_provider run the way AnsiballZ runs it."""

from __future__ import annotations

import pytest

from testkit.ragflow.fake_ragflow_providers import FakeRagflowProviders
from testkit.support import ModuleRunner


@pytest.fixture
def run_provider_module(tmp_path):
    return ModuleRunner("ragflow_provider", tmp_path)


@pytest.fixture(params=["v0.27", "v0.24"])
def fake_ragflow(request):
    fake = FakeRagflowProviders(request.param).start()
    yield fake
    fake.stop()
