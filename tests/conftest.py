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


# Test files that use the lab's host containers or its RAGFlow project, so run one at a time.
LAB_HOSTS_TESTS = (
    "tests/main_job/test_site_on_lab.py",
    "tests/integration/ragflow_role/test_ragflow_role_on_lab.py",
    "tests/integration/hf_mirror/test_hf_models_distribute.py",
)
# The groups that take longest (minutes on a 2-core machine, measured in a two-worker run), started
# first and in turns on the two workers, so that both end together.
LONGEST_FIRST = (
    "lab-hosts",  # 16
    "tests/integration/xinference",  # 14
    "tests/integration/xinference_container/test_container_mode.py",  # 13
    "tests/molecule/test_scenarios.py",  # 10
)


def group_of(path):
    """The group of the test file at `path` (relative to the repository) under `make test`: a group's
    tests run on one worker, one after another. The files of LAB_HOSTS_TESTS are one group; a folder
    with a conftest.py is one group, so that its session fixtures (one Xinference cluster, one
    MariaDB) start once; any other file is a group of its own."""
    if path in LAB_HOSTS_TESTS:
        return "lab-hosts"
    folder = (REPO / path).parent
    if folder != REPO / "tests" and (folder / "conftest.py").exists():
        return str(folder.relative_to(REPO))
    return path


def start_rank(item):
    group = group_of(item.nodeid.split("::")[0])
    return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    """The longest groups first; within a group, the order of the files (a stable sort)."""
    items.sort(key=start_rank)


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's loadscope scheduling, with group_of as the scope."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return group_of(nodeid.split("::")[0])

    return GroupScheduling(config, log)
