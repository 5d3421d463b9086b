"""Every dashboard and public page in Chromium at 390x844 and 1440x900: no sideways scrolling, and no axe-core
finding of any impact; with DASHBOARD_SCREENSHOTS=<dir>, screenshots for docs/dashboard.md."""

import os
from pathlib import Path

import pytest

from browser.conftest import sign_in

pytestmark = pytest.mark.browser

PAGES = {
    "overview": "/admin/",
    "stats": "/admin/campaigns",
    "stats-rule": "/admin/campaigns?rule=1&sort=revenue&dir=desc",
    "campaign": "/admin/campaigns/4",
    "overview-7d": "/admin/?period=7d",
    "campaign-30d": "/admin/campaigns/4?period=30d",
    "stats-live-7d": "/admin/campaigns?period=7d&sort=revenue_change&dir=desc",
    "ingests": "/admin/ingests",
    "duplicates": "/admin/duplicates",
    "live": "/admin/live/",
    "not-found": "/admin/campaigns/9999",
}
SCREENSHOTS = {"overview", "stats", "campaign", "stats-live-7d"}
# A publisher's page framing a banner with the snippet the dashboard hands out.
PUBLISHER_PAGE = """<!doctype html><html lang="en"><head><title>A publisher's page</title></head><body><main>
<h1>A publisher's page</h1>
<iframe src="{src}" width="300" height="250" style="border:0" title="Advertisement"></iframe>
</main></body></html>"""


@pytest.fixture(scope="session")
def axe_js():
    path = Path(os.environ.get("AXE_JS", ""))
    if not path.is_file():
        message = "axe-core not found (AXE_JS): scripts/test.sh installs it with npm"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=[(390, 844), (1440, 900)], ids=["phone", "desktop"])
def sized_page(request, browser):
    width, height = request.param
    # bypass_csp: axe is injected as an inline script, which the dashboard's CSP rightly forbids.
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True,
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.width = width
    yield page
    context.close()


@pytest.fixture
def live_figures(loaded):
    """Live hours this week and the week before, so the period comparison and its charts are drawn."""
    from datetime import datetime, timedelta, timezone

    from models import add_live_hours, db

    hour = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    with db.atomic():
        add_live_hours({(4, hour - timedelta(days=days)): [900 + days, 30 + days, days % 4, 4.5 * days]
                        for days in range(0, 14)})


def test_every_page_fits_and_passes_axe(sized_page, live_server, loaded, live_figures, axe_js):
    page = sized_page
    sign_in(page, live_server, "ada")
    problems = []
    for name, path in PAGES.items():
        problems += page_problems(page, live_server, path, axe_js)
        folder = os.environ.get("DASHBOARD_SCREENSHOTS")
        if folder and name in SCREENSHOTS:
            page.screenshot(path=str(Path(folder) / f"dashboard-{name}-{page.width}.png"), full_page=True)
    assert not problems, "\n".join(problems)


def test_login_page_fits_and_passes_axe(sized_page, live_server, axe_js):
    assert page_problems(sized_page, live_server, "/login", axe_js) == []


def test_public_pages_fit_and_pass_axe(sized_page, live_server, loaded, axe_js):
    page = sized_page
    page.goto(live_server + "/")
    slot_path = page.locator("main a[href^='/campaigns/']").first.get_attribute("href")
    campaign_id = slot_path.rsplit("/", 1)[1]
    problems = []
    for path in ("/", slot_path, "/campaigns/999999"):
        problems += page_problems(page, live_server, path, axe_js)
    # The iframe document is scanned where it is used, in a publisher's page: the page-level rules (one main
    # landmark, one <h1>) are the host page's to meet, the banner and its link are the frame's.
    host = PUBLISHER_PAGE.format(src=f"/embed/{campaign_id}")
    page.route(live_server + "/publisher-page", lambda route: route.fulfill(content_type="text/html", body=host))
    problems += page_problems(page, live_server, "/publisher-page", axe_js)
    assert not problems, "\n".join(problems)


def page_problems(page, base, path, axe_js):
    """What is wrong with the page at `path`: not one <h1>, sideways scrolling, any axe-core violation."""
    page.goto(base + path)
    page.wait_for_load_state("networkidle")
    problems = []
    if page.locator("h1").count() != 1:
        problems.append(f"{path} has {page.locator('h1').count()} <h1> headings, not one")
    overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if overflow[0] > overflow[1]:
        problems.append(f"{path} at {page.width}px scrolls sideways: {overflow[0]} > {overflow[1]}")
    for frame in page.frames:  # axe scans a frame's document with its own copy inside it
        frame.add_script_tag(path=str(axe_js))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    for v in results["violations"]:
        targets = [n["target"] for n in v["nodes"][:3]]
        problems.append(f"{path} at {page.width}px: {v['id']} ({v['impact']}): {v['help']} {targets}")
    return problems
