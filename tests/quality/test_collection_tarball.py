"""The collection as users get it: the tarball ansible-galaxy builds, its file list, and the installed
copy (ansible-doc, a module run, ansible-test sanity) in a clean collections path."""

import json
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from testkit.support import REPO, report, run_tool

pytestmark = pytest.mark.sanity

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


# Nothing of the lab, its vaulted secrets, the tests, benches or build tooling is in the tarball.
NOT_SHIPPED = ("lab/", "bench/", "molecule/", "tests/", "testkit/", "inventories/lab/", ".venv/", ".cache/", ".ci/")
NOT_SHIPPED_FILES = ("Makefile", "requirements.txt", "pyproject.toml", "ansible.cfg", ".ansible-lint")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    built = run_tool(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(dist)])
    assert built.returncode == 0, report(built)
    (path,) = dist.glob("llmops-ragstack-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def installed_collection(tarball, tmp_path_factory):
    target = tmp_path_factory.mktemp("collections")
    # No ANSIBLE_CONFIG: the repo's collections_path would make galaxy think it is installed already.
    installed = run_tool(
        ["ansible-galaxy", "collection", "install", "--no-deps", "--force", str(tarball), "-p", str(target)],
        ANSIBLE_CONFIG="",
    )
    assert installed.returncode == 0, report(installed)
    return target / "ansible_collections" / "llmops" / "ragstack"


def test_tarball_ships_the_collection_and_nothing_else(tarball):
    with tarfile.open(tarball) as archive:
        names = [member.name.removeprefix("./") for member in archive.getmembers() if member.isfile()]
    for shipped in ("COPYING", "README.md", "CHANGELOG.md", "MANIFEST.json", "FILES.json", "meta/runtime.yml"):
        assert shipped in names
    modules = {name for name in names if name.startswith("plugins/modules/") and name.endswith(".py")}
    assert modules == {"plugins/modules/%s" % path.name for path in (REPO / "plugins" / "modules").glob("*.py")}
    assert "roles/gpu_preflight/meta/argument_specs.yml" in names
    assert "playbooks/site.yml" in names
    assert [name for name in names if name.startswith(NOT_SHIPPED) or name in NOT_SHIPPED_FILES] == []
    assert [name for name in names if "vault-password" in name or "__pycache__" in name] == []
    assert "GNU GENERAL PUBLIC LICENSE" in (REPO / "COPYING").read_text()[:200]


def test_installed_copy_renders_its_docs_and_runs_a_module(installed_collection):
    collections_path = str(installed_collection.parents[2])
    # No ANSIBLE_CONFIG, and the installed copy's path only: the checkout's link must not be what answers.
    env = {"ANSIBLE_CONFIG": "", "ANSIBLE_COLLECTIONS_PATH": collections_path}
    for module in sorted(path.stem for path in (installed_collection / "plugins" / "modules").glob("*.py")):
        doc = run_tool(["ansible-doc", "--json", "llmops.ragstack.%s" % module], cwd=collections_path, **env)
        assert doc.returncode == 0, report(doc)
        rendered = json.loads(doc.stdout)["llmops.ragstack.%s" % module]
        assert rendered["doc"]["filename"].startswith(collections_path), rendered["doc"]["filename"]
    role_doc = run_tool(["ansible-doc", "-t", "role", "llmops.ragstack.xinference"], cwd=collections_path, **env)
    assert role_doc.returncode == 0, report(role_doc)
    # Run from outside the checkout, whose ansible.cfg names the lab inventory.
    interpreter = "ansible_python_interpreter=%s" % sys.executable
    ran = run_tool(
        [
            "ansible",
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            interpreter,
            "-m",
            "llmops.ragstack.gpu_facts",
        ],
        cwd=collections_path,
        **env,
    )
    assert ran.returncode == 0, report(ran)
    assert '"gpu_count": 0' in ran.stdout, report(ran)


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
