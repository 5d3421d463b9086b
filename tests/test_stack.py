"""The production stack for real: nginx from nginx.conf in front of the web process (webapp.serve), on the demo data."""

import gzip
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from conftest import REDIS_URL, ROOT, _database_params
from nginx_stack import nginx_and_web, require_program, statuses_during, wait_for, web_masters, web_workers

SLOT = re.compile(r'data-campaign-id="(\d+)" data-quarter="(\d)".*?<img src="([^"]+)" data-banner-id="(\d+)"', re.S)


class Stack:
    """Where the running stack is, and a small HTTP client for it."""

    def __init__(self, port, work, env):
        self.port, self.work, self.env = port, work, env

    def get(self, path, headers=None, method="GET"):
        """(status, headers as a lower-cased dict, body bytes) of one request on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module", params=_database_params())
def stack(request, tmp_path_factory, demo_source):
    """nginx → the web process (2 workers) → Redis on the demo data, in SQLite and (when set) PostgreSQL."""
    require_program("nginx")
    work = tmp_path_factory.mktemp("stack")
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    if request.param == "sqlite":
        database_url = f"sqlite:///{work / 'bannerservice.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
        from models import ALL_MODELS, db, init_db

        init_db(database_url)
        with db.connection_context():
            db.drop_tables(ALL_MODELS, safe=True, cascade=True)
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
        "INSTANCE_DIR": str(work / "instance"), "IMAGE_DIR": str(work / "images"),
        "LOG_FILE": str(work / "bannerservice.log"), "SECRET_KEY": "stack-test",
        "QUEUE_NAME": f"{prefix}queue", "PYTHONPATH": str(ROOT), "WEB_WORKERS": "2",
    })
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "flask", "--app", "webapp", "ingest", str(demo_source)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    with nginx_and_web(work, env) as (port, values):
        running = Stack(port, work, env)
        running.values = values
        wait_for(lambda: running.get("/healthz")[0] == 200, "the stack's /healthz")
        yield running


@pytest.fixture(scope="module")
def plans(stack):
    """{(quarter, campaign_id): [banner ids]} as the CLI prints them."""
    out = subprocess.run([Path(sys.executable).parent / "flask", "--app", "webapp", "plans", "--json"],
                         cwd=ROOT, env=stack.env, check=True, capture_output=True, text=True).stdout
    return {(p["quarter"], p["campaign_id"]): p["banner_ids"] for p in json.loads(out)}


def test_stack_image_is_served_by_nginx_with_type_and_long_cache(stack):
    status, headers, body = stack.get("/images/100.png")
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert body.startswith(b"\x89PNG")
    assert headers["cache-control"] == "max-age=604800"  # nginx's; the app would say max-age=86400
    assert headers["x-content-type-options"] == "nosniff"
    assert "etag" in headers and "last-modified" in headers


def test_stack_missing_image_falls_back_to_the_placeholder_briefly_cached(stack):
    status, headers, body = stack.get("/images/299.png")  # the demo's banner without an image
    assert status == 200
    assert headers["content-type"].startswith("image/svg+xml")
    assert body == (ROOT / "webapp" / "static" / "placeholder.svg").read_bytes()
    assert headers["cache-control"] == "max-age=300"


def test_stack_image_path_cannot_leave_the_image_folder(stack):
    for path in ("/images/../../config.py", "/images/..%2f..%2fconfig.py", "/images/%2e%2e/config.py"):
        status, _, body = stack.get(path)
        assert b"load_settings" not in body, path


@pytest.mark.parametrize("name, content_type", [("style.css", "text/css"), ("htmx.min.js", "application/javascript")])
def test_stack_static_file_is_gzipped_with_long_cache(stack, name, content_type):
    status, headers, body = stack.get(f"/static/{name}", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-type"].startswith(content_type)
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == (ROOT / "webapp" / "static" / name).read_bytes()
    assert headers["cache-control"] == "max-age=604800"
    assert "Accept-Encoding" in headers["vary"]


def test_stack_static_file_without_gzip_is_plain(stack):
    status, headers, body = stack.get("/static/style.css")
    assert status == 200 and "content-encoding" not in headers
    assert body == (ROOT / "webapp" / "static" / "style.css").read_bytes()


def test_stack_campaign_page_is_proxied_gzipped(stack, plans):
    campaign = min(c for _, c in plans)
    status, headers, body = stack.get(f"/campaigns/{campaign}", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert headers["content-encoding"] == "gzip"
    assert SLOT.search(gzip.decompress(body).decode())


def test_stack_campaign_rotation_is_kept_by_the_cookie_through_nginx(stack, plans):
    campaign = max((len(set(ids)), c) for (q, c), ids in plans.items() if q == 1)[1]
    status, headers, body = stack.get(f"/campaigns/{campaign}")
    assert status == 200
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert cookie.startswith("bs_vid=")
    _, quarter, _, banner = SLOT.search(body.decode()).groups()
    shown = [(int(quarter), int(banner))]
    for _ in range(30):
        status, headers, body = stack.get(f"/campaigns/{campaign}", {"Cookie": cookie})
        assert status == 200
        _, quarter, src, banner = SLOT.search(body.decode()).groups()
        shown.append((int(quarter), int(banner)))
        assert headers["set-cookie"].split(";", 1)[0] == cookie  # the same visitor all along: its cookie renewed
    banners = [b for _, b in shown]
    assert all(a != b for a, b in zip(banners, banners[1:]))
    quarters = {q for q, _ in shown}
    for q, banner in shown:
        assert banner in plans[(q, campaign)]
    if len(quarters) == 1:  # a quarter that turns mid-test changes the set and restarts the cycle
        size = len(set(plans[(quarters.pop(), campaign)]))
        for start in range(0, len(banners) - size + 1, size):
            assert sorted(banners[start:start + size]) == sorted(set(banners[start:start + size]))
            assert len(set(banners[start:start + size])) == size


def test_stack_two_racing_views_of_one_visitor_on_two_workers_never_show_the_same_banner(stack, plans):
    """Two tabs of one returning visitor, loading at once through nginx, each served by one of the two web
    workers: two steps of the rotation, never the same banner."""
    campaign = max((len(set(ids)), c) for (q, c), ids in plans.items() if q == 1)[1]
    status, headers, _ = stack.get(f"/campaigns/{campaign}")
    cookie = {"Cookie": headers["set-cookie"].split(";", 1)[0]}
    assert stack.get(f"/campaigns/{campaign}", cookie)[0] == 200  # stored from here on (the first view is rebuilt)
    barrier = threading.Barrier(2)

    def view(found, index):
        barrier.wait()
        status, _, body = stack.get(f"/campaigns/{campaign}", cookie)
        assert status == 200
        found[index] = int(SLOT.search(body.decode()).group(4))

    for round_number in range(30):
        found = [None, None]
        tabs = [threading.Thread(target=view, args=(found, i)) for i in range(2)]
        for tab in tabs:
            tab.start()
        for tab in tabs:
            tab.join()
        assert found[0] != found[1], f"round {round_number}: both tabs showed banner {found[0]}"


def test_stack_embed_frame_and_decision_through_nginx_are_frameable_and_cors(stack, plans):
    campaign = next(c for q, c in plans if q == 1)
    status, headers, body = stack.get(f"/embed/{campaign}", {"Referer": "https://news.example/", "Sec-Fetch-Dest": "iframe"})
    assert status == 200 and b"data-banner-id" in body
    assert "x-frame-options" not in headers and "frame-ancestors" not in headers.get("content-security-policy", "")
    status, headers, body = stack.get(f"/api/decision?c={campaign}&vid=stack-test-visitor-0000001",
                                      {"Origin": "https://news.example"})
    assert status == 200 and headers["access-control-allow-origin"] == "*" and "x-frame-options" not in headers
    (slot,) = json.loads(body)["slots"]
    token_path = slot["impression_url"].split(str(stack.port), 1)[1]
    assert stack.get(token_path, {"Origin": "https://news.example"}, method="POST")[0] == 204


def test_stack_campaign_page_images_load_through_nginx(stack, plans):
    campaign = min(c for _, c in plans)
    _, _, body = stack.get(f"/campaigns/{campaign}")
    src = SLOT.search(body.decode()).group(3)
    status, headers, _ = stack.get(src)
    assert status == 200 and headers["content-type"].startswith("image/")


def test_stack_healthz_through_nginx(stack):
    status, headers, body = stack.get("/healthz")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    versions = health["data_version"]
    assert versions["database"] == versions["redis"] > 0
    assert headers["cache-control"] == "no-store"


def test_stack_ping_and_unknown_pages(stack):
    assert stack.get("/ping")[:3:2] == (200, b"pong\n")
    assert stack.get("/campaigns/999999")[0] == 404


def test_stack_rejects_bodies_over_the_limit(stack):
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        conn.putrequest("POST", "/campaigns/1")
        conn.putheader("Content-Length", str(64 * 1024 * 1024))
        conn.endheaders()
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_stack_access_log_has_request_and_upstream_times(stack):
    stack.get("/ping")

    def logged():
        log = (stack.work / "nginx" / "access.log").read_text()
        return re.search(r'"GET /ping HTTP/1.1" 200 .* rt=\d+\.\d{3} urt=\d+\.\d{3}', log)

    wait_for(logged, "the access log to be flushed", seconds=5)


def test_stack_sighup_replaces_every_worker_while_views_keep_being_answered(stack):
    """A graceful reload (SIGHUP to the web process, as after a deploy of settings): new workers start before the old
    ones stop, and no view in between fails."""
    (master,) = web_masters(stack.work)
    before = web_workers(stack.work)
    assert len(before) == 2

    def reload():
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: len(set(web_workers(stack.work)) - set(before)) == 2 and len(web_workers(stack.work)) == 2,
                 "both workers replaced", seconds=30)

    statuses = statuses_during(lambda: stack.get("/campaigns/1")[0], reload)
    assert len(statuses) > 10 and set(statuses) == {200}, statuses


def test_hot_path_campaign_page_runs_no_sql(app, client, tmp_path, monkeypatch):
    """After the plan cache is warm, a page view asks the database nothing (plans live in the process)."""
    from conftest import write_source
    from jobs.ingest import run_ingest
    from models import db

    source = write_source(tmp_path / "src", {q: {"impressions": "11,1\n12,1\n13,1\n"} for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    assert client.get("/campaigns/1").status_code == 200  # loads the plans once
    cache = app.extensions["plans"]
    monkeypatch.setattr(cache, "refresh_seconds", 3600.0)
    queries = []
    real = db.obj.execute_sql
    monkeypatch.setattr(db.obj, "execute_sql", lambda sql, *a, **k: queries.append(sql) or real(sql, *a, **k))
    for _ in range(20):
        assert client.get("/campaigns/1").status_code == 200
    assert queries == []
