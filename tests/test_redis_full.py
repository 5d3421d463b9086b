"""The durable Redis (REDIS_URL) at maxmemory with noeviction, against a private redis-server that is
really full: the slot serves, clicks redirect, the API and sign-in answer 503, /healthz names the
full store, and the export (the real CLI) drains the stream so the service recovers by itself."""

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis as redis_lib

from test_auth import csrf_of, login
from test_outages import CLICK_HREF, load_source

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part here

STREAM_EVENTS = 20_000  # about 1.5 MB of stream: what the export frees is far more than the margin below


def fill_until_full(url, prefix):
    """Put unexported events in the stream, set maxmemory just above the memory used (noeviction), write
    filler keys until Redis refuses with OOM, then pull maxmemory a little under the memory used, so
    the buffers freed after a refused write cannot let the next one through."""
    from live.events import STREAM, encode, impression_event

    client = redis_lib.Redis.from_url(url)
    now = datetime.now(timezone.utc)
    pipe = client.pipeline(transaction=False)
    for n in range(STREAM_EVENTS):
        pipe.xadd(prefix + STREAM, {"e": encode(impression_event(now, 1, 1, 11, "v", 1, f"fill{n}"))})
    pipe.execute()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 256 * 1024)
    with pytest.raises(redis_lib.exceptions.OutOfMemoryError):
        for n in range(100_000):
            client.set(f"filler:{n}", b"x" * 4096)
    # Well under: closing a client (this one, or a connection of the app's pool) frees its buffers, tens of KB.
    client.config_set("maxmemory", client.info("memory")["used_memory"] - 128 * 1024)
    with pytest.raises(redis_lib.exceptions.OutOfMemoryError):
        client.set("still-full", 1)
    return client


@pytest.fixture
def full_app(settings_overrides, private_redis, tmp_path):
    """The app on its own redis-server, with data loaded, an admin, an API key and a live click; fill() fills that Redis."""
    from webapp.clicks import create_api_key
    from webapp import create_app
    from webapp.auth import create_user

    settings = {**settings_overrides, "redis_url": private_redis.url, "live_root": str(tmp_path / "feed"),
                "ingest_source": str(tmp_path / "serve")}
    app = create_app(settings)  # not TESTING: errors while saving the session reach the 503 handler, as in production
    load_source(app, tmp_path)
    with app.app_context():
        create_user("ada", "ada-secret-1", "admin")
        app.api_key = create_api_key("acme")
    visitor = app.test_client()
    page = visitor.get("/campaigns/1")
    assert visitor.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1)).status_code == 302
    ctx = app.extensions["runtime"]
    app.click_id = int(ctx.redis.get(ctx.key("live:click_id")))
    app.settings_overrides = settings

    def fill():
        app.filler = fill_until_full(private_redis.url, settings_overrides["redis_prefix"])  # kept open: see there
        return app.filler

    app.fill = fill
    return app


def stream_length(app):
    from live.events import STREAM

    ctx = app.extensions["runtime"]
    return ctx.redis.xlen(ctx.key(STREAM))


def test_full_redis_slot_serves_without_recording_and_click_redirects(full_app):
    visitor = full_app.test_client()
    page = visitor.get("/campaigns/1")
    href = CLICK_HREF.search(page.get_data(as_text=True)).group(1)
    full_app.fill()
    before = stream_length(full_app)
    for _ in range(10):
        page = visitor.get("/campaigns/1")
        assert page.status_code == 200 and 'data-banner-id="' in page.get_data(as_text=True)
    click = visitor.get(href)
    assert click.status_code == 302
    assert stream_length(full_app) == before  # nothing recorded, nothing lost
    degraded = full_app.extensions["degraded"].as_dict()
    assert degraded["views"] > 0 and degraded["clicks_dropped"] == 1


def test_full_redis_api_answers_json_503_naming_the_full_store(full_app):
    full_app.fill()
    api = full_app.test_client().post("/api/conversions", json={"click_id": full_app.click_id, "revenue": "2.5"},
                                      headers={"Authorization": f"Bearer {full_app.api_key}", "Idempotency-Key": "k1"})
    assert api.status_code == 503 and api.headers["Retry-After"] == "10"
    assert api.is_json and "full" in api.json["error"]


def test_full_redis_login_answers_a_503_page_naming_the_full_store(full_app):
    client = full_app.test_client()
    token = csrf_of(client)
    full_app.fill()
    page = client.post("/login", data={"username": "ada", "password": "ada-secret-1", "csrf_token": token})
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"] == "10"
    assert "Redis is full" in text and "<html" in text and "Traceback" not in text


def test_full_redis_manual_ingest_says_redis_is_full(full_app):
    client = full_app.test_client()
    assert login(client, "ada", "ada-secret-1").status_code == 302
    token = csrf_of(client, "/admin/ingests")
    full_app.fill()
    assert client.get("/admin/").status_code == 200  # the dashboard still reads
    page = client.post("/admin/ingests", data={"csrf_token": token, "replace_source": "1"}, headers={"HX-Request": "true"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Could not queue the ingest" in text
    assert "Redis is full" in text


def test_full_redis_healthz_names_the_full_store_and_the_log_says_so(full_app):
    client = full_app.test_client()
    assert client.get("/healthz").status_code == 200
    full_app.fill()
    client.get("/campaigns/1")
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["redis"]["ok"] is False and "Redis full" in health.json["redis"]["error"]
    assert "OutOfMemoryError" in health.json["redis"]["error"]
    log = Path(full_app.settings_overrides["log_file"]).read_text()
    assert re.search(r"Redis is full .*OutOfMemoryError", log), log[-2000:]


def export_cli(app, worker_env):
    env = {**worker_env, "REDIS_URL": app.settings_overrides["redis_url"], "LIVE_ROOT": app.settings_overrides["live_root"]}
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run([flask, "--app", "webapp", "export-events"], env=env, capture_output=True, text=True, timeout=120)


def test_full_redis_export_cli_drains_the_stream_and_views_record_again(full_app, worker_env):
    visitor = full_app.test_client()
    full_app.fill()
    before = stream_length(full_app)
    assert visitor.get("/campaigns/1").status_code == 200
    assert visitor.get("/healthz").status_code == 503
    done = export_cli(full_app, worker_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{before} events" in done.stdout
    assert stream_length(full_app) == 0
    feed = Path(full_app.settings_overrides["live_root"])
    exported = sum(len(p.read_text().splitlines()) - 1 for name in ("impressions.csv", "clicks.csv") for p in feed.rglob(name))
    assert exported == before  # every event that filled Redis is in the batches
    time.sleep(1.1)  # past the breaker's retry time: no restart, no person
    for _ in range(3):
        assert visitor.get("/campaigns/1").status_code == 200
    assert stream_length(full_app) == 3
    assert visitor.get("/healthz").status_code == 200
    api = visitor.post("/api/conversions", json={"click_id": full_app.click_id, "revenue": "2.5"},
                       headers={"Authorization": f"Bearer {full_app.api_key}"})
    assert api.status_code == 201, api.get_data(as_text=True)


def test_full_redis_views_record_again_once_filler_keys_are_deleted(full_app):
    visitor = full_app.test_client()
    client = full_app.fill()
    before = stream_length(full_app)
    assert visitor.get("/campaigns/1").status_code == 200
    client.delete(*client.keys("filler:*"))
    client.config_set("maxmemory", 0)
    time.sleep(1.1)
    assert visitor.get("/campaigns/1").status_code == 200
    assert stream_length(full_app) == before + 1
    assert json.loads(visitor.get("/healthz").get_data())["redis"]["ok"] is True


def test_full_redis_scheduler_runs_the_export_itself_and_outlives_it(full_app, worker_env):
    """Nobody runs the CLI: rq-scheduler cannot enqueue while Redis is full, so the scheduler process exports."""
    env = {**worker_env, "REDIS_URL": full_app.settings_overrides["redis_url"],
           "LIVE_ROOT": full_app.settings_overrides["live_root"]}
    flask = Path(sys.executable).parent / "flask"
    process = subprocess.Popen([flask, "--app", "webapp", "scheduler", "--interval", "0.5", "--check-seconds", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)  # running, its schedules registered
        full_app.fill()
        deadline = time.monotonic() + 60
        while stream_length(full_app) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
        assert process.poll() is None, process.stderr.read()[-3000:]  # the scheduler outlived the full Redis
        assert stream_length(full_app) == 0
        time.sleep(1.1)
        visitor = full_app.test_client()
        assert visitor.get("/campaigns/1").status_code == 200
        assert stream_length(full_app) == 1
        assert visitor.get("/healthz").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
