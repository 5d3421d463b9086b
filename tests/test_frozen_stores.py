"""Stores that hang instead of refusing: a private PostgreSQL cluster whose every process is SIGSTOPped, and a
private Redis under CLIENT PAUSE. The slot and clicks answer from memory within seconds, /healthz and the
dashboard say so quickly, a web worker started meanwhile serves at once, and all recovers by itself."""

import http.client
import json
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from nginx_stack import nginx_and_web, wait_for, web_workers
from private_postgres import postgres_cluster  # noqa: F401  (a fixture)
from test_outages import CLICK_HREF, Served, load_source, redis_app  # noqa: F401  (redis_app: a fixture)

QUICK = 5.0  # seconds: what "answers quickly" means here
DEADLINE = 2.0  # the app's database connect and query timeouts in these tests
LANDING = "https://shop.example/landing"
BANNER = re.compile(r'data-banner-id="(\d+)"')


def timed(call):
    """(seconds, what `call()` returned)."""
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def http_get(port, path, headers=None):
    """(status, headers, body) of one GET on loopback; a client timeout well past QUICK."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=QUICK * 3)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def cluster_database(postgres_cluster):  # noqa: F811
    """A database of this test's own in the private cluster; the cluster is thawed and the database dropped afterwards."""
    import psycopg2

    from models import db, limit_database_waits

    name = f"bs_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_cluster.url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(postgres_cluster.url)._replace(path=f"/{name}"))
    postgres_cluster.thaw()
    if db.obj is not None and not db.is_closed():
        db.close()
    limit_database_waits()  # the test's 2 s deadlines are process-wide: not for the tests after it
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def loaded_app(settings_overrides, database_url, tmp_path):
    """An app on `database_url` with the outage tests' source loaded, banner 11 landing on LANDING, and an admin."""
    from models import Banner
    from webapp import create_app
    from webapp.auth import create_user

    app = create_app({**settings_overrides, "database_url": database_url,
                      "database_connect_timeout": DEADLINE, "database_query_timeout": DEADLINE})
    with app.app_context():
        Banner.insert(id=11, landing_url=LANDING).on_conflict(conflict_target=[Banner.id],
                                                             update={Banner.landing_url: LANDING}).execute()
        create_user("ada", "ada-secret-1", "admin")
    load_source(app, tmp_path)  # after the landing URL: the load's data version makes processes read it
    return app


def click_until_banner_11(get):
    """Views of campaign 1 until one shows banner 11; (seconds of the slowest view, the click href of that view)."""
    slowest = 0.0
    for _ in range(50):
        seconds, (status, _, body) = timed(lambda: get("/campaigns/1"))
        assert status == 200, body[:300]
        slowest = max(slowest, seconds)
        page = body.decode()
        if BANNER.search(page).group(1) == "11":
            return slowest, CLICK_HREF.search(page).group(1)
    raise AssertionError("banner 11 was never shown")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the app's database is the cluster's
def test_frozen_postgresql_slot_clicks_health_and_dashboard_answer_quickly_and_recover(
        cluster_database, postgres_cluster, settings_overrides, tmp_path):  # noqa: F811
    from live.events import STREAM, decode
    from test_auth import login

    app = loaded_app(settings_overrides, cluster_database, tmp_path)
    served = Served(app)
    try:
        admin = app.test_client()
        assert login(admin, "ada", "ada-secret-1").status_code == 302
        assert served.get("/campaigns/1")[0] == 200  # this process holds the plans
        plans = app.extensions["plans"]
        plans.DATABASE_CHECK_SECONDS = 0.5  # the reloader asks the (frozen) database too, in the background
        postgres_cluster.freeze()
        try:
            for _ in range(3):
                slowest, href = click_until_banner_11(served.get)
                assert slowest < QUICK, f"a view took {slowest:.1f} s"
                seconds, (status, headers, _) = timed(lambda: served.get(href))
                assert status == 302 and headers["location"] == LANDING and seconds < QUICK, (status, headers, seconds)
            seconds, (status, headers, body) = timed(lambda: served.get("/healthz"))
            health = json.loads(body)
            assert status == 503 and seconds < QUICK, (status, seconds)
            assert health["database"]["ok"] is False and "did not answer" in health["database"]["error"], health
            assert health["redis"]["ok"] is True
            seconds, response = timed(lambda: admin.get("/admin/"))
            assert response.status_code == 503 and response.headers["Retry-After"] and seconds < QUICK, seconds
            assert "unavailable" in response.get_data(as_text=True)
        finally:
            postgres_cluster.thaw()
        wait_for(lambda: served.get("/healthz")[0] == 200, "/healthz to answer 200 after the database resumed")
        versions = json.loads(served.get("/healthz")[2])["data_version"]
        assert versions["serving"] == versions["database"]
        assert admin.get("/admin/").status_code == 200
        assert served.get("/campaigns/1")[0] == 200
        ctx = app.extensions["runtime"]
        clicks = [decode(f) for _, f in ctx.redis.xrange(ctx.key(STREAM)) if f["e"].startswith("click")]
        assert len(clicks) == 3  # every click made while the database was frozen is kept
    finally:
        served.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_frozen_postgresql_query_on_an_open_connection_fails_at_the_deadline_and_the_next_one_works(
        cluster_database, postgres_cluster, settings_overrides, tmp_path):  # noqa: F811
    import peewee

    from models import db, get_data_version

    loaded_app(settings_overrides, cluster_database, tmp_path)
    connected, frozen, outcome = threading.Event(), threading.Event(), {}

    def query_on_an_open_connection():  # in a thread, so that a query that hangs fails the test, not the run
        db.connect(reuse_if_open=True)
        get_data_version()
        connected.set()
        frozen.wait()
        started = time.monotonic()
        try:
            get_data_version()  # the server took the connection and will not answer on it
        except peewee.OperationalError as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started
        db.close()

    thread = threading.Thread(target=query_on_an_open_connection, daemon=True)
    thread.start()
    assert connected.wait(QUICK)
    postgres_cluster.freeze()
    try:
        frozen.set()
        thread.join(QUICK * 2)
        assert not thread.is_alive(), "the query still waits on the frozen server"
    finally:
        postgres_cluster.thaw()
    assert "did not answer within 2 s" in str(outcome.get("error")), outcome
    assert DEADLINE <= outcome["seconds"] < QUICK, outcome
    with db.connection_context():
        assert get_data_version() > 0  # a new connection, once the server answers again


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_frozen_postgresql_web_worker_started_meanwhile_serves_the_slot_and_clicks_at_once(
        cluster_database, postgres_cluster, settings_overrides, worker_env, tmp_path):  # noqa: F811
    loaded_app(settings_overrides, cluster_database, tmp_path)
    env = {**worker_env, "DATABASE_URL": cluster_database, "WEB_WORKERS": "1", "WEB_THREADS": "1",
           "DATABASE_CONNECT_TIMEOUT": str(DEADLINE), "DATABASE_QUERY_TIMEOUT": str(DEADLINE)}
    work = tmp_path / "stack"
    work.mkdir()
    with nginx_and_web(work, env) as (port, _):
        get = lambda path: http_get(port, path)  # noqa: E731
        assert get("/campaigns/1")[0] == 200
        (worker,) = web_workers()
        postgres_cluster.freeze()
        try:
            os.kill(worker, signal.SIGKILL)  # a worker that crashed, or was killed by the OOM killer
            wait_for(lambda: web_workers() not in ([], [worker]), "a new web worker")
            slowest, href = click_until_banner_11(get)
            assert slowest < QUICK, f"a view took {slowest:.1f} s"
            seconds, (status, headers, _) = timed(lambda: get(href))
            assert status == 302 and headers["location"] == LANDING and seconds < QUICK, (status, headers, seconds)
            seconds, (status, _, body) = timed(lambda: get("/healthz"))
            assert status == 503 and seconds < QUICK and not json.loads(body)["database"]["ok"], (status, seconds)
        finally:
            postgres_cluster.thaw()
        wait_for(lambda: get("/healthz")[0] == 200, "/healthz to answer 200 after the database resumed")
        log = (work / "web.log").read_text()
        assert "Traceback" not in log and "Respawning worker-1" in log, log


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a Redis fault: one database is enough
def test_paused_redis_slot_and_clicks_answer_quickly(redis_app, private_redis):  # noqa: F811
    import redis as redis_lib

    served = redis_app.served
    assert served.get("/campaigns/1")[0] == 200
    pause = redis_lib.Redis.from_url(private_redis.url)
    pause.execute_command("CLIENT", "PAUSE", 8000, "ALL")
    views = clicks = 0
    slowest = 0.0
    until = time.monotonic() + 8.5
    while time.monotonic() < until:
        seconds, (status, _, body) = timed(lambda: served.get("/campaigns/1"))
        assert status == 200, body[:300]
        slowest, views = max(slowest, seconds), views + 1
        seconds, (status, _, _) = timed(lambda: served.get(CLICK_HREF.search(body.decode()).group(1)))
        assert status == 302
        slowest, clicks = max(slowest, seconds), clicks + 1
        if views == 3:
            seconds, (status, _, body) = timed(lambda: served.get("/healthz"))
            assert status == 503 and json.loads(body)["redis"]["ok"] is False and seconds < QUICK, (status, seconds)
    assert slowest < 1.5, f"a request took {slowest:.1f} s while Redis was paused"
    assert views > 10 and clicks > 10
    wait_for(lambda: "set-cookie" in served.get("/campaigns/1")[1], "sessions again once the pause is over", 5)


def test_click_follows_a_landing_url_set_after_the_plans_were_loaded(app, client, runner):
    from webapp.clicks import click_token

    def click():
        with app.test_request_context():
            token = click_token(7, 101, 2, uuid.uuid4().hex[:16])
        return client.get(f"/click/{token}").headers["Location"]

    assert click() == "/"  # the plans (and their landing URLs) are loaded now
    assert runner.invoke(args=["banners", "set-landing", "101", "https://shop.example/new"]).exit_code == 0
    app.extensions["plans"].settle()
    assert click() == "https://shop.example/new"
