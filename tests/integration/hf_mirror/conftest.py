"""Servers on 127.0.0.1 for the hf_mirror_download tests, and ways to run the module as Ansible does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .fake_hub import FakeHub
from .repos import GitMirrorRepo

REPO = Path(__file__).resolve().parents[3]
MODULE = "ansible_collections.llmops.ragstack.plugins.modules.hf_mirror_download"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def clean_environment(extra=None):
    """This process's environment without proxy variables (the tests set their own), plus `extra`."""
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env["PYTHONPATH"] = str(REPO / ".collections")
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ModuleRunner:
    """Runs the module file in a fresh Python the way Ansible's AnsiballZ does: arguments in a JSON file."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.count = 0

    def args_file(self, args: dict, check_mode: bool) -> Path:
        self.count += 1
        path = self.tmp_path / ("module-args-%d.json" % self.count)
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
        return path

    def start(self, args: dict, check_mode: bool = False, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", MODULE, str(self.args_file(args, check_mode))],
            env=clean_environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, args: dict, check_mode: bool = False, env: dict | None = None) -> dict:
        process = self.start(args, check_mode, env)
        stdout, stderr = process.communicate(timeout=120)
        try:
            return json.loads(stdout)
        except ValueError:
            raise AssertionError(
                "module printed no JSON (rc %d): %s %s" % (process.returncode, stdout, stderr)
            ) from None


@pytest.fixture
def run_module(tmp_path) -> ModuleRunner:
    return ModuleRunner(tmp_path)


@pytest.fixture
def fake_hub():
    hub = FakeHub().start()
    yield hub
    hub.stop()


class OlahMirror:
    """olah (PyPI) serving git repos from `mirrors-path` with `offline = true`: a real mirror, no upstream."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mirrors = workdir / "mirrors"
        self.mirrors.mkdir()
        self.port = free_port()
        config = workdir / "olah.toml"
        config.write_text(
            '[basic]\nhost = "127.0.0.1"\nport = %d\nmirrors-path = ["%s"]\nrepos-path = "%s"\n'
            "metadata-cache-ttl = 0\n\n[accessibility]\noffline = true\n" % (self.port, self.mirrors, workdir / "cache")
        )
        self.log = open(workdir / "olah.log", "w")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "olah-cli"), "-c", str(config)],
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=clean_environment(),
        )
        self.wait_until_up()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("olah exited: %s" % (self.workdir / "olah.log").read_text()[-2000:])
            try:
                requests.get(self.url + "/api/models/none/none/revision/main", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("olah did not answer within %d s" % timeout)

    def new_repo(self, repo_id: str) -> GitMirrorRepo:
        return GitMirrorRepo(self.mirrors, repo_id)

    def served_paths(self) -> list[str]:
        """Request lines olah logged so far (it logs one per request)."""
        return [line for line in (self.workdir / "olah.log").read_text().splitlines() if '"GET /' in line]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def olah(tmp_path_factory):
    mirror = OlahMirror(tmp_path_factory.mktemp("olah"))
    yield mirror
    mirror.stop()
