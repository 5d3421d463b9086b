"""The plan cache at 2,000 campaigns: one load, then requests that never query and never wait for a reload."""

import threading
from datetime import datetime, timezone

import pytest
from peewee import chunked

from jobs import runtime
from models import Banner, Plan, bump_data_version, db

CAMPAIGNS = 2_000


def write_plans(salt=0):
    """A plan of five banners for every campaign in every quarter, and the banners' images."""
    with db.atomic():
        Plan.delete().execute()
        rows = [
            {"quarter": q, "campaign_id": c, "x": 0, "scenario": "top5_clicks", "random_fill": 0,
             "banner_ids": ",".join(str(100_000 + c * 10 + b + salt) for b in range(5))}
            for q in (1, 2, 3, 4) for c in range(1, CAMPAIGNS + 1)
        ]
        for batch in chunked(rows, 500):
            Plan.insert_many(batch).execute()
        if not Banner.select().exists():
            banners = [{"id": 100_000 + c * 10 + b, "image_name": f"{100_000 + c * 10 + b}.png"}
                       for c in range(1, CAMPAIGNS + 1) for b in range(10)]
            for batch in chunked(banners, 500):
                Banner.insert_many(batch).execute()
        bump_data_version()
    runtime.publish_data_version(runtime.context())


@pytest.fixture
def big(app):
    with app.app_context():
        write_plans()
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 3, 30, tzinfo=timezone.utc)
    return app


@pytest.fixture
def sql_by_thread(monkeypatch):
    """{thread name: [sql, ...]} of every statement run from now on."""
    seen = {}
    real = db.obj.execute_sql

    def execute_sql(sql, *args, **kwargs):
        seen.setdefault(threading.current_thread().name, []).append(sql)
        return real(sql, *args, **kwargs)

    monkeypatch.setattr(db.obj, "execute_sql", execute_sql)
    return seen


def test_plan_cache_first_request_loads_2000_campaigns_in_four_queries(big, sql_by_thread):
    client = big.test_client()
    assert client.get("/campaigns/1999").status_code == 200
    queries = sql_by_thread[threading.current_thread().name]
    # the version check, then in one transaction the version, the banners' images and the plans:
    # not a query per campaign or per plan
    assert len(queries) == 4, queries
    assert len(big.extensions["plans"].snapshot().plans) == 4 * CAMPAIGNS


def test_plan_cache_no_request_reloads_or_waits_after_the_first_load(big, sql_by_thread, monkeypatch):
    from webapp import serving

    client = big.test_client()
    cache = big.extensions["plans"]
    assert client.get("/campaigns/7").status_code == 200
    first = cache.snapshot()
    request_thread = threading.current_thread().name

    release, loading = threading.Event(), threading.Event()
    real_load = serving.load_serving_plans

    def slow_load():
        loading.set()
        assert release.wait(10), "a request waited for the reload"
        return real_load()

    monkeypatch.setattr(serving, "load_serving_plans", slow_load)
    with big.app_context():
        write_plans(salt=5)  # new data: every campaign's banners move by 5
    sql_by_thread.clear()
    assert client.get("/campaigns/7").status_code == 200  # notices the version is due; returns at once
    assert loading.wait(10), "the reloader never started"
    # The reload is stuck in the database: requests still get the old plans, at once.
    for campaign in range(1, 200):
        assert client.get(f"/campaigns/{campaign}").status_code == 200
    assert cache.snapshot() is first
    release.set()
    assert cache.settle()
    assert cache.snapshot().version == first.version + 1
    assert cache.snapshot().plans[(1, 7)][0][0] - first.plans[(1, 7)][0][0] in range(-4, 10)
    assert request_thread not in sql_by_thread, sql_by_thread.get(request_thread)
    assert "plan-reloader" in sql_by_thread


def test_plan_cache_page_cache_is_bounded(big, monkeypatch):
    from webapp import serving

    client = big.test_client()
    client.get("/campaigns/1")
    pages = big.extensions["plans"].snapshot().pages
    monkeypatch.setattr(pages, "limit", 50)
    for campaign in range(1, 300):
        assert client.get(f"/campaigns/{campaign}").status_code == 200
    assert len(pages) == 50
    assert isinstance(pages, serving.BoundedPages)
