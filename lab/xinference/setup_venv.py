#!/usr/bin/env python3
"""Build the venv of the real Xinference server the lab and the integration tests run on CPU.

    python3 lab/xinference/setup_venv.py [--venv DIR]

The venv (default .cache/xinference-venv) is separate from the controller's .venv, whose pins
Xinference's own dependencies would otherwise move. Running it again does nothing while the venv
was built from the same requirements.txt and server.txt: their SHA-256 is kept in the venv.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REQUIREMENTS = HERE / "requirements.txt"
SERVER = HERE / "server.txt"
CONSTRAINTS = HERE / "constraints.txt"
DEFAULT_VENV = REPO / ".cache" / "xinference-venv"
STAMP = "llmops-requirements.sha256"


def requirements_digest():
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, SERVER, CONSTRAINTS):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def venv_size_mib(venv):
    return sum(path.stat().st_size for path in venv.rglob("*") if path.is_file() and not path.is_symlink()) >> 20


def build(venv):
    stamp = venv / STAMP
    wanted = requirements_digest()
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        print("xinference venv %s is up to date" % venv)
        return
    # A venv from other requirements may hold packages the new ones no longer want: start clean.
    shutil.rmtree(venv, ignore_errors=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-c", str(CONSTRAINTS)]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "--no-deps", "-r", str(SERVER)], check=True)
    # The import a server start would do first: fail here, not in the middle of a test run.
    server_imports = "import xinference.api.restful_api, torch, bitsandbytes"
    subprocess.run([str(venv / "bin" / "python"), "-c", server_imports], check=True)
    stamp.write_text(wanted + "\n")
    print(
        "xinference venv %s built in %.0f s, %d MiB" % (venv, time.monotonic() - started, venv_size_mib(venv)),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    build(parser.parse_args().venv.resolve())


if __name__ == "__main__":
    main()
