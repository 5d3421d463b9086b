"""Ingest from a directory: reference data, idempotence, and every kind of bad input."""

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, write_source
from jobs.ingest import IngestBusy, run_ingest
from jobs import runtime
from models import Banner, BannerStat, CampaignStat, IngestFile, IngestRun, Plan, get_data_version


def png_bytes(color=(10, 120, 200)):
    out = io.BytesIO()
    Image.new("RGB", (30, 25), color).save(out, format="PNG")
    return out.getvalue()


def plans():
    return {(p.quarter, p.campaign_id): p.banner_ids for p in Plan.select()}


def files_of(run_id):
    return {(f.quarter, f.name): f for f in IngestFile.select().where(IngestFile.run == run_id)}


GOOD = {
    "impressions": "10,1\n11,1\n12,1\n13,1\n14,1\n15,1\n20,2\n21,2\n",
    "clicks": "1,10,1\n2,11,1\n3,11,1\n4,20,2\n",
    "conversions": "1,1,2.5\n2,2,1.25\n",
}


@pytest.fixture
def good_source(tmp_path):
    return write_source(tmp_path / "good", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images={"image_10.png": png_bytes()})


@pytest.fixture
def loaded(app, good_source):
    """The good source loaded once; returns (source, plans as loaded)."""
    with app.app_context():
        run = IngestRun.get_by_id(run_ingest(str(good_source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED, run.error
        return good_source, plans()


def test_ingest_loads_plans_stats_and_history(app, loaded):
    with app.app_context():
        ranked = plans()[(1, 1)].split(",")
        assert ranked[:2] == ["10", "11"] and sorted(ranked[2:]) < ["16"] and len(set(ranked)) == 5
        stat = CampaignStat.get(quarter=1, campaign_id=1)
        assert (stat.impressions, stat.clicks, stat.conversions, stat.revenue, stat.x) == (6, 3, 2, 3.75, 2)
        assert BannerStat.get(quarter=1, campaign_id=1, banner_id=10).revenue == 2.5
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.trigger == "cli" and run.started_at and run.finished_at and run.progress == 1.0
        records = files_of(run.id)
        assert records[(1, "clicks.csv")].loaded == 4 and records[(1, "clicks.csv")].sha256
        assert records[(None, "images/")].loaded == 1
        assert Banner.get_by_id(10).content_type == "image/png"


def test_ingest_header_only_file_loads_where_its_quarter_had_no_rows_of_that_kind(app, tmp_path):
    header = _header("conversions") + "\n"
    source = write_source(tmp_path / "src", {q: dict(GOOD, conversions=header if q == 1 else GOOD["conversions"]) for q in (1, 2, 3, 4)})
    assert _reingest(app, source).status == IngestRun.SUCCEEDED
    (source / "1" / "clicks.csv").write_text(_header("clicks") + "\n1,15,1\n2,15,1\n")
    run = _reingest(app, source)  # conversions of other quarters are served; quarter 1 has none to lose
    with app.app_context():
        assert run.status == IngestRun.SUCCEEDED, run.error
        assert plans()[(1, 1)].startswith("15,")


def test_ingest_keeps_each_conversion_with_its_exact_revenue(app, loaded):
    from decimal import Decimal

    from models import Conversion

    with app.app_context():
        stored = {(c.conversion_id, c.click_id): c.revenue for c in Conversion.select().where(Conversion.quarter == 1)}
    assert stored == {(1, 1): Decimal("2.5"), (2, 2): Decimal("1.25")}


def test_ingest_same_source_twice_changes_nothing_and_reports_unchanged(app, loaded):
    source, before = loaded
    with app.app_context():
        version = get_data_version()
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED
        assert all(f.unchanged for f in files_of(run.id).values())
        assert get_data_version() == version and plans() == before


def test_ingest_one_changed_file_reloads_only_its_quarter(app, loaded):
    source, before = loaded
    (source / "2" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n1,15,1\n2,15,1\n4,20,2\n")
    with app.app_context():
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        records = files_of(run.id)
        assert not records[(2, "clicks.csv")].unchanged and records[(1, "clicks.csv")].unchanged
        after = plans()
        assert after[(2, 1)].startswith("15,") and after[(1, 1)] == before[(1, 1)]


def test_ingest_while_another_holds_the_lock_is_refused(app, loaded):
    source, _ = loaded
    with app.app_context():
        ctx = runtime.context()
        assert runtime.acquire_lock(ctx)
        with pytest.raises(IngestBusy):
            run_ingest(str(source), trigger="cli")


def _reingest(app, source, **kwargs):
    with app.app_context():
        return IngestRun.get_by_id(run_ingest(str(source), trigger="cli", **kwargs))


def _header(kind):
    from conftest import HEADERS

    return HEADERS[kind]


BAD_FILES = {
    # name: (quarter 1 file, content, expected run status, what the record says)
    "missing file": ("clicks", None, IngestRun.FAILED, "missing"),
    "empty file": ("clicks", b"", IngestRun.FAILED, "empty file"),
    "header only": ("clicks", "click_id,banner_id,campaign_id\n", IngestRun.FAILED, "no data rows"),
    "wrong header": ("clicks", "id,banner,campaign\n1,10,1\n", IngestRun.FAILED, "does not match"),
    "extra columns": ("impressions", "banner_id,campaign_id,x\n10,1,1\n", IngestRun.FAILED, "does not match"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_ingest_bad_file_fails_its_quarter_and_keeps_serving_the_old_data(app, loaded, case):
    source, before = loaded
    kind, content, status, says = BAD_FILES[case]
    path = source / "1" / f"{kind}.csv"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = _reingest(app, source)
    with app.app_context():
        assert run.status == status and "quarter 1" in run.error and "previous data kept" in run.error
        assert says in (files_of(run.id)[(1, f"{kind}.csv")].error or "")
        assert plans() == before


def test_ingest_failed_first_quarter_does_not_stop_the_other_three(app, loaded):
    source, before = loaded
    (source / "1" / "clicks.csv").write_text("id,banner,campaign\n1,10,1\n")
    for quarter in (2, 3, 4):  # each of the others changed, so each has to load again
        (source / str(quarter) / "clicks.csv").write_text(f"{_header('clicks')}\n1,15,1\n2,15,1\n4,20,2\n")
    run = _reingest(app, source)
    with app.app_context():
        assert run.status == IngestRun.FAILED and "quarter 1" in run.error
        assert not any(f"quarter {q}" in run.error for q in (2, 3, 4)), run.error
        after = plans()
        assert after[(1, 1)] == before[(1, 1)]
        assert all(after[(q, 1)].startswith("15,") and after[(q, 1)] != before[(q, 1)] for q in (2, 3, 4))
        records = files_of(run.id)
        assert all(records[(q, "clicks.csv")].loaded == 3 for q in (2, 3, 4))
        assert records[(None, "images/")].error is None


BAD_ROWS = {
    # name: (file, appended row bytes, reason fragment)
    "non-numeric id": ("clicks", b"abc,10,1\n", "not a positive integer"),
    "negative revenue": ("conversions", b"9,1,-4\n", "negative"),
    "NaN revenue": ("conversions", b"9,1,NaN\n", "not a number"),
    "infinite revenue": ("conversions", b"9,1,inf\n", "not a number"),
    "id beyond 64 bits": ("clicks", b"18446744073709551616,10,1\n", "beyond 64 bits"),
    "non-UTF-8 bytes": ("impressions", b"1\xff0,1\n", "not valid UTF-8"),
    "too many fields": ("impressions", b"10,1,5\n", "expected 2 fields"),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_ingest_bad_row_is_rejected_with_line_and_reason_and_the_rest_loads(app, loaded, case):
    source, before = loaded
    kind, row, reason = BAD_ROWS[case]
    path = source / "1" / f"{kind}.csv"
    path.write_bytes(path.read_bytes() + row)
    run = _reingest(app, source, accept_rejects=True)  # one row of a handful is far over the reject limit
    with app.app_context():
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
        record = files_of(run.id)[(1, f"{kind}.csv")]
        line = len(path.read_bytes().splitlines())
        assert record.rejected == 1 and record.sample_list[0][0] == line and reason in record.sample_list[0][1]
        assert plans() == before


@pytest.mark.parametrize(
    "variant",
    ["bom", "crlf", "quoted"],
)
def test_ingest_bom_crlf_and_quoted_fields_load_the_same_plans(app, loaded, variant):
    source, before = loaded
    path = source / "1" / "clicks.csv"
    text = path.read_text()
    if variant == "bom":
        data = "\ufeff".encode() + text.encode()
    elif variant == "crlf":
        data = text.replace("\n", "\r\n").encode()
    else:
        head, *rows = text.splitlines()
        data = ("\n".join([head] + [",".join(f'"{v}"' for v in row.split(",")) for row in rows]) + "\n").encode()
    path.write_bytes(data)
    run = _reingest(app, source)
    with app.app_context():
        assert run.status == IngestRun.SUCCEEDED and files_of(run.id)[(1, "clicks.csv")].rejected == 0
        assert plans() == before


def test_ingest_image_that_is_not_an_image_is_rejected_and_the_rest_copied(app, loaded, settings_overrides):
    source, before = loaded
    (source / "images" / "image_11.png").write_bytes(b"<html>not an image</html>")
    (source / "images" / "image_12.png").write_bytes(png_bytes((1, 2, 3)))
    run = _reingest(app, source)
    with app.app_context():
        record = files_of(run.id)[(None, "images/")]
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
        assert record.rejected == 1 and record.loaded == 1
        assert record.sample_list[0][0] == "images/image_11.png"
        assert Banner.get_or_none(Banner.id == 11) is None and Banner.get_by_id(12).image_name == "12.png"
        assert plans() == before
    served = sorted(p.name for p in (settings_overrides and __import__("pathlib").Path(settings_overrides["image_dir"])).iterdir())
    assert served == ["10.png", "12.png"]


def test_ingest_jpeg_bytes_named_png_are_served_as_jpeg(app, tmp_path):
    out = io.BytesIO()
    Image.new("RGB", (30, 25)).save(out, format="JPEG")
    source = write_source(tmp_path / "jpeg", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images={"image_10.png": out.getvalue()})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
        assert (Banner.get_by_id(10).image_name, Banner.get_by_id(10).content_type) == ("10.jpg", "image/jpeg")
    app.extensions["plans"].invalidate()
    response = app.test_client().get("/images/10.jpg")
    assert response.status_code == 200 and response.content_type == "image/jpeg"


def test_ingest_missing_source_directory_fails_with_a_clear_error(app, loaded, tmp_path):
    _, before = loaded
    run = _reingest(app, tmp_path / "nowhere")
    assert run.status == IngestRun.FAILED and "does not exist" in run.error
    with app.app_context():
        assert plans() == before


def test_ingest_50_megabyte_file_streams_in_bounded_memory(app, tmp_path, worker_env):
    """A 50 MB impressions file loads through the CLI, and the process stays far below 50 MB of rows."""
    source = write_source(tmp_path / "big", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    path = source / "1" / "impressions.csv"
    block = "".join(f"{100 + i % 400},{1 + i % 50}\n" for i in range(20_000)).encode()
    with open(path, "wb") as out:
        out.write(b"banner_id,campaign_id\n")
        while out.tell() < 50 * 1024 * 1024:
            out.write(block)
    rows = (path.stat().st_size - 22) // 1  # bytes; counted below from the record
    code = (
        "import resource, sys; from webapp import create_app; from jobs.ingest import run_ingest; "
        "app = create_app();\nwith app.app_context(): run_ingest(sys.argv[1], trigger='cli')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    baseline = subprocess.run(
        [sys.executable, "-c", "import resource; from webapp import create_app; from jobs.ingest import run_ingest; create_app(); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
        env=worker_env, cwd=ROOT, capture_output=True, text=True, check=True,
    )
    done = subprocess.run([sys.executable, "-c", code, str(source)], env=worker_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_kb = int(done.stdout.strip().splitlines()[-1]) - int(baseline.stdout.strip().splitlines()[-1])
    assert grown_kb < 50 * 1024, f"ingest grew by {grown_kb} kB for a {rows}-byte file"
    with app.app_context():
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.status == IngestRun.SUCCEEDED, run.error
        record = files_of(run.id)[(1, "impressions.csv")]
        assert record.size >= 50 * 1024 * 1024 and record.loaded == record.rows_read > 6_000_000


def test_ingest_reference_data_gives_top_10_by_revenue_everywhere(runner, reference_data):
    result = runner.invoke(args=["ingest", str(reference_data)])
    assert result.exit_code == 0, result.output
    assert "1/impressions.csv" in result.output and "150000" in result.output
    result = runner.invoke(args=["plans", "--json"])
    everything = json.loads(result.output)
    assert len(everything) == 200
    assert all(p["scenario"] == "top10_revenue" and len(p["banner_ids"]) == 10 for p in everything)
    q1c1 = json.loads(runner.invoke(args=["plans", "--quarter", "1", "--campaign", "1", "--json"]).output)
    assert set(q1c1[0]["banner_ids"]) == {371, 125, 467, 300, 458, 187, 283, 414, 465, 170}
    assert q1c1[0]["banner_ids"] == [371, 125, 467, 300, 458, 187, 283, 414, 465, 170]


def test_ingest_demo_data_covers_every_rule_branch_and_the_random_fill(runner, demo_source):
    result = runner.invoke(args=["ingest", str(demo_source)])
    assert result.exit_code == 0, result.output
    everything = json.loads(runner.invoke(args=["plans", "--json"]).output)
    for quarter in (1, 2, 3, 4):
        scenarios = {p["scenario"] for p in everything if p["quarter"] == quarter}
        assert scenarios == {"top10_revenue", "top_x_revenue", "revenue_then_clicks", "top5_clicks"}
    with runner.app.app_context():
        assert Plan.select().where(Plan.random_fill > 0).exists()
        assert any(len(p.banner_id_list) < 5 for p in Plan.select()), "a pool smaller than 5"
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS
        totals = {k: sum(getattr(f, k) for f in run.files) for k in ("duplicates", "conflicts", "rejected", "orphans")}
        assert all(totals.values()), totals


def test_ingest_cli_prints_a_per_file_summary_and_fails_on_a_failed_run(runner, tmp_path):
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    (source / "3" / "conversions.csv").unlink()
    result = runner.invoke(args=["ingest", str(source)])
    assert result.exit_code == 1
    assert "failed" in result.output and "3/conversions.csv" in result.output and "file is missing" in result.output
    assert "read" in result.output and "orphan" in result.output


def test_ingest_logs_one_line_per_event_with_the_run_id_to_the_log_file(app, loaded, settings_overrides):
    from pathlib import Path

    lines = Path(settings_overrides["log_file"]).read_text().splitlines()
    run_lines = [line for line in lines if "bannerservice.ingest" in line]
    assert any("run=1 start" in line for line in run_lines) and any("run=1 end status=succeeded" in line for line in run_lines)
    assert sum("run=1 quarter=" in line for line in run_lines) == 4


def test_ingest_new_data_reaches_a_running_web_process_within_a_second(app, loaded, tmp_path):
    import time

    from webapp.serving import PlanCache

    ctx = runtime.context()
    cache = PlanCache(ctx.redis, ctx.key("data_version"), refresh_seconds=1.0)
    with app.app_context():
        old = cache.snapshot()
        source, _ = loaded
        (source / "1" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n1,15,1\n2,15,1\n4,20,2\n")
        run_ingest(str(source), trigger="cli")
        deadline = time.monotonic() + 1.2
        while cache.snapshot().version == old.version and time.monotonic() < deadline:
            time.sleep(0.05)
        new = cache.snapshot()
    assert new.version > old.version and new.plans[(1, 1)][0][0] == 15
