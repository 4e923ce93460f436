"""The project's test kit: doubles, fixture builders and runners that the tests, the lab and the
benches import. It is not part of the collection (galaxy.yml's build_ignore keeps it out)."""
