"""docs/deployment.md's Failure modes table: each row names tests that exist, so the table cannot cite a test that is gone."""

import re

from conftest import ROOT

DOC = ROOT / "docs" / "deployment.md"


def failure_mode_rows():
    section = DOC.read_text().split("## Failure modes", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| store")]


def cited_tests(cell):
    """The (file, test name) pairs a row's test cell cites: `file.py::name`, or a whole `file.py` (name "", refused)."""
    return [tuple(ref.partition("::")[::2]) for ref in re.findall(r"`([^`]+\.py(?:::\w+)?)`", cell)]


def test_failure_modes_table_has_a_row_for_every_store_and_fault_the_issue_names():
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in failure_mode_rows()]
    faults = {(store.split()[0].strip("`,"), fault.split()[0].rstrip(":")) for store, fault, *_ in rows}
    for expected in [("PostgreSQL", "away"), ("PostgreSQL", "frozen"), ("PostgreSQL", "slow"), ("REDIS_URL", "away"),
                     ("REDIS_URL", "frozen"), ("REDIS_URL", "full"), ("SESSION_REDIS_URL", "away"), ("SESSION_REDIS_URL", "frozen"), ("SESSION_REDIS_URL", "full"),
                     ("S3", "away"), ("IMAGE_DIR", "disk")]:
        assert expected in faults, expected
    assert all(len(row) == 7 and row[-1] for row in rows)  # every row names its test


def test_failure_modes_table_cites_only_tests_that_exist():
    for row in failure_mode_rows():
        test_cell = row.strip("|").split("|")[-1]
        cited = cited_tests(test_cell)
        assert cited, row
        for path, name in cited:
            assert name, f"{path}: a row names its tests, not a whole file"
            file = ROOT / "tests" / path
            assert file.is_file(), (path, row)
            if name:
                assert re.search(rf"^def {re.escape(name)}\(", file.read_text(), re.M), (path, name)
