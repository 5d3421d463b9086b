"""The dashboard's live panel and export history, over HTTP with a real Redis."""

import re
from datetime import timedelta

import pytest

from jobs import runtime
from test_auth import login, users  # noqa: F401  (users is a fixture)
from test_events import NOW, add_events, serving  # noqa: F401  (serving is a fixture)
from live.events import click_event, impression_event


@pytest.fixture
def admin(serving, users):  # noqa: F811
    client = serving.test_client()
    login(client, "ada")
    return client


def panel_numbers(html):
    rows = re.findall(r'<tr data-campaign="(\d+)">.*?<td class="num">([\d,]+)</td><td class="num">([\d,]+)</td><td class="num">([^<]+)</td>', html, re.S)
    return {int(c): (int(i.replace(",", "")), int(k.replace(",", "")), ctr) for c, i, k, ctr in rows}


def test_live_panel_shows_last_hour_per_campaign_with_ctr(serving, admin):
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, f"i{i}") for i in range(8)]
               + [click_event(NOW, 2, 7, 101, "v", "i1", 5), click_event(NOW, 2, 7, 101, "v", "i2", 6)]
               + [impression_event(NOW - timedelta(minutes=90), 2, 8, 101, "v", 1, "old")])
    html = admin.get("/admin/live/").get_data(as_text=True)
    assert 'id="live-panel"' in html and 'hx-trigger="every 5s"' in html
    assert panel_numbers(html) == {7: (8, 2, "25.00%")}
    assert "Events waiting in the stream: <strong class=\"waiting\">11</strong>" in html


def test_live_panel_counts_served_views_and_is_on_the_overview(serving, admin):
    visitor = serving.test_client()
    for _ in range(3):
        visitor.get("/campaigns/1")
    overview = admin.get("/admin/").get_data(as_text=True)
    assert 'id="live-panel"' in overview and panel_numbers(overview) == {1: (3, 0, "0.00%")}


def test_live_panel_waiting_drops_to_zero_after_an_export_and_shows_it(serving, admin, tmp_path):
    from dataclasses import replace

    from live.export import export_events

    runtime.context(replace(runtime.context().settings, live_root=str(tmp_path / "live-root")))
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, "a")])
    with serving.app_context():
        export_events()
    html = admin.get("/admin/live/").get_data(as_text=True)
    assert '<strong class="waiting">0</strong>' in html and "last export #1" in html
    history = admin.get("/admin/ingests").get_data(as_text=True)
    assert 'id="export-rows"' in history and "live/2026-11-27/10/2" in history


def test_live_panel_needs_a_signed_in_user(serving):
    response = serving.test_client().get("/admin/live/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_live_panel_says_when_events_are_off(serving, admin):
    from dataclasses import replace

    serving.extensions["settings"] = replace(serving.extensions["settings"], events_enabled=False)
    html = admin.get("/admin/live/").get_data(as_text=True)
    assert "Recording of views and clicks is switched off" in html
    assert "<code>EVENTS_ENABLED=0</code>" in html  # an admin is told which setting


def test_live_panel_tells_a_manager_in_plain_words_that_recording_is_off(serving, users):  # noqa: F811
    from dataclasses import replace

    serving.extensions["settings"] = replace(serving.extensions["settings"], events_enabled=False)
    client = serving.test_client()
    login(client, "mel")
    html = client.get("/admin/live/").get_data(as_text=True)
    assert "Recording of views and clicks is switched off in the settings of this deployment: nothing is counted." in html
    assert "EVENTS_ENABLED" not in html


def test_live_panel_is_a_fragment_for_htmx_and_a_page_of_its_own_otherwise(serving, admin):
    add_events([impression_event(NOW, 2, 7, 101, "v", 1, "a")])
    fragment = admin.get("/admin/live/", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert html.lstrip().startswith('<section id="live-panel"') and "<html" not in html
    assert 'hx-get="/admin/live/"' in html and panel_numbers(html) == {7: (1, 0, "0.00%")}
    page = admin.get("/admin/live/")
    full = page.get_data(as_text=True)
    assert "<html" in full and "htmx.min.js" in full and full.count('id="live-panel"') == 1
    assert panel_numbers(full) == {7: (1, 0, "0.00%")}
    assert "HX-Request" in fragment.headers["Vary"] and "HX-Request" in page.headers["Vary"]
