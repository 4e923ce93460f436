"""The fake RAGFlow with provider endpoints on 127.0.0.1, and ragflow_provider run the way AnsiballZ runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..ragflow.fake_ragflow_providers import FakeRagflowProviders

REPO = Path(__file__).resolve().parents[3]
MODULE = "ansible_collections.llmops.ragstack.plugins.modules.ragflow_provider"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def run_provider_module(tmp_path):
    """ragflow_provider in a fresh Python with its arguments in a JSON file; returns its result."""
    runs = []

    def run(args: dict, check_mode: bool = False) -> dict:
        runs.append(args)
        args_file = tmp_path / ("module-args-%d.json" % len(runs))
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
        env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
        env["PYTHONPATH"] = str(REPO / ".collections")
        process = subprocess.run(
            [sys.executable, "-m", MODULE, str(args_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in process.stdout + process.stderr, process.stderr
        return json.loads(process.stdout)

    return run


@pytest.fixture(params=["v0.27", "v0.24"])
def fake_ragflow(request):
    fake = FakeRagflowProviders(request.param).start()
    yield fake
    fake.stop()
