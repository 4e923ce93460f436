"""Side-by-side timings: llmops.ragstack.hf_mirror_download vs `hf download` vs `curl -o` (vs aria2c if present).

All clients fetch from the same loopback server (the tests' FakeHub double, which serves the Hub's
revision/tree/resolve endpoints with Range support and an optional per-connection speed cap), one after
the other, into fresh folders. Scenarios follow issue 3's benchmark list; sizes are options so a first run
can be small:

  1. one big file            2. many 1 MB files           3. one big file, each connection capped
  4. no-op re-run of a folder (module with verify size and sha256, `hf download`)
  5. resume after kill -9 at 50 % (share of the file fetched again)

Run: .venv/bin/python bench/hf_download.py --big-mb 1024 --small-files 200 --cap-mb 20 --capped-file-mb 256
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.hf_mirror.fake_hub import FakeHub  # noqa: E402 - needs the repo root on sys.path
from testkit.support import ModuleRunner  # noqa: E402

VENV_BIN = REPO / ".venv" / "bin"
MB = 1024 * 1024


def environment(hub_url):
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    env.update(PYTHONPATH=str(REPO / ".collections"), HF_ENDPOINT=hub_url, HF_HUB_DISABLE_XET="1")
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    return env


def module_command(work, hub, repo_id, local_dir, **options):
    args = {"repo_id": repo_id, "endpoint": hub.url, "local_dir": str(local_dir), **options}
    return ModuleRunner("hf_mirror_download", work).command(args)


def hf_command(repo_id, local_dir):
    return [str(VENV_BIN / "hf"), "download", repo_id, "--local-dir", str(local_dir)]


def curl_command(hub, repo_id, sha, paths, local_dir):
    command = ["curl", "-sS", "--fail", "--create-dirs", "--parallel", "--parallel-max", "8"]
    for path in paths:
        command += ["-o", str(local_dir / path), "%s/%s/resolve/%s/%s" % (hub.url, repo_id, sha, path)]
    return command


def aria2c_command(hub, repo_id, sha, path, local_dir):
    url = "%s/%s/resolve/%s/%s" % (hub.url, repo_id, sha, path)
    return ["aria2c", "-q", "-x", "4", "-s", "4", "-d", str(local_dir), "-o", path, url]


def timed(command, env):
    started = time.monotonic()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit("%s failed: %s %s" % (command[0], completed.stdout[-2000:], completed.stderr[-2000:]))
    return seconds


def kill_at_half(command, env, target_bytes, watch):
    """Start `command`, SIGKILL it once `watch()` reports half of target_bytes on disk."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while watch() < target_bytes // 2 and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def disk_bytes_under(folder):
    """Bytes actually written (allocated blocks: a multi-part temporary file is sparse)."""
    return sum(path.stat().st_blocks * 512 for path in Path(folder).rglob("*") if path.is_file())


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="hf-bench-"))
        self.hub = FakeHub().start()
        self.env = environment(self.hub.url)
        self.rows = []
        self.have_aria2c = shutil.which("aria2c") is not None

    def fresh(self, name):
        folder = self.work / name
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    def row(self, scenario, tool, seconds, size=None, note=""):
        """size: bytes moved, for a MB/s column; None where a rate means nothing (no-op, resume)."""
        rate = "%.0f" % (size / 1e6 / seconds) if size and seconds else "-"
        self.rows.append((scenario, tool, seconds, rate, note))

    def single_file(self, scenario, repo_id, size):
        sha = self.hub.repos[("models", repo_id)]["branches"]["main"]
        tools = [
            ("module (4 conn)", module_command(self.work, self.hub, repo_id, self.fresh("m"))),
            ("module (1 conn)", module_command(self.work, self.hub, repo_id, self.fresh("m1"), connections_per_file=1)),
            ("hf download", hf_command(repo_id, self.fresh("hf"))),
            ("curl -o", curl_command(self.hub, repo_id, sha, ["model.safetensors"], self.fresh("curl"))),
        ]
        if self.have_aria2c:
            tools.append(
                ("aria2c -x4", aria2c_command(self.hub, repo_id, sha, "model.safetensors", self.fresh("aria")))
            )
        for tool, command in tools:
            self.row(scenario, tool, timed(command, self.env), size)

    def run(self):
        big = self.args.big_mb * MB
        rng = random.Random(1)
        self.hub.commit("bench/big", {"model.safetensors": os.urandom(big)})
        small = {"shards/part-%04d.bin" % index: rng.randbytes(MB) for index in range(self.args.small_files)}
        self.hub.commit("bench/small", small)

        self.single_file("1 one %d MB file" % self.args.big_mb, "bench/big", big)

        sha = self.hub.repos[("models", "bench/small")]["branches"]["main"]
        small_bytes = sum(len(content) for content in small.values())
        scenario = "2 %d files of 1 MB" % len(small)
        for tool, command in [
            ("module", module_command(self.work, self.hub, "bench/small", self.fresh("m"))),
            ("hf download", hf_command("bench/small", self.fresh("hf"))),
            ("curl --parallel 8", curl_command(self.hub, "bench/small", sha, sorted(small), self.fresh("curl"))),
        ]:
            self.row(scenario, tool, timed(command, self.env), small_bytes)

        capped = self.args.capped_file_mb * MB
        self.hub.commit("bench/capped", {"model.safetensors": os.urandom(capped)})
        self.hub.throttle_bytes_per_s = self.args.cap_mb * 1_000_000
        scenario = "3 one %d MB file, %d MB/s per connection" % (self.args.capped_file_mb, self.args.cap_mb)
        self.single_file(scenario, "bench/capped", capped)
        self.hub.throttle_bytes_per_s = None

        self.noop(big)
        self.resume(big)

    def noop(self, big):
        scenario = "4 no-op re-run (%d MB folder)" % (self.args.big_mb + self.args.small_files)
        folder = self.fresh("noop")
        for repo_id in ("bench/big", "bench/small"):
            timed(module_command(self.work, self.hub, repo_id, folder / repo_id), self.env)
        total = big + self.args.small_files * MB
        for tool, commands in [
            (
                "module verify=size",
                [module_command(self.work, self.hub, r, folder / r) for r in ("bench/big", "bench/small")],
            ),
            (
                "module verify=sha256",
                [
                    module_command(self.work, self.hub, r, folder / r, verify="sha256")
                    for r in ("bench/big", "bench/small")
                ],
            ),
            ("hf download", [hf_command(r, folder / r) for r in ("bench/big", "bench/small")]),
        ]:
            seconds = sum(timed(command, self.env) for command in commands)
            self.row(scenario, tool, seconds, note="%d MB on disk, nothing to fetch" % (total // MB))

    def resume(self, big):
        scenario = "5 resume after kill -9 at 50 %% (%d MB)" % self.args.big_mb
        # A cap makes "half way" observable; the re-run is uncapped.
        for tool, make_command in [
            ("module (4 conn)", lambda d: module_command(self.work, self.hub, "bench/big", d)),
            ("module (1 conn)", lambda d: module_command(self.work, self.hub, "bench/big", d, connections_per_file=1)),
            ("hf download", lambda d: hf_command("bench/big", d)),
            ("curl -C -", self.curl_resume_command),
        ]:
            folder = self.fresh("resume")
            self.hub.throttle_bytes_per_s = 200 * 1_000_000
            self.hub.reset_counters()
            kill_at_half(make_command(folder), self.env, big, lambda f=folder: disk_bytes_under(f))
            self.hub.throttle_bytes_per_s = None
            seconds = timed(make_command(folder), self.env)
            refetched = self.hub.bytes_served["model.safetensors"] - big
            self.row(scenario, tool, seconds, note="re-fetched %.1f %% of the file" % (100.0 * refetched / big))

    def curl_resume_command(self, local_dir):
        sha = self.hub.repos[("models", "bench/big")]["branches"]["main"]
        url = "%s/bench/big/resolve/%s/model.safetensors" % (self.hub.url, sha)
        return ["curl", "-sS", "--fail", "--create-dirs", "-C", "-", "-o", str(local_dir / "model.safetensors"), url]

    def print_table(self):
        header = ("scenario", "tool", "seconds", "MB/s", "note")
        lines = [header] + [(s, t, "%.2f" % sec, rate, note) for s, t, sec, rate, note in self.rows]
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        for index, line in enumerate(lines):
            print(" | ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
            if index == 0:
                print("-+-".join("-" * width for width in widths))
        print(
            "\naria2c: %s; %d CPU(s); server: FakeHub on 127.0.0.1 (Python, one thread per connection)"
            % ("used" if self.have_aria2c else "not installed", os.cpu_count())
        )

    def close(self):
        self.hub.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=int, default=256, help="size of the big file (default 256)")
    parser.add_argument("--small-files", type=int, default=200, help="number of 1 MB files (default 200)")
    parser.add_argument("--cap-mb", type=int, default=20, help="per-connection cap of scenario 3, MB/s (default 20)")
    parser.add_argument("--capped-file-mb", type=int, default=128, help="file size of scenario 3 (default 128)")
    bench = Bench(parser.parse_args())
    try:
        bench.run()
        bench.print_table()
    finally:
        bench.close()


if __name__ == "__main__":
    main()
