"""Live events: clicks through signed links, the conversions API, the export to CSV batches, and
ingest of those batches -- against the real Redis."""

import io
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import ROOT, write_source
from jobs import runtime
from live.events import GROUP, STREAM, click_event, conversion_event, decode, impression_event, queue_event
from live.export import export_events, write_batches
from models import Banner, CampaignStat, ExportRun, IngestRun
from test_ingest import GOOD


def add_events(events):
    ctx = runtime.context()
    pipe = ctx.redis.pipeline(transaction=False)
    for event in events:
        queue_event(pipe, ctx, event)
    pipe.execute()


def stream_events():
    ctx = runtime.context()
    return [decode(fields) for _, fields in ctx.redis.xrange(ctx.key(STREAM))]


def read_csv(path):
    return Path(path).read_text().splitlines()


NOW = datetime(2026, 11, 27, 10, 20, 5, tzinfo=timezone.utc)  # quarter 2 of 10:00


@pytest.fixture
def live_app(app, settings_overrides, tmp_path):
    from dataclasses import replace

    root = tmp_path / "feed"
    runtime.context(replace(runtime.context().settings, live_root=str(root)))
    app.live_root = root
    return app


# --- export ---------------------------------------------------------------------------------


def test_export_writes_each_event_once_in_the_source_layout(live_app):
    add_events([
        impression_event(NOW, 2, 7, 101, "v1", 3, "i1"),
        impression_event(NOW, 2, 7, 102, "v2", 3, "i2"),
        click_event(NOW, 2, 7, 101, "v1", "i1", 10**12 + 1),
        conversion_event(NOW + timedelta(minutes=50), 2, 7, 101, 10**12 + 1, 10**12 + 5, "2.50", "acme"),
    ])
    with live_app.app_context():
        run = ExportRun.get_by_id(export_events())
    assert run.status == "succeeded" and run.events == 4
    folder = live_app.live_root / "live" / "2026-11-27" / "10" / "2"
    assert read_csv(folder / "impressions.csv") == ["banner_id,campaign_id", "101,7", "102,7"]
    assert read_csv(folder / "clicks.csv") == ["click_id,banner_id,campaign_id", f"{10**12 + 1},101,7"]
    later = live_app.live_root / "live" / "2026-11-27" / "11" / "2"
    assert read_csv(later / "conversions.csv") == ["conversion_id,click_id,revenue", f"{10**12 + 5},{10**12 + 1},2.50"]
    ctx = runtime.context()
    assert ctx.redis.xpending(ctx.key(STREAM), GROUP)["pending"] == 0
    # Nothing new: a second export writes nothing and changes no file.
    before = (folder / "impressions.csv").read_bytes()
    with live_app.app_context():
        assert ExportRun.get_by_id(export_events()).events == 0
    assert (folder / "impressions.csv").read_bytes() == before


def test_export_appends_later_events_to_the_same_hour(live_app):
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, "a")])
    with live_app.app_context():
        export_events()
    add_events([impression_event(NOW + timedelta(minutes=2), 2, 7, 103, "v", 1, "b")])
    with live_app.app_context():
        export_events()
    folder = live_app.live_root / "live" / "2026-11-27" / "10" / "2"
    assert read_csv(folder / "impressions.csv") == ["banner_id,campaign_id", "101,7", "103,7"]


def test_export_trims_what_it_acknowledged_and_keeps_the_rest(live_app):
    ctx = runtime.context()
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, f"t{n}") for n in range(5)])
    with live_app.app_context():
        export_events()
    assert ctx.redis.xlen(ctx.key(STREAM)) == 0  # exported entries no longer count against the cap
    add_events([impression_event(NOW, 2, 7, 102, "v", 1, "later")])
    assert [e["imp"] for e in stream_events()] == ["later"]
    with live_app.app_context():
        export_events()
    folder = live_app.live_root / "live" / "2026-11-27" / "10" / "2"
    assert len(read_csv(folder / "impressions.csv")) == 1 + 6


def test_healthz_and_overview_say_when_the_export_is_behind_or_the_stream_near_its_cap(live_app, client):
    from live.events import stream_health
    from test_auth import login, PASSWORDS
    from webapp.auth import create_user

    ctx = runtime.context()
    stream = ctx.key(STREAM)
    assert client.get("/healthz").json["events"] == {"length": 0, "cap": 5_000_000, "oldest_seconds": 0,
                                                     "near_cap": False, "export_behind": False}
    old_ms = int((datetime.now(timezone.utc) - timedelta(minutes=20)).timestamp() * 1000)
    ctx.redis.xadd(stream, {"e": "impression|1|2|7|101|v|1|old"}, id=f"{old_ms}-0")
    events = client.get("/healthz").json["events"]
    assert events["export_behind"] is True and events["length"] == 1 and events["oldest_seconds"] >= 1200
    assert stream_health(ctx.redis, stream, datetime.now(timezone.utc), cap=1)["near_cap"] is True
    with live_app.app_context():
        create_user("ada", PASSWORDS["ada"], "admin")
    login(client, "ada")
    assert "Export behind" in client.get("/admin/").get_data(as_text=True)
    with live_app.app_context():
        export_events()
    assert client.get("/healthz").json["events"]["export_behind"] is False


def test_export_worker_killed_between_writing_and_acknowledging_writes_every_event_once(live_app, worker_env):
    """A real process dies at the acknowledgement; the next run claims its entries and writes each once."""
    add_events([impression_event(NOW, 2, 7, 100 + i, "v", 1, f"i{i}") for i in range(50)])
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
    assert ctx.redis.xpending(ctx.key(STREAM), GROUP)["pending"] == 50
    folder = live_app.live_root / "live" / "2026-11-27" / "10" / "2"
    assert len(read_csv(folder / "impressions.csv")) == 51
    ctx.redis.delete(ctx.key("export:lock"))  # what its expiry does
    add_events([impression_event(NOW, 2, 7, 999, "v", 1, "late")])
    with live_app.app_context():
        run = ExportRun.get_by_id(export_events())
    assert run.status == "succeeded" and run.events == 51
    rows = read_csv(folder / "impressions.csv")
    assert rows == ["banner_id,campaign_id"] + [f"{100 + i},7" for i in range(50)] + ["999,7"]
    assert ctx.redis.xpending(ctx.key(STREAM), GROUP)["pending"] == 0


class _DyingSink:
    """A directory sink that fails after `writes` writes, as a run killed mid-folder would."""

    def __init__(self, inner, writes):
        self.inner, self.writes = inner, writes

    def read_bytes(self, path):
        return self.inner.read_bytes(path)

    def write_bytes(self, path, data):
        self._count()
        self.inner.write_bytes(path, data)

    def append_bytes(self, path, data, keep):
        self._count()
        self.inner.append_bytes(path, data, keep)

    def _count(self):
        if self.writes == 0:
            raise RuntimeError("killed")
        self.writes -= 1


def test_write_batches_a_run_killed_mid_folder_is_cut_back_by_the_next(tmp_path):
    from jobs.sources import open_sink

    sink = open_sink(str(tmp_path))
    first = [("1-0", impression_event(NOW, 2, 7, 101, "v", 1, "a"))]
    write_batches(sink, first)
    second = [
        ("2-0", impression_event(NOW, 2, 7, 102, "v", 1, "b")),
        ("3-0", click_event(NOW, 2, 7, 102, "v", "b", 55)),
    ]
    with pytest.raises(RuntimeError):
        write_batches(_DyingSink(sink, writes=1), second)  # impressions written, clicks and manifest not
    write_batches(sink, second)  # the same entries, claimed again
    folder = tmp_path / "live" / "2026-11-27" / "10" / "2"
    assert read_csv(folder / "impressions.csv") == ["banner_id,campaign_id", "101,7", "102,7"]
    assert read_csv(folder / "clicks.csv") == ["click_id,banner_id,campaign_id", "55,102,7"]
    assert json.loads((folder / "_manifest.json").read_text())["last_entry"] == "3-0"


def test_ingest_with_live_adds_the_exported_batches_of_the_last_hours(live_app, tmp_path):
    source = write_source(live_app.live_root, {q: dict(GOOD) for q in (1, 2, 3, 4)})
    now = datetime.now(timezone.utc).replace(minute=20)  # quarter 2 of this hour
    from jobs.ingest import run_ingest

    with live_app.app_context():
        run_ingest(str(source), trigger="cli")
        base = CampaignStat.get(quarter=2, campaign_id=1)
        add_events([impression_event(now, 2, 1, 10, "v", 1, f"i{i}") for i in range(30)]
                   + [click_event(now, 2, 1, 13, "v", "i1", 10**12 + 1)]
                   + [conversion_event(now, 2, 1, 13, 10**12 + 1, 10**12 + 2, "99", "acme")])
        export_events()
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli", live_hours=2))
        assert run.status == IngestRun.SUCCEEDED, run.error
        stat = CampaignStat.get(quarter=2, campaign_id=1)
        assert stat.impressions == base.impressions + 30 and stat.clicks == base.clicks + 1
        assert stat.revenue == base.revenue + 99
        from models import Plan

        assert Plan.get(quarter=2, campaign_id=1).banner_id_list[0] == 13  # the live conversion tops it
        names = [f.name for f in run.files if f.quarter == 2]
        assert any(n.startswith("live/") and n.endswith("/2/impressions.csv") for n in names)
        # Same window, nothing new: unchanged. Without live: back to the historical plans.
        again = IngestRun.get_by_id(run_ingest(str(source), trigger="cli", live_hours=2))
        assert all(f.unchanged for f in again.files)
        run_ingest(str(source), trigger="cli", live_hours=0)
        assert CampaignStat.get(quarter=2, campaign_id=1).impressions == base.impressions


# --- clicks ---------------------------------------------------------------------------------


@pytest.fixture
def token_for(app):
    from webapp.clicks import click_token

    def make(campaign=7, banner=101, quarter=2, impression="imp-1", now=None):
        with app.test_request_context():
            return click_token(campaign, banner, quarter, impression, now=now)

    return make


def test_click_valid_token_records_once_and_redirects_to_the_landing_url(app, client, token_for):
    with app.app_context():
        Banner.create(id=101, landing_url="https://advertiser.example/offer")
    token = token_for()
    first = client.get(f"/click/{token}")
    assert first.status_code == 302 and first.headers["Location"] == "https://advertiser.example/offer"
    again = client.get(f"/click/{token}")
    assert again.status_code == 302 and again.headers["Location"] == "https://advertiser.example/offer"
    clicks = [e for e in stream_events() if e["type"] == "click"]
    assert len(clicks) == 1
    assert (clicks[0]["c"], clicks[0]["b"], clicks[0]["q"], clicks[0]["imp"]) == ("7", "101", "2", "imp-1")
    assert int(clicks[0]["click"]) >= 10**12


def test_click_without_landing_url_goes_to_the_default(app, client, token_for):
    response = client.get(f"/click/{token_for(banner=555)}")
    assert response.status_code == 302 and response.headers["Location"] == "/"


@pytest.mark.parametrize("token", ["garbage", "WzcsMTAxLDIsImltcCJd.fake.sig", "abc.%C3%A9", "7.101.2.x.9.%00"])
def test_click_forged_token_records_nothing_and_lands_on_the_site(client, token):
    response = client.get(f"/click/{token}?next=https://evil.example/")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert [e for e in stream_events() if e["type"] == "click"] == []


def test_click_token_signed_with_another_key_is_forged(client, token_for, app):
    import hashlib

    from live.events import derived_key

    payload = f"7.101.2.x.{int(time.time())}"
    mac = hashlib.blake2b(payload.encode(), key=derived_key("not-our-secret", b"bs.click"), digest_size=16).hexdigest()
    assert client.get(f"/click/{payload}.{mac}").headers["Location"] == "/"
    tampered = token_for().replace("7.101.", "7.102.", 1)
    assert client.get(f"/click/{tampered}").headers["Location"] == "/"
    assert stream_events() == []


def test_click_expired_token_records_nothing(client, token_for):
    token = token_for(now=time.time() - 86400 - 5)
    response = client.get(f"/click/{token}")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert stream_events() == []


@pytest.mark.parametrize("url", ["//evil.example/x", "javascript:alert(1)", "https:///nohost", "/\\evil.example"])
def test_click_unsafe_stored_landing_url_is_not_followed(app, client, token_for, url):
    with app.app_context():
        Banner.create(id=101, landing_url=url)
    assert client.get(f"/click/{token_for()}").headers["Location"] == "/"


# --- conversions API ------------------------------------------------------------------------


@pytest.fixture
def api_key(app):
    from webapp.clicks import create_api_key

    with app.app_context():
        return create_api_key("acme")


def live_click(client, token_for, impression="imp-c"):
    client.get(f"/click/{token_for(impression=impression)}")
    return int([e for e in stream_events() if e["type"] == "click"][-1]["click"])


def test_conversions_api_records_a_conversion_of_a_live_click(client, token_for, api_key):
    click_id = live_click(client, token_for)
    response = client.post("/api/conversions", json={"click_id": click_id, "revenue": "12.5"},
                           headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 201, response.json
    conversions = [e for e in stream_events() if e["type"] == "conversion"]
    assert len(conversions) == 1 and conversions[0]["rev"] == "12.5" and conversions[0]["adv"] == "acme"
    assert conversions[0]["click"] == str(click_id) and conversions[0]["q"] == "2"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_conversions_api_without_a_valid_key_is_401(client, headers):
    response = client.post("/api/conversions", json={"click_id": 1, "revenue": 1}, headers=headers)
    assert response.status_code == 401 and "API key" in response.json["error"]


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"click_id": "x", "revenue": 1}, 400, "not a positive integer"),
        ({"click_id": 5, "revenue": -1}, 400, "negative"),
        ({"click_id": 5, "revenue": "NaN"}, 400, "not a number"),
        ({"click_id": 5, "revenue": "1e999"}, 400, "more than 12 integer digits"),
        ({"click_id": 5, "revenue": "1e-999999999"}, 400, "more than 9 decimal places"),
        ({"click_id": 5, "revenue": "１.5"}, 400, "not a number"),
        ({"click_id": 5}, 400, "not a number"),
        ([1, 2], 400, "JSON object"),
        ({"click_id": 424242, "revenue": 1}, 404, "not a known live click"),
    ],
)
def test_conversions_api_validates_like_the_csv_rows(client, api_key, body, status, says):
    response = client.post("/api/conversions", json=body, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == status and says in response.json["error"]
    assert [e for e in stream_events() if e["type"] == "conversion"] == []


def test_api_keys_cli_prints_a_key_that_works(runner, client, token_for):
    result = runner.invoke(args=["api-keys", "create", "globex"])
    key = result.output.strip()
    assert result.exit_code == 0 and key.startswith("bsk_")
    click_id = live_click(client, token_for, impression="cli")
    response = client.post("/api/conversions", json={"click_id": click_id, "revenue": 3}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201


def test_banners_set_landing_refuses_unsafe_urls(runner):
    assert runner.invoke(args=["banners", "set-landing", "5", "javascript:alert(1)"]).exit_code != 0
    result = runner.invoke(args=["banners", "set-landing", "5", "https://shop.example/"])
    assert result.exit_code == 0
    with runner.app.app_context():
        assert Banner.get_by_id(5).landing_url == "https://shop.example/"


# --- impressions from served views ----------------------------------------------------------


@pytest.fixture
def serving(app, tmp_path):
    source = write_source(tmp_path / "serve", {q: {"impressions": "".join(f"{b},1\n" for b in range(11, 16))} for q in (1, 2, 3, 4)})
    from jobs.ingest import run_ingest

    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    app.config["CLOCK"] = lambda: NOW
    return app


def test_served_views_record_impression_events_with_the_right_fields(serving):
    import re

    from live.events import visitor_key
    from models import get_data_version

    client = serving.test_client()
    shown = []
    for _ in range(3):
        html = client.get("/campaigns/1").get_data(as_text=True)
        shown.append(int(re.search(r'data-banner-id="(\d+)"', html).group(1)))
    events = [e for e in stream_events() if e["type"] == "impression"]
    assert [int(e["b"]) for e in events] == shown
    vid = client.get_cookie("bs_vid").value
    with serving.app_context():
        version = get_data_version()
    for event in events:
        assert (event["c"], event["q"], event["dv"]) == ("1", "2", str(version))
        assert event["ts"] == f"{NOW.timestamp():.3f}"
        assert event["v"] == visitor_key("test-secret", f"|{vid}") and vid not in event["v"]
    assert len({e["imp"] for e in events}) == 3


def test_served_page_links_through_a_click_token_that_counts_once(serving):
    import re

    client = serving.test_client()
    html = client.get("/campaigns/1").get_data(as_text=True)
    banner = re.search(r'data-banner-id="(\d+)"', html).group(1)
    href = re.search(r'<a href="(/click/[^"]+)"', html).group(1)
    assert client.get(href).status_code == 302 and client.get(href).status_code == 302
    clicks = [e for e in stream_events() if e["type"] == "click"]
    assert len(clicks) == 1 and clicks[0]["b"] == banner and clicks[0]["c"] == "1" and clicks[0]["q"] == "2"
    impression = next(e for e in stream_events() if e["type"] == "impression")
    assert clicks[0]["imp"] == impression["imp"] and clicks[0]["v"] == impression["v"]


def test_events_whose_pipeline_never_reached_redis_leave_the_counter_expiry_to_the_next_ones(app):
    """A minute's live counter gets its EXPIRE once per process: not when the pipeline that carried it failed,
    else the next events of that minute count into a hash that never expires."""
    import socket

    import redis as redis_lib

    from live import events

    ctx = runtime.context()
    events._expiry_set.clear()
    event = impression_event(datetime.now(timezone.utc), 1, 7, 101, "v", 1, "imp-away")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    away = redis_lib.Redis(port=port, socket_connect_timeout=0.5).pipeline(transaction=False)
    queue_event(away, ctx, event)
    with pytest.raises(redis_lib.ConnectionError):
        away.execute()
    add_events([event])
    bucket = ctx.key(f"live:impressions:{events.minute_of(event['ts'])}")
    assert int(ctx.redis.hget(bucket, "7")) == 1
    assert ctx.redis.ttl(bucket) > 0


def test_served_views_record_nothing_when_events_are_off(serving):
    from dataclasses import replace

    serving.extensions["settings"] = replace(serving.extensions["settings"], events_enabled=False)
    assert serving.test_client().get("/campaigns/1").status_code == 200
    assert stream_events() == []


def test_live_panel_counts_come_from_the_served_views(serving):
    from live.events import recent_counts

    client = serving.test_client()
    for _ in range(4):
        client.get("/campaigns/1")
    assert recent_counts(runtime.context(), NOW + timedelta(minutes=5)) == {1: [4, 0]}
    assert recent_counts(runtime.context(), NOW + timedelta(minutes=61)) == {}


def test_export_drains_the_stream_in_chunks_and_acknowledges_each(live_app, monkeypatch):
    from live import export

    monkeypatch.setattr(export, "READ_COUNT", 7)
    add_events([impression_event(NOW, 2, 7, 100 + i, "v", 1, f"i{i}") for i in range(50)])
    with live_app.app_context():
        run = ExportRun.get_by_id(export_events())
    assert run.events == 50
    rows = read_csv(live_app.live_root / "live" / "2026-11-27" / "10" / "2" / "impressions.csv")
    assert rows[1:] == [f"{100 + i},7" for i in range(50)]
    ctx = runtime.context()
    assert ctx.redis.xpending(ctx.key(STREAM), GROUP)["pending"] == 0


def test_export_that_loses_its_lock_stops_before_writing_more(live_app, monkeypatch):
    from live import export

    monkeypatch.setattr(export, "READ_COUNT", 5)
    add_events([impression_event(NOW, 2, 7, 100 + i, "v", 1, f"i{i}") for i in range(20)])
    ctx = runtime.context()
    real_xack = ctx.redis.xack

    def xack_then_lose_the_lock(*args):
        ctx.redis.set(ctx.key("export:lock"), "someone-else")
        return real_xack(*args)

    monkeypatch.setattr(ctx.redis, "xack", xack_then_lose_the_lock)
    with live_app.app_context(), pytest.raises(export.ExportBusy):
        export_events()
    assert ctx.redis.get(ctx.key("export:lock")) == "someone-else"  # not deleted: it is not ours
    rows = read_csv(live_app.live_root / "live" / "2026-11-27" / "10" / "2" / "impressions.csv")
    assert len(rows) == 1 + 5
    with live_app.app_context():
        assert ExportRun.select().order_by(ExportRun.id.desc()).get().status == "failed"


def test_export_marks_an_export_that_died_running_as_failed(live_app):
    with live_app.app_context():
        dead = ExportRun.create(status="running")
        export_events()
        dead = ExportRun.get_by_id(dead.id)
    assert dead.status == "failed" and "stopped before it finished" in dead.error


def test_conversions_api_retry_with_the_same_idempotency_key_records_once(client, token_for, api_key):
    click_id = live_click(client, token_for, impression="idem")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-42"}
    first = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    again = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json["duplicate"] is True and again.json["conversion_id"] == first.json["conversion_id"]
    assert len([e for e in stream_events() if e["type"] == "conversion"]) == 1


def test_conversions_api_same_key_with_another_body_is_422(client, token_for, api_key):
    click_id = live_click(client, token_for, impression="idem-422")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-43"}
    first = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    other = client.post("/api/conversions", json={"click_id": click_id, "revenue": 7}, headers=headers)
    assert first.status_code == 201 and other.status_code == 422 and "different request" in other.json["error"]
    assert len([e for e in stream_events() if e["type"] == "conversion"]) == 1


def test_conversions_api_same_key_on_another_click_is_not_a_duplicate_of_the_first(client, token_for, api_key):
    # Same key, same revenue, another click: the second conversion must not be answered with the first's id.
    first_click = live_click(client, token_for, impression="idem-click-1")
    other_click = live_click(client, token_for, impression="idem-click-2")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-46"}
    first = client.post("/api/conversions", json={"click_id": first_click, "revenue": 5}, headers=headers)
    other = client.post("/api/conversions", json={"click_id": other_click, "revenue": 5}, headers=headers)
    assert first.status_code == 201 and other.status_code == 422 and "different request" in other.json["error"]
    assert not other.json.get("duplicate")
    assert [e["click"] for e in stream_events() if e["type"] == "conversion"] == [str(first_click)]


def test_conversions_api_without_a_key_records_every_conversion_of_a_click(client, token_for, api_key):
    """Intended (README): one click may lead to several sales; only an Idempotency-Key makes a repeat a duplicate."""
    click_id = live_click(client, token_for, impression="no-key")
    headers = {"Authorization": f"Bearer {api_key}"}
    answers = [client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.json["conversion_id"] for a in answers}) == 3 and not any(a.json.get("duplicate") for a in answers)
    assert [e["click"] for e in stream_events() if e["type"] == "conversion"] == [str(click_id)] * 3


def test_conversions_api_failure_after_the_claim_releases_the_key(client, token_for, api_key):
    """A real failure after the key is claimed: the stream key holds a string, so XADD fails."""
    ctx = runtime.context()
    click_id = live_click(client, token_for, impression="idem-fail")
    saved = ctx.redis.dump(ctx.key(STREAM))
    ctx.redis.delete(ctx.key(STREAM))
    ctx.redis.set(ctx.key(STREAM), "not a stream")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-44"}
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    failed = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    assert failed.status_code >= 500
    ctx.redis.delete(ctx.key(STREAM))
    ctx.redis.restore(ctx.key(STREAM), 0, saved)
    retry = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    assert retry.status_code == 201, retry.json  # not "duplicate": nothing was recorded the first time
    assert len([e for e in stream_events() if e["type"] == "conversion"]) == 1


def test_conversions_api_concurrent_retry_while_the_key_is_claimed_is_409(client, token_for, api_key, settings_overrides):
    import hashlib

    from webapp.clicks import CLAIM_SECONDS

    ctx = runtime.context()
    click_id = live_click(client, token_for, impression="idem-409")
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-45"}
    first = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    key = next(ctx.redis.scan_iter(ctx.key("conversion-request:*")))
    fingerprint = ctx.redis.get(key).split(":")[1]
    ctx.redis.set(key, f"pending:{fingerprint}:someone-else", ex=CLAIM_SECONDS)  # a request in flight
    in_flight = client.post("/api/conversions", json={"click_id": click_id, "revenue": 5}, headers=headers)
    assert first.status_code == 201 and in_flight.status_code == 409
    assert 0 < ctx.redis.ttl(key) <= CLAIM_SECONDS  # a claim whose request died frees itself within seconds


@pytest.mark.parametrize("body", ["{", '{"click_id": 1, "revenue": 1', "[" * 30_000 + "]" * 30_000, b"\xff\xfe{}"])
def test_conversions_api_malformed_or_deep_json_is_400(client, api_key, body):
    response = client.post("/api/conversions", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 400 and "JSON object" in response.json["error"]


def test_conversions_api_body_over_64_kb_is_413(client, api_key):
    body = '{"click_id": 1, "revenue": 1, "pad": "' + "x" * 70_000 + '"}'
    response = client.post("/api/conversions", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 413 and "64 KB" in response.json["error"]


def test_form_body_over_1_mb_is_413(client):
    response = client.post("/login", data={"username": "x" * (1 << 20), "password": "y"})
    assert response.status_code == 413


@pytest.mark.parametrize("revenue", ["1e-999999999", "１.5", "1234567890123", 1234567890123, "0.0000000001"])
def test_conversions_api_revenue_follows_the_money_rule(client, token_for, api_key, revenue):
    """The CSV parser's rule (jobs.parsing.parse_revenue): ASCII digits, at most 12 integer digits, 9 decimals."""
    click_id = live_click(client, token_for, impression=f"money-{abs(hash(revenue))}")
    body = '{"click_id": %d, "revenue": %s}' % (click_id, revenue if isinstance(revenue, int) else f'"{revenue}"')
    response = client.post("/api/conversions", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}"})
    assert 400 <= response.status_code < 500 and response.json["error"], response.json
    assert [e for e in stream_events() if e["type"] == "conversion"] == []


def test_conversions_api_unquoted_tiny_exponent_is_read_as_written(client, token_for, api_key):
    click_id = live_click(client, token_for, impression="money-literal")
    response = client.post("/api/conversions", data='{"click_id": %d, "revenue": 1e-999999999}' % click_id,
                           content_type="application/json", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 400  # not silently 0.0, as a float parse would make it


@pytest.mark.parametrize("issued_ahead, quarter", [(10 * 365 * 86400, 2), (61, 2), (0, 99), (0, 0)])
def test_click_token_from_the_future_or_outside_the_quarters_is_forged(app, client, token_for, issued_ahead, quarter):
    from webapp.clicks import TokenForged, read_click_token

    token = token_for(quarter=quarter, impression=f"odd-{issued_ahead}-{quarter}", now=time.time() + issued_ahead)
    with app.test_request_context(), pytest.raises(TokenForged):
        read_click_token(token, 86400)
    response = client.get(f"/click/{token}")
    assert response.status_code == 302 and response.location.endswith("/")
    assert [e for e in stream_events() if e["type"] == "click"] == []


def test_click_token_a_few_seconds_ahead_is_accepted(app, token_for):
    from webapp.clicks import read_click_token

    with app.test_request_context():
        assert read_click_token(token_for(now=time.time() + 30), 86400)[2] == 2


def test_ingest_reads_live_files_only_as_far_as_their_manifest(live_app):
    """Rows a dead export appended past the manifest are not data yet: ingest leaves them out."""
    from jobs.ingest import run_ingest
    from jobs.sources import open_sink

    now = datetime.now(timezone.utc).replace(minute=20)
    source = write_source(live_app.live_root, {q: dict(GOOD) for q in (1, 2, 3, 4)})
    sink = open_sink(str(live_app.live_root))
    write_batches(sink, [("1-0", impression_event(now, 2, 1, 10, "v", 1, "a"))])
    with pytest.raises(RuntimeError):  # the next batch's impressions are appended, its manifest never written
        write_batches(_DyingSink(sink, writes=1), [("2-0", impression_event(now, 2, 1, 10, "v", 1, "b"))])
    folder = live_app.live_root / "live" / f"{now:%Y-%m-%d}" / f"{now:%H}" / "2"
    assert len(read_csv(folder / "impressions.csv")) == 3
    with live_app.app_context():
        run_ingest(str(source), trigger="cli", live_hours=0)
        base = CampaignStat.get(quarter=2, campaign_id=1).impressions
        run_ingest(str(source), trigger="cli", live_hours=1)
        assert CampaignStat.get(quarter=2, campaign_id=1).impressions == base + 1


def test_event_encoding_round_trips_and_keeps_separators_out_of_values():
    from live.events import encode

    event = conversion_event(NOW, 2, 7, 101, 55, 66, "2.50", "acme|evil")
    decoded = decode({"e": encode(event)})
    assert decoded["type"] == "conversion" and decoded["adv"] == "acme/evil" and decoded["rev"] == "2.50"
    assert {k: str(v) for k, v in event.items() if k != "adv"} == {k: v for k, v in decoded.items() if k != "adv"}


def test_click_head_request_redirects_without_using_up_the_click(app, client, token_for):
    # A link checker or a browser's prefetch sends HEAD: it must not eat the visitor's real click.
    token = token_for(impression="imp-head")
    head = client.head(f"/click/{token}")
    assert head.status_code == 302
    assert not [e for e in stream_events() if e["type"] == "click"]
    assert client.get(f"/click/{token}").status_code == 302
    assert len([e for e in stream_events() if e["type"] == "click"]) == 1


def test_conversions_api_chunked_body_over_64_kb_is_413(client, api_key):
    """A body without Content-Length (chunked, as the web server hands it on) is cut at 64 KB while it is read."""
    body = ('{"click_id": 1, "revenue": 1, "pad": "' + "x" * 100_000 + '"}').encode()
    response = client.post("/api/conversions", input_stream=io.BytesIO(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}", "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413 and "64 KB" in response.json["error"]
