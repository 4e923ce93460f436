"""hf_mirror_download under bad input and hostile networks: one table, one run of the module per row.

Servers: a real mirror (olah on loopback, serving a local git repo, offline), the FakeHub double (with and
without the CDN redirect), and testkit.wrong_servers (an HTML web UI, a silent listener, a closed port, dead
proxies). Each row asserts failed/changed, a message pattern, that the module answered JSON (no traceback,
nothing Ansible would show as "Module failed") and a wall-time bound. Rows marked `other_user` run the module
as an unprivileged user (root bypasses file modes), under a world-readable scratch folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from testkit.hf_mirror.fake_hub import FakeHub
from testkit.hf_mirror.olah import OlahMirror
from testkit.hf_mirror.repos import fixture_files
from testkit.support import ModuleRunner, free_port, module_environment
from testkit.wrong_servers import dead_proxy_environment, html_everywhere, silent_listener

pytestmark = pytest.mark.integration

REPO_ID = "acme/matrix-model"
GATED_ID = "acme/matrix-gated"
FILES = fixture_files(seed=5, small_count=3, big_size=5 * 1024 * 1024)
WALL_LIMIT_S = 30
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


class Row(NamedTuple):
    id: str
    server: str  # olah, hub, cdn, html, silent, closed
    args: dict
    failed: bool
    changed: bool
    msg: str = ""  # regex the message must match (failed rows)
    check_mode: bool = False
    env: str = ""  # dead_proxy: proxy variables pointing at a closed port
    layout: str = ""  # how the scratch folder is prepared (see prepare())
    other_user: bool = False


ROWS = [
    # A working download, for contrast: the real mirror, the double, the double with its CDN.
    Row("olah-ok", "olah", {}, failed=False, changed=True),
    Row("hub-ok", "hub", {}, failed=False, changed=True),
    Row("cdn-ok", "cdn", {}, failed=False, changed=True),
    Row("check-mode-ok", "olah", {}, failed=False, changed=True, check_mode=True),
    # Names that do not exist, on the real mirror (olah answers 401 RepoNotFound for both) and the double.
    Row("olah-missing-repo", "olah", {"repo_id": "acme/none"}, True, False, r"acme/none on .* not found, or private"),
    Row("olah-missing-revision", "olah", {"revision": "v9"}, True, False, r"revision 'v9' not found in .*'main'"),
    Row("hub-missing-repo-token", "hub", {"repo_id": "acme/none", "token": "hf_x"}, True, False, r"not found \(HTTP"),
    Row("hub-missing-revision", "hub", {"revision": "v9"}, True, False, r"revision 'v9' not found"),
    Row("hub-gated-no-token", "hub", {"repo_id": GATED_ID}, True, False, r"gated or private \(HTTP 401\).*`token`"),
    Row("hub-gated-wrong-token", "hub", {"repo_id": GATED_ID, "token": "hf_no"}, True, False, r"refused the token"),
    # Endpoints that are not a mirror.
    Row("html-ui", "html", {}, True, False, r"not JSON: is endpoint a Hugging Face mirror"),
    Row("olah-path-prefix", "olah", {"endpoint": "{url}/v1/hub"}, True, False, r"drop the path /v1/hub from endpoint"),
    Row("silent-port", "silent", {"timeout": 1}, True, False, r"did not answer within 1\.0 s"),
    Row("closed-port", "closed", {}, True, False, r"is unreachable \(proxies ignored, use_proxy: false\)"),
    Row("not-a-url", "olah", {"endpoint": "hf-mirror.com"}, True, False, r"not an http\(s\) URL"),
    # Proxies left in the environment: ignored by default, named when asked for.
    Row("dead-proxy-ignored", "olah", {}, False, True, env="dead_proxy"),
    Row("dead-proxy-used", "olah", {"use_proxy": True}, True, False, r"proxy http://127\.0\.0\.1:\d+ \(from \w+\)",
        env="dead_proxy"),
    # Options out of range.
    Row("timeout-zero", "olah", {"timeout": 0}, True, False, r"timeout must be more than 0"),
    Row("timeout-negative", "olah", {"timeout": -5}, True, False, r"timeout must be more than 0"),
    Row("retries-negative", "olah", {"retries": -1}, True, False, r"retries must be 0 or more"),
    Row("workers-zero", "olah", {"max_workers": 0}, True, False, r"max_workers must be at least 1"),
    Row("pattern-escapes", "olah", {"allow_patterns": ["../*"]}, True, False, r"bad allow_patterns entry"),
    Row("pattern-selects-nothing", "olah", {"allow_patterns": ["*.gguf"]}, True, False, r"select none of the"),
    Row("bad-repo-type", "olah", {"repo_type": "space"}, True, False, r"repo_type must be one of"),
    # Paths in the way, in both modes: check mode fails where the real run would.
    Row("local-dir-is-file", "olah", {}, True, False, r"local_dir .* cannot be a folder: .* is a file", layout="file"),
    Row("local-dir-is-file-check", "olah", {}, True, False, r"cannot be a folder: .* is a file", True, layout="file"),
    Row("parent-is-file", "olah", {}, True, False, r"cannot be a folder: .*/blocker is a file", layout="parent_file"),
    Row("cache-is-file", "olah", {}, True, False, r"local_dir's cache .* cannot be a folder", layout="cache_file"),
    Row("progress-is-folder", "olah", {}, True, False, r"progress_file .* is a folder", layout="progress_dir"),
    Row("progress-parent-file", "olah", {}, True, False, r"progress_file's folder .* is a file",
        layout="progress_parent_file"),
    Row("local-dir-unwritable", "olah", {}, True, False, r"local_dir .* is not writable by this user",
        layout="readonly_parent", other_user=True),
    Row("local-dir-unwritable-check", "olah", {}, True, False, r"is not writable by this user", True,
        layout="readonly_parent", other_user=True),
    Row("cache-unwritable", "olah", {}, True, False, r"local_dir's cache .* is not writable", layout="readonly_cache",
        other_user=True),
    Row("progress-unwritable", "olah", {}, True, False, r"progress_file's folder .* is not writable",
        layout="readonly_progress", other_user=True),
    # The Hub's serving path and failures part-way.
    Row("cdn-urls-expired", "cdn", {"allow_patterns": ["*.safetensors"]}, True, False,
        r"127\.0\.0\.1:\d+ refused 4 fresh signed URLs in a row .* check this host's clock", layout="expired_urls"),
    Row("cdn-urls-expired-after-small-files", "cdn", {}, True, True,
        r"refused 4 fresh signed URLs .*\(\d+ of \d+ files were written before that\)", layout="expired_urls"),
    Row("fails-after-writing", "hub", {"retries": 0, "max_workers": 1}, True, True,
        r"HTTP 500 .*\(\d+ of \d+ files were written before that\)", layout="broken_file"),
]  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Every server a row can name, started once for the table."""
    with contextlib.ExitStack() as stack:
        olah = OlahMirror(tmp_path_factory.mktemp("olah"))
        stack.callback(olah.stop)
        olah.new_repo(REPO_ID).commit(FILES)
        hub, cdn = FakeHub().start(), FakeHub(cdn=True).start()
        for double in (hub, cdn):
            stack.callback(double.stop)
            double.commit(REPO_ID, FILES)
            double.commit(GATED_ID, FILES)
            double.gate(GATED_ID, "hf_granted")
        yield {
            "olah": olah.url,
            "hub": hub.url,
            "cdn": cdn.url,
            "html": stack.enter_context(html_everywhere()),
            "silent": "http://127.0.0.1:%d" % stack.enter_context(silent_listener()),
            "closed": "http://127.0.0.1:%d" % free_port(),
            "doubles": {"hub": hub, "cdn": cdn},
        }


@pytest.fixture
def scratch():
    """A folder every user can enter (pytest's tmp_path is private to root), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="hf-matrix-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def open_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def prepare(layout, scratch):
    """(local_dir, progress_file) for a row's layout; unwritable parts are mode 0555."""
    work = open_folder(scratch / "work")
    local_dir, progress_file = work / "model", work / "progress" / "model.json"
    if layout == "file":
        local_dir.write_text("not a folder")
    elif layout == "parent_file":
        (work / "blocker").write_text("not a folder")
        local_dir = work / "blocker" / "model"
    elif layout == "cache_file":
        open_folder(local_dir)
        (local_dir / ".cache").write_text("not a folder")
    elif layout == "progress_dir":
        open_folder(progress_file)
    elif layout == "progress_parent_file":
        progress_file.parent.write_text("not a folder")
    elif layout == "readonly_parent":
        readonly = work / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
        local_dir = readonly / "model"
    elif layout == "readonly_cache":
        open_folder(local_dir)
        (local_dir / ".cache").mkdir()
        (local_dir / ".cache").chmod(0o555)
    elif layout == "readonly_progress":
        progress_file.parent.mkdir()
        progress_file.parent.chmod(0o555)
    return local_dir, progress_file


@contextlib.contextmanager
def injected_fault(layout, double):
    """A fault of the double for one row: one file that fails to resolve, or signed URLs born expired."""
    ttl = double.signed_url_ttl if double else None
    if layout == "broken_file":
        # The smallest file with content: downloads go largest first, so the others are in place by then.
        double.broken_paths[min((path for path in FILES if FILES[path]), key=lambda path: len(FILES[path]))] = 500
    elif layout == "expired_urls":
        double.signed_url_ttl = -60
    try:
        yield
    finally:
        if double:
            double.broken_paths.clear()
            double.signed_url_ttl = ttl


def run_row(row, runner, args, env):
    argv = runner.command(args, check_mode=row.check_mode)
    if row.other_user and os.geteuid() == 0:
        Path(argv[-1]).chmod(0o644)  # the arguments file, private to its creator
        argv = UNPRIVILEGED + argv
    started = time.monotonic()
    completed = subprocess.run(
        argv, env=module_environment(env), capture_output=True, text=True, timeout=WALL_LIMIT_S * 2, check=False
    )
    return completed, time.monotonic() - started


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_hf_mirror_download_matrix(row, servers, scratch):
    if row.other_user and os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file modes cannot be shown to apply")
    local_dir, progress_file = prepare(row.layout, scratch)
    endpoint = servers[row.server]
    args = {
        "repo_id": REPO_ID,
        "endpoint": endpoint,
        "local_dir": str(local_dir),
        "progress_file": str(progress_file),
        "retries": 1,
        **row.args,
    }
    args["endpoint"] = args["endpoint"].format(url=endpoint)
    env = dead_proxy_environment() if row.env == "dead_proxy" else None
    runner = ModuleRunner("hf_mirror_download", scratch)
    with injected_fault(row.layout, servers["doubles"].get(row.server)):
        completed, seconds = run_row(row, runner, args, env)
    output = completed.stdout + completed.stderr
    assert "Traceback" not in output and "Module failed" not in output, output
    result = json.loads(completed.stdout)
    assert seconds < WALL_LIMIT_S, "%s took %.1f s" % (row.id, seconds)
    assert bool(result.get("failed")) is row.failed, result
    assert bool(result.get("changed")) is row.changed, result
    if row.failed:
        assert re.search(row.msg, result["msg"]), result["msg"]
        assert "\n" not in result["msg"] and "<html" not in result["msg"].lower(), result["msg"]
        assert "hf_granted" not in result["msg"] and "Signature=" not in result["msg"], result["msg"]
    if row.env == "dead_proxy" and not row.failed:
        assert result["proxy_variables_ignored"], result
    if row.check_mode or not row.changed:
        assert not (local_dir / "config.json").exists(), "%s wrote into local_dir" % row.id
