"""The role's container mode for real, on the lab's Docker engine (issue 11, "Container mode for real").

The image is the lab's ragstack-lab/xinference:4.1.0-cpu (lab/images.yml): Xinference 4.1.0 on CPU
without bitsandbytes, as the published xprobe/xinference:v4.1.0 is. The role builds an image FROM it
with bitsandbytes pip-installed from a package index on loopback (the operator's index
xinference_pip_index_url: a folder of wheels served by testkit.package_index; nothing else is
reachable), deploys the compose project (single host), launches the lab's embedding, rerank and 4-bit
chat models, and probes them. A second run changes nothing. The container's main process is then
SIGKILLed, as the OOM killer or a crash would: the restart policy brings it back, Docker reports it
healthy, and the next run relaunches the models it lost and the probes pass.

Run it under the shared lock:
    flock /tmp/ragstack-heavy.lock .venv/bin/pytest -m lab tests/integration/xinference_container
"""

import json
import os
import re
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from testkit.package_index import PackageIndex, download_wheels
from testkit.support import REPO, VENV_BIN, free_port, recap, report, run_tool

pytestmark = pytest.mark.lab

IMAGE = "ragstack-lab/xinference:4.1.0-cpu"
PLAYBOOK = Path(__file__).with_name("container_mode.yml")
LAB_VARS = REPO / "inventories" / "lab" / "group_vars" / "all" / "main.yml"
WHEELS = REPO / ".cache" / "wheels"
# The version the lab venv is built with (lab/xinference/constraints.txt).
BITSANDBYTES = next(
    line.strip()
    for line in (REPO / "lab" / "xinference" / "constraints.txt").read_text().splitlines()
    if line.startswith("bitsandbytes==")
)
HEALTHY_TIMEOUT = 240
# The playbook's last assertion, when every probe passed.
VERIFIED = "gateway, model lab-embedding, model lab-rerank, model lab-chat pass"


def docker(*args, check=True):
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert not check or proc.returncode == 0, report(proc)
    return proc


def lab_models():
    """The lab's three models (inventories/lab), from the container's /models."""
    models = yaml.safe_load(LAB_VARS.read_text())["xinference_models"]
    return [{**model, "model_path": model["model_path"].replace("/opt/models/", "/models/")} for model in models]


class Deployment:
    """One compose project of the role on this machine's engine, and the playbook runs against it."""

    def __init__(self, workdir, index_url):
        self.workdir = workdir
        self.project = "ragstack-test-xinf-" + uuid.uuid4().hex[:8]
        self.variables = {
            "ansible_python_interpreter": str(VENV_BIN / "python"),
            "hf_models_endpoint": "http://127.0.0.1:18090",
            "hf_models_root": str(workdir / "models"),
            "hf_models_list": [
                {"repo_id": "ragstack-lab/all-minilm-l6-v2"},
                {"repo_id": "ragstack-lab/tiny-reranker"},
                {"repo_id": "ragstack-lab/tiny-qwen2"},
            ],
            "hf_models_poll_interval": 2,
            "xinference_deploy": "container",
            "xinference_image": IMAGE,
            # The lab's image is a CPU build, as upstream's -cpu tags are: it is the image for xinference_gpus false.
            "xinference_cpu_image": IMAGE,
            "xinference_image_packages": [BITSANDBYTES],
            "xinference_pip_index_url": index_url,
            "xinference_project_name": self.project,
            "xinference_project_dir": str(workdir / "project"),
            "xinference_home_dir": str(workdir / "home"),
            "xinference_models_dir": str(workdir / "models"),
            "xinference_port": free_port(),
            "xinference_bind_address": "127.0.0.1",
            "xinference_gpus": False,
            "xinference_shm_size": "1g",
            # Advanced auth on, as Xinference 4.x ships: the role sets the server up and hands on the key.
            "xinference_admin_password": secrets.token_urlsafe(16),
            # The loopback index serves bitsandbytes only, so no model virtualenv is built (the documented
            # setting for a network without a full package index).
            "xinference_model_virtualenv": False,
            "xinference_extra_env": {"HF_HUB_OFFLINE": "1"},
            "xinference_start_timeout": 180,
            "xinference_model_wait_timeout": 300,
            "xinference_models": lab_models(),
        }
        self.timings = {}

    def run(self, name):
        started = time.monotonic()
        proc = run_tool(
            ["ansible-playbook", "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(self.variables)],
            ANSIBLE_NOCOLOR="1",
        )
        self.timings[name] = time.monotonic() - started
        assert proc.returncode == 0, report(proc)
        return recap(proc)["localhost"], proc

    def container(self):
        ids = docker("compose", "-p", self.project, "ps", "-q").stdout.split()
        assert len(ids) == 1, ids
        return ids[0]

    def state(self):
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.container()).stdout)

    def built_image(self):
        return json.loads(docker("inspect", "--format", "{{json .Config}}", self.container()).stdout)["Image"]

    def down(self):
        return docker("compose", "-p", self.project, "down", "--volumes", "--remove-orphans", "--timeout", "5")


@pytest.fixture(scope="module")
def lab_xinference_image():
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `make lab` (lab/images.yml builds it)", pytrace=False)
    return IMAGE


@pytest.fixture(scope="module")
def package_index():
    """bitsandbytes, at the lab venv's version, in a package index on loopback."""
    assert download_wheels([BITSANDBYTES], WHEELS)
    with PackageIndex(WHEELS) as index:
        yield index


@pytest.fixture(scope="module")
def deployment(lab_xinference_image, package_index, tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("xinference-container"), package_index.url)
    try:
        yield deployment
    finally:
        built = docker("compose", "-p", deployment.project, "images", "-q", check=False).stdout.split()
        deployment.down()
        assert not docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={deployment.project}").stdout
        # The built image goes too: the next run proves the build from the index again.
        for image in built:
            docker("image", "rm", image, check=False)
        print("container mode timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in deployment.timings.items()))


def test_the_lab_image_lacks_bitsandbytes_as_the_published_one(lab_xinference_image):
    proc = docker(
        "run", "--rm", "--network", "none", lab_xinference_image, "python3", "-c", "import bitsandbytes", check=False
    )
    assert proc.returncode != 0
    assert "No module named 'bitsandbytes'" in proc.stderr


def test_container_mode_deploys_launches_converges_and_recovers(deployment, package_index):
    counts, proc = deployment.run("first deploy")
    assert counts["changed"] > 0 and counts["failed"] == 0
    assert VERIFIED in proc.stdout, report(proc)
    # bitsandbytes came from the loopback index, into the image the project runs.
    assert any(name.startswith("bitsandbytes-") for name in package_index.served), package_index.served
    image = deployment.built_image()
    assert image.startswith("llmops-ragstack/xinference:"), image
    proc = docker("run", "--rm", "--network", "none", image, "python3", "-c", "import bitsandbytes")
    assert deployment.state()["Health"]["Status"] in ("starting", "healthy")

    counts, proc = deployment.run("second run")
    assert counts["changed"] == 0, report(proc)
    assert package_index.served.count(next(n for n in package_index.served if n.startswith("bitsandbytes-"))) == 1

    before = deployment.state()
    os.kill(before["Pid"], signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + HEALTHY_TIMEOUT
    while True:
        state = deployment.state()
        if state["StartedAt"] != before["StartedAt"] and state.get("Health", {}).get("Status") == "healthy":
            break
        assert time.monotonic() < deadline, "not healthy %ss after the kill: %s" % (HEALTHY_TIMEOUT, state)
        time.sleep(1)
    deployment.timings["kill -> healthy"] = time.monotonic() - killed
    assert state["Status"] == "running" and state["Pid"] != before["Pid"]

    # A restarted xinference-local has a new supervisor, which knows no model: Xinference's own
    # worker recovery skips them (core/worker.py _try_recover_models), the role relaunches them.
    counts, proc = deployment.run("run after the kill")
    assert counts["failed"] == 0 and "lab-chat" in "".join(re.findall(r"^changed: .*$", proc.stdout, re.M)), report(
        proc
    )
    assert VERIFIED in proc.stdout, report(proc)


def test_without_the_built_image_the_4bit_launch_fails_naming_bitsandbytes(lab_xinference_image, tmp_path):
    """Why the role builds an image: the lab image as it is (like the published one) cannot load 4-bit."""
    deployment = Deployment(tmp_path, "")
    chat = next(model for model in lab_models() if "quantization_config" in model)
    deployment.variables.update(
        xinference_image_packages=[],
        xinference_models=[{**chat, "wait_timeout": 120}],
        hf_models_list=[{"repo_id": "ragstack-lab/tiny-qwen2"}],
    )
    try:
        proc = run_tool(
            ["ansible-playbook", "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(deployment.variables)],
            ANSIBLE_NOCOLOR="1",
        )
        assert proc.returncode != 0 and recap(proc)["localhost"]["failed"] == 1, report(proc)
        assert "bitsandbytes" in proc.stdout, report(proc)
        assert deployment.built_image() == lab_xinference_image
    finally:
        deployment.down()


def test_cluster_in_the_host_network(lab_xinference_image, package_index, tmp_path):
    """Supervisor and worker as on two GPU hosts: two compose projects in the host's network (here one
    machine, so one engine and distinct ports); the worker runs the models the supervisor launches."""
    deployment = Deployment(tmp_path, package_index.url)
    worker = {
        "xinference_project_name": deployment.project + "-worker",
        "xinference_project_dir": str(tmp_path / "worker-project"),
        "xinference_home_dir": str(tmp_path / "worker-home"),
        # Same machine, same folder: the supervisor's host downloads the models once.
        "hf_models_list": [],
    }
    cluster_vars = {
        **deployment.variables,
        "ansible_connection": "local",
        "ansible_host": "127.0.0.1",
        "xinference_node_address": "127.0.0.1",
        "xinference_supervisor_port": free_port(),
        "xinference_worker_port": free_port(),
    }
    inventory = tmp_path / "cluster.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": cluster_vars,
                    "children": {
                        "xinference_supervisor": {"hosts": {"supervisor": None}},
                        "xinference_workers": {"hosts": {"worker": worker}},
                    },
                }
            }
        )
    )
    built = []
    try:
        for name in ("cluster deploy", "cluster second run"):
            started = time.monotonic()
            proc = run_tool(["ansible-playbook", "-i", str(inventory), str(PLAYBOOK)], ANSIBLE_NOCOLOR="1")
            deployment.timings[name] = time.monotonic() - started
            assert proc.returncode == 0, report(proc)
            assert VERIFIED in proc.stdout, report(proc)
            built = docker("compose", "-p", deployment.project, "images", "-q").stdout.split()
        assert {host: counts["changed"] for host, counts in recap(proc).items()} == {"supervisor": 0, "worker": 0}
        for project in (deployment.project, worker["xinference_project_name"]):
            container = docker("compose", "-p", project, "ps", "-q").stdout.strip()
            network = docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", container).stdout.strip()
            assert network == "host", (project, network)
    finally:
        deployment.down()
        docker("compose", "-p", worker["xinference_project_name"], "down", "--remove-orphans", "--timeout", "5")
        for image in built:
            docker("image", "rm", image, check=False)
        print("cluster timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in deployment.timings.items()))
