"""A real Hugging Face mirror on loopback: olah (PyPI) serving local git repos, offline, with no upstream."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from testkit.hf_mirror.repos import GitMirrorRepo
from testkit.support import free_port, module_environment


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
            env=module_environment(),
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
