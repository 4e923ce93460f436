"""The ragflow role against the lab's real Docker engine and Compose v2, with the lab's images.

MariaDB (mysql) and Redis (redis) are real; es01, minio and ragflow-cpu are the stand-ins of
lab/stand_ins. The project is deployed once per module; the tests run in order and look at the real
containers: ids and start times of every service, es01's environment and memory limit, and what the
es01 stand-in reports as its heap.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import urllib.request

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit.support import REPO, free_port, playbook_results, report, run_tool

pytestmark = pytest.mark.lab

PROJECT = "ragstack-lab-ragflow"
IMAGE = "ragstack-lab/ragflow-services:bookworm"
PLAYBOOK = REPO / "tests" / "integration" / "ragflow_role" / "lab_deploy.yml"
SERVICES = ("es01", "mysql", "minio", "redis", "ragflow-cpu")
XINFERENCE = "http://xinference:9997"
MODELS = [
    {"name": "qwen2.5-instruct", "type": "chat", "max_tokens": 32768},
    {"name": "bge-m3", "type": "embedding"},
    {"name": "bge-reranker-v2-m3", "type": "rerank"},
]
GIB = 1024**3
MIB = 1024**2
# The lab's RAGFlow host: its compose override (the stand-ins of lab/stand_ins) is defined there once.
LAB_RAGFLOW_HOST_VARS = REPO / "inventories" / "lab" / "host_vars" / "ragstack-lab-ragflow.yml"


def lab_compose_override(private_pem, serving):
    """The lab inventory's compose override of RAGFlow's services, with this test's login key and the
    models its RAGFlow stand-in finds served."""
    host_vars = yaml.safe_load(LAB_RAGFLOW_HOST_VARS.read_text().replace("{{ lab_checkout }}", str(REPO)))
    override = host_vars["ragflow_compose_override"]
    ragflow = override["services"]["ragflow-cpu"]
    key_mount = ":/ragflow/conf/private.pem:ro"
    ragflow["volumes"] = [
        "%s%s" % (private_pem, key_mount) if volume.endswith(key_mount) else volume for volume in ragflow["volumes"]
    ]
    ragflow["environment"]["RAGFLOW_STAND_IN_SERVING"] = serving
    return override


class LabProject:
    """The lab's variables for the role, ansible-playbook runs with them, and the project's containers."""

    def __init__(self, workdir, lab_image):
        self.workdir = workdir
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = workdir / "private.pem"
        private_pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        public_pem = workdir / "public.pem"
        public_pem.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self.elastic_password = secrets.token_urlsafe(12)
        self.admin_password = secrets.token_urlsafe(12)
        self.ports = {name: free_port() for name in ("api", "es", "web_http")}
        self.variables = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(REPO / ".venv" / "bin" / "python"),
            "ragflow_project_name": PROJECT,
            "ragflow_project_dir": str(workdir / "project"),
            "ragflow_image": lab_image,
            "ragflow_es_image": lab_image,
            "ragflow_mysql_image": lab_image,
            "ragflow_minio_image": lab_image,
            "ragflow_redis_image": lab_image,
            "ragflow_es_heap": "512m",
            "ragflow_api_port": self.ports["api"],
            "ragflow_es_port": self.ports["es"],
            "ragflow_web_http_port": self.ports["web_http"],
            **{
                "ragflow_%s_port" % name: free_port()
                for name in (
                    "web_https",
                    "admin",
                    "mcp",
                    "go_http",
                    "go_admin",
                    "mysql",
                    "minio",
                    "minio_console",
                    "redis",
                )
            },
            "ragflow_elastic_password": self.elastic_password,
            "ragflow_mysql_password": secrets.token_urlsafe(12),
            "ragflow_minio_password": secrets.token_urlsafe(12),
            "ragflow_redis_password": secrets.token_urlsafe(12),
            "ragflow_admin_password": self.admin_password,
            "ragflow_admin_public_key": str(public_pem),
            "ragflow_xinference_url": XINFERENCE,
            "ragflow_xinference_models": MODELS,
            "ragflow_healthz_timeout": 60,
            "ragflow_compose_override": lab_compose_override(
                private_pem, "%s=%s" % (XINFERENCE, ",".join(model["name"] for model in MODELS))
            ),
        }

    def play(self, *extra_args, **overrides):
        """Run the playbook; (CompletedProcess, per-task results, changed tasks) from the json callback."""
        variables = self.workdir / "variables.json"
        variables.write_text(json.dumps({**self.variables, **overrides}))
        proc = run_tool(
            ["ansible-playbook", "-i", "localhost,", str(PLAYBOOK), "-e", "@%s" % variables, *extra_args],
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            # Modules run on this machine: sending them through a pipe saves a temporary file each.
            ANSIBLE_PIPELINING="true",
        )
        try:
            results = playbook_results(proc.stdout)
        except ValueError:
            pytest.fail(report(proc), pytrace=False)
        tasks = {task.split(" : ")[-1]: result for task, host, result in results if host == "localhost"}
        changed = sorted(name for name, result in tasks.items() if result.get("changed"))
        return proc, tasks, changed

    def containers(self):
        """Service name -> docker inspect of its container."""
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=%s" % PROJECT],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not ids:
            return {}
        inspected = json.loads(
            subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
        )
        return {item["Config"]["Labels"]["com.docker.compose.service"]: item for item in inspected}

    def identities(self):
        """Service -> (container id, start time): what changes when compose recreates or restarts it."""
        return {service: (item["Id"], item["State"]["StartedAt"]) for service, item in self.containers().items()}

    def published(self, service):
        """`docker port` of a service's container: one "<container port> -> <host address:port>" per line."""
        container = self.containers()[service]["Id"]
        proc = subprocess.run(["docker", "port", container], capture_output=True, text=True, check=True)
        return proc.stdout.split("\n")

    def es_heap(self):
        """(heap init, heap max) as the es01 stand-in reports them on its published port."""
        request = urllib.request.Request("http://127.0.0.1:%d/_nodes/stats/jvm" % self.ports["es"])
        credentials = base64.b64encode(("elastic:%s" % self.elastic_password).encode()).decode()
        request.add_header("Authorization", "Basic " + credentials)
        with urllib.request.urlopen(request, timeout=10) as response:
            (node,) = json.load(response)["nodes"].values()
        return node["jvm"]["mem"]["heap_init_in_bytes"], node["jvm"]["mem"]["heap_max_in_bytes"]

    def down(self):
        """docker compose down by project name, which needs no compose file."""
        subprocess.run(
            ["docker", "compose", "-p", PROJECT, "down", "--volumes", "--remove-orphans", "--timeout", "2"],
            cwd=self.workdir,
            capture_output=True,
            check=False,
        )


@pytest.fixture(scope="module")
def lab_project(tmp_path_factory):
    proc = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail("the lab image %s is missing: run `make lab` first" % IMAGE, pytrace=False)
    workdir = tmp_path_factory.mktemp("ragflow-lab")
    project = LabProject(workdir, IMAGE)
    # Compose finds a project's containers by name: this also removes those of an interrupted run.
    project.down()
    yield project
    project.down()
    shutil.rmtree(workdir, ignore_errors=True)


def es01_environment(project):
    return project.containers()["es01"]["Config"]["Env"]


def test_check_mode_on_a_fresh_host_creates_nothing(lab_project):
    proc, _tasks, changed = lab_project.play("--check")

    assert proc.returncode == 0, report(proc)
    assert "Render docker-compose.yml and init.sql" in changed
    assert lab_project.containers() == {}
    assert not (lab_project.workdir / "project").exists()


def test_first_run_deploys_caps_the_heap_and_registers_xinference(lab_project):
    proc, tasks, changed = lab_project.play()

    assert proc.returncode == 0, report(proc)
    containers = lab_project.containers()
    assert sorted(containers) == sorted(SERVICES)
    assert all(item["State"]["Running"] for item in containers.values())
    assert "ES_JAVA_OPTS=-Xms512m -Xmx512m" in es01_environment(lab_project)
    assert containers["es01"]["HostConfig"]["Memory"] == GIB
    assert lab_project.es_heap() == (512 * MIB, 512 * MIB)
    registration = tasks["Register the Xinference models and make them the tenant's defaults"]
    assert registration["api_generation"] == "v0.27"
    assert registration["defaults"] == {
        "chat": "qwen2.5-instruct",
        "embedding": "bge-m3",
        "rerank": "bge-reranker-v2-m3",
    }
    assert "Deploy the compose project" in changed
    # The stand-in starts as a new RAGFlow does: admin@ragflow.io / admin, changed to the vaulted password.
    first_boot = tasks["Set the admin's password (RAGFlow's first boot)"]
    assert first_boot["changed"] is True
    assert first_boot["msg"] == "changed the password of admin@ragflow.io from initial_password"
    # This machine is a Docker container: the role reports vm.max_map_count instead of failing.
    assert "Report vm.max_map_count that a container cannot raise" in tasks
    assert "cannot change it" in tasks["Report vm.max_map_count that a container cannot raise"]["msg"]
    assert tasks["Raise vm.max_map_count and persist it in /etc/sysctl.d"].get("skipped") is True


def test_second_run_changes_nothing_in_check_mode_and_for_real(lab_project):
    before = lab_project.identities()

    checked, check_tasks, check_changed = lab_project.play("--check")
    proc, tasks, changed = lab_project.play()

    assert checked.returncode == 0, report(checked)
    assert proc.returncode == 0, report(proc)
    assert check_changed == changed == []
    # Both runs asked RAGFlow: the provider registration found nothing to do.
    registration = "Register the Xinference models and make them the tenant's defaults"
    assert check_tasks[registration]["changes"] == tasks[registration]["changes"] == []
    assert lab_project.identities() == before


def test_only_web_and_api_are_published_beyond_loopback(lab_project):
    data_services = {"es01": ["9200"], "mysql": ["3306"], "minio": ["9000", "9001"], "redis": ["6379"]}
    for service, ports in data_services.items():
        lines = [line for line in lab_project.published(service) if line]
        assert sorted(line.split("/")[0] for line in lines) == sorted(ports), lines
        assert all(line.split(" -> ")[1].startswith("127.0.0.1:") for line in lines), (service, lines)
    ragflow = [line for line in lab_project.published("ragflow-cpu") if line]
    api = [line for line in ragflow if line.startswith("9380/tcp")]
    assert api and all(line.split(" -> ")[1].startswith(("0.0.0.0:", "[::]:")) for line in api), ragflow


def test_check_mode_with_a_new_heap_changes_nothing(lab_project):
    before = lab_project.identities()
    compose_file = (lab_project.workdir / "project" / "docker-compose.yml").read_text()

    proc, _tasks, changed = lab_project.play("--check", ragflow_es_heap="768m")

    assert proc.returncode == 0, report(proc)
    assert "Render docker-compose.yml and init.sql" in changed
    assert lab_project.identities() == before
    assert (lab_project.workdir / "project" / "docker-compose.yml").read_text() == compose_file
    assert "ES_JAVA_OPTS=-Xms512m -Xmx512m" in es01_environment(lab_project)


def test_a_new_heap_recreates_es01_and_nothing_else(lab_project):
    before = lab_project.identities()

    proc, _tasks, changed = lab_project.play(ragflow_es_heap="768m")

    assert proc.returncode == 0, report(proc)
    assert "Deploy the compose project" in changed
    after = lab_project.identities()
    assert after["es01"][0] != before["es01"][0]
    assert {service: after[service] for service in SERVICES if service != "es01"} == {
        service: before[service] for service in SERVICES if service != "es01"
    }
    assert "ES_JAVA_OPTS=-Xms768m -Xmx768m" in es01_environment(lab_project)
    assert lab_project.containers()["es01"]["HostConfig"]["Memory"] == 1536 * MIB
    assert lab_project.es_heap() == (768 * MIB, 768 * MIB)

    settled, _tasks, changed_again = lab_project.play(ragflow_es_heap="768m")
    assert settled.returncode == 0, report(settled)
    assert changed_again == []


def test_a_loopback_xinference_url_is_refused_with_the_reason(lab_project):
    proc, tasks, _changed = lab_project.play(ragflow_es_heap="768m", ragflow_xinference_url="http://127.0.0.1:9997")

    assert proc.returncode == 2
    failed = tasks["Register the Xinference models and make them the tenant's defaults"]
    assert failed["failed"] is True
    assert "inside its container, where 127.0.0.1 is the container itself" in failed["msg"]


def test_an_unhealthy_component_is_named(lab_project):
    """minio runs but serves nothing, so RAGFlow's healthz reports its storage as nok."""
    override = json.loads(json.dumps(lab_project.variables["ragflow_compose_override"]))
    override["services"]["minio"]["command"] = ["sleep", "infinity"]

    proc, tasks, _changed = lab_project.play(
        ragflow_es_heap="768m", ragflow_healthz_timeout=5, ragflow_compose_override=override
    )

    assert proc.returncode == 2
    message = tasks["Name what is not healthy"]["msg"]
    assert message.startswith("RAGFlow at http://127.0.0.1:%d is not healthy after 5 s: " % lab_project.ports["api"])
    assert "storage=nok (service minio)" in message
    assert "db=" not in message
