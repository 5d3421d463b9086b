"""The demo generator at other sizes: every campaign, every rule branch, faults at bounded rates."""

import csv
import hashlib
import json

import pytest

from jobs.demo import REFERENCE_MIX, write_demo_source
from models import IngestRun, Plan

SCENARIOS = {"top10_revenue", "top_x_revenue", "revenue_then_clicks", "top5_clicks"}


def read_rows(root, quarter, kind):
    with open(root / str(quarter) / f"{kind}.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaled")
    write_demo_source(root, campaigns=130, banners=900, rows=80_000, images=False)
    return root


def test_demo_scaled_source_has_about_the_rows_asked_for_in_the_reference_mix(scaled):
    counts = {kind: sum(len(read_rows(scaled, q, kind)) for q in (1, 2, 3, 4)) for kind in REFERENCE_MIX}
    total = sum(counts.values())
    assert 0.9 * 80_000 <= total <= 1.1 * 80_000, counts
    for kind, share in REFERENCE_MIX.items():
        assert abs(counts[kind] / total - share) <= 0.3 * share, (kind, counts)


def test_demo_scaled_source_has_every_campaign_in_every_quarter_and_ids_in_range(scaled):
    for quarter in (1, 2, 3, 4):
        rows = [r for r in read_rows(scaled, quarter, "impressions") if r[0].isdigit() and r[0] != "0"]
        assert {int(c) for _, c in rows} == set(range(1, 131))
        assert all(100 <= int(b) < 1000 for b, _ in rows)
        clicks = read_rows(scaled, quarter, "clicks")
        assert {int(c) for _, _, c in clicks} <= set(range(1, 131))


def test_demo_scaled_source_keeps_ids_unique_across_quarters_but_for_the_planted_repeats(scaled):
    click_ids = [r[0] for q in (1, 2, 3, 4) for r in read_rows(scaled, q, "clicks")]
    repeats = len(click_ids) - len(set(click_ids))
    # Each fault set plants one duplicate and one conflict; at least one set per block of 50 campaigns.
    assert 2 * 4 * 3 <= repeats <= 0.001 * len(click_ids) + 2 * 4 * 3


def test_demo_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_demo_source(tmp_path / name, seed=seed, campaigns=60, banners=80, rows=5_000, images=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_demo_images_cover_every_banner_but_the_last_past_the_drawn_ones(tmp_path, monkeypatch):
    import jobs.demo

    monkeypatch.setattr(jobs.demo, "DRAWN_IMAGES_MAX", 10)
    write_demo_source(tmp_path, campaigns=2, banners=30, rows=2_000)
    names = {p.name for p in (tmp_path / "images").iterdir()}
    assert names == {f"image_{b}.png" for b in range(100, 129)}
    assert (tmp_path / "images" / "image_125.png").read_bytes() == (tmp_path / "images" / "image_105.png").read_bytes()


def test_demo_data_cli_scaled_source_loads_with_every_rule_branch_and_faults_at_bounded_rates(runner, tmp_path):
    result = runner.invoke(args=["demo-data", str(tmp_path / "src"), "--campaigns", "130", "--banners", "900",
                                 "--rows", "40000", "--no-images"])
    assert result.exit_code == 0, result.output
    assert "130 campaigns, 900 banners" in result.output
    result = runner.invoke(args=["ingest", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    everything = json.loads(runner.invoke(args=["plans", "--json"]).output)
    for quarter in (1, 2, 3, 4):
        plans = [p for p in everything if p["quarter"] == quarter]
        assert {p["campaign_id"] for p in plans} == set(range(1, 131))
        assert {p["scenario"] for p in plans} == SCENARIOS
    with runner.app.app_context():
        assert Plan.select().where(Plan.random_fill > 0).exists()
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
        rows = sum(f.rows_read for f in run.files)
        totals = {k: sum(getattr(f, k) for f in run.files) for k in ("duplicates", "conflicts", "rejected", "orphans")}
    assert all(totals.values()), totals
    assert all(n <= 0.005 * rows for n in totals.values()), (totals, rows)
