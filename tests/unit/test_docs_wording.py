"""What ships documents the collection in its own words: no citation of notes that are not in the repository."""

import pytest

from testkit.support import REPO

pytestmark = pytest.mark.unit

# The documentation that ships with the collection, and the lab's page.
SHIPPED_DOCS = ("README.md", "CHANGELOG.md", "lab/README.md", "roles", "plugins", "playbooks", "inventories/example")


def shipped_text_files():
    for name in SHIPPED_DOCS:
        path = REPO / name
        for found in [path] if path.is_file() else sorted(path.rglob("*")):
            if found.is_file() and found.suffix in (".md", ".py", ".yml", ".yaml", ".j2"):
                yield found


def test_no_document_cites_the_field_notes():
    citing = [
        f"{path.relative_to(REPO)}:{number}"
        for path in shipped_text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if "field notes" in line.lower()
    ]
    assert citing == [], "say it in the project's own words (the notes are not in the repository): %s" % citing
