"""The slot's views answered before Flask (webapp/direct.py): the same responses as Flask's views, and Flask's for the
rest."""

import re
from pathlib import Path

import pytest
import redis as redis_lib

from conftest import serve_rows

BANNER = re.compile(r'<img[^>]*data-banner-id="(\d+)"')
TOKEN = re.compile(r'/click/[^"]+')
BANNERS = list(range(11, 16))
VID = "direct-visitor-0123456789abcdef"


@pytest.fixture
def loaded(app, tmp_path, database_url):
    """Campaign 1 serves banners 11-15 in every quarter (one run: the direct path reads no database)."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a slot view reads no database: one run is enough")
    rows = "".join(f"{b},1\n" for b in BANNERS) + "9,2\n"
    return serve_rows(app, tmp_path / "src", rows)


@pytest.fixture
def flask_calls(loaded, monkeypatch):
    """The requests that reached Flask's own WSGI app (the direct path answered the others)."""
    direct, calls = loaded.extensions["direct"], []
    flask_app = direct.wsgi_app

    def counting(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return flask_app(environ, start_response)

    monkeypatch.setattr(direct, "wsgi_app", counting)
    return calls


def views(app, count, **headers):
    client = app.test_client(use_cookies=False)
    return [client.get("/campaigns/1", headers={"Cookie": f"bs_vid={VID}", **headers}) for _ in range(count)]


def comparable(response) -> tuple:
    """A view's status, headers and page with what differs from view to view (the click token) taken out."""
    headers = sorted((name, value) for name, value in response.headers.items() if name != "Content-Length")
    return response.status_code, headers, TOKEN.sub("/click/TOKEN", response.get_data(as_text=True))


def test_direct_slot_answers_a_warm_view_without_flask(loaded, flask_calls):
    shown = [int(BANNER.search(r.get_data(as_text=True)).group(1)) for r in views(loaded, 12)]
    assert flask_calls == ["/campaigns/1"]  # the first view rendered the page skeleton; the other eleven came direct
    assert all(a != b for a, b in zip(shown, shown[1:])) and sorted(shown[:5]) == BANNERS == sorted(shown[5:10])


@pytest.mark.parametrize("headers", [{}, {"X-Forwarded-Proto": "https"}], ids=["http", "https-behind-the-proxy"])
def test_direct_slot_response_is_flasks_response_for_the_same_banner(loaded, flask_calls, headers):
    """Each banner's page, headers (cookie attributes included) and status, from both paths, differ in nothing but
    the click token."""
    by_banner = {}
    for direct in (False, True, False):  # Flask first: it renders the skeleton the direct path needs
        loaded.extensions["direct"].enabled = direct
        for response in views(loaded, 10, **headers):
            by_banner.setdefault(direct, {})[BANNER.search(response.get_data(as_text=True)).group(1)] = comparable(response)
    assert sorted(by_banner[True]) == sorted(by_banner[False]) == [str(b) for b in BANNERS]
    assert by_banner[True] == by_banner[False]
    cookie = dict(by_banner[True]["11"][1])["Set-Cookie"]
    assert ("; Secure" in cookie and "Partitioned" in cookie) == bool(headers)


def test_direct_slot_leaves_everything_else_to_flask(loaded, flask_calls):
    client = loaded.test_client(use_cookies=False)
    views(loaded, 2)  # warm: the skeleton is rendered
    flask_calls.clear()
    asked = {"/campaigns/404": 404, "/campaigns/x1": 404, "/campaigns/1/": 404, "/campaigns/" + "9" * 20: 404, "/": 200}
    for path, status in asked.items():
        assert client.get(path).status_code == status, path
    assert client.head("/campaigns/1").status_code == 200
    assert client.post("/campaigns/1").status_code == 405
    assert flask_calls == [*asked, "/campaigns/1", "/campaigns/1"]
    flask_calls.clear()
    # Another campaign's page fills the same skeleton; leading zeros name the same campaign, as in Flask's view.
    assert client.get("/campaigns/2").status_code == 200 and client.get("/campaigns/0001").status_code == 200
    assert flask_calls == []


def test_direct_slot_leaves_a_view_to_flask_when_no_plans_can_be_loaded(app, database_url, monkeypatch):
    """No plans loaded yet and the database away: Flask's view answers (its store-away page), not a bare error."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the database is taken away as a SQLite file")
    from models import db

    if not db.is_closed():
        db.close()
    path = Path(database_url.removeprefix("sqlite:///"))
    path.unlink()
    path.mkdir()  # a folder where the database file was: SQLite cannot open it
    direct, calls = app.extensions["direct"], []
    flask_app = direct.wsgi_app
    monkeypatch.setattr(direct, "wsgi_app", lambda environ, start: calls.append(environ["PATH_INFO"]) or flask_app(environ, start))
    response = app.test_client().get("/campaigns/1")
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert calls == ["/campaigns/1"]


def test_direct_slot_answers_an_error_of_the_step_as_flasks_view_does(settings_overrides, private_redis, tmp_path,
                                                                       database_url):
    """A session Redis that refuses scripts (its ACL): both paths answer Flask's 500 page, and log the error."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a slot view reads no database: one run is enough")
    from webapp import create_app

    app = serve_rows(create_app({**settings_overrides, "session_redis_url": private_redis.url}), tmp_path / "src",
                     "11,1\n12,1\n")
    views(app, 2)  # the skeleton is rendered, the rotation kept
    redis_lib.Redis.from_url(private_redis.url).execute_command("ACL", "SETUSER", "default", "-evalsha", "-eval")
    answers = {}
    for direct in (True, False):
        app.extensions["direct"].enabled = direct
        [answers[direct]] = views(app, 1)
    assert answers[True].status_code == answers[False].status_code == 500
    assert comparable(answers[True]) == comparable(answers[False])
    assert Path(settings_overrides["log_file"]).read_text().count("Exception on /campaigns/1 [GET]") == 2



# --- the embeds --------------------------------------------------------------------------------------------------

EMBED_VID = "direct-embed-visitor-0123456789ab"
TOKENS = re.compile(r'(/click/|/api/impressions/|/api/viewable/)[^"]+')
IMPRESSION_ID = re.compile(r'"impression_id":"[0-9a-f]+"')
SHOWN = re.compile(r'data-banner-id="(\d+)"|"banner_id":(\d+)')
EMBED_VIEWS = {"page": "/campaigns/1", "frame": "/embed/1?target=blank",
               "decision": f"/api/decision?c=1&c=404&vid={EMBED_VID}"}


def normalized(response) -> tuple:
    """A response with what differs from view to view (tokens, impression ids) taken out."""
    headers = sorted((name, value) for name, value in response.headers.items() if name != "Content-Length")
    body = IMPRESSION_ID.sub('"impression_id":"I"', TOKENS.sub(r"\1T", response.get_data(as_text=True)))
    return response.status_code, headers, body


@pytest.mark.parametrize("restricted", [False, True], ids=["any-site", "allowed-sites"])
@pytest.mark.parametrize("kind", EMBED_VIEWS)
def test_direct_embed_views_answer_what_flasks_views_answer(settings_overrides, tmp_path, monkeypatch, kind, restricted,
                                                             database_url):
    """The page, the frame and the decision, over HTTPS behind the proxy, from a publisher's page: for each banner
    shown, the same status, headers (CORS, frame-ancestors, cookie) and body from both paths; warm views never reach
    Flask."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a slot view reads no database: one run is enough")
    from test_embed_api import make_app

    app = make_app(settings_overrides, tmp_path, **({"embed_allowed_sites": "https://allowed.example"} if restricted else {}))
    app.config["TESTING"] = False
    direct, calls = app.extensions["direct"], []
    flask_app = direct.wsgi_app
    monkeypatch.setattr(direct, "wsgi_app", lambda environ, start: calls.append(environ["PATH_INFO"]) or flask_app(environ, start))
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"bs_vid={EMBED_VID}", "X-Forwarded-Proto": "https", "Origin": "https://allowed.example",
               "Referer": "https://allowed.example/article"}
    by_banner = {}
    for enabled in (False, True, False):  # Flask first: it renders what the direct path needs
        direct.enabled, calls[:] = enabled, []
        for _ in range(12):
            response = client.get(EMBED_VIEWS[kind], headers=headers)
            shown = next(g for g in SHOWN.search(response.get_data(as_text=True)).groups() if g)
            by_banner.setdefault(enabled, {})[shown] = normalized(response)
        if enabled:
            assert calls == []
    assert sorted(by_banner[True]) == sorted(by_banner[False]) == [str(b) for b in range(11, 16)]
    assert by_banner[True] == by_banner[False]


@pytest.mark.parametrize("path", ["/embed/1", "/embed/404", "/embed/x", "/api/decision?c=1", "/api/decision",
                                  "/api/decision/"])
def test_direct_embed_refusals_and_404s_are_flasks(settings_overrides, tmp_path, monkeypatch, path, database_url):
    """A site off the list, an unknown campaign, a decision asking nothing: Flask answers, as it did before."""
    if not database_url.startswith("sqlite"):
        pytest.skip("a slot view reads no database: one run is enough")
    from test_embed_api import make_app

    app = make_app(settings_overrides, tmp_path, embed_allowed_sites="https://allowed.example")
    direct, calls = app.extensions["direct"], []
    flask_app = direct.wsgi_app
    monkeypatch.setattr(direct, "wsgi_app", lambda environ, start: calls.append(environ["PATH_INFO"]) or flask_app(environ, start))
    client = app.test_client(use_cookies=False)
    client.get("/embed/1", headers={"Referer": "https://allowed.example/a"})  # warm: its document is rendered
    calls.clear()
    response = client.get(path, headers={"Origin": "https://elsewhere.example", "Referer": "https://elsewhere.example/a"})
    assert response.status_code in (400, 403, 404) and calls == [path.split("?")[0]]
