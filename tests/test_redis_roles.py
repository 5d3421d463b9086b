"""Two Redis roles on two private redis-servers (REDIS_URL for events, SESSION_REDIS_URL for sessions),
one of which is stopped: each role's outage costs only what needs that role, and is blamed on it."""

import re
import time
from pathlib import Path

import pytest

from conftest import RedisProcess
from test_auth import login
from test_outages import CLICK_HREF, load_source

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database plays no part here

BANNER_ID = re.compile(r'data-banner-id="(\d+)"')


@pytest.fixture
def session_redis(tmp_path):
    """A second private redis-server, for sessions."""
    work = tmp_path / "session-redis"
    work.mkdir()
    server = RedisProcess(work).start()
    yield server
    server.stop()


@pytest.fixture
def two_redis_app(settings_overrides, private_redis, session_redis, tmp_path):
    """The app with events on `private_redis` and sessions on `session_redis`; data, an admin, an API key, a live click."""
    from webapp.clicks import create_api_key
    from webapp import create_app
    from webapp.auth import create_user

    app = create_app({**settings_overrides, "redis_url": private_redis.url, "session_redis_url": session_redis.url})
    load_source(app, tmp_path)
    with app.app_context():
        create_user("ada", "ada-secret-1", "admin")
        app.api_key = create_api_key("acme")
    visitor = app.test_client()
    page = visitor.get("/campaigns/1")
    assert visitor.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1)).status_code == 302
    ctx = app.extensions["runtime"]
    app.click_id = int(ctx.redis.get(ctx.key("live:click_id")))
    app.log_file = Path(settings_overrides["log_file"])
    return app


def outage_lines(app):
    return [line for line in app.log_file.read_text().splitlines() if "serving degraded" in line]


def test_redis_roles_events_down_keeps_rotations_dashboard_and_csv(two_redis_app, private_redis):
    admin = two_redis_app.test_client()
    assert login(admin, "ada", "ada-secret-1").status_code == 302  # signing in counts attempts in the events Redis
    visitor = two_redis_app.test_client()
    page = visitor.get("/campaigns/1")
    seen = [int(BANNER_ID.search(page.get_data(as_text=True)).group(1))]  # the first of a cycle
    private_redis.stop()  # the events Redis
    for _ in range(9):  # the rest of two cycles of the five banners
        page = visitor.get("/campaigns/1")
        assert page.status_code == 200
        seen.append(int(BANNER_ID.search(page.get_data(as_text=True)).group(1)))
    assert sorted(seen[:5]) == sorted(seen[5:]) == [11, 12, 13, 14, 15], seen  # no banner twice in one cycle
    assert visitor.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1)).status_code == 302
    api = admin.post("/api/conversions", json={"click_id": two_redis_app.click_id, "revenue": "2.5"},
                     headers={"Authorization": f"Bearer {two_redis_app.api_key}"})
    assert api.status_code == 503 and "The events Redis is unavailable" in api.json["error"]
    assert admin.get("/admin/").status_code == 200
    csv = admin.get("/admin/campaigns.csv")
    assert csv.status_code == 200 and csv.get_data(as_text=True).startswith("campaign")
    assert login(two_redis_app.test_client(), "ada", "ada-secret-1").status_code == 503  # attempts are counted there
    lines = outage_lines(two_redis_app)
    assert lines and all("The events Redis is unavailable" in line for line in lines), lines


def test_redis_roles_session_down_keeps_the_api_and_healthz_reports_it(two_redis_app, session_redis):
    admin = two_redis_app.test_client()
    assert login(admin, "ada", "ada-secret-1").status_code == 302
    session_redis.stop()
    from live.events import STREAM

    client = two_redis_app.test_client()
    ctx = two_redis_app.extensions["runtime"]
    before = ctx.redis.xlen(ctx.key(STREAM))
    page = client.get("/campaigns/1")  # the session Redis is away: no rotation kept, but the view is served and recorded
    assert page.status_code == 200
    assert client.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1)).status_code == 302
    assert ctx.redis.xlen(ctx.key(STREAM)) == before + 2  # the view and the click are still recorded
    api = client.post("/api/conversions", json={"click_id": two_redis_app.click_id, "revenue": "2.5"},
                      headers={"Authorization": f"Bearer {two_redis_app.api_key}"})
    assert api.status_code == 201, api.get_data(as_text=True)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["redis"]["ok"] is True and health.json["session_redis"]["ok"] is False
    assert "ConnectionError" in health.json["session_redis"]["error"]
    assert admin.get("/admin/").status_code == 503  # the dashboard cannot know who is signed in
    lines = outage_lines(two_redis_app)
    assert lines and all("The session Redis is unavailable" in line for line in lines), lines
    session_redis.start()
    assert client.get("/healthz").status_code == 200


def test_redis_roles_visitor_paths_never_ask_the_session_redis(two_redis_app, session_redis):
    """The slot, the click, the frame and the decision read no dashboard session, even when its cookie comes along."""
    import redis as redis_lib

    admin = two_redis_app.test_client()
    assert login(admin, "ada", "ada-secret-1").status_code == 302  # a signed-in admin previews the slot
    sessions = redis_lib.Redis.from_url(session_redis.url)
    dashboard_keys = list(sessions.scan_iter())
    assert dashboard_keys
    time.sleep(1.1)  # OBJECT IDLETIME counts whole seconds since a key was last read or written
    page = admin.get("/campaigns/1")
    assert page.status_code == 200
    assert admin.get(CLICK_HREF.search(page.get_data(as_text=True)).group(1)).status_code == 302
    assert admin.get("/embed/1").status_code == 200
    assert admin.get("/api/decision?c=1").status_code == 200
    assert all(sessions.object("idletime", key) >= 1 for key in dashboard_keys), "a visitor's request read a session"
    assert admin.get("/admin/").status_code == 200
    assert min(sessions.object("idletime", key) for key in dashboard_keys) == 0  # the dashboard does read it


def test_redis_roles_cookieless_flood_on_a_full_session_redis_keeps_the_admin_signed_in(two_redis_app, session_redis):
    """Issue 19 case 5: 20,000 cookie-less views with the session Redis at its memory limit (allkeys-lru, as
    deployed) evicted a signed-in admin's session. Views without a visitor id must add nothing to evict for."""
    import redis as redis_lib

    admin = two_redis_app.test_client()
    assert login(admin, "ada", "ada-secret-1").status_code == 302
    sessions = redis_lib.Redis.from_url(session_redis.url)
    sessions.config_set("maxmemory-policy", "allkeys-lru")
    sessions.config_set("maxmemory", sessions.info("memory")["used_memory"] + 64 * 1024)
    flood = two_redis_app.test_client(use_cookies=False)
    for _ in range(20_000):
        assert flood.get("/campaigns/1").status_code == 200
    assert sessions.info("stats")["evicted_keys"] == 0
    page = admin.get("/admin/")
    assert page.status_code == 200, "the flood signed the admin out"


def test_redis_roles_paused_session_redis_keeps_views_quick_and_recorded(two_redis_app, session_redis):
    """A frozen or slow session Redis (CLIENT PAUSE): a returning visitor's view answers within 1.5 s, is still
    recorded in the events Redis, and /healthz names the session Redis; rotations come back when it answers."""
    import redis as redis_lib

    from live.events import STREAM

    visitor = two_redis_app.test_client()
    for _ in range(2):  # the second view stores the visitor's rotation: the next ones read it from the session Redis
        assert visitor.get("/campaigns/1").status_code == 200
    ctx = two_redis_app.extensions["runtime"]
    before = ctx.redis.xlen(ctx.key(STREAM))
    redis_lib.Redis.from_url(session_redis.url).execute_command("CLIENT", "PAUSE", 4000, "ALL")
    slowest, views, until = 0.0, 0, time.monotonic() + 4.5
    while time.monotonic() < until:
        started = time.monotonic()
        assert visitor.get("/campaigns/1").status_code == 200
        slowest, views = max(slowest, time.monotonic() - started), views + 1
        if views == 3:
            health = visitor.get("/healthz")
            assert health.status_code == 503 and health.json["session_redis"]["ok"] is False
    assert slowest < 1.5, f"a view took {slowest:.1f} s while the session Redis was paused"
    assert ctx.redis.xlen(ctx.key(STREAM)) == before + views  # every view recorded
    time.sleep(1.1)  # the pause is over and the breaker's pause too
    assert "bs_vid=" in visitor.get("/campaigns/1").headers.get("Set-Cookie", "")  # rotations kept again
