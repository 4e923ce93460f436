"""The titles real Xinference 4.1 model processes carry, read from /proc as gpu_facts reads them.

Xinference titles each model process with setproctitle (xinference/core/model.py, ModelActor.load:
``Model: <replica uid>``, the replica uid from core/utils.py build_replica_model_uid: ``<uid>-rep<N>``).
On CPU no GPU lists the process, but the title and the /proc reading are the same: this launches a
model whose uid ends in digits (the old "<uid>-<N>" reading would take them for a replica) and parses
its process's /proc cmdline with gpu.py. Uids with spaces and commas: tests/integration/gpu_titles.
"""

from pathlib import Path

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu
from testkit.xinference import embedding, processes_marked, run_module

pytestmark = pytest.mark.integration

UID = "titled-minilm-2"


def model_processes(cluster):
    """gpu.describe_process of every process of the cluster whose title is a model's."""
    described = [gpu.describe_process(pid) for pid in processes_marked(cluster.session)]
    return [entry for entry in described if entry["model_uid"] is not None]


def test_a_launched_model_process_is_titled_and_parsed_by_uid_and_replica(xinference, tiny_models):
    launched = run_module(embedding(xinference, tiny_models, model_uid=UID))
    assert not launched.get("failed"), launched.get("msg")
    try:
        found = [entry for entry in model_processes(xinference) if entry["model_uid"] == UID]

        assert len(found) == 1, model_processes(xinference)
        (entry,) = found
        assert entry["model_replica"] == 0
        assert entry["visible_in_proc"] is True
        # The raw title as /proc shows it: setproctitle wrote it over argv.
        raw = Path("/proc/%d/cmdline" % entry["pid"]).read_bytes()
        assert raw.split(b"\0")[0].decode().strip() == "Model: %s-rep0" % UID
    finally:
        removed = run_module(embedding(xinference, tiny_models, model_uid=UID, state="absent"))
        assert not removed.get("failed"), removed.get("msg")
