"""Chromium: an expired session on a self-refreshing page, and the confirmation of a change of ingest source."""

import re

import pytest

from browser.conftest import sign_in
from browser.test_dashboard_browser import wait_for_htmx
from test_auth import PASSWORDS

pytestmark = pytest.mark.browser


def test_expired_session_on_a_polling_page_signs_in_back_to_that_page(page, live_server, loaded, redis_server,
                                                                       settings_overrides):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/")
    page.wait_for_selector("#live-panel")
    for key in redis_server.scan_iter(settings_overrides["redis_prefix"] + "session:*"):
        redis_server.delete(key)  # what the session's TTL does after SESSION_LIFETIME_MINUTES idle
    page.wait_for_url(re.compile(r"/login\?next="), timeout=20000)  # the live panel's next poll
    assert page.url.endswith("/login?next=/admin/&reason=expired")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", PASSWORDS["ada"])
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/admin/")
    assert page.locator("header.dash-header").count() == 1  # the whole page, not a bare fragment


def test_ingest_of_another_source_than_the_served_one_needs_confirmation(page, live_server, loaded, tmp_path):
    from models import IngestRun

    IngestRun.update(source=str(tmp_path / "real-data")).execute()
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/ingests")
    assert "real-data" in page.inner_text("#ingest-control .notice-warning")
    page.click("#run-ingest-button")
    page.wait_for_timeout(500)
    assert IngestRun.select().count() == 1  # the unticked box stopped the form in the browser
    assert page.evaluate("document.activeElement.id") == "replace-source"
    page.keyboard.press("Space")
    page.click("#run-ingest-button")
    page.wait_for_selector("#ingest-rows article.run[data-status=queued]")
    assert IngestRun.select().count() == 2
    assert page.locator("#run-ingest-button").is_disabled()


def test_polls_pause_while_the_tab_is_hidden_and_refresh_when_it_returns(page, live_server, loaded):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/")
    page.wait_for_selector("#live-panel")
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/admin/live/" in request.url else None)
    page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})")
    page.wait_for_timeout(6000)  # more than one 5 s tick of the live panel
    assert polls == []
    page.evaluate("""Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                     document.dispatchEvent(new Event('visibilitychange'))""")
    page.wait_for_timeout(1000)
    assert len(polls) == 1


def test_expired_session_during_a_sort_says_why_and_sorts_after_sign_in(page, live_server, loaded, redis_server,
                                                                          settings_overrides):
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/campaigns?quarter=2")
    wait_for_htmx(page, "#sort-revenue")
    for key in redis_server.scan_iter(settings_overrides["redis_prefix"] + "session:*"):
        redis_server.delete(key)
    page.click("#sort-revenue")
    page.wait_for_url(re.compile(r"/login\?"))
    assert "Your session ended" in page.inner_text(".login-form .notice")
    page.fill("input[name=username]", "mel")
    page.fill("input[name=password]", PASSWORDS["mel"])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/admin/campaigns\?slot=2&sort=revenue&dir=desc$"))
    assert page.inner_text("#table-status").startswith("Sorted by revenue, descending")
    assert page.input_value("#filter-slot") == "2"
