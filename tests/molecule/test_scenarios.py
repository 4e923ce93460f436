"""Each molecule scenario, run in full (create, converge, idempotence, verify, destroy)."""

import pytest

from testkit.support import REPO, report, run_tool, venv_python_home

pytestmark = [pytest.mark.molecule, pytest.mark.lab]

SCENARIOS = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(lab_image, scenario):
    proc = run_tool(
        ["molecule", "test", "-s", scenario],
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
        # multi_host mounts the lab's Xinference venv and the Python it was built from.
        RAGSTACK_LAB_PYTHON_HOME=str(venv_python_home()),
    )
    assert proc.returncode == 0, report(proc)
