"""Peak memory of a real `flask ingest` process on large files: bounded by distinct keys, not by luck."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HEADERS, ROOT, write_source
from models import IngestFile, IngestRun, Plan

PEAK_RSS_LIMIT_MB = 400
SMALL = {
    "impressions": "10,1\n11,1\n12,1\n13,1\n14,1\n15,1\n20,2\n21,2\n",
    "clicks": "1,10,1\n2,11,1\n3,11,1\n4,20,2\n",
    "conversions": "1,1,2.5\n2,2,1.25\n",
}


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the rows are the same on PostgreSQL, and each case writes millions of them."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def write_rows(path: Path, kind: str, rows, block: int = 200_000) -> None:
    """Write a CSV file of `kind` from an iterator of row strings, a block at a time."""
    with open(path, "w") as out:
        out.write(HEADERS[kind] + "\n")
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == block:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))


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
    source = write_source(tmp_path / "src", {q: dict(SMALL) for q in (1, 2, 3, 4)})
    count = 3_600_000
    path = source / "1" / "clicks.csv"
    write_rows(path, "clicks", (f"{1_000_000 + i},{100 + i % 900},{1 + i % 50}\n" for i in range(count)))
    assert path.stat().st_size >= 50 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "clicks.csv")]
    assert record.rows_read == record.loaded == count
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_ingest_memory_of_2_million_distinct_impression_pairs_stays_under_400_mb(app, tmp_path, worker_env):
    # Half the pairs in one campaign of a million banners (no clicks: its plan is all random fill),
    # the other half in 10,000 campaigns of 100 banners.
    def rows():
        for i in range(2_000_000):
            campaign = 100_000 if i < 1_000_000 else 100_001 + (i - 1_000_000) // 100
            yield f"{10_000_000 + i},{campaign}\n"

    source = write_source(tmp_path / "src", {q: dict(SMALL) for q in (1, 2, 3, 4)})
    path = source / "1" / "impressions.csv"
    write_rows(path, "impressions", rows())
    assert path.stat().st_size >= 32 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "impressions.csv")]
    assert record.rows_read == record.loaded == 2_000_000
    with app.app_context():
        assert Plan.select().where(Plan.quarter == 1).count() == 10_001
        big = Plan.get(quarter=1, campaign_id=100_000)
        assert big.random_fill == 5 and all(10_000_000 <= b < 11_000_000 for b in big.banner_id_list)
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"


def test_ingest_memory_of_a_50_mb_conversions_file_stays_under_400_mb(app, tmp_path, worker_env):
    clicks = 1_000_000
    source = write_source(tmp_path / "src", {q: dict(SMALL) for q in (1, 2, 3, 4)})
    write_rows(source / "1" / "clicks.csv", "clicks", (f"{1_000_000 + i},{100 + i % 900},{1 + i % 50}\n" for i in range(clicks)))
    # Click ids over twice the clicks' range: about half the conversions are orphans.
    path = source / "1" / "conversions.csv"
    count = 2_400_000
    write_rows(path, "conversions", (f"{1_000_000 + i},{1_000_000 + (i * 7) % 2_000_000},{i % 100}.{i % 97:02d}\n" for i in range(count)))
    assert path.stat().st_size >= 50 * 1000 * 1000

    peak = ingest_peak_rss_mb(source, worker_env, tmp_path)

    record = last_run_files(app)[(1, "conversions.csv")]
    assert record.rows_read == count and record.loaded + record.orphans == count
    assert record.loaded == sum(1 for i in range(count) if (i * 7) % 2_000_000 < clicks)
    assert peak < PEAK_RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
