"""Helpers shared by the test packages: paths and running the venv's tools the way a user does."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


def tool_env(**overrides):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env.update(overrides)
    return env


def run_tool(argv, cwd=REPO, **env_overrides):
    """Run a command from the repo root with the venv first in PATH; return the CompletedProcess."""
    return subprocess.run(argv, cwd=cwd, env=tool_env(**env_overrides), capture_output=True, text=True, check=False)


def report(proc):
    """What a failed assertion on a finished command should show."""
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-5000:]}"
