"""The dashboard says when its figures are older than the schedules promise: a missed data load, a stalled export."""

from datetime import datetime, timedelta, timezone

import pytest

from webapp.freshness import GRACE, export_due_since, load_due_since

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import users  # noqa: F401  (users is a fixture)

TWICE_A_DAY = "0 */12 * * *"
NOON = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def naive(moment):
    return moment.replace(tzinfo=None)


@pytest.mark.parametrize("last, now, due", [
    (NOON - timedelta(hours=12) + timedelta(seconds=5), NOON + timedelta(minutes=31), NOON),  # the noon load never ran
    (NOON + timedelta(seconds=3), NOON + timedelta(minutes=31), None),  # it did
    (NOON - timedelta(hours=12) + timedelta(seconds=5), NOON + GRACE - timedelta(seconds=1), None),  # still in its grace
    (NOON - timedelta(hours=12) + timedelta(seconds=5), NOON + GRACE + timedelta(seconds=1), NOON),  # past it
    (None, NOON + timedelta(minutes=31), NOON),  # no load at all
    (NOON - timedelta(minutes=1), NOON + timedelta(minutes=31), NOON),  # a load by hand just before is not the noon one
])
def test_freshness_a_load_is_due_by_the_last_scheduled_time_past_its_grace(last, now, due):
    assert load_due_since(naive(last) if last else None, TWICE_A_DAY, now) == due


def _last_load_started(app):
    from models import IngestRun

    with app.app_context():
        return IngestRun.select().order_by(IngestRun.id.desc()).first().started_at.replace(tzinfo=timezone.utc)


@pytest.fixture
def scheduled(app, loaded):  # noqa: F811
    """The demo data loaded, and a source the schedule loads twice a day."""
    settings = app.extensions["settings"]
    app.extensions["settings"] = type(settings)(**{**settings.__dict__, "ingest_source": "s3://banners/demo",
                                                   "ingest_cron": TWICE_A_DAY})
    return app


def test_freshness_every_dashboard_page_warns_when_a_scheduled_load_was_missed(admin, scheduled):  # noqa: F811
    started = _last_load_started(scheduled)
    scheduled.config["CLOCK"] = lambda: started + timedelta(hours=13)  # a twice-a-day load was due since
    for page in ("/admin/", "/admin/campaigns", "/admin/campaigns/1", "/admin/ingests", "/admin/duplicates"):
        text = html(admin.get(page))
        assert 'class="notice notice-warning stale-data"' in text, page
        assert "The statistics may be out of date: the last successful data load started 13 hours ago" in text
    fragment = admin.get("/admin/ingests/rows", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "stale-data" not in fragment  # said once by the page, not by each poll


def test_freshness_no_warning_when_the_last_load_is_on_time_or_nothing_is_scheduled(admin, scheduled, app):  # noqa: F811
    started = _last_load_started(scheduled)
    scheduled.config["CLOCK"] = lambda: started + timedelta(minutes=5)
    assert "stale-data" not in html(admin.get("/admin/"))
    settings = app.extensions["settings"]
    app.extensions["settings"] = type(settings)(**{**settings.__dict__, "ingest_source": ""})
    scheduled.config["CLOCK"] = lambda: started + timedelta(days=3)
    assert "stale-data" not in html(admin.get("/admin/"))  # no source: no load is expected


def test_freshness_warns_when_live_events_wait_too_long_to_be_counted(admin, loaded, app):  # noqa: F811
    from jobs import runtime
    from live.events import STREAM, encode, impression_event

    ctx = runtime.context()
    old = datetime.now(timezone.utc) - timedelta(minutes=40)
    ctx.redis.xadd(ctx.key(STREAM), {"e": encode(impression_event(old, 1, 1, 11, "v", 1, "stale-1"))},
                   id=f"{int(old.timestamp() * 1000)}-0")
    text = html(admin.get("/admin/campaigns"))
    assert "Live figures may be out of date: the oldest live event not yet counted is 40 minutes old" in text


@pytest.mark.parametrize("cron, oldest, now, due", [
    ("*/5 * * * *", NOON + timedelta(minutes=1), NOON + timedelta(minutes=9), None),  # the 12:05 export is in its grace
    ("*/5 * * * *", NOON + timedelta(minutes=1), NOON + timedelta(minutes=16), NOON + timedelta(minutes=5)),
    ("0 * * * *", NOON + timedelta(minutes=1), NOON + timedelta(minutes=40), None),  # hourly: not due before 13:00
    ("0 * * * *", NOON + timedelta(minutes=1), NOON + timedelta(minutes=71), NOON + timedelta(hours=1)),
])
def test_freshness_live_events_are_late_by_the_export_schedule_past_its_grace(cron, oldest, now, due):
    assert export_due_since(oldest, cron, now) == due


def test_freshness_an_hourly_export_is_not_called_late_after_40_minutes_but_after_its_hour(admin, loaded, app):  # noqa: F811
    from jobs import runtime
    from live.events import STREAM, encode, impression_event

    settings = app.extensions["settings"]
    app.extensions["settings"] = type(settings)(**{**settings.__dict__, "export_cron": "0 * * * *"})
    ctx = runtime.context()
    old = datetime(2026, 1, 1, 12, 1, tzinfo=timezone.utc)
    ctx.redis.xadd(ctx.key(STREAM), {"e": encode(impression_event(old, 1, 1, 11, "v", 1, "hourly-1"))},
                   id=f"{int(old.timestamp() * 1000)}-0")
    app.config["CLOCK"] = lambda: old + timedelta(minutes=40)
    assert "Live figures may be out of date" not in html(admin.get("/admin/campaigns"))
    app.config["CLOCK"] = lambda: old + timedelta(minutes=70)
    text = html(admin.get("/admin/campaigns"))
    assert "Live figures may be out of date: the oldest live event not yet counted is 70 minutes old" in text
    assert "an export was due at 13:00 UTC" in text
