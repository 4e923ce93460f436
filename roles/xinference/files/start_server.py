"""Start the Xinference server under start-stop-daemon and wait until it answers.

Run by tasks/start_stop_daemon.yml on hosts where systemd does not run. Exit status: 0 started (and,
with --status-url, answering), 3 the server exited while starting (the task starts it again, as the
systemd unit's Restart=on-failure would), 1 no answer before --timeout.

Xinference 4.1 can exit while starting: its supervisor polls the child it spawned at a port from
xoscar.utils.get_next_port (10000-65535; deploy/supervisor_host.py SupervisorHost.ready), and a poll
from a port of the kernel's ephemeral range can connect to itself and read back its own request
("'SendMessage' object has no attribute 'as_instanceof_cause'").
"""

import argparse
import subprocess
import sys
import time
import urllib.error
import urllib.request

EXITED_WHILE_STARTING = 3
LOG_TAIL_CHARS = 3000


def running(pidfile):
    return subprocess.run(["start-stop-daemon", "--status", "--pidfile", pidfile], check=False).returncode == 0


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path):
    try:
        with open(path, errors="replace") as log:
            return log.read()[-LOG_TAIL_CHARS:]
    except OSError as error:
        return "(log unreadable: %s)" % error


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--chdir", required=True)
    parser.add_argument("--status-url", help="GET this until it answers 200 (servers with an API)")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("argv", nargs="+", help="the server's command line")
    options = parser.parse_args()

    subprocess.run(
        [
            "start-stop-daemon",
            "--start",
            "--background",
            "--make-pidfile",
            "--pidfile",
            options.pidfile,
            "--chdir",
            options.chdir,
            "--output",
            options.log,
            "--startas",
            options.argv[0],
            "--",
            *options.argv[1:],
        ],
        check=True,
    )
    if not options.status_url:
        return 0
    deadline = time.monotonic() + options.timeout
    while time.monotonic() < deadline:
        if answers(options.status_url):
            return 0
        if not running(options.pidfile):
            print("the server exited while starting; the end of %s:\n%s" % (options.log, log_tail(options.log)))
            return EXITED_WHILE_STARTING
        time.sleep(1)
    print(
        "%s did not answer in %ss; the end of %s:\n%s"
        % (options.status_url, options.timeout, options.log, log_tail(options.log))
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
