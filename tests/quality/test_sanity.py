"""ansible-test sanity on the collection as users get it: built with ansible-galaxy, then installed."""

import shutil
import sys
from pathlib import Path

import pytest

from ..support import REPO, report, run_tool

pytestmark = pytest.mark.sanity

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def installed_collection(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    built = run_tool(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(dist)])
    assert built.returncode == 0, report(built)
    (tarball,) = dist.glob("llmops-ragstack-*.tar.gz")
    target = tmp_path_factory.mktemp("collections")
    # No ANSIBLE_CONFIG: the repo's collections_path would make galaxy think it is installed already.
    installed = run_tool(
        ["ansible-galaxy", "collection", "install", "--no-deps", "--force", str(tarball), "-p", str(target)],
        ANSIBLE_CONFIG="",
    )
    assert installed.returncode == 0, report(installed)
    return target / "ansible_collections" / "llmops" / "ragstack"


def test_built_collection_holds_the_plugins_and_roles(installed_collection):
    assert (installed_collection / "plugins" / "modules" / "gpu_facts.py").is_file()
    assert (installed_collection / "roles" / "gpu_preflight" / "meta" / "argument_specs.yml").is_file()
    assert not (installed_collection / ".venv").exists()


def test_ansible_test_sanity(installed_collection):
    # ansible-test bootstraps pip in its venvs with get-pip.py from a host out of reach here; it uses
    # a cached copy first, and lab/pip_bootstrap.py does the same job from the bundled pip wheel.
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "lab" / "pip_bootstrap.py", cache / "get_pip_24_2.py")
    proc = run_tool(
        ["ansible-test", "sanity", "--python", PYTHON, "--requirements", "--color", "no"],
        cwd=installed_collection,
        ANSIBLE_CONFIG="",
    )
    assert proc.returncode == 0, report(proc)
