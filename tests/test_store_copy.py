"""PostgreSQL's bulk path: rows go in through COPY, read from the rows as COPY asks for them."""

import pytest

from conftest import TEST_DATABASE_URL
from jobs import store
from models import CampaignStat, Plan, db

TRICKY = ['top5, "clicks"', "line\nbreak", "back\\slash", "tab\there", "ünïcode ✓", "", "NULL", "\\N"]


def test_rows_as_csv_reads_rows_only_as_far_as_asked():
    pulled = []

    def rows():
        for i in range(100_000):
            pulled.append(i)
            yield (i, f"name {i}", "", 1.5)

    stream = store.RowsAsCsv(rows())
    first = stream.read(100)
    assert 0 < len(first) <= 100 and first.startswith(b"0,")
    assert len(pulled) <= store.BATCH  # one batch made, not the whole table
    rest = b"".join(iter(lambda: stream.read(8192), b""))
    lines = (first + rest).decode().splitlines()
    assert len(lines) == 100_000 and lines[-1] == '99999,"name 99999","",1.5'


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_insert_copy_stores_what_execute_values_stores(app, monkeypatch):
    rows = [(q, 10**12 + c, c % 13, TRICKY[c % len(TRICKY)], ",".join(str(b) for b in range(c, c + 5)), c % 3)
            for q in (1,) for c in range(1, 400)]
    stats = [(1, c, c * 10, c, c % 7, c / 3 + 1e-7, c % 11, TRICKY[c % len(TRICKY)], 5) for c in range(1, 400)]
    names = ("quarter", "campaign_id", "x", "scenario", "banner_ids", "random_fill")
    stat_names = ("quarter", "campaign_id", "impressions", "clicks", "conversions", "revenue", "x", "scenario", "banners")
    with app.app_context():
        stored = {}
        for mode in ("values", "copy"):
            monkeypatch.setattr(store, "POSTGRES_BULK", mode)
            with db.atomic():
                Plan.delete().execute()
                CampaignStat.delete().execute()
                store.insert(Plan, names, iter(rows))
                store.insert(CampaignStat, stat_names, iter(stats))
            stored[mode] = (
                sorted(Plan.select(*[getattr(Plan, n) for n in names]).tuples()),
                sorted(CampaignStat.select(*[getattr(CampaignStat, n) for n in stat_names]).tuples()),
            )
    assert stored["copy"] == stored["values"]
    assert stored["copy"][0] == sorted(rows)
    assert sorted(stored["copy"][1]) == sorted(stats)
