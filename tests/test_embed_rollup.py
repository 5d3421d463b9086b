"""Impressions and viewable impressions from the page, the iframe and the decision's beacons reach the
export's CSV batches, the hourly rollups and the dashboard's query helpers."""

from dataclasses import replace
from datetime import datetime, timedelta

from jobs import runtime
from test_embed_api import NOW, make_app
from test_events import read_csv

HOUR = datetime(NOW.year, NOW.month, NOW.day, NOW.hour)


def test_embed_rollup_counts_impressions_and_viewable_impressions_of_all_three_ways(settings_overrides, tmp_path):
    from live.export import export_events
    from models import LiveHour, LiveSiteHour
    from dashboard_queries import live_viewability

    app = make_app(settings_overrides, tmp_path)
    runtime.context(replace(runtime.context().settings, live_root=str(tmp_path / "feed")))
    client = app.test_client(use_cookies=False)
    assert client.get("/campaigns/1").status_code == 200
    assert client.get("/embed/1").status_code == 200
    slots = client.get("/api/decision?c=1&c=1&c=2&vid=tag-made-visitor-id-00000001").get_json()["slots"]
    for slot in slots:
        assert client.post(slot["impression_url"]).status_code == 204
    assert client.post(slots[0]["viewable_url"]).status_code == 204
    assert client.post(slots[0]["viewable_url"]).status_code == 204  # once per impression
    assert client.post(slots[2]["viewable_url"]).status_code == 204
    with app.app_context():
        export_events()
        rows = {r.campaign_id: (r.impressions, r.measured, r.viewable) for r in LiveHour.select()}
        assert rows == {1: (4, 2, 1), 2: (1, 1, 1)}
        site = LiveSiteHour.get_by_id(HOUR)
        assert (site.impressions, site.measured, site.viewable) == (5, 3, 2)
        assert live_viewability(HOUR, HOUR + timedelta(hours=1)) == {HOUR: (5, 3, 2)}
        assert live_viewability(HOUR, HOUR + timedelta(hours=1), campaign_id=1) == {HOUR: (4, 2, 1)}
    folder = tmp_path / "feed" / "live" / f"{NOW:%Y-%m-%d}" / f"{NOW:%H}" / "1"
    assert len(read_csv(folder / "impressions.csv")) == 1 + 5
    assert sorted(read_csv(folder / "viewable.csv")[1:]) == sorted([f"{slots[0]['banner_id']},1", f"{slots[2]['banner_id']},2"])


def test_embed_rollup_database_from_before_viewable_counts_gains_the_columns(database_url):
    from models import LiveHour, LiveSiteHour, add_live_hours, db, init_db
    from dashboard_queries import live_viewability

    init_db(database_url)
    with db.connection_context():
        add_live_hours({(4, HOUR): [3, 1, 0, 0.0]})
        for table in ("livehour", "livesitehour"):
            for column in ("viewable", "measured"):
                db.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        assert "viewable" not in {c.name for c in db.get_columns("livehour")}
    init_db(database_url)  # a process of the new version starts on the old database
    with db.connection_context():
        assert {"viewable", "measured"} <= {c.name for c in db.get_columns("livesitehour")}
        add_live_hours({(4, HOUR): [1, 0, 0, 0.0, 1, 1]})
        assert live_viewability(HOUR, HOUR + timedelta(hours=1), campaign_id=4) == {HOUR: (4, 1, 1)}
        assert (LiveSiteHour.get_by_id(HOUR).impressions, LiveHour.get().measured) == (4, 1)
