"""The mutation table of docs/testing.md: counts read from mutmut's results, goals judged, survivors explained or flagged."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import mutation_report  # noqa: E402

RESULTS = """\
    selection.x_quarter_of__mutmut_1: killed
    selection.x_quarter_of__mutmut_2: survived
    selection.x_describe__mutmut_1: timeout
    selection.x_describe__mutmut_2: not checked
    jobs.store.xǁRowsAsCsvǁread__mutmut_3: killed
    jobs.store.xǁRowsAsCsvǁread__mutmut_4: suspicious
    jobs.store.x_insert__mutmut_1: no tests
    jobs.store.x_insert__mutmut_2: skipped
"""


def table_row(section, path):
    return next(line for line in section.splitlines() if line.startswith(f"| {path} |"))


def render(results=RESULTS, load="0.10 0.20 0.30 / 1.90 1.80 1.70", changes=None):
    counts, survivors = mutation_report.parse(results)
    changes = changes or {name: "`a` → `b`" for names in survivors.values() for name in names}
    return mutation_report.render(counts, survivors, changes, "scripts/mutation.sh", 754, load, 2)


def test_parse_counts_each_status_per_module_and_lists_the_survivors():
    counts, survivors = mutation_report.parse("mutmut 3.8.1\n" + RESULTS)
    assert counts["selection"] == {"killed": 1, "survived": 1, "timeout": 1, "not checked": 1}
    # a class method's name (ǁ) belongs to its module
    assert counts["jobs.store"] == {"killed": 1, "suspicious": 1, "no tests": 1, "skipped": 1}
    assert dict(survivors) == {"selection": ["selection.x_quarter_of__mutmut_2"]}


def test_killed_share_counts_timeouts_leaves_out_mutants_not_run_and_judges_the_goal():
    section = render()
    # selection: 4 mutants, 1 not run; killed 1 + timeout 1 of 3 run = 66.7 %, under its 95 % goal.
    assert table_row(section, "selection.py") == "| selection.py | 4 | 1 | 1 | 1 | 0 | 1 | 66.7 | ≥ 95 % (NOT met) |"
    # store: 1 killed of 3 run (suspicious and no tests are not kills; skipped is not run) = 33.3 %.
    assert table_row(section, "jobs/store.py") == "| jobs/store.py | 4 | 1 | 0 | 0 | 2 | 1 | 33.3 | ≥ 85 % (NOT met) |"
    # a module with no results is shown without a share, never as met.
    assert table_row(section, "rotation.py") == "| rotation.py | 0 | 0 | 0 | 0 | 0 | 0 | – | ≥ 95 % (NOT met) |"


def test_a_module_at_its_goal_is_met():
    section = render("".join(f"    rotation.x_next_banner__mutmut_{i}: killed\n" for i in range(19))
                     + "    rotation.x_next_banner__mutmut_19: survived\n")
    assert table_row(section, "rotation.py").endswith("| 95.0 | ≥ 95 % (met) |")


def test_a_survivor_without_an_explanation_is_flagged_and_one_with_is_explained(monkeypatch):
    monkeypatch.setitem(mutation_report.EQUIVALENT, "selection.x_describe__mutmut_9", "Same words either way.")
    section = render("    selection.x_quarter_of__mutmut_2: survived\n    selection.x_describe__mutmut_9: survived\n",
                     changes={"selection.x_quarter_of__mutmut_2": "`// 15` → `// 16`",
                              "selection.x_describe__mutmut_9": "`x` → `y`"})
    assert "- `selection.x_quarter_of__mutmut_2`: `// 15` → `// 16`. **Not explained: a test is missing.**" in section
    assert "- `selection.x_describe__mutmut_9`: `x` → `y`. Same words either way." in section


def test_no_survivor_says_so():
    assert "No mutant survived." in render("    selection.x_quarter_of__mutmut_1: killed\n")


@pytest.mark.parametrize("load, note", [
    ("0.10 0.20 0.30 / 1.90 1.80 1.70", "1.90 1.80 1.70."),
    ("0.49 0.90 0.90 / 1.90 1.80 1.70", "1.90 1.80 1.70."),  # judged by the last minute only
    ("0.50 0.10 0.10 / 1.90 1.80 1.70", "1.90 1.80 1.70 (the machine was not idle when the run began)."),
    ("1.35 0.90 0.40 / 1.90 1.80 1.70", "1.90 1.80 1.70 (the machine was not idle when the run began)."),
])
def test_the_run_line_says_the_load_and_whether_the_machine_was_idle(load, note):
    run_line = render(load=load).splitlines()[1]
    assert run_line.startswith("Last run: ") and "`scripts/mutation.sh`, 12 min 34 s wall time, 2 mutants at once" in run_line
    assert run_line.endswith(note)


@pytest.fixture
def passes(tmp_path, monkeypatch):
    """Two pass folders whose `mutmut results` and `mutmut show` answer from text, and main()'s other arguments."""
    pure, store = tmp_path / "pure", tmp_path / "store"
    answers = {
        (pure, "results"): "    selection.x_quarter_of__mutmut_1: killed\n    selection.x_quarter_of__mutmut_2: survived\n",
        (store, "results"): "    jobs.store.x_insert__mutmut_1: killed\n    jobs.store.x_insert__mutmut_2: survived\n",
        (pure, "show"): "--- selection.py\n+++ selection.py\n-    return minute // 15\n+    return minute // 16\n",
        (store, "show"): "--- jobs/store.py\n+++ jobs/store.py\n-    size=1 << 16\n+    size=1 << 17\n",
    }
    monkeypatch.setattr(mutation_report, "mutmut", lambda folder, *args: answers[(Path(folder), args[0])])
    return [str(pure), str(store), "--command", "c", "--seconds", "1", "--load", "0 0 0 / 0 0 0", "--children", "2"]


def test_main_adds_up_both_passes_and_shows_each_survivor_from_its_own_pass(tmp_path, passes):
    doc = tmp_path / "testing.md"
    doc.write_text(f"before\n{mutation_report.BEGIN}\nold table\n{mutation_report.END}\nafter\n")
    mutation_report.main([str(doc), *passes])
    text = doc.read_text()
    assert text.startswith("before\n" + mutation_report.BEGIN) and text.endswith(mutation_report.END + "\nafter\n")
    assert "old table" not in text
    assert "| selection.py | 2 | 1 | 1 | 0 | 0 | 0 | 50.0 |" in text and "| jobs/store.py | 2 | 1 | 1 | 0 | 0 | 0 | 50.0 |" in text
    assert "- `selection.x_quarter_of__mutmut_2`: `return minute // 15` → `return minute // 16`." in text
    assert "- `jobs.store.x_insert__mutmut_2`: `size=1 << 16` → `size=1 << 17`." in text


def test_a_document_without_the_markers_is_refused_untouched(tmp_path, passes):
    doc = tmp_path / "testing.md"
    doc.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="no <!-- mutation:begin -->"):
        mutation_report.main([str(doc), *passes])
    assert doc.read_text() == "no markers here\n"
