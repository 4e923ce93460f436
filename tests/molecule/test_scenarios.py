"""Each molecule scenario, run in full (create, converge, idempotence, verify, destroy)."""

import pytest

from ..support import REPO, report, run_tool

pytestmark = [pytest.mark.molecule, pytest.mark.lab]

SCENARIOS = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(lab_image, scenario):
    proc = run_tool(["molecule", "test", "-s", scenario], ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    assert proc.returncode == 0, report(proc)
