"""Timings of llmops.ragstack.xinference_model on a real Xinference 4.1 cluster on CPU.

  1. no-change run: wall time of `ansible localhost -m ...xinference_model` on a healthy model, and
     of the module alone (what it adds on a managed host: describe + one-token probe), median of N.
  2. dead worker: SIGKILL the worker with its model processes, start a replacement as a restart
     policy would, run the module at once; time from the kill to the module returning the model
     healthy (the tiny Qwen2 in bnb 4-bit through transformers).

It starts its own cluster (the integration tests' fixture code) and stops it, leaving no process.

Run: .venv/bin/python bench/xinference_heal.py [--runs 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / ".collections"))

from testkit.support import ModuleRunner  # noqa: E402
from testkit.xinference import (  # noqa: E402
    XINFERENCE_VENV,
    Cluster,
    run_module,
    tiny_llm,
)


def write_models(directory):
    subprocess.run(
        [str(XINFERENCE_VENV / "bin" / "python"), str(REPO / "tests/integration/xinference/tiny_models.py"), directory],
        check=True,
        capture_output=True,
    )
    return {"qwen2": str(Path(directory) / "qwen2")}


def timed(function):
    started = time.monotonic()
    value = function()
    return time.monotonic() - started, value


def module_alone(args, workdir):
    """Run the module file as Ansible runs it on a host (python -m with an args file), no controller."""
    result = ModuleRunner("xinference_model", Path(workdir))(args)
    assert not result.get("failed") and not result["changed"], result
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="no-change runs to take the median of")
    parser.add_argument("--rounds", type=int, default=2, help="dead-worker rounds")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        cluster = Cluster(Path(workdir))
        try:
            cluster.start_supervisor()
            cluster.start_worker()
            args = tiny_llm(cluster, write_models(workdir))
            launch_s, launched = timed(lambda: run_module(args))
            assert launched["changed"] and not launched.get("failed"), launched

            ansible_s = [timed(lambda: run_module(args))[0] for run in range(options.runs)]
            alone_s = [timed(lambda: module_alone(args, workdir))[0] for run in range(options.runs)]

            heals = []
            for heal_round in range(options.rounds):
                killed_at = time.monotonic()
                cluster.kill_worker()
                cluster.spawn_worker()
                healed = run_module(args)
                heals.append(time.monotonic() - killed_at)
                assert healed["healed"] and not healed.get("failed"), (heal_round, healed)
        finally:
            left = cluster.stop()
    print(
        json.dumps(
            {
                "first_launch_s": round(launch_s, 2),
                "no_change_ansible_median_s": round(statistics.median(ansible_s), 3),
                "no_change_module_alone_median_s": round(statistics.median(alone_s), 3),
                "kill_to_healthy_s": [round(value, 1) for value in heals],
                "processes_left": left,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
