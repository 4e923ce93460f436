"""Servers on 127.0.0.1 for the hf_mirror_download tests, and ways to run the module as Ansible does."""

from __future__ import annotations

import pytest

from testkit.hf_mirror.fake_hub import FakeHub
from testkit.hf_mirror.olah import OlahMirror
from testkit.support import ModuleRunner


@pytest.fixture
def run_module(tmp_path) -> ModuleRunner:
    return ModuleRunner("hf_mirror_download", tmp_path)


@pytest.fixture
def fake_hub():
    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def cdn_hub():
    """FakeHub serving LFS files as huggingface.co does: a 302 to a second loopback server, signed URLs."""
    hub = FakeHub(cdn=True).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def olah(tmp_path_factory):
    mirror = OlahMirror(tmp_path_factory.mktemp("olah"))
    yield mirror
    mirror.stop()
