"""The export job rolls live events up per campaign and hour, against the real Redis stream and database."""

import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from conftest import ROOT
from jobs import runtime
from live.events import click_event, conversion_event, impression_event
from live.export import export_events
from models import LiveHour
from test_events import NOW, add_events, live_app  # noqa: F401  (live_app is a fixture)


def hours():
    return {(r.campaign_id, r.hour): (r.impressions, r.clicks, r.conversions, pytest.approx(r.revenue))
            for r in LiveHour.select()}


def test_export_rolls_events_up_per_campaign_and_hour(live_app):  # noqa: F811
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, f"i{i}") for i in range(5)]
               + [impression_event(NOW, 2, 8, 101, "v", 1, "j"), click_event(NOW, 2, 7, 101, "v", "i1", 10**12 + 1),
                  conversion_event(NOW + timedelta(minutes=50), 2, 7, 101, 10**12 + 1, 10**12 + 5, "2.50", "acme"),
                  conversion_event(NOW + timedelta(minutes=51), 2, 7, 101, 10**12 + 1, 10**12 + 6, "0.25", "acme")])
    with live_app.app_context():
        export_events()
        ten, eleven = datetime(2026, 11, 27, 10), datetime(2026, 11, 27, 11)
        assert hours() == {(7, ten): (5, 1, 0, 0.0), (8, ten): (1, 0, 0, 0.0), (7, eleven): (0, 0, 2, 2.75)}
        add_events([impression_event(NOW + timedelta(minutes=5), 2, 7, 102, "v", 1, "k")])
        export_events()
        export_events()  # nothing new: nothing added
        assert hours()[(7, ten)] == (6, 1, 0, 0.0)


def test_export_killed_before_acknowledging_counts_each_event_once(live_app, worker_env):  # noqa: F811
    add_events([impression_event(NOW, 2, 7, 100 + i, "v", 1, f"i{i}") for i in range(30)])
    code = (
        "import os, redis\n"
        "redis.Redis.xack = lambda *a, **k: os._exit(9)  # die right where the acknowledgement would go\n"
        "from webapp import create_app\nfrom live.export import export_events\n"
        "app = create_app()\nwith app.app_context(): export_events()\n"
    )
    env = dict(worker_env, LIVE_ROOT=str(live_app.live_root))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    ctx = runtime.context()
    ctx.redis.delete(ctx.key("export:lock"))  # what its expiry does
    with live_app.app_context():
        assert hours() == {(7, datetime(2026, 11, 27, 10)): (30, 0, 0, 0.0)}  # counted before the crash
        export_events()  # re-claims the 30 entries: written once, counted once
        assert hours() == {(7, datetime(2026, 11, 27, 10)): (30, 0, 0, 0.0)}
