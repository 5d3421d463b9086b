"""Viewable impressions and the viewable rate beside impressions on the overview and the campaign page."""

import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from test_admin import admin, html, loaded, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)

NOW = datetime(2026, 11, 27, 10, 20, tzinfo=timezone.utc)


def figures(text) -> dict:
    """{impressions, measured, viewable, rate: the cell's text} of the viewability table; {} without one."""
    if 'id="viewability-table"' not in text:
        return {}
    table = text[text.index('id="viewability-table"'):]
    return dict(re.findall(r'data-count="(\w+)">([^<]*)</td>', table[:table.index("</table>")]))


@pytest.fixture
def rolled_up(loaded, app):  # noqa: F811
    from models import add_live_hours, db

    app.config["CLOCK"] = lambda: NOW
    with db.atomic():
        add_live_hours({
            (4, datetime(2026, 11, 27, 10)): [1000, 7, 1, 2.5, 300, 400],  # ..., viewable, measured
            (4, datetime(2026, 11, 27, 9)): [500, 2, 0, 0.0, 50, 100],
            (5, datetime(2026, 11, 27, 10)): [30, 1, 0, 0.0],  # served by the page or the iframe: nothing measured
            (4, datetime(2026, 11, 20, 15)): [400, 9, 2, 4.0, 400, 400],  # a week ago: only in the 30 days
        })
    return app


def test_viewability_of_a_campaign_is_beside_its_impressions_over_the_trends_period(admin, rolled_up):  # noqa: F811
    assert figures(html(admin.get("/admin/campaigns/4"))) == {
        "impressions": "1,500", "measured": "500", "viewable": "350", "rate": "70.00%"}
    assert figures(html(admin.get("/admin/campaigns/4?range=30d"))) == {
        "impressions": "1,900", "measured": "900", "viewable": "750", "rate": "83.33%"}


def test_viewability_on_the_overview_sums_every_campaign_and_has_no_rate_without_measured_impressions(admin, rolled_up):  # noqa: F811
    assert figures(html(admin.get("/admin/"))) == {"impressions": "1,530", "measured": "500", "viewable": "350", "rate": "70.00%"}
    assert figures(html(admin.get("/admin/campaigns/5"))) == {"impressions": "30", "measured": "0", "viewable": "0", "rate": "—"}


def test_viewability_is_not_shown_without_live_data(admin, loaded, app):  # noqa: F811
    app.config["CLOCK"] = lambda: NOW
    assert figures(html(admin.get("/admin/campaigns/4"))) == {}


def test_viewability_counts_the_impressions_and_viewable_beacons_of_all_three_ways(admin, loaded, app, tmp_path):  # noqa: F811
    """The page and the iframe count when served; the JSON decision (the tag's) when its beacon comes; then the export."""
    from jobs import runtime
    from live.export import export_events

    visitor = app.test_client(use_cookies=False)
    now = datetime.now(timezone.utc)
    campaign = 4
    assert visitor.get(f"/campaigns/{campaign}").status_code == 200
    assert visitor.get(f"/embed/{campaign}").status_code == 200
    slots = visitor.get(f"/api/decision?c={campaign}&c={campaign}").get_json()["slots"]
    for slot in slots:
        assert visitor.post(slot["impression_url"]).status_code == 204
    assert visitor.post(slots[0]["viewable_url"]).status_code == 204
    runtime.context(replace(runtime.context().settings, live_root=str(tmp_path / "feed")))
    with app.app_context():
        export_events()
    app.config["CLOCK"] = lambda: now
    assert figures(html(admin.get(f"/admin/campaigns/{campaign}"))) == {
        "impressions": "4", "measured": "2", "viewable": "1", "rate": "50.00%"}
