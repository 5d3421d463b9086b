"""Visitors' rotations without server-side sessions: a vid (parameter, then cookie), its state in Redis."""

import re
import string
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import serve_rows, write_source

BANNER = re.compile(r'<img[^>]*data-banner-id="(\d+)"')
BANNERS = list(range(11, 16))


def banner_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return int(BANNER.search(response.get_data(as_text=True)).group(1))


def assert_rotation(shown, banners=BANNERS):
    """Never the same banner twice in a row, and each cycle of len(banners) views shows every banner once."""
    assert all(a != b for a, b in zip(shown, shown[1:])), shown
    for start in range(0, len(shown) - len(banners) + 1, len(banners)):
        assert sorted(shown[start:start + len(banners)]) == banners, shown


@pytest.fixture
def loaded(app, tmp_path):
    """Campaign 1 serves banners 11-15 and campaign 2 banners 41-43, in every quarter."""
    rows = "".join(f"{b},1\n" for b in BANNERS) + "".join(f"{b},2\n" for b in (41, 42, 43))
    return serve_rows(app, tmp_path / "src", rows)


def keys_under(redis_server, prefix):
    return sorted(redis_server.scan_iter(f"{prefix}*", count=5000))


def test_visitors_twenty_thousand_cookieless_views_add_no_redis_keys(loaded, redis_server, redis_prefix, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("a view reads no database: one run of 20,000 views is enough")
    client = loaded.test_client(use_cookies=False)
    assert client.get("/campaigns/1").status_code == 200  # the stream and this minute's counter exist from now on
    before = keys_under(redis_server, redis_prefix)
    for _ in range(20_000):
        response = client.get("/campaigns/1")
        assert response.status_code == 200
    after = keys_under(redis_server, redis_prefix)
    assert after == before, f"{len(after) - len(before)} keys more"
    assert redis_server.xlen(redis_prefix + "events") == 20_001  # every view was still recorded


def test_visitors_returning_with_the_first_views_cookie_rotate_without_repeat(loaded, redis_server, redis_prefix):
    client = loaded.test_client()
    first = client.get("/campaigns/1")
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("bs_vid=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert not [k for k in keys_under(redis_server, redis_prefix) if ":visitor:" in k]  # the first view kept nothing
    shown = [banner_of(first)] + [banner_of(client.get("/campaigns/1")) for _ in range(14)]
    assert_rotation(shown)
    assert len([k for k in keys_under(redis_server, redis_prefix) if ":visitor:" in k]) == 1


def test_visitors_minted_vid_gets_full_cycles_on_a_second_campaign_too(loaded):
    client = loaded.test_client()
    first = banner_of(client.get("/campaigns/1"))
    other = [banner_of(client.get("/campaigns/2")) for _ in range(6)]
    rest = [banner_of(client.get("/campaigns/1")) for _ in range(9)]
    assert_rotation([first] + rest)
    assert all(a != b for a, b in zip(other, other[1:]))


def test_visitors_explicit_vid_wins_over_the_cookie_and_keeps_its_own_rotation(loaded):
    client = loaded.test_client()
    by_cookie = [banner_of(client.get("/campaigns/1")) for _ in range(3)]
    vid = "publisher-made-visitor-id-0001"
    by_param = [banner_of(client.get(f"/campaigns/1?vid={vid}")) for _ in range(10)]
    assert_rotation(by_param)
    by_cookie += [banner_of(client.get("/campaigns/1")) for _ in range(7)]
    assert_rotation(by_cookie)


def test_visitors_same_vid_from_two_sites_does_not_share_state(loaded):
    client = loaded.test_client(use_cookies=False)
    vid = "shared-visitor-id-across-sites"
    shown = {"https://a.example": [], "https://b.example": []}
    for _ in range(10):
        for site in shown:
            shown[site].append(banner_of(client.get(f"/campaigns/1?vid={vid}", headers={"Origin": site})))
    for sequence in shown.values():
        assert_rotation(sequence)


def test_visitors_cookie_is_partitioned_on_https(loaded):
    client = loaded.test_client()
    cookie = client.get("/campaigns/1", base_url="https://ads.example").headers["Set-Cookie"]
    parts = [p.strip() for p in cookie.split(";")]
    assert parts[0].startswith("bs_vid=")
    assert {"Secure", "HttpOnly", "Partitioned", "SameSite=None", "Path=/"} <= set(parts)
    lifetime = loaded.extensions["settings"].session_lifetime_minutes * 60
    assert f"Max-Age={lifetime}" in parts


def test_visitors_cookie_behind_the_trusted_proxy_follows_x_forwarded_proto(settings_overrides, tmp_path):
    from webapp import create_app

    app = create_app({**settings_overrides, "trusted_proxy_count": 1})
    app.config["TESTING"] = True
    rows = "".join(f"{b},1\n" for b in BANNERS)
    source = write_source(tmp_path / "src2", {q: {"impressions": rows} for q in (1, 2, 3, 4)})
    from jobs.ingest import run_ingest

    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    client = app.test_client()
    cookie = client.get("/campaigns/1", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    assert "Partitioned" in cookie and "Secure" in cookie
    cookie = client.get("/campaigns/1", headers={"X-Forwarded-Proto": "http"}).headers["Set-Cookie"]
    assert "Partitioned" not in cookie and "SameSite=Lax" in cookie


def test_visitors_malformed_vid_is_ignored_for_a_new_one(loaded):
    client = loaded.test_client(use_cookies=False)
    response = client.get("/campaigns/1?vid=short")
    assert response.status_code == 200
    assert response.headers["Set-Cookie"].startswith("bs_vid=") and "short" not in response.headers["Set-Cookie"]


def test_visitors_rotation_holds_while_the_events_redis_is_away(settings_overrides, private_redis, tmp_path):
    """Two Redis roles (issue 19, case 4): with REDIS_URL's Redis down and the session Redis up, visitors keep
    their rotations; only the events are lost."""
    from conftest import REDIS_URL
    from jobs.ingest import run_ingest
    from webapp import create_app

    app = create_app({**settings_overrides, "redis_url": private_redis.url, "session_redis_url": REDIS_URL})
    app.config["TESTING"] = True
    rows = "".join(f"{b},1\n" for b in BANNERS)
    source = write_source(tmp_path / "src", {q: {"impressions": rows} for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    private_redis.stop()
    client = app.test_client()
    shown = [banner_of(client.get("/campaigns/1")) for _ in range(15)]
    assert_rotation(shown)
    assert app.extensions["redis_breaker"].is_open()  # the events' Redis was found away...
    assert "bs_vid" in client.get("/campaigns/1").headers["Set-Cookie"]  # ...and the visitor still gets its cookie


def test_visitors_cookieless_not_found_views_add_no_redis_keys(loaded, redis_server, redis_prefix):
    """A flood of unknown campaigns on the visitor's path (the slot, the frame, the decision) leaves no session behind."""
    client = loaded.test_client(use_cookies=False)
    before = keys_under(redis_server, redis_prefix)
    for n in range(50):
        assert client.get(f"/campaigns/{9000 + n}").status_code == 404
        assert client.get(f"/embed/{9000 + n}").status_code == 404
        assert client.get(f"/campaigns/x{n}").status_code == 404
    assert keys_under(redis_server, redis_prefix) == before


@pytest.mark.parametrize("path", ["/campaigns/1", "/embed/1", "/api/decision?c=1"])
def test_visitors_two_racing_views_of_one_visitor_never_show_the_same_banner(loaded, redis_server, redis_prefix,
                                                                              database_url, path):
    """Two tabs of one visitor loading at the same instant are two views of its rotation, one after the other:
    never the same banner, each recorded once."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a view reads no database: one run is enough")
    vid = "racing-visitor-0123456789abcdef"  # not minted here: stored from its first view
    headers = {"Cookie": f"bs_vid={vid}", "Origin": "https://news.example"} if "decision" in path else {"Cookie": f"bs_vid={vid}"}
    barrier = threading.Barrier(2)
    clients = [loaded.test_client(use_cookies=False) for _ in range(2)]

    def view(client, found, index):
        barrier.wait()
        response = client.get(path, headers=headers)
        if "decision" in path:
            assert response.status_code == 200, response.get_data(as_text=True)
            found[index] = response.get_json()["slots"][0]["banner_id"]
        else:
            found[index] = banner_of(response)

    views_before = redis_server.xlen(redis_prefix + "events") if redis_server.exists(redis_prefix + "events") else 0
    shown = []
    for _ in range(30):
        found = [None, None]
        threads = [threading.Thread(target=view, args=(clients[i], found, i)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert found[0] != found[1], f"both tabs showed banner {found[0]} (rounds so far: {shown})"
        shown.append(tuple(found))
    if "decision" not in path:  # a decision records its impressions by beacon, later
        assert redis_server.xlen(redis_prefix + "events") - views_before == 60


def test_visitors_returning_view_is_one_redis_call_with_its_state_and_impression(loaded, redis_server, redis_prefix,
                                                                                  database_url, monkeypatch):
    """A returning visitor's page view reads its rotation, advances it, keeps it and records the impression and the
    live counter (with its expiry) in one round trip to Redis."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a view reads no database: one run is enough")
    from live import events
    from redis.connection import Connection

    vid = "one-trip-visitor-0123456789abcdef"
    client = loaded.test_client(use_cookies=False)
    first = banner_of(client.get("/campaigns/1", headers={"Cookie": f"bs_vid={vid}"}))
    [bucket] = [k for k in keys_under(redis_server, redis_prefix) if ":live:impressions:" in k]
    redis_server.delete(bucket)
    events._expiry_set.clear()  # as in a process that has not counted this minute yet
    pool = loaded.extensions["visitors"].client.connection_pool
    sent, real_send = [], Connection.send_packed_command

    def counting_send(connection, *args, **kwargs):
        sent.append(connection)
        return real_send(connection, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting_send)
    stream_before = redis_server.xlen(redis_prefix + "events")
    second = banner_of(client.get("/campaigns/1", headers={"Cookie": f"bs_vid={vid}"}))
    monkeypatch.undo()
    visitors_connections = set(pool._available_connections) | set(pool._in_use_connections)
    assert sum(connection in visitors_connections for connection in sent) == 1  # the plan cache's checks use another
    assert second != first
    assert redis_server.xlen(redis_prefix + "events") == stream_before + 1
    assert int(redis_server.hget(bucket, "1")) == 1 and redis_server.ttl(bucket) > 0


cookie_names = st.sampled_from(["bs_vid", "bs_session", "xbs_vid", "bs_vidx", "_ga", "a"])
vid_like = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=20, max_size=40)
cookie_values = vid_like | st.text(alphabet=string.ascii_letters + string.digits + "-_=/+. ", max_size=40)
cookies = st.tuples(cookie_names, st.sampled_from(["=", " = "]), cookie_values, st.booleans(), st.sampled_from(["; ", ";", " ; "]))


@given(st.lists(cookies, max_size=6))
@settings(deadline=None)
def test_visitors_vid_cookie_reads_what_werkzeug_reads_for_any_vid(cookies):
    """The serving path reads the vid from the Cookie header itself (not every cookie of the publisher's page): for any
    header, it finds the vid werkzeug's parser would, whenever that is a vid at all."""
    from werkzeug.sansio.http import parse_cookie

    from visitor_state import is_vid
    from webapp.visitors import vid_cookie

    header = "".join(name + equals + (f'"{value}"' if quoted else value) + sep for name, equals, value, quoted, sep in cookies)
    expected = parse_cookie(header).get("bs_vid")
    if is_vid(expected) or is_vid(vid_cookie(header)):
        assert vid_cookie(header) == expected


def test_visitors_step_connection_belongs_to_its_thread_and_process(loaded):
    """The step's single connection is made in the thread and the process that use it: a worker forked from a process
    that had served views opens its own, never writing to its parent's socket, and a second thread never waits for the
    first one's round trip."""
    import multiprocessing

    store = loaded.extensions["visitors"]
    client = loaded.test_client(use_cookies=False)
    banner_of(client.get("/campaigns/1", headers={"Cookie": "bs_vid=parent-visitor-0123456789abcdef"}))
    parent_socket = store.step_client().connection._sock.getsockname()

    def child(answers):
        banner_of(client.get("/campaigns/1", headers={"Cookie": "bs_vid=child-visitor-0123456789abcdef"}))
        answers.send(store.step_client().connection._sock.getsockname())

    receiving, sending = multiprocessing.Pipe(duplex=False)
    worker = multiprocessing.get_context("fork").Process(target=child, args=(sending,))
    worker.start()
    child_socket = receiving.recv() if receiving.poll(30) else None
    worker.join(30)
    assert worker.exitcode == 0 and child_socket is not None
    assert child_socket != parent_socket
    assert store.step_client().connection._sock.getsockname() == parent_socket  # the parent keeps its own
    other_thread = []
    thread = threading.Thread(target=lambda: other_thread.append(store.step_client().connection))
    thread.start()
    thread.join()
    assert other_thread[0] is not store.step_client().connection
