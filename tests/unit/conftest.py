"""Unit-test fixtures: a fake /proc tree."""

import pytest


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc tree with the processes a test registers: add(pid, argv, comm)."""
    root = tmp_path / "proc"
    root.mkdir()

    def add(pid, argv, comm):
        entry = root / str(pid)
        entry.mkdir()
        (entry / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
        (entry / "comm").write_text(comm + "\n")

    add.root = str(root)
    return add
