"""tasks/start_stop_daemon.yml on a host without systemd, with real start-stop-daemon: a server that
exits while starting is started again (files/start_server.py says why Xinference 4.1 can), one that
keeps exiting fails the task with the end of its log, and one that runs but never answers fails once
xinference_start_timeout is over, without a second start.

The server here is a stand-in, a small HTTP server that exits on its first starts as Xinference does
in that case; once it stays up, /status answers with the status code it is given."""

import json
import subprocess
import sys

import pytest
import requests

from testkit.support import free_port, recap, report, run_tool

pytestmark = pytest.mark.integration

EXIT_LINE = "AttributeError: 'xoscar.backends.message.SendMessage' object has no attribute 'as_instanceof_cause'"

STAND_IN = (
    """
import http.server, pathlib, sys, time
starts = pathlib.Path(sys.argv[1])
count = int(starts.read_text()) if starts.exists() else 0
starts.write_text(str(count + 1))
if count < int(sys.argv[3]):
    time.sleep(1)
    print(%r, flush=True)
    sys.exit(1)

class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[4]) if self.path == "/status" else 404)
        self.end_headers()

http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), Status).serve_forever()
"""
    % EXIT_LINE
)

PLAYBOOK = """
- name: Start a server under start-stop-daemon
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's start-stop-daemon tasks
      ansible.builtin.include_role:
        name: llmops.ragstack.xinference
        tasks_from: start_stop_daemon.yml
"""


def start(tmp_path, exits, status=200, timeout=60):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    variables = {
        "ansible_python_interpreter": sys.executable,
        "xinference_home_dir": str(home),
        "xinference_bind_address": "127.0.0.1",
        "xinference_port": port,
        "xinference_start_timeout": timeout,
        "xinference_process_argv": [
            sys.executable,
            str(tmp_path / "stand_in.py"),
            str(tmp_path / "starts"),
            str(port),
            str(exits),
            str(status),
        ],
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    return play(tmp_path), port, home / "xinference-local.pid"


def play(tmp_path, *flags):
    return run_tool(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "@%s" % (tmp_path / "vars.json"),
            str(tmp_path / "site.yml"),
            *flags,
        ]
    )


def stop(pid_file):
    subprocess.run(
        [
            "start-stop-daemon",
            "--stop",
            "--oknodo",
            "--retry",
            "TERM/10/KILL/5",
            "--remove-pidfile",
            "--pidfile",
            str(pid_file),
        ],
        check=True,
    )


def test_a_server_that_exits_while_starting_is_started_again(tmp_path):
    played, port, pid_file = start(tmp_path, exits=1)
    try:
        assert played.returncode == 0, report(played)
        assert (
            "FAILED - RETRYING: [localhost]: Start the server and wait until it answers (2 retries left)"
            in played.stdout
        ), report(played)
        assert (tmp_path / "starts").read_text() == "2"
        assert requests.get("http://127.0.0.1:%d/status" % port, timeout=5).status_code == 200
        # The server runs: check mode and a second run leave it alone.
        for flags in (["--check"], []):
            again = play(tmp_path, *flags)
            assert again.returncode == 0 and recap(again)["localhost"]["changed"] == 0, report(again)
        assert (tmp_path / "starts").read_text() == "2"
    finally:
        stop(pid_file)


def test_a_server_that_keeps_exiting_fails_with_the_end_of_its_log(tmp_path):
    played, _, pid_file = start(tmp_path, exits=5)
    stop(pid_file)
    assert played.returncode == 2, report(played)
    assert (tmp_path / "starts").read_text() == "3"
    assert "the server exited while starting" in played.stdout, report(played)
    assert EXIT_LINE in played.stdout, report(played)


def test_a_server_that_never_answers_fails_after_the_start_timeout_and_is_not_started_again(tmp_path):
    played, port, pid_file = start(tmp_path, exits=0, status=503, timeout=5)
    stop(pid_file)
    assert played.returncode == 2, report(played)
    assert (tmp_path / "starts").read_text() == "1"
    assert "http://127.0.0.1:%d/status did not answer in 5.0s" % port in played.stdout, report(played)
    assert "FAILED - RETRYING" not in played.stdout, report(played)
