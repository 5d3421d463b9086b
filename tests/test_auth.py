"""Sign-in: passwords, session renewal, CSRF, throttling, roles, and the user commands."""

import functools
import logging
import re

import pytest

PASSWORDS = {"ada": "ada-secret-1", "mel": "mel-secret-1"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@functools.cache
def fixture_hash(password):
    """A password hash for the fixtures' users, made once per run and cheap to check: the same scrypt as
    create_user's, with a smaller work factor (a hash names its parameters, and logins check it as they check any).
    Hundreds of tests sign in; at the real work factor each hash and each check took 0.1 s."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(password, method="scrypt:1024:8:1")


@pytest.fixture
def users(app):
    """An admin `ada` and a manager `mel` (create_user itself is tested on its own)."""
    from models import User

    with app.app_context():
        for name, role in (("ada", "admin"), ("mel", "manager")):
            User.create(username=name, password_hash=fixture_hash(PASSWORDS[name]), role=role)
    return PASSWORDS


def csrf_of(client, path="/login"):
    """The CSRF token a page of this session carries."""
    match = CSRF.search(client.get(path).get_data(as_text=True))
    assert match, f"no csrf field on {path}"
    return match.group(1)


def login(client, username, password=None, headers=None, environ_base=None, **extra):
    """Sign in through the form, as a browser would; returns the POST's response."""
    token = csrf_of(client)
    data = {"username": username, "password": password or PASSWORDS[username], "csrf_token": token, **extra}
    return client.post("/login", data=data, headers=headers, environ_base=environ_base or {})


def session_cookie(client):
    cookie = client.get_cookie("bs_session")
    return cookie.value if cookie else None


def test_login_with_right_password_goes_to_overview(client, users):
    response = login(client, "ada")
    assert response.status_code == 302 and response.location == "/admin/"
    assert "Overview" in client.get("/admin/").get_data(as_text=True)


def test_login_page_sends_a_signed_in_user_on(client, users):
    login(client, "mel")
    assert client.get("/login").location == "/admin/"
    assert client.get("/login?next=/admin/ingests").location == "/admin/ingests"


def test_login_wrong_password_is_refused_and_logged(client, users):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("bannerservice.auth")
    logger.addHandler(handler)
    try:
        response = login(client, "ada", "wrong-password")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)
    assert any("login failed user=ada" in r.getMessage() for r in records)
    assert client.get("/admin/").status_code == 302


def test_login_unknown_user_is_refused_like_a_wrong_password(client, users):
    response = login(client, "nobody", "whatever-1")
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)


def test_login_renews_session_id_and_drops_the_old_one(app, client, users, redis_server, settings_overrides):
    client.get("/login")
    before = session_cookie(client)
    assert before
    key_prefix = settings_overrides["redis_prefix"] + "session:"
    assert redis_server.exists(key_prefix + before)
    login(client, "ada")
    after = session_cookie(client)
    assert after and after != before
    assert not redis_server.exists(key_prefix + before)
    assert redis_server.exists(key_prefix + after)


def test_login_session_cookie_is_httponly_and_samesite(client, users):
    client.get("/login")
    response = login(client, "ada")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header


def test_login_failures_slow_one_name_from_one_address_only(app, users, settings_overrides):
    from webapp import auth

    attacker = app.test_client()
    statuses = [login(attacker, "ada", "wrong-password").status_code for _ in range(auth.FREE_ATTEMPTS + 2)]
    assert statuses[:auth.FREE_ATTEMPTS] == [401] * auth.FREE_ATTEMPTS and statuses[-1] == 429
    slowed = login(attacker, "ada")  # the right password, but before the delay has passed
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in slowed.get_data(as_text=True)
    # The same name from another address is not slowed (no account lock), nor another name from this one.
    elsewhere = app.test_client()
    assert login(elsewhere, "ada", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 302
    assert login(attacker, "mel").status_code == 302


def test_login_failure_delays_grow_and_expire_with_the_window(app, users, redis_server, settings_overrides):
    from webapp import auth

    client = app.test_client()
    for _ in range(auth.FREE_ATTEMPTS):
        login(client, "ada", "wrong-password")
    key = next(redis_server.scan_iter(settings_overrides["redis_prefix"] + "login-failures:*"))
    assert 0 < redis_server.ttl(key) <= auth.FAILURE_WINDOW_SECONDS
    first_delay = int(login(client, "ada").headers["Retry-After"])
    redis_server.hset(key, "next", 0)  # the delay has passed
    assert login(client, "ada", "wrong-password").status_code == 401
    assert int(login(client, "ada").headers["Retry-After"]) > first_delay
    redis_server.delete(key)  # the window has passed
    assert login(client, "ada").status_code == 302


def test_login_parallel_guesses_get_no_extra_tries(app, users, settings_overrides):
    from concurrent.futures import ThreadPoolExecutor

    from test_outages import Served
    from test_login_proxy import Browser
    from webapp import auth

    served = Served(app)
    try:
        browsers = [Browser(served.port, "127.0.0.1") for _ in range(40)]
        for browser in browsers:
            browser.request("GET", "/login")
        with ThreadPoolExecutor(40) as pool:
            statuses = list(pool.map(lambda b: b.login("ada", "guess-guess")[0], browsers))
    finally:
        served.close()
    assert statuses.count(401) == auth.FREE_ATTEMPTS and statuses.count(429) == 40 - auth.FREE_ATTEMPTS


def test_login_refuses_unknown_and_known_names_in_the_same_time(app, client):
    import time

    from webapp.auth import create_user

    with app.app_context():
        create_user("ada", PASSWORDS["ada"], "admin")  # at create_user's own work factor, as every real user

    def took(name):
        started = time.perf_counter()
        assert login(client, name, "wrong-password").status_code == 401
        return time.perf_counter() - started

    login(client, "warm-up", "wrong-password")
    known = min(took("ada") for _ in range(2))
    unknown = min(took(f"nobody-{n}") for n in range(2))
    assert unknown > known / 3, (known, unknown)  # a hash check either way; without it: 20x faster


@pytest.mark.parametrize("field", ["username", "password", "next"])
@pytest.mark.parametrize("bad", ["ada\x00", "\udcff", b"ad\xffa"])
def test_login_bad_bytes_in_a_field_are_a_400(client, users, field, bad):
    from urllib.parse import quote_from_bytes

    token = csrf_of(client)
    values = {"username": "ada", "password": "ada-secret-1", "csrf_token": token}
    raw = bad if isinstance(bad, bytes) else bad.encode("utf-8", "surrogatepass")
    body = "&".join(f"{k}={quote_from_bytes(v.encode())}" for k, v in values.items() if k != field)
    body += f"&{field}={quote_from_bytes(raw)}"
    response = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400


def test_session_cookie_is_secure_when_a_trusted_proxy_says_https(settings_overrides, users):
    from webapp import create_app

    trusting = create_app({**settings_overrides, "trusted_proxy_count": 1}).test_client()
    assert "Secure" in login(trusting, "ada", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    untrusting = create_app({**settings_overrides, "trusted_proxy_count": 0}).test_client()
    assert "Secure" not in login(untrusting, "ada", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    forced = create_app({**settings_overrides, "session_cookie_secure": True}).test_client()
    assert "Secure" in login(forced, "ada").headers["Set-Cookie"]


def test_dashboard_and_login_are_not_frameable_but_the_ad_slot_is(client, users):
    login(client, "ada")
    for path in ("/login", "/admin/"):
        headers = client.get(path).headers
        assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    slot = client.get("/campaigns/1")
    assert "X-Frame-Options" not in slot.headers and slot.headers["Referrer-Policy"]


def test_dashboard_turns_off_htmx_inline_indicator_style(client, users):
    login(client, "ada")
    page = client.get("/admin/").get_data(as_text=True)
    assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles":false}\'>' in page


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_login_without_the_csrf_token_is_rejected(client, users, token):
    client.get("/login")
    data = {"username": "ada", "password": PASSWORDS["ada"]}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_csrf_token_is_accepted_from_the_htmx_header(client, users):
    token = csrf_of(client)
    response = client.post("/login", data={"username": "mel", "password": PASSWORDS["mel"]},
                           headers={"X-CSRFToken": token})
    assert response.status_code == 302


def test_csrf_token_of_another_session_is_rejected(app, users):
    first, second = app.test_client(), app.test_client()
    token = csrf_of(first)
    second.get("/login")
    response = second.post("/login", data={"username": "ada", "password": PASSWORDS["ada"], "csrf_token": token})
    assert response.status_code == 400


def test_logout_needs_csrf_and_ends_the_session(client, users):
    login(client, "ada")
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_of(client, "/admin/")})
    assert response.status_code == 302 and response.location == "/login?signed_out=1"
    assert client.get("/admin/").status_code == 302


def test_dashboard_sends_anonymous_visitors_to_login_with_next(client):
    response = client.get("/admin/campaigns?quarter=2")
    assert response.status_code == 302
    assert response.location == "/login?next=/admin/campaigns?quarter%3D2"


def test_dashboard_answers_anonymous_htmx_with_hx_redirect(client):
    response = client.get("/admin/ingests/rows",
                          headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/admin/ingests"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/admin/ingests&reason=expired"


def test_dashboard_htmx_sort_without_a_session_signs_in_back_to_that_sort(client):
    response = client.get("/admin/campaigns?sort=revenue&dir=desc", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/admin/campaigns"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/admin/campaigns?sort%3Drevenue%26dir%3Ddesc&reason=expired"
    assert "Your session ended" in client.get(response.headers["HX-Redirect"]).get_data(as_text=True)
    assert "Your session ended" not in client.get("/login?next=/admin/").get_data(as_text=True)


def test_login_follows_next_on_this_site_only(client, users):
    assert login(client, "ada", next="/admin/duplicates").location == "/admin/duplicates"
    other = client.application.test_client()
    assert login(other, "ada", next="//evil.example/x").location == "/admin/"


def test_users_create_reads_the_password_from_the_environment(app, runner):
    from werkzeug.security import check_password_hash

    from models import User

    result = runner.invoke(args=["users", "create", "zoe", "--role", "manager"],
                           env={"BANNERSERVICE_PASSWORD": "zoe-secret-1"})
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = User.get(User.username == "zoe")
    assert user.role == "manager" and user.password_hash != "zoe-secret-1"
    assert check_password_hash(user.password_hash, "zoe-secret-1")


def test_users_create_prompts_for_the_password_twice(app, runner):
    result = runner.invoke(args=["users", "create", "max", "--role", "admin"], input="max-secret-1\nmax-secret-1\n",
                           env={"BANNERSERVICE_PASSWORD": None})
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert login(client, "max", "max-secret-1").status_code == 302


@pytest.mark.parametrize("args, password, message", [
    (["users", "create", "ada", "--role", "admin"], "long-enough-1", "already exists"),
    (["users", "create", "short", "--role", "admin"], "short", "at least 8"),
])
def test_users_create_refuses_bad_input(runner, users, args, password, message):
    result = runner.invoke(args=args, env={"BANNERSERVICE_PASSWORD": password})
    assert result.exit_code != 0 and message in result.output


def test_users_create_refuses_an_unknown_role(runner):
    result = runner.invoke(args=["users", "create", "eve", "--role", "root"], env={"BANNERSERVICE_PASSWORD": "x" * 10})
    assert result.exit_code != 0 and "root" in result.output


def test_bootstrap_admin_prints_a_working_password_once(app, runner):
    first = runner.invoke(args=["bootstrap-admin"])
    assert first.exit_code == 0, first.output
    match = re.search(r"\| Dashboard admin created: user 'admin', password (\S+) ", first.output)
    assert match, first.output
    assert first.output.count("+---") == 2  # boxed, so it stands out in the quick start's output
    second = runner.invoke(args=["bootstrap-admin"])
    assert second.exit_code == 0 and second.output == ""
    client = app.test_client()
    assert login(client, "admin", match.group(1)).status_code == 302


def test_bootstrap_admin_does_nothing_when_an_admin_exists(runner, users):
    from models import User

    result = runner.invoke(args=["bootstrap-admin"])
    assert result.exit_code == 0 and result.output == ""
    assert User.get_or_none(User.username == "admin") is None


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0a/evil.example", "/%0d%0a/evil.example", "//evil.example"])
def test_login_next_with_control_characters_never_leaves_the_site(client, users, target):
    assert client.get(f"/login?next={target}").status_code == 200
    token = csrf_of(client, f"/login?next={target}")
    response = client.post(f"/login?next={target}", data={"username": "ada", "password": PASSWORDS["ada"], "csrf_token": token})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert not location.startswith("//") and "evil.example" not in location
    # Signed in already: the login page itself sends the user on, and still not off-site.
    again = client.get(f"/login?next={target}")
    assert again.status_code == 302 and "evil.example" not in again.headers["Location"]


def test_csrf_token_with_non_ascii_text_is_refused_not_a_500(client, users):
    login(client, "ada")
    assert client.post("/logout", data={"csrf_token": "é"}).status_code == 400
    assert client.post("/logout", headers={"X-CSRFToken": "é"}).status_code == 400
