"""Chromium: what the dashboard shows after a change is the new state at once — the stats links follow the
filter, a finished ingest lists its final files, an ingest run from the keyboard says how it went, a column's
explanation does not cover the numbers just sorted."""

import re

import pytest

from browser.conftest import sign_in
from browser.test_dashboard_browser import wait_for_htmx
from browser.test_dashboard_keyboard_browser import wait_until

pytestmark = pytest.mark.browser


def caption_rows(page) -> int:
    return int(re.search(r"([\d,]+) rows", page.inner_text("#stats-caption")).group(1).replace(",", ""))


def test_stats_csv_link_and_clear_filters_follow_the_filter_at_once(page, live_server, loaded):
    from models import CampaignStat

    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/campaigns")
    assert page.locator("#filter-clear").count() == 0
    wait_for_htmx(page, "#stats-filters")
    page.select_option("#filter-slot", "3")
    page.wait_for_url(re.compile(r"slot=3"))
    page.fill("#filter-campaign", "1")
    page.wait_for_url(re.compile(r"slot=3&campaign=1$"))
    wait_until(page, "document.querySelector('#table-status').textContent.includes('campaigns starting with 1')")

    expected = [r for r in CampaignStat.select().where(CampaignStat.quarter == 3) if str(r.campaign_id).startswith("1")]
    assert caption_rows(page) == len(expected) < CampaignStat.select().count()
    link = page.locator("#download-csv")
    assert link.inner_text() == f"Download CSV (all {len(expected)} rows of this view)"
    csv_text = page.request.get(live_server + link.get_attribute("href")).text()
    assert len(csv_text.strip().splitlines()) == 1 + len(expected) + 1  # header, rows, totals
    assert page.locator("#filter-clear").is_visible()

    page.fill("#filter-campaign", "99999")  # no campaign id starts with it
    page.wait_for_url(re.compile(r"campaign=99999$"))
    wait_until(page, "document.querySelector('#stats-caption').textContent.includes(' 0 rows')")
    assert page.locator("#download-csv").count() == 0
    assert "0 rows" not in page.inner_text("#stats-links")

    wait_for_htmx(page, "#filter-clear")
    page.click("#filter-clear")
    page.wait_for_url(re.compile(r"/admin/campaigns$"))
    wait_until(page, "document.querySelector('#filter-clear') === null")
    assert page.input_value("#filter-campaign") == "" and page.input_value("#filter-slot") == ""
    assert caption_rows(page) == CampaignStat.select().count()
    assert page.locator("#download-csv").inner_text() == f"Download CSV (all {caption_rows(page)} rows of this view)"


def test_ingest_box_of_a_run_that_ends_lists_its_final_files(page, live_server, app):
    """The worker's writes, made here so that the page surely sees the run both loading and done."""
    from jobs import runtime
    from models import IngestFile, IngestRun, utcnow

    ctx = app.extensions["runtime"]
    run = IngestRun.create(trigger="cli", source="/data", status=IngestRun.RUNNING, started_at=utcnow(),
                           progress=0.3, stage="reading")
    runtime.hold_lock(ctx, run.id)  # a live run holds the lock: the page does not settle it as abandoned
    for name in ("impressions.csv", "clicks.csv", "conversions.csv"):
        IngestFile.create(run=run, quarter=1, name=name, rows_read=10, loaded=10)
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/ingests")
    assert page.inner_text(f"#run-{run.id} details > summary") == "3 files"
    page.wait_for_timeout(2500)  # at least one poll of the active run

    for quarter in (2, 3):
        for name in ("impressions.csv", "clicks.csv", "conversions.csv"):
            IngestFile.create(run=run, quarter=quarter, name=name, rows_read=10, loaded=10)
    IngestRun.update(status=IngestRun.SUCCEEDED, finished_at=utcnow(), progress=1.0, stage="done").where(
        IngestRun.id == run.id).execute()
    ctx.redis.delete(ctx.key("ingest:lock"))

    page.wait_for_selector(f"#run-{run.id}[data-status=succeeded]", timeout=10000)
    assert page.inner_text(f"#run-{run.id} details > summary") == "9 files"
    assert page.locator(f"#run-{run.id} details tbody tr").count() == 9


def test_ingest_run_from_the_keyboard_keeps_focus_and_says_how_it_goes(page, live_server, loaded, start_worker):
    from models import IngestRun

    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/ingests")
    wait_for_htmx(page, "form.run-ingest")
    page.focus("#run-ingest-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ingest-rows article.run[data-status=queued]")
    run = IngestRun.select().order_by(IngestRun.id.desc()).get()
    assert page.inner_text("#ingest-notice") == f"Ingest run #{run.id} is queued."
    wait_until(page, "document.activeElement.id === 'ingest-notice'", timeout=3000)  # not <body>, not the disabled button

    # What the worker writes while it loads (set here, so that a poll surely sees the run half done).
    IngestRun.update(status=IngestRun.RUNNING, progress=0.42, stage="slot :15–:29: reading clicks.csv").where(
        IngestRun.id == run.id).execute()
    wait_until(page, "document.querySelector('#ingest-notice').textContent.includes('42%')", timeout=6000)
    assert page.inner_text("#ingest-notice") == f"Ingest run #{run.id} is running: 42% · slot :15–:29: reading clicks.csv."
    IngestRun.update(status=IngestRun.QUEUED, progress=0.0, stage="").where(IngestRun.id == run.id).execute()

    start_worker()
    page.wait_for_selector(f"#run-{run.id}[data-status^=succeeded]", timeout=90000)
    wait_until(page, "document.querySelector('#ingest-notice').textContent.includes('succeeded')", timeout=3000)
    assert re.fullmatch(rf"Ingest run #{run.id} succeeded(?: with rejects)? in [\d.]+ s(?:: see its files below)?\.",
                        page.inner_text("#ingest-notice"))
    assert page.evaluate("document.activeElement.id") == "ingest-notice"
    page.keyboard.press("Tab")  # on from the notice: the next control, not the top of the page
    assert page.evaluate("document.activeElement.closest('#ingest-rows') !== null")


def tip_covers_rows(page, column) -> bool:
    """Whether the column's explanation is shown over any cell of the table's first two rows."""
    return page.evaluate("""column => {
        const tip = document.getElementById('help-' + column).getBoundingClientRect();
        if (!tip.width) return false;
        const cells = [...document.querySelectorAll('#campaign-table tbody tr:nth-child(-n+2) > *')];
        return cells.some(c => { const r = c.getBoundingClientRect();
            return r.left < tip.right && tip.left < r.right && r.top < tip.bottom && tip.top < r.bottom; });
    }""", column)


def test_column_explanation_does_not_cover_the_rows_just_sorted(page, live_server, loaded):
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/campaigns")
    wait_for_htmx(page, "#sort-revenue")
    page.hover("#sort-revenue")
    assert page.locator("#help-revenue").is_visible()  # it explains itself on hover
    page.click("#sort-revenue")
    page.wait_for_url(re.compile(r"sort=revenue"))
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue')")
    page.wait_for_timeout(300)
    assert not tip_covers_rows(page, "revenue")
    page.mouse.move(5, 5)
    page.hover("#sort-revenue")  # pointed at again: explained again
    assert page.locator("#help-revenue").is_visible()

    page.mouse.move(5, 5)
    wait_for_htmx(page, "#sort-revenue")
    page.focus("#sort-revenue")
    page.keyboard.press("Enter")
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue, ')"
                     " && location.search !== '?sort=revenue'")
    page.wait_for_timeout(300)
    assert page.evaluate("document.activeElement.id") == "sort-revenue"
    assert not tip_covers_rows(page, "revenue")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "sort-rpm"
    assert page.locator("#help-rpm").is_visible()  # the next column's explanation shows on focus as before


@pytest.fixture
def wide_page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def test_stats_table_fits_1440_px_and_keeps_campaign_and_slot_in_view(wide_page, live_server, loaded):
    page = wide_page
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/campaigns")
    box = "document.querySelector('#campaign-table .table-scroll')"
    assert page.evaluate(f"{box}.scrollWidth <= {box}.clientWidth")  # every column, no scrolling

    page.goto(live_server + "/admin/campaigns?rule=1")  # three columns more: it scrolls
    assert page.evaluate(f"{box}.scrollWidth > {box}.clientWidth")
    page.evaluate(f"{box}.scrollLeft = {box}.scrollWidth")
    page.wait_for_timeout(100)
    left = page.evaluate(f"{box}.getBoundingClientRect().left")
    first, slot, next_cell = page.evaluate("""[...document.querySelectorAll('#campaign-table tbody tr:first-child > *')]
        .slice(0, 3).map(c => c.getBoundingClientRect()).map(r => [r.left, r.right])""")
    assert first[0] == pytest.approx(left, abs=1) and slot[0] == pytest.approx(first[1], abs=1)  # both still there
    assert next_cell[0] < slot[1]  # the column after them has scrolled under them


@pytest.fixture
def phone(browser, live_server):
    """A page on a 390 px phone, signed in as a manager."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    sign_in(page, live_server, "mel")
    yield page
    context.close()


def test_phone_keeps_summary_markers_and_readable_chart_words(phone, live_server, loaded):
    phone.goto(live_server + "/admin/ingests")
    summary = phone.locator("#ingest-rows details > summary").first
    assert summary.evaluate("s => getComputedStyle(s).display") == "list-item"  # the ▶ marker is drawn
    assert summary.bounding_box()["height"] >= 44
    phone.goto(live_server + "/admin/")
    heights = phone.eval_on_selector_all(".slot-chart text", "ts => ts.map(t => t.getBoundingClientRect().height)")
    assert heights and min(heights) >= 10


def test_phone_stats_table_shows_revenue_and_rpm_without_scrolling(phone, live_server, loaded):
    phone.goto(live_server + "/admin/campaigns")
    box = phone.locator("#campaign-table .table-scroll").bounding_box()
    for column in ("revenue", "rpm"):
        header = phone.locator(f"#sort-{column}").bounding_box()
        assert box["x"] <= header["x"] and header["x"] + header["width"] <= box["x"] + box["width"], column
    first_cells = phone.eval_on_selector_all("#campaign-table tbody tr:first-child > *", "cs => cs.map(c => c.textContent.trim())")
    assert first_cells[2].startswith("$") and first_cells[3].startswith("$")  # revenue, RPM


def test_period_picker_compares_the_last_7_days_and_a_typed_range(page, live_server, loaded):
    from datetime import datetime, timedelta, timezone

    from models import add_live_hours, db

    hour = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    with db.atomic():
        add_live_hours({(4, hour - timedelta(days=1)): [1000, 40, 4, 12.34],
                        (4, hour - timedelta(days=8)): [800, 20, 2, 5.55]})  # the week before
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/")
    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url(re.compile(r"period=7d#trend$"))
    revenue = page.inner_text('.comparison tr[data-metric="revenue"]')
    assert "$12.34" in revenue and "$5.55" in revenue and "+122.3 %" in revenue
    first, last = (hour - timedelta(days=1)).date(), hour.date()
    page.fill("#period-from", first.isoformat())
    page.fill("#period-to", last.isoformat())
    page.get_by_role("button", name="Show these days").click()
    page.wait_for_url(re.compile(rf"period=custom&from={first}&to={last}#trend$"))
    assert "$12.34" in page.inner_text('.comparison tr[data-metric="revenue"]')
    assert page.locator("#trend .previous-line").count() == 2  # both charts draw the period before
    page.goto(page.url)  # the URL alone shows the same view: it can be shared
    assert page.input_value("#period-from") == first.isoformat()


def test_stats_table_live_view_for_the_last_7_days_sorts_by_the_change_from_the_keyboard(page, live_server, loaded):
    from datetime import datetime, timedelta, timezone

    from models import add_live_hours, db

    hour = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    with db.atomic():
        add_live_hours({(4, hour - timedelta(days=1)): [1000, 40, 4, 12.34], (5, hour - timedelta(days=2)): [500, 5, 1, 20.0],
                        (4, hour - timedelta(days=8)): [800, 20, 2, 5.55], (5, hour - timedelta(days=9)): [500, 5, 1, 40.0]})
    sign_in(page, live_server, "mel")
    page.goto(live_server + "/admin/campaigns")
    page.get_by_role("link", name="Live: last 7 days").click()
    page.wait_for_url(re.compile(r"period=7d"))
    assert page.inner_text("#campaign-table tr[data-campaign='4'] td:nth-child(2)") == "$12.34"
    page.focus("#sort-revenue_change")
    page.keyboard.press("Enter")  # a change's first sort is the highest first
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue vs before, descending')")
    assert page.evaluate("document.activeElement.id") == "sort-revenue_change"
    campaigns = page.eval_on_selector_all("#campaign-table tbody tr", "rows => rows.map(r => r.dataset.campaign)")
    assert campaigns[:2] == ["4", "5"]  # +122.3 % before −50.0 %
    assert "period=7d" in page.url and "sort=revenue_change" in page.url
    assert "period=7d" in page.get_attribute("#download-csv", "href")
    page.get_by_role("link", name="Imported hour, per slot").click()
    page.wait_for_selector("#filter-slot")
