"""The variable tables of the role READMEs, generated from each role's meta/argument_specs.yml.

Each role documents a variable once, in meta/argument_specs.yml (what ansible-doc and the role's own
argument validation read). Its README carries a table of them between two marker lines; this script
rewrites only what lies between them:

    python -m testkit.role_docs            # rewrite the tables (make docs)
    python -m testkit.role_docs --check    # exit 1 and name each README whose table is out of date

tests/unit/test_role_docs.py fails when a table differs from its argument_specs.
"""

import argparse
import re
import sys

import yaml

from testkit.support import REPO

BEGIN = "<!-- BEGIN role variables: generated from meta/argument_specs.yml by `make docs`; edit that file -->"
END = "<!-- END role variables -->"

# Ansible's documentation markup (https://docs.ansible.com/ansible/latest/dev_guide/ansible_markup.html)
# as Markdown; L(text,url) has two arguments and is handled on its own.
_LINK = re.compile(r"(?<![A-Za-z])L\(([^,)]*),\s*([^)]*)\)")
_MARKUP = re.compile(r"(?<![A-Za-z])(RV|O|V|C|M|E|I|B|U)\(([^)]*)\)")
_AS_MARKDOWN = {
    "O": "`{}`",
    "V": "`{}`",
    "C": "`{}`",
    "M": "`{}`",
    "E": "`{}`",
    "RV": "`{}`",
    "I": "*{}*",
    "B": "**{}**",
    "U": "<{}>",
}


def markdown(text):
    """One table cell from a description (a string or a list of paragraphs) in Ansible's markup."""
    paragraphs = text if isinstance(text, list) else [text or ""]
    joined = " ".join(" ".join(str(part).split()) for part in paragraphs)
    joined = joined.replace("HORIZONTALLINE", "")
    joined = _LINK.sub(lambda match: f"[{match.group(1)}]({match.group(2).strip()})", joined)
    joined = _MARKUP.sub(lambda match: _AS_MARKDOWN[match.group(1)].format(match.group(2)), joined)
    return joined.replace("|", "\\|").strip()


def literal(value):
    """A value as it would be written in YAML, in one line, as inline code."""
    if value == "":
        text = '""'
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | dict):
        text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False).strip()
    else:
        text = " ".join(str(value).split())
    return "`{}`".format(text.replace("|", "\\|"))


def _type(spec):
    kind = spec.get("type", "str")
    return f"{kind} of {spec['elements']}" if "elements" in spec else kind


def _rows(options, role_defaults, prefix=""):
    for name, given in options.items():
        spec = given or {}
        if spec.get("required"):
            default = "required"
        elif "default" in spec:
            default = literal(spec["default"])
        elif not prefix and name in role_defaults:
            default = literal(role_defaults[name])
        else:
            default = "none"
        meaning = markdown(spec.get("description", ""))
        if "choices" in spec:
            meaning = f"{meaning} One of {', '.join(literal(choice) for choice in spec['choices'])}.".strip()
        yield f"| `{prefix}{name}` | {_type(spec)} | {default} | {meaning} |"
        if spec.get("options"):
            nested = f"{prefix}{name}[]." if spec.get("type") == "list" else f"{prefix}{name}."
            yield from _rows(spec["options"], {}, nested)


def table(argument_specs, role_defaults=None):
    """The Markdown block for a role's argument_specs (the parsed file), a table per entry point; a
    variable whose spec has no default shows the one of `role_defaults` (defaults/main.yml, parsed)."""
    lines = []
    for entry_point, spec in (argument_specs.get("argument_specs") or {}).items():
        if entry_point != "main":
            lines += ["", f"Entry point `{entry_point}` (`tasks_from: {entry_point}.yml`):", ""]
        lines += ["| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
        lines += list(_rows(spec.get("options") or {}, role_defaults or {}))
    return "\n".join(lines)


def rewritten(readme_text, block, readme_name="README.md"):
    """The README with `block` between the markers; ValueError when they are missing or out of order."""
    start = readme_text.find(BEGIN)
    end = readme_text.find(END)
    if start < 0 or end < start or readme_text.count(BEGIN) != 1 or readme_text.count(END) != 1:
        raise ValueError(f"{readme_name}: needs the lines {BEGIN!r} and {END!r}, once each, in that order")
    # Blank lines around the table keep Markdown renderers from reading a marker as a table row.
    return readme_text[: start + len(BEGIN)] + "\n\n" + block + "\n\n" + readme_text[end:]


def roles(repo=REPO):
    """Each role directory that has meta/argument_specs.yml."""
    return sorted(path.parent.parent for path in (repo / "roles").glob("*/meta/argument_specs.yml"))


def _load(path):
    """The parsed YAML file ({} when absent); ValueError naming the file when it is not valid YAML."""
    try:
        return (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = " line %d" % (where.line + 1) if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}:{line} is not valid YAML: {problem}") from error


def expected_readme(role_dir):
    """(current README text, README text with its table generated now)."""
    readme = role_dir / "README.md"
    specs = _load(role_dir / "meta" / "argument_specs.yml")
    block = table(specs, _load(role_dir / "defaults" / "main.yml"))
    current = readme.read_text() if readme.exists() else ""
    return current, rewritten(current, block, str(readme.relative_to(role_dir.parent.parent)))


def disagreements(role_dir):
    """Where defaults/main.yml and the main entry point's argument_specs disagree, one line each: a
    variable with a default but no spec, or a spec whose default is not the variable's default."""
    entry_points = _load(role_dir / "meta" / "argument_specs.yml").get("argument_specs") or {}
    options = (entry_points.get("main") or {}).get("options") or {}
    where = f"roles/{role_dir.name}"
    lines = []
    for name, value in _load(role_dir / "defaults" / "main.yml").items():
        if name not in options:
            lines.append(f"{where}: {name} is in defaults/main.yml but not in meta/argument_specs.yml (main)")
        elif "default" in (options[name] or {}) and options[name]["default"] != value:
            lines.append(
                f"{where}: {name} defaults to {value!r} in defaults/main.yml"
                f" but to {options[name]['default']!r} in meta/argument_specs.yml"
            )
    return lines


def main(argv=None, repo=REPO):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    stale = []
    problems = []
    for role_dir in roles(repo):
        try:
            problems += disagreements(role_dir)
            current, expected = expected_readme(role_dir)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 1
        if current == expected:
            continue
        stale.append(role_dir.name)
        if not args.check:
            (role_dir / "README.md").write_text(expected)
    for line in problems:
        print(line, file=sys.stderr)
    for name in stale:
        verb = "is out of date (run `make docs`)" if args.check else "rewritten"
        print(f"roles/{name}/README.md: variable table {verb}")
    return 1 if problems or (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
