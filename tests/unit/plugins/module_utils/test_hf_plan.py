"""hf_mirror_download's plan (what it would fetch, as a diff), its write checks, and where the token may go."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.llmops.ragstack.plugins.module_utils.hf_errors import MirrorError, describe_http_error
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_mirror import (
    DownloadPlan,
    MirrorClient,
    RemoteFile,
    check_can_write,
    plan_file,
)
from ansible_collections.llmops.ragstack.plugins.module_utils.hf_transfer import FileLocation, without_query

pytestmark = pytest.mark.unit

COMMIT = "c" * 40
CONFIG = RemoteFile("config.json", 12, "1" * 40, False)
WEIGHTS = RemoteFile("model.safetensors", 1000, "2" * 64, True)


def plan_for(local_dir):
    client = MirrorClient("https://mirror.example", "model", "acme/m")
    files = [CONFIG, WEIGHTS]
    planned = [plan_file(str(local_dir), COMMIT, remote, "size", False) for remote in files]
    return DownloadPlan(client, local_dir=str(local_dir), revision="main", commit=COMMIT, files=files, planned=planned)


def test_plan_facts_and_diff_name_each_file_to_fetch_and_the_bytes(tmp_path):
    (tmp_path / "config.json").write_text("old content, longer")
    plan = plan_for(tmp_path)
    facts = plan.facts()
    assert facts["files_to_download"] == 2
    assert facts["bytes_to_download"] == 1012
    diff = plan.diff()
    assert diff["after_header"] == "acme/m @ " + COMMIT
    assert "config.json: 19 bytes (size differs)" in diff["before"]
    assert "model.safetensors: absent (missing)" in diff["before"]
    assert "model.safetensors: 1000 bytes, sha256 222222222222" in diff["after"]
    assert "# 2 file(s) to fetch, 1012 bytes from https://mirror.example" in diff["after"]
    assert list(tmp_path.iterdir()) == [tmp_path / "config.json"], "planning wrote something"


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("local_dir_file", r"local_dir .*/model cannot be a folder: .*/model is a file"),
        ("parent_file", r"local_dir .*/blocker/model cannot be a folder: .*/blocker is a file"),
        ("cache_file", r"local_dir's cache .*/model/.cache cannot be a folder"),
        ("progress_dir", r"progress_file .*/progress.json is a folder"),
    ],
)
def test_paths_in_the_way_fail_before_anything_is_asked(tmp_path, layout, expected):
    local_dir, progress = tmp_path / "model", tmp_path / "progress.json"
    if layout == "local_dir_file":
        local_dir.write_text("x")
    elif layout == "parent_file":
        (tmp_path / "blocker").write_text("x")
        local_dir = tmp_path / "blocker" / "model"
    elif layout == "cache_file":
        local_dir.mkdir()
        (local_dir / ".cache").write_text("x")
    else:
        progress.mkdir()
    with pytest.raises(MirrorError, match=expected):
        check_can_write(str(local_dir), str(progress))


def test_a_folder_this_user_cannot_write_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, _mode: not str(path).startswith(str(tmp_path)))
    with pytest.raises(MirrorError, match=r"local_dir .*/new/model is not writable by this user \(its existing parent"):
        check_can_write(str(tmp_path / "new" / "model"))


def test_a_fresh_local_dir_under_a_writable_folder_passes(tmp_path):
    check_can_write(str(tmp_path / "a" / "b"), str(tmp_path / "progress" / "p.json"))
    assert list(tmp_path.iterdir()) == []


class RecordingSession:
    """Answers from a script, and records the headers each URL was asked with."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def get(self, url, headers, **_kwargs):
        self.asked.append((url, dict(headers)))
        status, location = self.answers.pop(0)
        return SimpleNamespace(
            status_code=status, headers={"Location": location} if location else {}, close=lambda: None
        )


def test_the_token_goes_to_the_mirror_and_never_to_the_cdn_host():
    session = RecordingSession([(302, "https://cdn.example/blob?Expires=1&Signature=s"), (206, None), (206, None)])
    auth = {"Authorization": "Bearer hf_secret"}
    location = FileLocation(session, "https://mirror.example/acme/m/resolve/c/w.bin", auth_headers=auth, timeout=5)
    location.open({"Range": "bytes=0-"})
    location.open({"Range": "bytes=10-"})
    assert [(url.split("?")[0], "Authorization" in headers) for url, headers in session.asked] == [
        ("https://mirror.example/acme/m/resolve/c/w.bin", True),
        ("https://cdn.example/blob", False),
        ("https://cdn.example/blob", False),  # the second part reuses the signed URL
    ]


def test_a_same_origin_redirect_keeps_the_token():
    session = RecordingSession([(307, "/api/resolve-cache/models/acme/m/c/config.json"), (200, None)])
    auth = {"Authorization": "Bearer hf_secret"}
    FileLocation(session, "https://mirror.example/acme/m/resolve/c/config.json", auth_headers=auth, timeout=5).open({})
    assert all("Authorization" in headers for _url, headers in session.asked)


def test_signed_urls_are_left_out_of_messages():
    assert without_query("https://cdn.example/blob?Expires=1&Signature=s") == "https://cdn.example/blob"


def test_client_sends_the_token_to_its_own_origin_only():
    client = MirrorClient("https://mirror.example", "model", "acme/m", token="hf_secret")
    assert client.auth_headers("https://mirror.example/api/models/acme/m") == {"Authorization": "Bearer hf_secret"}
    assert client.auth_headers("https://cdn.example/blob") == {}
    assert "Authorization" not in client.session.headers


@pytest.mark.parametrize("endpoint", ["hf-mirror.com", "ftp://mirror", "http://", "http://[::1"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(endpoint):
    with pytest.raises(MirrorError, match="is not an http"):
        MirrorClient(endpoint, "model", "acme/m")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (404, {"Content-Type": "text/html"}, "answered HTTP 404 with an HTML page, not the Hub API"),
        (502, {"Content-Type": "text/html; charset=utf-8"}, "answered HTTP 502 with an HTML page"),
        (404, {}, "with no Hub error code: check that endpoint is the base URL"),
    ],
)
def test_answers_that_are_not_the_hub_say_so(status, headers, expected):
    answer = SimpleNamespace(status_code=status, headers=headers, url="https://mirror.example/x/api/models/a/b")
    line = describe_http_error(answer, "model a/b on https://mirror.example/x", "main", False)
    assert expected in line and "<" not in line


def descriptions(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description":
                yield value
            yield from descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from descriptions(item)


def test_module_docs_parse_and_every_description_is_text():
    import yaml

    from ansible_collections.llmops.ragstack.plugins.modules import hf_mirror_download

    for block in (hf_mirror_download.DOCUMENTATION, hf_mirror_download.RETURN, hf_mirror_download.EXAMPLES):
        assert yaml.safe_load(block)
    docs = yaml.safe_load(hf_mirror_download.DOCUMENTATION) | {"return": yaml.safe_load(hf_mirror_download.RETURN)}
    for description in descriptions(docs):
        lines = description if isinstance(description, list) else [description]
        assert all(isinstance(line, str) for line in lines), lines
