"""Every dashboard page in Chromium: no sideways scrolling on a 390 px phone, and no serious or critical
axe-core findings; with DASHBOARD_SCREENSHOTS=<dir>, screenshots for docs/dashboard.md."""

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
    "ingests": "/admin/ingests",
    "duplicates": "/admin/duplicates",
    "live": "/admin/live/",
    "not-found": "/admin/campaigns/9999",
}
SCREENSHOTS = {"overview", "stats", "campaign"}


@pytest.fixture(scope="session")
def axe_js():
    path = Path(os.environ.get("AXE_JS", ""))
    if not path.is_file():
        message = "axe-core not found (AXE_JS): scripts/test.sh installs it with npm"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(params=[390, 1440], ids=["phone", "desktop"])
def sized_page(request, browser):
    # bypass_csp: axe is injected as an inline script, which the dashboard's CSP rightly forbids.
    context = browser.new_context(viewport={"width": request.param, "height": 844}, bypass_csp=True,
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15000)
    page.width = request.param
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
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
        if page.locator("h1").count() != 1:
            problems.append(f"{path} has {page.locator('h1').count()} <h1> headings, not one")
        overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if overflow[0] > overflow[1]:
            problems.append(f"{path} at {page.width}px scrolls sideways: {overflow[0]} > {overflow[1]}")
        page.add_script_tag(path=str(axe_js))
        results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        for v in results["violations"]:
            if v["impact"] in ("serious", "critical"):
                targets = [n["target"] for n in v["nodes"][:3]]
                problems.append(f"{path} at {page.width}px: {v['id']} ({v['impact']}): {v['help']} {targets}")
        folder = os.environ.get("DASHBOARD_SCREENSHOTS")
        if folder and name in SCREENSHOTS:
            page.screenshot(path=str(Path(folder) / f"dashboard-{name}-{page.width}.png"), full_page=True)
    assert not problems, "\n".join(problems)


def test_login_page_fits_and_passes_axe(sized_page, live_server, axe_js):
    page = sized_page
    page.goto(live_server + "/login")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.add_script_tag(path=str(axe_js))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in results["violations"] if v["impact"] in ("serious", "critical")] == []
