"""A source file rewritten while ingest reads it: its quarter keeps the data it had, and the run says why."""

import os
import threading

import pytest

from conftest import HEADERS, write_source
from jobs.ingest import run_ingest
from models import CampaignStat, IngestFile, IngestRun
from test_ingest import GOOD

IMPRESSIONS = "4/impressions.csv"
ROWS = 200_000  # 1 MB: a read of many chunks, and its first tenth longer than one


def big_impressions(rows, banner=10):
    """A quarter-4 impressions file of `rows` rows, every one of banner `banner` in campaign 1."""
    return (HEADERS["impressions"] + "\n" + f"{banner},1\n" * rows).encode()


def stat_of_quarter_4(app):
    with app.app_context():
        stat = CampaignStat.get(quarter=4, campaign_id=1)
        return stat.impressions, stat.clicks


def ingest(app, source, on_progress=None):
    with app.app_context():
        return IngestRun.get_by_id(run_ingest(str(source), trigger="cli", on_progress=on_progress))


def record_of(app, run, quarter, name):
    with app.app_context():
        return IngestFile.get(run=run, quarter=quarter, name=name)


@pytest.fixture
def loaded_source(app, tmp_path):
    """GOOD loaded in every quarter; then a new, larger quarter-4 impressions file is put in place
    (dated an hour back, so that any later write gives it another modification time)."""
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    assert ingest(app, source).status == IngestRun.SUCCEEDED
    path = source / IMPRESSIONS
    path.write_bytes(big_impressions(ROWS))
    an_hour_ago = path.stat().st_mtime - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    return source, stat_of_quarter_4(app)


def rewrite_in_place(path, data):
    """What an operator's copy does: the same file truncated and written again."""
    with open(path, "r+b") as out:
        out.truncate(0)
        out.write(data)


@pytest.mark.parametrize("new_size", ["shorter", "same size"])
def test_ingest_file_rewritten_between_listing_and_reading_keeps_its_quarter(app, loaded_source, new_size):
    source, before = loaded_source
    path = source / IMPRESSIONS
    listed = path.read_bytes()
    rewritten = listed[: len(listed) // 10] if new_size == "shorter" else listed.replace(b"10,1", b"11,1")
    done = []

    def on_progress(_done, _total, stage):
        # The quarter's files were listed at the start; its first read follows this stage.
        if stage == "quarter 4: checking" and not done:
            rewrite_in_place(path, rewritten)
            done.append(True)

    run = ingest(app, source, on_progress)
    assert done
    assert run.status == IngestRun.FAILED
    assert "quarter 4: " in run.error and "changed while reading" in run.error and "previous data kept" in run.error
    assert "changed while reading" in record_of(app, run, 4, "impressions.csv").error
    assert stat_of_quarter_4(app) == before
    # The other quarters were read as usual.
    assert record_of(app, run, 1, "impressions.csv").unchanged


def test_ingest_file_rewritten_in_the_middle_of_its_read_keeps_its_quarter_then_loads_it(app, loaded_source):
    source, before = loaded_source
    path = source / IMPRESSIONS
    listed = path.read_bytes()
    new = big_impressions(ROWS, banner=11)
    assert len(new) == len(listed)
    truncated, writer, at_open = threading.Event(), [], []

    def write_slowly():
        # 10 % written, a real pause, the rest: the reader meets the end of the file in the pause.
        with open(path, "r+b") as out:
            out.truncate(0)
            out.write(new[: len(new) // 10])
            out.flush()
            truncated.set()
            threading.Event().wait(2.0)
            out.write(new[len(new) // 10:])

    def on_progress(done, _total, stage):
        if stage != f"quarter 4: reading {IMPRESSIONS}":
            return
        at_open.append(done)  # the stage is said before the file is opened, then once after each chunk read
        if done > at_open[0] and not writer:
            writer.append(threading.Thread(target=write_slowly))
            writer[0].start()
            assert truncated.wait(10)

    try:
        run = ingest(app, source, on_progress)
    finally:
        for thread in writer:
            thread.join()
    assert writer, "the hook never fired: the file was not read in chunks"
    assert run.status == IngestRun.FAILED
    assert "changed while reading" in run.error
    record = record_of(app, run, 4, "impressions.csv")
    assert "changed while reading" in record.error and record.sha256 is None
    assert "bytes read" in record.error  # met at the end of the read, not on opening
    assert stat_of_quarter_4(app) == before
    # Once the writer is done, the next run loads the new file whole.
    again = ingest(app, source)
    assert again.status == IngestRun.SUCCEEDED, again.error
    assert stat_of_quarter_4(app)[0] == ROWS
