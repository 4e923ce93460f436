"""Process titles as Xinference 4.1 sets them, read back from /proc by gpu.py.

Xinference titles a model process with setproctitle.setproctitle(f"Model: {replica_model_uid}")
(xinference/core/model.py, ModelActor.load) and builds the replica uid as f"{uid}-rep{n}"
(core/utils.py, build_replica_model_uid). This runs the same setproctitle, from the Xinference venv,
in a child process and parses its /proc entry the way gpu_facts does; the cluster test
tests/integration/xinference/test_gpu_process_titles.py does it with a real launched model.
"""

import subprocess

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils import gpu
from testkit.xinference import XINFERENCE_VENV

pytestmark = pytest.mark.integration

TITLE_SCRIPT = """
import sys
import setproctitle
from xinference.core.utils import build_replica_model_uid
setproctitle.setproctitle("Model: %s" % build_replica_model_uid(sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(
    ("uid", "replica"),
    [("bge-m3", 0), ("llama-2", 1), ("qwen2.5 chat, 4-bit, v2", 3)],
    ids=["plain", "uid-ending-in-digits", "spaces-and-commas"],
)
def test_the_title_xinference_sets_is_parsed_into_uid_and_replica(uid, replica):
    python = XINFERENCE_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip("the Xinference venv is not built (python3 lab/xinference/setup_venv.py)")
    child = subprocess.Popen(
        [str(python), "-c", TITLE_SCRIPT, uid, str(replica)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        entry = gpu.describe_process(child.pid)
    finally:
        child.stdin.close()
        child.wait(timeout=30)

    assert (entry["model_uid"], entry["model_replica"]) == (uid, replica)
    assert entry["cmdline"].startswith("Model: %s-rep%d" % (uid, replica))
    assert entry["visible_in_proc"] is True
