"""Chromium, keyboard only: sorting, filtering and paging the stats table keep focus where it was, and say what changed."""

import re
import time

import pytest

from browser.conftest import sign_in
from browser.test_dashboard_browser import wait_for_htmx

pytestmark = pytest.mark.browser


def wait_until(page, expression, timeout=10_000):
    """Poll `expression` from outside the page until it is true. Playwright's wait_for_function compiles its
    predicate inside the page, which the dashboard's CSP (no eval) rightly refuses once it has to poll."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def assert_focus_on(page, element_id):
    """Focus comes back to the element of the same id once htmx has settled the swap (a few ms after it)."""
    wait_until(page, f"document.activeElement && document.activeElement.id === {element_id!r}", timeout=3000)


def active_id(page):
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_keyboard_sorting_filtering_and_paging_keep_focus(page, live_server, loaded):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/campaigns")
    page.evaluate("window.notReloaded = true")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    wait_for_htmx(page, "#sort-revenue")
    page.focus("#sort-revenue")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"sort=revenue&dir=desc$"))  # a metric's first sort: highest first
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue, descending')")
    assert_focus_on(page, "sort-revenue")
    wait_for_htmx(page, "#sort-revenue")  # the swapped-in header: before htmx processed it, Enter is a page load
    page.keyboard.press("Enter")  # again: ascending, focus still on the header
    page.wait_for_url(re.compile(r"sort=revenue$"))
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue, ascending')")
    assert_focus_on(page, "sort-revenue")
    wait_for_htmx(page, "#sort-revenue")
    page.keyboard.press("Enter")  # and back to highest first, for the filters below

    page.wait_for_url(re.compile(r"sort=revenue&dir=desc$"))
    # The URL changes before the swap is settled: a key pressed on the filters meanwhile would be lost with them.
    wait_until(page, "document.querySelector('#table-status').textContent.startsWith('Sorted by revenue, descending')"
                     " && !document.querySelector('.htmx-request')")
    wait_for_htmx(page, "#stats-filters")  # the form listens for the select's change
    page.focus("#filter-slot")
    page.keyboard.press("ArrowDown")  # the first arrow key changes the slot and swaps the table
    page.wait_for_url(re.compile(r"slot=1"))
    wait_until(page, "document.querySelector('#table-status').textContent.includes('slot :00–:14')")
    assert_focus_on(page, "filter-slot")
    page.keyboard.press("ArrowDown")
    page.wait_for_url(re.compile(r"slot=2"))
    assert_focus_on(page, "filter-slot")

    page.focus("#filter-campaign")
    page.keyboard.type("1")
    page.wait_for_url(re.compile(r"campaign=1"))
    wait_until(page, "document.querySelector('#table-status').textContent.includes('campaigns starting with 1')")
    assert_focus_on(page, "filter-campaign")
    assert page.input_value("#filter-campaign") == "1"
    campaigns = {int(c) for c in page.eval_on_selector_all("#campaign-table tbody tr[data-campaign]",
                                                           "rows => rows.map(r => r.dataset.campaign)")}
    assert campaigns and all(str(c).startswith("1") for c in campaigns)

    page.focus("#filter-campaign")
    page.keyboard.press("Backspace")
    wait_until(page, "!location.search.includes('campaign=')")
    wait_for_htmx(page, "#page-next")
    page.focus("#page-next")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"page=2"))
    wait_until(page, "document.querySelector('#table-status').textContent.includes('page 2 of')")
    assert_focus_on(page, "page-next")
    assert page.evaluate("window.notReloaded") is True


def test_keyboard_focus_falls_back_to_the_table_when_its_control_is_gone(page, live_server, loaded):
    sign_in(page, live_server, "ada")
    page.goto(live_server + "/admin/campaigns?page=9")
    wait_for_htmx(page, "#page-next")
    page.focus("#page-next")
    page.keyboard.press("Enter")  # page 10 is the last: it has no "Next" link to return to
    page.wait_for_url(re.compile(r"page=10"))
    wait_until(page, "document.querySelector('#table-status').textContent.includes('page 10 of 10')")
    # dashboard.js moves focus a moment after htmx has settled the swap: wait for it, do not race it.
    wait_until(page, "document.activeElement.closest('#campaign-table') !== null", timeout=5000)
