"""The stats table and its CSV at 2,000 campaigns (8,000 campaign-slot rows): few queries, a streamed export."""

import csv
import io
import re

import pytest
from peewee import chunked

from models import CampaignStat, db
from test_auth import login, users  # noqa: F401  (users is a fixture)

CAMPAIGNS = 2_000
ROW = re.compile(r'<tr data-campaign="(\d+)" data-quarter="(\d)"[^>]*>')  # the slot served now has a class too


@pytest.fixture
def stats(app):
    with app.app_context(), db.atomic():
        rows = [
            {"quarter": q, "campaign_id": c, "impressions": 1000 + c, "clicks": c % 97, "conversions": c % 13,
             "revenue": (c * 7 % 101) / 4, "x": c % 13, "scenario": "top_x_revenue", "banners": 5}
            for q in (1, 2, 3, 4) for c in range(1, CAMPAIGNS + 1)
        ]
        for batch in chunked(rows, 500):
            CampaignStat.insert_many(batch).execute()
    return app


@pytest.fixture
def manager(client, users):  # noqa: F811
    login(client, "mel")
    return client


@pytest.mark.parametrize("path", [
    "/admin/campaigns", "/admin/campaigns?sort=ctr&dir=desc", "/admin/campaigns?quarter=3&sort=epc&page=90",
    "/admin/campaigns?campaign=1234", "/admin/campaigns?page=400",
])
def test_campaign_stats_page_at_8000_rows_runs_a_fixed_handful_of_queries(stats, manager, sql, path):
    response = manager.get(path)
    assert response.status_code == 200
    assert ROW.findall(response.get_data(as_text=True))
    # the signed-in user, the totals, the page, the page's revenue charts: not a query per row
    assert len(sql) <= 5, sql


def test_campaign_stats_csv_at_8000_rows_streams_every_row_sorted(stats, manager, sql):
    response = manager.get("/admin/campaigns.csv?sort=revenue&dir=desc", buffered=False)
    assert response.status_code == 200 and response.is_streamed
    chunks = [chunk for chunk in response.response]
    assert len(chunks) > 10  # sent as it is read, not built whole in memory first
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(rows) == 1 + 4 * CAMPAIGNS + 1  # header, every row, the totals line
    revenues = [float(r[5]) for r in rows[1:-1]]
    assert revenues == sorted(revenues, reverse=True)
    assert rows[-1][0] == "total"
    assert len(sql) <= 4, sql


@pytest.mark.parametrize("query", ["one campaign", "default order", "charts of a page"])
def test_campaign_stats_queries_use_an_index_not_a_scan_on_sqlite(stats, query):
    from dashboard_queries import campaign_stats, revenue_by_quarter

    if not db.obj.__class__.__name__.startswith("Sqlite"):
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    with stats.app_context():
        if query == "one campaign":
            sql, params = campaign_stats(campaign_prefix=1234).sql()
        elif query == "default order":
            sql, params = campaign_stats().paginate(300, 20).sql()
        else:
            sql, params = CampaignStat.select().where(CampaignStat.campaign_id.in_([5, 6, 7])).sql()
            assert revenue_by_quarter([5, 6, 7])[5]
        plan = " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
    # A sort of the rows of one campaign ("RIGHT PART") is fine; a sort of the whole table is not.
    assert "USING INDEX" in plan and "TEMP B-TREE FOR ORDER BY" not in plan, plan
