"""The visitor's path under outages, against real services: a private redis-server that is stopped,
restarted empty and frozen under concurrent requests, and a PostgreSQL database whose rights are
revoked and restored."""

import http.client
import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from werkzeug.serving import make_server

from conftest import TEST_DATABASE_URL, write_source

CLICK_HREF = re.compile(r'href="(/click/[^"]+)"')
SOURCE = {q: {"impressions": "".join(f"{b},1\n" for b in range(11, 16))} for q in (1, 2, 3, 4)}


def load_source(app, tmp_path):
    from jobs.ingest import run_ingest

    source = write_source(tmp_path / "serve", SOURCE)
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()


class Served:
    """`app` on a threaded werkzeug server on a free loopback port, and a one-request HTTP client."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path, headers=None, method="GET", body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def redis_app(settings_overrides, private_redis, tmp_path):
    """The app on this test's own redis-server (sessions, queue, stream and counters all there)."""
    from webapp import create_app

    app = create_app({**settings_overrides, "redis_url": private_redis.url})
    load_source(app, tmp_path)
    served = Served(app)
    app.served = served
    yield app
    served.close()


def test_campaign_and_click_never_fail_while_redis_stops_restarts_empty_and_freezes(redis_app, private_redis, settings_overrides):
    served, stop = redis_app.served, threading.Event()
    statuses = {"campaign": Counter(), "click": Counter()}

    def visitor():
        cookie = {}
        while not stop.is_set():
            status, headers, body = served.get("/campaigns/1", headers=cookie)
            statuses["campaign"][status] += 1
            if "set-cookie" in headers:
                cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
            href = CLICK_HREF.search(body.decode())
            if href:
                statuses["click"][served.get(href.group(1), headers=cookie)[0]] += 1

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(visitor) for _ in range(4)]
        time.sleep(1)
        private_redis.stop()
        time.sleep(2)
        private_redis.start()  # empty: no persistence
        time.sleep(1)
        private_redis.freeze()
        time.sleep(2)
        private_redis.thaw()
        time.sleep(1)
        stop.set()
        for run in runs:
            run.result()
    assert statuses["campaign"] and all(s == 200 for s in statuses["campaign"]), statuses
    assert statuses["click"] and all(s == 302 for s in statuses["click"]), statuses
    status, _, body = served.get("/healthz")
    degraded = json.loads(body)["degraded"]
    assert degraded["views"] > 0 and degraded["clicks_dropped"] >= 0
    outage_lines = [line for line in Path(settings_overrides["log_file"]).read_text().splitlines()
                    if "Redis is unavailable" in line]
    assert 1 <= len(outage_lines) <= 2, outage_lines  # one per outage at most every 10 s, not one per view


def test_campaign_view_without_redis_serves_a_banner_of_the_current_set(redis_app, private_redis):
    from live.events import STREAM

    private_redis.stop()
    shown = set()
    for _ in range(20):
        status, headers, body = redis_app.served.get("/campaigns/1")
        assert status == 200
        assert "set-cookie" not in headers  # no session to give
        shown.add(int(re.search(r'data-banner-id="(\d+)"', body.decode()).group(1)))
    assert shown <= set(range(11, 16)) and len(shown) > 1  # random, not stuck on one banner
    private_redis.start()
    ctx = redis_app.extensions["runtime"]
    assert ctx.redis.xlen(ctx.key(STREAM)) == 0  # no event while Redis was away


def test_api_and_dashboard_answer_503_with_retry_after_while_redis_is_away(redis_app, private_redis):
    from webapp.clicks import create_api_key

    with redis_app.app_context():
        key = create_api_key("acme")
    private_redis.stop()
    status, headers, body = redis_app.served.get("/api/conversions", method="POST", body='{"click_id": 1, "revenue": 1}',
                                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert status == 503 and headers["retry-after"] == "10" and "unavailable" in json.loads(body)["error"]
    for path in ("/admin/", "/login"):
        status, headers, body = redis_app.served.get(path)
        assert status == 503 and headers["retry-after"] == "10", path
        assert b"Temporarily unavailable" in body and b"Traceback" not in body


# --- PostgreSQL refusing ----------------------------------------------------------------------


@pytest.fixture
def refusable_database(postgres_url):
    """A role of this test's own on the run's PostgreSQL database; revoke() refuses it, restore() lets it back."""
    if not TEST_DATABASE_URL:
        pytest.skip("needs TEST_DATABASE_URL (a PostgreSQL server)")
    import psycopg2

    from models import ALL_MODELS, db, init_db

    role, password = f"bs_app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    parts = urlsplit(postgres_url)
    database = parts.path.lstrip("/")
    owner = psycopg2.connect(postgres_url)
    owner.autocommit = True

    def run(*statements):
        with owner.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    run(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'", f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    for model in reversed(ALL_MODELS):  # the tables of earlier tests belong to another role
        run(f'DROP TABLE IF EXISTS "{model._meta.table_name}" CASCADE')

    class Refusable:
        url = urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"))

        def revoke(self):
            run(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC, {role}',
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")

        def restore(self):
            run(f'GRANT CONNECT ON DATABASE "{database}" TO PUBLIC, {role}')

    init_db(Refusable.url)
    with db.connection_context():
        db.create_tables(ALL_MODELS)
    yield Refusable()
    if not db.is_closed():
        db.close()
    Refusable().restore()
    run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        f"DROP OWNED BY {role}", f"DROP ROLE {role}")
    owner.close()


@pytest.fixture
def refusable_app(refusable_database, settings_overrides, tmp_path):
    from webapp import create_app

    app = create_app({**settings_overrides, "database_url": refusable_database.url})
    app.config["TESTING"] = True
    load_source(app, tmp_path)
    app.refusable = refusable_database
    return app


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the app's database is the refusable one
def test_click_api_and_dashboard_while_postgresql_refuses(refusable_app):
    from webapp.clicks import create_api_key
    from live.events import STREAM, decode
    from models import Banner
    from test_auth import login

    from webapp.auth import create_user

    with refusable_app.app_context():
        Banner.update(landing_url="https://shop.example/landing").where(Banner.id == 11).execute()
        key = create_api_key("acme")
        create_user("ada", "ada-secret-1", "admin")
    client = refusable_app.test_client()
    assert login(client, "ada", "ada-secret-1").status_code == 302
    visitor = refusable_app.test_client()
    visitor.get("/campaigns/1")
    refusable_app.refusable.revoke()
    try:
        for _ in range(5):
            page = visitor.get("/campaigns/1")
            assert page.status_code == 200
            click = visitor.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1))
            assert click.status_code == 302 and click.location.startswith(("https://shop.example/landing", "/"))
        api = client.post("/api/conversions", json={"click_id": 1, "revenue": 1}, headers={"Authorization": f"Bearer {key}"})
        assert api.status_code == 503 and api.headers["Retry-After"] and "error" in api.json
        admin = client.get("/admin/")
        assert admin.status_code == 503 and admin.headers["Retry-After"]
        assert "Traceback" not in admin.get_data(as_text=True) and "<html" in admin.get_data(as_text=True)
    finally:
        refusable_app.refusable.restore()
    ctx = refusable_app.extensions["runtime"]
    clicks = [decode(f) for _, f in ctx.redis.xrange(ctx.key(STREAM)) if f["e"].startswith("click")]
    assert len(clicks) == 5  # kept in the stream while the database refused
    assert client.get("/admin/").status_code == 200


# --- ids and schedules after Redis forgot everything -------------------------------------------


def test_live_ids_never_repeat_after_redis_restarts_empty_with_an_export_between(redis_app, private_redis, tmp_path):
    from dataclasses import replace

    from jobs import runtime
    from live.export import export_events
    from webapp.clicks import create_api_key

    runtime.context(replace(runtime.context().settings, live_root=str(tmp_path / "feed")))
    with redis_app.app_context():
        key = create_api_key("acme")
    served = redis_app.served

    def click_and_convert():
        _, _, page = served.get("/campaigns/1")
        served.get(CLICK_HREF.search(page.decode()).group(1))
        ctx = runtime.context()
        click_id = int(ctx.redis.get(ctx.key("live:click_id")))
        status, _, body = served.get("/api/conversions", method="POST", body=json.dumps({"click_id": click_id, "revenue": "2.5"}),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert status == 201, body
        return click_id, json.loads(body)["conversion_id"]

    before = click_and_convert()
    with redis_app.app_context():
        export_events()
    exported = (tmp_path / "feed").rglob("clicks.csv")
    assert str(before[0]) in "".join(p.read_text() for p in exported)
    private_redis.stop()
    private_redis.start()  # empty: counters, markers and the stream are gone
    time.sleep(1.1)  # past the breaker's retry time for any request that saw the restart
    after = click_and_convert()
    assert after[0] > before[0] and after[1] > before[1]


def test_scheduler_registers_the_schedules_again_after_redis_restarts_empty(settings_overrides, private_redis, worker_env):
    import subprocess
    import sys

    from rq_scheduler import Scheduler

    from config import load_settings
    from jobs.schedule import schedule_id

    env = {**worker_env, "REDIS_URL": private_redis.url}
    settings = load_settings(env)
    wanted = {schedule_id(settings, "ingest"), schedule_id(settings, "export")}
    flask = Path(sys.executable).parent / "flask"
    process = subprocess.Popen([flask, "--app", "webapp", "scheduler", "--interval", "0.5", "--check-seconds", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def registered():
        import redis as redis_lib

        try:
            scheduler = Scheduler(queue_name=settings.queue_name, connection=redis_lib.Redis.from_url(private_redis.url))
            return {job_id for job_id in wanted if job_id in scheduler}
        except redis_lib.ConnectionError:
            return set()

    def wait_for(condition, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not condition():
            time.sleep(0.2)
        return condition()

    try:
        assert wait_for(lambda: registered() == wanted), "the scheduler did not register the schedules at start"
        private_redis.stop()
        time.sleep(1)
        private_redis.start()  # empty: the schedules are gone
        assert registered() == set()
        assert wait_for(lambda: registered() == wanted), "the schedules were not registered again"
        assert process.poll() is None  # the scheduler outlived the outage
    finally:
        process.terminate()
        process.wait(timeout=20)


# --- two Redis roles ---------------------------------------------------------------------------


def test_sessions_live_in_the_session_redis_and_events_in_the_main_one(settings_overrides, private_redis, redis_server, tmp_path):
    from live.events import STREAM
    from webapp import create_app

    app = create_app({**settings_overrides, "session_redis_url": private_redis.url})
    load_source(app, tmp_path)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/campaigns/1").status_code == 200
    sessions = redis_lib_client(private_redis.url)
    prefix = settings_overrides["redis_prefix"]
    assert len(list(sessions.scan_iter(f"{prefix}visitor:*"))) == 1  # the visitor's rotations
    assert list(redis_server.scan_iter(f"{prefix}visitor:*")) == []
    assert redis_server.xlen(prefix + STREAM) == 3 and not sessions.exists(prefix + STREAM)
    private_redis.stop()  # the session Redis away: views go on, and their events still reach the main Redis
    assert client.get("/campaigns/1").status_code == 200
    assert redis_server.xlen(prefix + STREAM) == 4  # no rotation without the session, but the view is counted
    private_redis.start()


def test_main_redis_back_within_the_minute_gives_the_views_live_counter_its_expiry(settings_overrides, private_redis, redis_server,
                                                                                  tmp_path):
    """Views while the main Redis (events, counters) is away sent no EXPIRE for their minute's live counter: the first
    view that reaches it again must send it, or that counter is never deleted. Visitors' state is in the session Redis."""
    from live import events
    from webapp import create_app

    from conftest import REDIS_URL

    if time.time() % 60 > 45:  # both views in one minute, else the second's counter is a new one and proves nothing
        time.sleep(60.5 - time.time() % 60)
    app = create_app({**settings_overrides, "redis_url": private_redis.url, "session_redis_url": REDIS_URL})
    load_source(app, tmp_path)
    client = app.test_client()
    events._expiry_set.clear()
    private_redis.stop()
    assert client.get("/campaigns/1").status_code == 200
    private_redis.start()
    time.sleep(1.1)  # the breaker's retry time
    assert client.get("/campaigns/1").status_code == 200
    main = redis_lib_client(private_redis.url)
    [bucket] = main.keys(settings_overrides["redis_prefix"] + "live:impressions:*")
    assert main.hget(bucket, "1") == "1"
    assert main.ttl(bucket) > 0


def redis_lib_client(url):
    import redis as redis_lib

    return redis_lib.Redis.from_url(url, decode_responses=True)
