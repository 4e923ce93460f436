import json

import pytest

from testkit.support import REPO, report, run_tool

pytestmark = pytest.mark.lint


def test_ansible_lint_production_profile():
    proc = run_tool(["ansible-lint", "--profile", "production", "--nocolor"])
    assert proc.returncode == 0, report(proc)


def test_ruff_check():
    proc = run_tool(["ruff", "check", "."])
    assert proc.returncode == 0, report(proc)


def test_ruff_format():
    proc = run_tool(["ruff", "format", "--check", "."])
    assert proc.returncode == 0, report(proc)


MODULES = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders_documentation_examples_and_return(module):
    fqcn = f"llmops.ragstack.{module}"
    proc = run_tool(["ansible-doc", "--json", fqcn])
    assert proc.returncode == 0, report(proc)
    doc = json.loads(proc.stdout)[fqcn]
    assert doc["doc"]["short_description"]
    assert doc["doc"]["attributes"]["check_mode"]["support"] in ("full", "partial", "none")
    assert doc["examples"].strip()
    assert doc["return"]
    rendered = run_tool(["ansible-doc", fqcn])
    assert rendered.returncode == 0 and "EXAMPLES" in rendered.stdout and "RETURN VALUES" in rendered.stdout
