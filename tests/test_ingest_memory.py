"""Peak memory of a real `flask ingest` process on large files: bounded by distinct keys, not by luck."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from jobs.bigsources import CLICKS, CONVERSION_CLICKS, CONVERSIONS, IMPRESSION_PAIRS, write_big_source
from models import IngestRun, Plan

PEAK_RSS_LIMIT_MB = 400


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the rows are the same on PostgreSQL, and each case writes millions of them."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def ingest_peak_rss_mb(source, env, tmp_path) -> float:
    """Run `flask ingest SOURCE` as a child process; its peak resident set size in MB (from wait4)."""
    flask = Path(sys.executable).with_name("flask")
    with open(tmp_path / "ingest.out", "wb") as out:
        proc = subprocess.Popen([str(flask), "--app", "webapp", "ingest", str(source)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    output = (tmp_path / "ingest.out").read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    return usage.ru_maxrss / 1024  # kB on Linux


def last_run_files(app):
    with app.app_context():
        run = IngestRun.select().order_by(IngestRun.id.desc()).get()
        assert run.status == IngestRun.SUCCEEDED, run.error
        return {(f.quarter, f.name): f for f in run.files}


def test_ingest_memory_of_3_6_million_distinct_clicks_stays_under_400_mb(app, tmp_path, worker_env):
    source = write_big_source(tmp_path / "src", "clicks")
    assert (source / "1" / "clicks.csv").stat().st_size >= 50 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "clicks.csv")]
    assert record.rows_read == record.loaded == CLICKS == 3_600_000
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_ingest_memory_of_2_million_distinct_impression_pairs_stays_under_400_mb(app, tmp_path, worker_env):
    # Half the pairs in one campaign of a million banners (no clicks: its plan is all random fill),
    # the other half in 10,000 campaigns of 100 banners.
    source = write_big_source(tmp_path / "src", "impressions")
    assert (source / "1" / "impressions.csv").stat().st_size >= 32 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "impressions.csv")]
    assert record.rows_read == record.loaded == IMPRESSION_PAIRS == 2_000_000
    with app.app_context():
        assert Plan.select().where(Plan.quarter == 1).count() == 10_003  # and campaigns 1 and 2 of the clicks
        big = Plan.get(quarter=1, campaign_id=100_000)
        assert big.random_fill == 5 and all(10_000_000 <= b < 11_000_000 for b in big.banner_id_list)
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_ingest_memory_of_a_50_mb_conversions_file_stays_under_400_mb(app, tmp_path, worker_env):
    source = write_big_source(tmp_path / "src", "conversions")
    assert (source / "1" / "conversions.csv").stat().st_size >= 50 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "conversions.csv")]
    assert record.rows_read == CONVERSIONS and record.loaded + record.orphans == CONVERSIONS
    assert record.loaded == sum(1 for i in range(CONVERSIONS) if (i * 7) % (2 * CONVERSION_CLICKS) < CONVERSION_CLICKS)
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_listing_images_holds_a_couple_of_hundred_bytes_per_image(tmp_path):
    # 100,000 banners (the 100x source of docs/performance.md) are 100,000 images to list before any is read.
    import tracemalloc

    from jobs.sources import open_source

    folder = tmp_path / "images"
    folder.mkdir()
    count = 20_000
    for i in range(count, 0, -1):
        (folder / f"image_{10**12 + i}.png").touch()
    tracemalloc.start()
    images = open_source(str(tmp_path)).list_images()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [i.path for i in images[:2]] == [f"images/image_{10**12 + 1}.png", f"images/image_{10**12 + 2}.png"]
    assert len(images) == count
    assert peak / count < 300, f"{peak / count:.0f} bytes per image listed"
