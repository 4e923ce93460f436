"""The README's main job: playbooks/site.yml against the lab inventory, as `make run` runs it.

The tests share the lab and run in file order:
0. The lab is created anew (its hosts and RAGFlow's project; the mirror keeps serving), and `site.yml --check` runs
   on it first: every stage says what it would change, nothing fails, and nothing is deployed.
1. A first run, with -vvv, deploys (or converges) the whole stack: three GPU-host containers (the
   real Xinference on CPU as supervisor + two workers, models from the lab's olah mirror) and
   RAGFlow's compose project on this machine (real MariaDB and Redis, stand-ins for es01, minio and
   RAGFlow itself). It ends with each host's verification table; every check passes or is skipped.
2. Nothing a user must keep secret appears in that output or in any report file.
3. Failure injection: one host's mirror is a port nothing listens on. The other hosts finish, the run
   fails, and that host's report names the stage and the cause.
4. The next run, with the mirror back, converges that host and changes nothing anywhere (the failed
   host had nothing left to change either); a check-mode run, one host at a time, changes nothing.
"""

import json
import re
import subprocess
import sys

import pytest
import yaml

from testkit.support import LAB_VAULT_PASSWORD, REPO, ModuleRunner, free_port, lab_playbook, report, run_tool

RAGFLOW_PROJECT = "ragstack-lab-stack"
STAGE_PLAYS = {
    "models": "Download the models through the mirror",
    "xinference": "Serve the models with Xinference",
    "ragflow": "Deploy RAGFlow and connect it to Xinference",
}

pytestmark = pytest.mark.lab

GPU_HOSTS = ["ragstack-lab-gpu-1", "ragstack-lab-gpu-2", "ragstack-lab-gpu-3"]
ALL_HOSTS = [*GPU_HOSTS, "ragstack-lab-ragflow"]
VAULT = REPO / "inventories" / "lab" / "group_vars" / "all" / "vault.yml"


def lab_hosts():
    proc = subprocess.run(
        ["docker", "ps", "--filter", "label=io.llmops.ragstack.lab=1", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(proc.stdout.split())


class MainJob:
    """ansible-playbook site.yml on the lab, each run's reports in a folder of its own."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.runs = 0

    def run(self, *flags, **extra_vars):
        self.runs += 1
        reports = self.workdir / ("reports-%d" % self.runs)
        variables = {"stack_verify_report_dir": str(reports), **extra_vars}
        proc = run_tool(lab_playbook("playbooks/site.yml", "-e", json.dumps(variables), *flags), ANSIBLE_NOCOLOR="1")
        return proc, reports


def recap(proc):
    """{host: {"ok": n, "changed": n, "failed": n, ...}} from the PLAY RECAP."""
    return {
        host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
        for host, counts in re.findall(r"^(\S+)\s+: (ok=.*)$", proc.stdout, re.M)
    }


def read_reports(folder):
    return {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}


def verdicts(host_report):
    return {check["name"]: check["verdict"] for check in host_report["checks"]}


def play_output(proc, play):
    """The part of the output of the play named `play` (up to the next play or the recap)."""
    start = proc.stdout.index("PLAY [%s]" % play)
    ends = [proc.stdout.find(marker, start + 1) for marker in ("\nPLAY [", "\nPLAY RECAP")]
    return proc.stdout[start : min(end for end in ends if end != -1)]


def host_shell(host, command):
    return subprocess.run(["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def fresh_lab(lab_image):
    """The lab created anew: new host containers, no RAGFlow project (the mirror, which other tests
    may be reading from, keeps serving)."""
    proc = run_tool([sys.executable, "lab/lab.py", "reset"])
    assert proc.returncode == 0, report(proc)
    assert set(GPU_HOSTS) <= set(lab_hosts())


@pytest.fixture(scope="module")
def main_job(fresh_lab, tmp_path_factory):
    return MainJob(tmp_path_factory.mktemp("main-job"))


def test_check_mode_on_a_fresh_lab_passes_reports_each_stage_and_deploys_nothing(main_job):
    proc, reports_dir = main_job.run("--check")
    assert proc.returncode == 0, report(proc)
    assert {host: counts["failed"] for host, counts in recap(proc).items()} == dict.fromkeys(
        [*ALL_HOSTS, "localhost"], 0
    ), proc.stdout[-5000:]
    # Each deploying stage says what it would change.
    for stage, play in STAGE_PLAYS.items():
        assert "changed: [" in play_output(proc, play), "stage %s reports no change on a fresh lab" % stage
    # ... and nothing was deployed: no model files, no Xinference process, no RAGFlow container.
    for host in GPU_HOSTS:
        models = host_shell(host, "find /opt/models -type f 2>/dev/null | head -1")
        assert models.stdout.strip() == "", (host, models.stdout)
        xinference = host_shell(host, "pgrep -f 'xinference-(supervisor|worker|local)'")
        assert xinference.stdout.strip() == "", (host, xinference.stdout)
    project = subprocess.run(
        ["docker", "compose", "-p", RAGFLOW_PROJECT, "ps", "-a", "-q"], capture_output=True, text=True, check=True
    )
    assert project.stdout.strip() == ""
    # What needs a running service is reported as not known yet, never as a failure; check mode writes
    # no report file, and each host's table is printed.
    assert not reports_dir.exists() or sorted(reports_dir.iterdir()) == []
    tail = proc.stdout[proc.stdout.rindex("TASK [llmops.ragstack.stack_verify : Print the verification table") :]
    for host in ALL_HOSTS:
        assert re.search(r"%s: PASS \(\d+ pass, 0 fail, \d+ skip\)" % re.escape(host), tail), tail[-4000:]
    assert "check mode, not running yet" in tail


@pytest.fixture(scope="module")
def first_run(main_job):
    return main_job.run("-vvv")


def test_first_run_deploys_everything_and_ends_with_each_hosts_passing_table(first_run):
    proc, reports_dir = first_run
    assert proc.returncode == 0, report(proc)
    assert sorted(recap(proc)) == sorted([*ALL_HOSTS, "localhost"])
    reports = read_reports(reports_dir)
    assert sorted(reports) == ALL_HOSTS
    assert {host: entry["verdict"] for host, entry in reports.items()} == dict.fromkeys(ALL_HOSTS, "pass")
    supervisor = verdicts(reports["ragstack-lab-gpu-1"])
    for check in ("gateway", "model lab-embedding", "model lab-rerank", "model lab-chat", "host memory"):
        assert supervisor[check] == "pass", reports["ragstack-lab-gpu-1"]
    assert supervisor["gpu"] == "skip"
    ragflow = verdicts(reports["ragstack-lab-ragflow"])
    assert ragflow["elasticsearch heap"] == "pass"
    assert ragflow["ragflow e2e"] == "pass"
    # The table of every host is printed at the end, the run's last task output before the recap.
    tail = proc.stdout[proc.stdout.rindex("TASK [llmops.ragstack.stack_verify : Print the verification table") :]
    for host in ALL_HOSTS:
        assert "%s: PASS (" % host in tail


def test_reports_say_how_each_model_was_measured(first_run):
    reports = read_reports(first_run[1])
    checks = {check["name"]: check for check in reports["ragstack-lab-gpu-1"]["checks"]}
    assert checks["model lab-chat"]["measured"]["ttft_s"] > 0
    assert checks["model lab-embedding"]["measured"]["dimension"] == 384
    markdown = (first_run[1] / "ragstack-lab-ragflow.md").read_text()
    assert "| elasticsearch heap | PASS | es01 heap max 512 MiB (cap 512m) |" in markdown
    assert "the lab's RAGFlow stand-in" in markdown


def lab_secrets(tmp_path):
    """Every secret of the lab's vault, the RAGFlow API key and the Xinference inference key the run obtained."""
    plain = run_tool(["ansible-vault", "view", "--vault-password-file", str(LAB_VAULT_PASSWORD), str(VAULT)])
    assert plain.returncode == 0, report(plain)
    secrets = dict(yaml.safe_load(plain.stdout))
    token = ModuleRunner("ragflow_token", tmp_path)(
        {
            "base_url": "http://127.0.0.1:19380",
            "email": "admin@ragflow.io",
            "password": secrets["vault_ragflow_admin_password"],
            "public_key": str(REPO / ".cache" / "lab" / "ragflow-login" / "public.pem"),
        }
    )
    assert not token["changed"], "the main job left no API key in RAGFlow"
    secrets["ragflow_api_token"] = token["token"]
    lab_vars = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "all" / "main.yml").read_text())
    role_defaults = yaml.safe_load((REPO / "roles" / "xinference" / "defaults" / "main.yml").read_text())
    inference = ModuleRunner("xinference_auth", tmp_path)(
        {
            "endpoint": lab_vars["xinference_endpoint"],
            "username": lab_vars["xinference_admin_username"],
            "password": secrets["vault_xinference_admin_password"],
            "api_key_name": role_defaults["xinference_api_key_name"],
        }
    )
    assert not inference["changed"], "the main job left no admin or inference key in Xinference"
    secrets["xinference_inference_key"] = inference["api_key"]
    return secrets


def test_no_secret_appears_in_the_verbose_output_or_the_reports(first_run, tmp_path):
    proc, reports_dir = first_run
    secrets = lab_secrets(tmp_path)
    assert len(secrets) == 9
    places = {"stdout": proc.stdout, "stderr": proc.stderr}
    places.update({path.name: path.read_text() for path in sorted(reports_dir.iterdir())})
    assert len(places) == 2 + 2 * len(ALL_HOSTS)
    leaks = [(name, place) for name, value in secrets.items() for place, text in places.items() if value in text]
    assert leaks == []


def test_a_host_that_cannot_reach_the_mirror_is_reported_and_the_others_finish(main_job, first_run):
    closed = "http://127.0.0.1:%d" % free_port()
    proc, reports_dir = main_job.run(lab_mirror_overrides={"ragstack-lab-gpu-3": closed})

    counts = recap(proc)
    assert proc.returncode != 0
    assert counts["ragstack-lab-gpu-3"]["failed"] == 1
    others = ["ragstack-lab-gpu-1", "ragstack-lab-gpu-2", "ragstack-lab-ragflow"]
    assert [counts[host]["failed"] for host in others] == [0, 0, 0]
    reports = read_reports(reports_dir)
    (stage,) = reports["ragstack-lab-gpu-3"]["checks"]
    assert stage["name"] == "stage models"
    assert stage["verdict"] == "fail"
    assert closed in stage["diagnosis"]
    assert "is unreachable" in stage["diagnosis"]
    assert "Connection refused" in stage["diagnosis"]
    assert {host: reports[host]["verdict"] for host in others} == dict.fromkeys(others, "pass")
    assert "Verification failed on ragstack-lab-gpu-3" in proc.stdout


def test_the_next_run_converges_and_changes_nothing_and_so_does_check_mode(main_job, first_run):
    # The check-mode run also rolls out one host at a time.
    for flags, extra_vars in (((), {}), (("--check",), {"ragstack_serial": 1})):
        proc, reports_dir = main_job.run(*flags, **extra_vars)
        assert proc.returncode == 0, report(proc)
        changed = {host: counts["changed"] for host, counts in recap(proc).items()}
        # Each run writes its reports into a new folder: the folder, JSON and Markdown tasks change
        # on the controller (in check mode they would, and write nothing).
        assert changed.pop("localhost") == 3, proc.stdout[-5000:]
        assert changed == dict.fromkeys(ALL_HOSTS, 0), proc.stdout[-5000:]
        assert {host: counts["failed"] for host, counts in recap(proc).items()} == dict.fromkeys(
            [*ALL_HOSTS, "localhost"], 0
        )
        if flags:
            assert not reports_dir.exists()
            assert all("%s: PASS (" % host in proc.stdout for host in ALL_HOSTS), proc.stdout[-5000:]
        else:
            assert {entry["verdict"] for entry in read_reports(reports_dir).values()} == {"pass"}
        batches = proc.stdout.count("PLAY [Download the models through the mirror]")
        assert batches == (len(GPU_HOSTS) if extra_vars else 1)
