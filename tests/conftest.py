"""Test-wide setup: make `ansible_collections.llmops.ragstack` importable from the checkout."""

import subprocess
import sys

import pytest

from testkit.support import REPO

COLLECTIONS = REPO / ".collections"
LAB_IMAGE = "ragstack-lab/host:bookworm"

if not (COLLECTIONS / "ansible_collections" / "llmops" / "ragstack").exists():
    raise pytest.UsageError("the collection link is missing: run `make setup` first")
sys.path.insert(0, str(COLLECTIONS))


@pytest.fixture(scope="session")
def lab_image():
    """The lab's host image; tests that need it fail with what to do when the lab is not up."""
    proc = subprocess.run(["docker", "image", "inspect", LAB_IMAGE], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the lab is not up ({proc.stderr.strip()}): run `make lab` first", pytrace=False)
    return LAB_IMAGE
