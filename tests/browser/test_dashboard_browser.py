"""The dashboard in a real Chromium: sign-in, the htmx stats table and URL, the ingest button per role."""

import re

import pytest

from browser.conftest import sign_in

pytestmark = pytest.mark.browser


def visible_rows(page):
    return [(int(c), int(q)) for c, q in page.eval_on_selector_all(
        "#campaign-table tbody tr[data-campaign]", "rows => rows.map(r => [r.dataset.campaign, r.dataset.quarter])")]


def wait_for_htmx(page, selector):
    """Wait until htmx has processed the (swapped-in) element: before that, a click is a plain page load."""
    page.wait_for_function(
        "s => { const e = document.querySelector(s); return !!(e && e['htmx-internal-data'] && e['htmx-internal-data'].initHash); }",
        arg=selector,
    )


def test_stats_table_sorts_and_filters_in_place_and_pushes_the_url(page, live_server, loaded):
    from models import CampaignStat

    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/campaigns")
    page.evaluate("window.notReloaded = true")  # survives htmx swaps, not a full page load

    page.click("th a[data-sort=revenue]")  # a metric's first sort: highest first
    page.wait_for_url(re.compile(r"/admin/campaigns\?sort=revenue&dir=desc$"))
    top = sorted(CampaignStat.select(), key=lambda r: (-r.revenue, r.campaign_id, r.quarter))[0]
    page.wait_for_function(f"document.querySelector('#campaign-table tbody tr').dataset.campaign == '{top.campaign_id}'")
    assert visible_rows(page)[0] == (top.campaign_id, top.quarter)

    wait_for_htmx(page, "#stats-filters")
    page.select_option("select[name=slot]", "2")
    page.wait_for_url(re.compile(r"slot=2"))
    assert "sort=revenue" in page.url and "dir=desc" in page.url
    page.wait_for_function("[...document.querySelectorAll('#campaign-table tbody tr[data-quarter]')].every(r => r.dataset.quarter == '2')")
    revenues = [r.revenue for r in CampaignStat.select().where(CampaignStat.quarter == 2)]
    assert {q for _, q in visible_rows(page)} == {2} and len(visible_rows(page)) == min(20, len(revenues))

    wait_for_htmx(page, "a[rel=next]")
    page.click("a[rel=next]")
    page.wait_for_url(re.compile(r"page=2"))
    assert page.evaluate("window.notReloaded") is True
    page.go_back()
    page.wait_for_url(re.compile(r"slot=2&sort=revenue&dir=desc$"))

    # A shared link opens the same view as a full page.
    page.goto(page.url)
    assert {q for _, q in visible_rows(page)} == {2}
    assert page.input_value("select[name=slot]") == "2"
    page.screenshot(path="/tmp/admin-campaigns.png", full_page=False)


def test_admin_runs_an_ingest_and_watches_it_go_from_queued_to_succeeded(page, live_server, start_worker):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/ingests")
    page.evaluate("window.notReloaded = true")
    page.click("text=Run ingest now")
    queued = page.locator("#ingest-rows article.run").first
    queued.wait_for()
    assert queued.get_attribute("data-status") == "queued"
    assert page.locator("#ingest-notice .notice-info").inner_text().endswith("is queued.")
    assert page.get_attribute("#ingest-rows", "hx-trigger") == "every 2s"

    start_worker()
    page.wait_for_selector("#ingest-rows article.run[data-status^=succeeded]", timeout=90000)
    assert page.locator("#ingest-rows article.run").first.locator(".badge").inner_text().startswith("succeeded")
    assert page.get_attribute("#ingest-rows", "hx-trigger") == "every 20s"  # back to the slow poll
    assert page.locator("#run-ingest-button").is_enabled()
    assert "succeeded" in page.inner_text("#ingest-notice")  # "is queued" replaced when the run ended
    assert page.evaluate("window.notReloaded") is True  # the rows updated in place


def test_admin_run_button_is_disabled_with_progress_while_a_run_is_queued(page, live_server):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/ingests")
    page.click("text=Run ingest now")
    page.wait_for_selector("#ingest-rows article.run[data-status=queued]")
    assert page.locator("#run-ingest-button").is_disabled()
    assert page.locator("#ingest-control progress").count() == 1
    page.wait_for_timeout(2500)  # a poll of the rows in between leaves the message alone
    assert page.inner_text("#ingest-notice").endswith("is queued.")
    assert page.locator("#ingest-rows article.run").count() == 1


def test_manager_finds_no_trigger_button_and_is_refused_when_posting(page, live_server):
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/ingests")
    assert page.locator("text=Run ingest now").count() == 0
    assert page.locator("form.run-ingest").count() == 0
    status = page.evaluate("""async () => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const response = await fetch('/admin/ingests', {method: 'POST', headers: {'X-CSRFToken': token, 'HX-Request': 'true'}});
        return response.status;
    }""")
    assert status == 403
