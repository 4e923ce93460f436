"""Helpers shared by the test packages: paths and running the venv's tools the way a user does."""

import functools
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
# The lab inventory's secrets are vaulted with this lab-only password.
LAB_VAULT_PASSWORD = REPO / "inventories" / "lab" / "vault-password.txt"
# The real Xinference server (CPU) that lab/xinference/setup_venv.py builds, for tests and lab hosts.
XINFERENCE_VENV = REPO / ".cache" / "xinference-venv"


def venv_python_home() -> Path:
    """The Python installation the Xinference venv was made from (pyvenv.cfg `home` is its bin/)."""
    config = XINFERENCE_VENV / "pyvenv.cfg"
    if not config.is_file():
        raise FileNotFoundError(f"{XINFERENCE_VENV} is missing: run `make xinference-venv` first")
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    raise ValueError(f"{config} names no home")


def lab_playbook(playbook, *args):
    """The argv of ansible-playbook running `playbook` against the lab inventory, its vault opened."""
    return [
        "ansible-playbook",
        "-i",
        "inventories/lab",
        "--vault-password-file",
        str(LAB_VAULT_PASSWORD),
        str(playbook),
        *args,
    ]


def tool_env(**overrides):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env.update(overrides)
    return env


def run_tool(argv, cwd=REPO, **env_overrides):
    """Run a command from the repo root with the venv first in PATH; return the CompletedProcess."""
    return subprocess.run(argv, cwd=cwd, env=tool_env(**env_overrides), capture_output=True, text=True, check=False)


def playbook_results(stdout):
    """(task name, host, result) for each result of an ansible-playbook run with the json callback;
    ValueError, KeyError or TypeError when stdout is not that callback's output."""
    return [
        (task["task"]["name"], host, result)
        for play in json.loads(stdout)["plays"]
        for task in play["tasks"]
        for host, result in task["hosts"].items()
    ]


def failed_task_messages(stdout):
    """ "task on host: msg" for each failed result of an ansible-playbook run with the json callback;
    empty when stdout is not that callback's output."""
    try:
        results = playbook_results(stdout)
    except (ValueError, KeyError, TypeError):
        return []
    return [
        "%s on %s: %s" % (task, host, result.get("msg", "")) for task, host, result in results if result.get("failed")
    ]


def report(proc):
    """What a failed assertion on a finished command should show: the failed tasks' messages first,
    since a long run's output is cut from the front."""
    failures = "".join("--- failed: %s\n" % line for line in failed_task_messages(proc.stdout))
    return f"rc={proc.returncode}\n{failures}--- stdout\n{proc.stdout[-20000:]}\n--- stderr\n{proc.stderr[-5000:]}"


def recap(proc):
    """{host: {"ok": n, "changed": n, "failed": n, ...}} from the PLAY RECAP of an ansible-playbook run."""
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", proc.stdout, re.M)
    }


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


# Ports handed out by free_port in this process, so that one run never hands out a port twice.
_HANDED_OUT_PORTS = set()


@functools.cache
def _port_pool():
    """This process's share of the ports below the kernel's ephemeral range.

    A port the kernel may pick for an outgoing connection can be taken between free_port and the
    moment the test binds it (Docker's published ports are bound only when compose starts the
    containers); under two busy pytest-xdist workers that happened. Below the ephemeral range only an
    explicit bind takes a port, and each worker draws from its own slice of it.
    """
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    low = max(1024, ephemeral_low - 12000)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    size = (ephemeral_low - low) // workers
    return range(low + worker * size, low + (worker + 1) * size)


def free_port():
    """A TCP port that nothing listens on now, on any address, and that no outgoing connection takes."""
    pool = _port_pool()
    for port in random.sample(pool, len(pool)):
        if port in _HANDED_OUT_PORTS:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                continue
        _HANDED_OUT_PORTS.add(port)
        return port
    raise RuntimeError("no free port in %d-%d" % (pool.start, pool.stop - 1))


def module_environment(extra=None):
    """This process's environment without proxy variables (tests set their own), able to import the
    collection from the checkout, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if name.lower() not in PROXY_VARIABLES}
    env["PYTHONPATH"] = str(REPO / ".collections")
    env.update(extra or {})
    return env


class ModuleRunner:
    """Runs one of the collection's modules in a fresh Python the way Ansible's AnsiballZ does: its
    arguments in a JSON file. A call returns the module's JSON result; a traceback fails the test."""

    def __init__(self, module, tmp_path):
        self.module = "ansible_collections.llmops.ragstack.plugins.modules." + module
        self.tmp_path = tmp_path

    def _args_file(self, args, check_mode):
        # A file of its own per run, also across runners sharing tmp_path: commands may be built
        # before any of them runs.
        with tempfile.NamedTemporaryFile(
            "w", dir=self.tmp_path, prefix=self.module.rsplit(".", 1)[1] + "-args-", suffix=".json", delete=False
        ) as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}, handle)
        return Path(handle.name)

    def command(self, args, check_mode=False):
        """The argv that runs the module once with `args`, for callers that time or kill it."""
        return [sys.executable, "-m", self.module, str(self._args_file(args, check_mode))]

    def start(self, args, check_mode=False, env=None):
        """The module as a running process, for tests that interrupt it."""
        return subprocess.Popen(
            self.command(args, check_mode),
            env=module_environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, args, check_mode=False, env=None):
        process = self.start(args, check_mode, env)
        stdout, stderr = process.communicate(timeout=180)
        assert "Traceback" not in stdout + stderr, stderr
        try:
            return json.loads(stdout)
        except ValueError:
            raise AssertionError(
                "module printed no JSON (rc %d): %s %s" % (process.returncode, stdout, stderr)
            ) from None


def ansible_adhoc(module, args, *flags):
    """Run one of the collection's modules through `ansible localhost -m`, as an operator would, and
    return its result as the json callback reports it. Proxy variables are dropped: the modules
    under test talk to servers on 127.0.0.1. A crash (traceback, raw module output) fails the test."""
    env = module_environment(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        }
    )
    argv = [
        "ansible", "localhost", "-c", "local", "-i", "localhost,",
        "-e", "ansible_python_interpreter=%s" % (VENV_BIN / "python"),
        "-m", "llmops.ragstack." + module, "-a", json.dumps(args), *flags,
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no module result in the output of ansible:\n" + report(proc)) from None
    assert "Traceback" not in str(result.get("exception", "")) and "module_stderr" not in result, report(proc)
    return result
