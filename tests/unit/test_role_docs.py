"""The role READMEs' variable tables are generated from meta/argument_specs.yml and stay equal to it."""

import shutil

import pytest
import yaml

from testkit import role_docs
from testkit.support import REPO

pytestmark = pytest.mark.unit

ROLES = [path.name for path in role_docs.roles()]


@pytest.mark.parametrize("role", ROLES)
def test_readme_table_is_the_one_generated_from_argument_specs(role):
    current, expected = role_docs.expected_readme(REPO / "roles" / role)
    assert current == expected, f"roles/{role}/README.md differs from its meta/argument_specs.yml: run `make docs`"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    assert role_docs.disagreements(REPO / "roles" / role) == []


def test_every_role_is_covered():
    assert sorted(ROLES) == sorted(path.name for path in (REPO / "roles").iterdir() if path.is_dir())


SPECS = {
    "argument_specs": {
        "main": {
            "options": {
                "demo_mode": {
                    "description": ["Runs with O(demo_port=80) as V(a|b).", "See M(llmops.ragstack.gpu_facts)."],
                    "type": "str",
                    "choices": ["a", "b"],
                    "default": "a",
                },
                "demo_items": {
                    "description": "Items, I(each) L(documented,https://example.org).",
                    "type": "list",
                    "elements": "dict",
                    "default": [],
                    "options": {"name": {"description": "Its name.", "required": True}},
                },
                "demo_computed": {"description": "Set in defaults.", "type": "bool"},
            }
        },
        "extra": {"options": {"demo_flag": {"description": "C(on) or not.", "type": "bool", "default": False}}},
    }
}


def test_table_renders_markup_choices_suboptions_and_entry_points():
    block = role_docs.table(SPECS, {"demo_computed": "{{ demo_mode == 'a' }}"})
    assert block.splitlines() == [
        "| variable | type | default | meaning |",
        "| --- | --- | --- | --- |",
        "| `demo_mode` | str | `a` | Runs with `demo_port=80` as `a\\|b`. See `llmops.ragstack.gpu_facts`."
        " One of `a`, `b`. |",
        "| `demo_items` | list of dict | `[]` | Items, *each* [documented](https://example.org). |",
        "| `demo_items[].name` | str | required | Its name. |",
        "| `demo_computed` | bool | `{{ demo_mode == 'a' }}` | Set in defaults. |",
        "",
        "Entry point `extra` (`tasks_from: extra.yml`):",
        "",
        "| variable | type | default | meaning |",
        "| --- | --- | --- | --- |",
        "| `demo_flag` | bool | `false` | `on` or not. |",
    ]


def test_rewritten_replaces_only_the_block_between_the_markers():
    text = f"# r\n\nbefore\n{role_docs.BEGIN}\nold | table\n{role_docs.END}\nafter\n"
    assert role_docs.rewritten(text, "NEW") == f"# r\n\nbefore\n{role_docs.BEGIN}\n\nNEW\n\n{role_docs.END}\nafter\n"


@pytest.mark.parametrize(
    "text",
    ["no markers", f"{role_docs.END}\n{role_docs.BEGIN}", f"{role_docs.BEGIN}\n{role_docs.BEGIN}\n{role_docs.END}"],
)
def test_missing_or_misplaced_markers_are_an_error_naming_the_readme(text):
    with pytest.raises(ValueError, match=r"roles/x/README\.md: needs the lines"):
        role_docs.rewritten(text, "NEW", "roles/x/README.md")


def _copy_role(tmp_path, role="gpu_preflight"):
    target = tmp_path / "roles" / role
    shutil.copytree(REPO / "roles" / role, target)
    return target


def test_check_fails_on_a_stale_table_and_a_run_rewrites_it(tmp_path, capsys):
    role_dir = _copy_role(tmp_path)
    specs_path = role_dir / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(specs_path.read_text())
    specs["argument_specs"]["main"]["options"]["gpu_preflight_new"] = {"description": "New.", "type": "int"}
    specs_path.write_text(yaml.safe_dump(specs))
    before = (role_dir / "README.md").read_text()

    assert role_docs.main(["--check"], repo=tmp_path) == 1
    assert "roles/gpu_preflight/README.md: variable table is out of date (run `make docs`)" in capsys.readouterr().out
    assert (role_dir / "README.md").read_text() == before

    assert role_docs.main([], repo=tmp_path) == 0
    after = (role_dir / "README.md").read_text()
    assert "| `gpu_preflight_new` | int | none | New. |" in after
    assert after.split(role_docs.BEGIN)[0] == before.split(role_docs.BEGIN)[0]
    assert after.split(role_docs.END)[1] == before.split(role_docs.END)[1]
    assert role_docs.main(["--check"], repo=tmp_path) == 0


def test_a_default_without_a_spec_or_with_another_value_is_reported(tmp_path, capsys):
    role_dir = _copy_role(tmp_path)
    defaults = role_dir / "defaults" / "main.yml"
    defaults.write_text(defaults.read_text().replace("gpu_preflight_min_gpus: 1", "gpu_preflight_min_gpus: 2"))
    defaults.write_text(defaults.read_text() + "gpu_preflight_undocumented: 1\n")

    assert role_docs.disagreements(role_dir) == [
        "roles/gpu_preflight: gpu_preflight_min_gpus defaults to 2 in defaults/main.yml"
        " but to 1 in meta/argument_specs.yml",
        "roles/gpu_preflight: gpu_preflight_undocumented is in defaults/main.yml"
        " but not in meta/argument_specs.yml (main)",
    ]
    assert role_docs.main(["--check"], repo=tmp_path) == 1
    assert "gpu_preflight_undocumented" in capsys.readouterr().err


def test_argument_specs_that_are_not_yaml_are_one_line_naming_the_file(tmp_path, capsys):
    role_dir = _copy_role(tmp_path)
    specs_path = role_dir / "meta" / "argument_specs.yml"
    specs_path.write_text(specs_path.read_text().replace("Fewest GPUs the host", "Fewest: GPUs the host"))

    assert role_docs.main(["--check"], repo=tmp_path) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{specs_path}: line " in err and "is not valid YAML: mapping values are not allowed here" in err
