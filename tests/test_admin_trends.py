"""Live trends on the overview and the campaign page: 24 hours per hour, 30 days per day, and the empty state."""

import re
from datetime import datetime, timezone

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)

NOW = datetime(2026, 11, 27, 10, 20, tzinfo=timezone.utc)


@pytest.fixture
def rolled_up(loaded, app):  # noqa: F811
    from models import add_live_hours, db

    app.config["CLOCK"] = lambda: NOW
    with db.atomic():
        add_live_hours({
            (4, datetime(2026, 11, 27, 10)): [100, 7, 1, 2.5],
            (4, datetime(2026, 11, 27, 9)): [50, 2, 0, 0.0],
            (5, datetime(2026, 11, 27, 10)): [30, 1, 0, 0.0],
            (4, datetime(2026, 11, 20, 15)): [400, 9, 2, 4.0],  # a week ago: only in the 30 days
        })
        add_live_hours({(4, datetime(2026, 11, 27, 10)): [1, 0, 0, 0.0]})  # adds, does not replace
    return app


def buckets(text):
    return {b: [int(n.replace(",", "")) for n in re.findall(r'<td class="num">([\d,]+)</td>', row)[:2]]
            for b, row in re.findall(r'<tr data-bucket="([^"]+)">(.*?)</tr>', text, re.S)}


def test_overview_trend_shows_the_last_24_hours_per_hour(admin, rolled_up):  # noqa: F811
    text = html(admin.get("/admin/"))
    rows = buckets(text)
    assert len(rows) == 24 and min(rows) == "2026-11-26T11:00:00" and max(rows) == "2026-11-27T10:00:00"
    assert rows["2026-11-27T10:00:00"] == [131, 8] and rows["2026-11-27T09:00:00"] == [50, 2]
    assert sum(v[0] for v in rows.values()) == 181  # the week-old hour is outside
    assert 'aria-labelledby="trend-impressions-title"' in text and "Hour (UTC), start" in text
    assert '<a href="/admin/?period=24h#trend" aria-current="true">Last 24 hours</a>' in text


def test_overview_trend_shows_the_last_30_days_per_day(admin, rolled_up):  # noqa: F811
    rows = buckets(html(admin.get("/admin/?range=30d")))
    assert len(rows) == 30 and max(rows) == "2026-11-27T00:00:00"
    assert rows["2026-11-27T00:00:00"] == [181, 10] and rows["2026-11-20T00:00:00"] == [400, 9]


def test_campaign_trend_is_that_campaigns_own(admin, rolled_up):  # noqa: F811
    rows = buckets(html(admin.get("/admin/campaigns/5?range=24h")))
    assert rows["2026-11-27T10:00:00"] == [30, 1] and sum(v[0] for v in rows.values()) == 30
    assert 'href="/admin/campaigns/5?period=30d#trend"' in html(admin.get("/admin/campaigns/5"))


@pytest.mark.parametrize("path", ["/admin/", "/admin/campaigns/4", "/admin/?range=30d"])
def test_trend_without_live_data_says_where_it_comes_from(admin, loaded, path):  # noqa: F811
    text = html(admin.get(path))
    assert "No live data yet." in text and "an export every few minutes adds them up" in text
    assert "EXPORT_CRON" not in text and "<svg class=\"slot-chart trend-chart\"" not in text  # no setting names for managers


def test_campaign_trend_without_its_own_live_data_is_empty(admin, rolled_up):  # noqa: F811
    assert "No live data yet." in html(admin.get("/admin/campaigns/7"))


@pytest.mark.parametrize("path", ["/admin/", "/admin/?range=30d"])
def test_overview_trend_reads_the_site_hours_not_every_campaigns_rows(admin, rolled_up, sql, path):  # noqa: F811
    # At 10,000 campaigns, 30 days of live hours are 7.2 million LiveHour rows: the overview must not sum them per request.
    sql.clear()
    assert admin.get(path).status_code == 200
    grouped = [q for q in sql if '"livehour"' in q.lower() and "group by" in q.lower()]
    assert not grouped, grouped


def test_site_hours_are_the_sums_of_the_campaign_hours(rolled_up):
    from models import LiveHour, LiveSiteHour

    with rolled_up.app_context():
        sums = {}
        for row in LiveHour.select():
            total = sums.setdefault(row.hour, [0, 0, 0, 0.0])
            for i, value in enumerate((row.impressions, row.clicks, row.conversions, row.revenue)):
                total[i] += value
        site = {r.hour: [r.impressions, r.clicks, r.conversions, pytest.approx(r.revenue)] for r in LiveSiteHour.select()}
        assert site == sums and len(site) == 3


def test_a_database_from_before_the_site_hours_gets_them_from_the_campaign_hours(rolled_up, settings_overrides):  # noqa: F811
    from models import LiveSiteHour, db, init_db

    with rolled_up.app_context():
        db.drop_tables([LiveSiteHour])
    init_db(settings_overrides["database_url"])
    with rolled_up.app_context():
        assert {r.hour: r.impressions for r in LiveSiteHour.select()} == {
            datetime(2026, 11, 27, 10): 131, datetime(2026, 11, 27, 9): 50, datetime(2026, 11, 20, 15): 400}
