"""Sessions and errors on the dashboard: expired htmx sessions, 403/404 in the layout, sign-in and -out."""

from urllib.parse import parse_qs, urlsplit

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_auth import PASSWORDS, csrf_of, login, users  # noqa: F401  (users is a fixture)


def next_of(location):
    return parse_qs(urlsplit(location).query).get("next", [None])[0]


@pytest.mark.parametrize("fragment", ["/admin/live/", "/admin/ingests/rows"])
def test_login_required_sends_htmx_back_to_the_page_the_user_was_on(client, fragment):
    response = client.get(fragment, headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/admin/campaigns?quarter=2&sort=revenue"})
    assert response.status_code == 401
    assert next_of(response.headers["HX-Redirect"]) == "/admin/campaigns?quarter=2&sort=revenue"


def test_login_required_sends_an_htmx_stats_view_on_to_that_view(client):
    """The stats table's htmx URL is also its full page: after signing in, the sort or filter clicked applies."""
    response = client.get("/admin/campaigns?quarter=2", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/admin/campaigns?quarter=2&sort=revenue"})
    assert response.status_code == 401
    assert next_of(response.headers["HX-Redirect"]) == "/admin/campaigns?quarter=2"


@pytest.mark.parametrize("current", [None, "http://evil.example/admin/", "not a url", "http://localhost/login"])
def test_login_required_never_sends_htmx_to_a_fragment_or_another_host(client, current):
    headers = {"HX-Request": "true", **({"HX-Current-URL": current} if current else {})}
    response = client.get("/admin/live/", headers=headers)
    assert response.status_code == 401
    assert next_of(response.headers["HX-Redirect"]) is None


def test_login_after_expiry_lands_on_the_page_not_the_fragment(client, users):  # noqa: F811
    redirect = client.get("/admin/live/", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/admin/ingests"}).headers["HX-Redirect"]
    token = csrf_of(client, redirect)
    response = client.post(redirect, data={"username": "ada", "password": PASSWORDS["ada"], "csrf_token": token})
    assert response.location == "/admin/ingests"


@pytest.mark.parametrize("path, message", [
    ("/admin/no-such-page", "There is no such page"),
    ("/admin/campaigns/9999", "There is no campaign 9999."),
    ("/admin/live/nothing-here", "There is no such page"),
])
def test_not_found_inside_admin_renders_in_the_dashboard_layout(admin, loaded, path, message):  # noqa: F811
    response = admin.get(path)
    text = response.get_data(as_text=True)
    assert response.status_code == 404
    assert 'class="dash-header"' in text and message in text
    assert 'href="/admin/"' in text and "Back to the overview" in text


def test_not_found_outside_admin_keeps_the_public_page(admin):  # noqa: F811
    text = admin.get("/no-such-page").get_data(as_text=True)
    assert "dash-header" not in text and "Not found" in text


def test_not_found_inside_admin_for_a_visitor_shows_no_dashboard(client):
    response = client.get("/admin/no-such-page")
    assert response.status_code == 404 and "dash-header" not in response.get_data(as_text=True)


def test_manager_posting_an_admin_action_gets_a_403_page_in_the_layout(manager, loaded):  # noqa: F811
    response = manager.post("/admin/ingests", data={"csrf_token": csrf_of(manager, "/admin/")})
    text = response.get_data(as_text=True)
    assert response.status_code == 403
    assert 'class="dash-header"' in text and "Only admins may do this." in text and "Back to the overview" in text


def test_favicon_is_served_and_linked_from_every_page(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert b"<svg" in response.data
    assert 'rel="icon"' in client.get("/login").get_data(as_text=True)


def test_login_wrong_password_keeps_the_username(client, users):  # noqa: F811
    response = login(client, "ada", password="wrong-password")
    text = response.get_data(as_text=True)
    assert response.status_code == 401
    assert 'name="username" value="ada"' in text
    assert 'type="password"' in text and "ada-secret" not in text


def test_logout_says_you_are_signed_out(client, users):  # noqa: F811
    login(client, "ada")
    response = client.post("/logout", data={"csrf_token": csrf_of(client, "/admin/")}, follow_redirects=True)
    text = html(response)
    assert "You are signed out." in text and 'role="status"' in text
    assert "You are signed out." not in client.get("/login").get_data(as_text=True)
