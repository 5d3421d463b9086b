"""The store's own parts: the rows COPY reads, made only as it reads them; the record of loaded files."""

import pytest

from conftest import TEST_DATABASE_URL
from jobs import store
from jobs.sources import FileInfo
from models import CampaignStat, LoadedFile, Plan, db

TRICKY = ['top5, "clicks"', "line\nbreak", "back\\slash", "tab\there", "ünïcode ✓", "", "NULL", "\\N"]


def counted(n, row):
    """n copies of `row` from a generator, and the list of those it has handed out so far."""
    pulled = []

    def rows():
        for i in range(n):
            pulled.append(i)
            yield row

    return rows(), pulled


def test_rows_as_csv_writes_copy_csv_lines_strings_quoted_numbers_bare():
    rows = [(1, "", 1.5, "3,4"), (10**12, 'say "hi"', 0, "line\nbreak")]
    assert store.RowsAsCsv(iter(rows)).read() == b'1,"",1.5,"3,4"\n1000000000000,"say ""hi""",0,"line\nbreak"\n'


@pytest.mark.parametrize("size", [1, 7, 4096, 4 * store.BATCH + 1])  # the last one straddles batches
def test_rows_as_csv_read_n_gives_exactly_n_bytes_until_the_last_read(size):
    rows, _ = counted(2 * store.BATCH + 3, ("a",))  # each row is 4 bytes: "a" and a line end
    stream = store.RowsAsCsv(rows)
    chunks = list(iter(lambda: stream.read(size), b""))
    assert all(len(chunk) == size for chunk in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    assert b"".join(chunks) == b'"a"\n' * (2 * store.BATCH + 3)


def test_rows_as_csv_read_without_size_gives_everything_left():
    rows, _ = counted(store.BATCH + 1, ("a",))
    stream = store.RowsAsCsv(rows)
    assert stream.read(3) == b'"a"'
    assert stream.read() == b"\n" + b'"a"\n' * store.BATCH
    assert stream.read() == b""


def test_rows_as_csv_read_zero_gives_nothing_and_makes_no_rows():
    rows, pulled = counted(3 * store.BATCH, ("a",))
    stream = store.RowsAsCsv(rows)
    assert stream.read(0) == b"" and pulled == []
    assert stream.read(5) == b'"a"\n"'
    assert stream.read(0) == b""  # not the rest of the batch already made
    assert len(pulled) == store.BATCH and stream.read(3) == b'a"\n'


def test_rows_as_csv_makes_no_batch_before_the_one_in_hand_is_read():
    rows, pulled = counted(3 * store.BATCH, ("a",))
    stream = store.RowsAsCsv(rows)
    assert len(stream.read(4 * store.BATCH)) == 4 * store.BATCH  # exactly the first batch
    assert len(pulled) == store.BATCH
    stream.read(1)
    assert len(pulled) == 2 * store.BATCH


def test_loaded_files_answers_only_for_the_paths_asked(app):
    with app.app_context():
        store.remember_loaded_many([(FileInfo(f"images/image_{i}.png", i, f"etag{i}"), f"sha{i}") for i in range(4)])
        assert LoadedFile.select().count() == 4
        found = store.loaded_files(["images/image_1.png", "images/image_3.png", "images/none.png"])
    assert {path: row.sha256 for path, row in found.items()} == {"images/image_1.png": "sha1", "images/image_3.png": "sha3"}


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_insert_copy_stores_what_execute_values_stores(app, monkeypatch):
    rows = [(1, 10**12 + c, c % 13, TRICKY[c % len(TRICKY)], ",".join(str(b) for b in range(c, c + 5)), c % 3)
            for c in range(1, 400)]
    stats = [(1, c, c * 10, c, c % 7, c / 3 + 1e-7, c % 11, TRICKY[c % len(TRICKY)], 5) for c in range(1, 400)]
    names = ("quarter", "campaign_id", "x", "scenario", "banner_ids", "random_fill")
    stat_names = ("quarter", "campaign_id", "impressions", "clicks", "conversions", "revenue", "x", "scenario", "banners")
    copied = []  # the RowsAsCsv streams COPY read: the "copy" path must really be COPY

    class WatchedRowsAsCsv(store.RowsAsCsv):
        def read(self, size=-1):
            copied.append(size)
            return super().read(size)

    monkeypatch.setattr(store, "RowsAsCsv", WatchedRowsAsCsv)
    with app.app_context():
        stored, reads = {}, {}
        for mode in ("values", "copy"):
            monkeypatch.setattr(store, "POSTGRES_BULK", mode)
            copied.clear()
            with db.atomic():
                Plan.delete().execute()
                CampaignStat.delete().execute()
                store.insert(Plan, names, iter(rows))
                store.insert(CampaignStat, stat_names, iter(stats))
            stored[mode] = (
                sorted(Plan.select(*[getattr(Plan, n) for n in names]).tuples()),
                sorted(CampaignStat.select(*[getattr(CampaignStat, n) for n in stat_names]).tuples()),
            )
            reads[mode] = len(copied)
    assert reads["values"] == 0 and reads["copy"] >= 2  # COPY reads each stream to its empty end
    assert stored["copy"] == stored["values"]
    assert stored["copy"][0] == sorted(rows)
    assert stored["copy"][1] == sorted(stats)
