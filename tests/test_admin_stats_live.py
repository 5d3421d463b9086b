"""The stats table's live view: a row per campaign over a period (in the URL), against the period before, to the cent;
sorted, filtered, paged and downloaded like the imported view."""

import csv
import io
import re
from html import unescape

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_admin_periods import two_weeks  # noqa: F401  (fixture)
from test_auth import users  # noqa: F401  (users is a fixture)


@pytest.fixture(params=["marked", "summed"])
def weeks(request, two_weeks):  # noqa: F811
    """The two weeks, read through marks at each bound ("marked", one query) or summed from the nearest marks
    (what a bound an export missed gets)."""
    from models import db, fill_live_marks
    from dashboard_queries import live_period_rows
    from test_admin_periods import NAIVE
    from webapp.trends import period_of

    with two_weeks.app_context(), db.connection_context():
        period = period_of({"period": "7d"}, NAIVE)
        bounds = (period.end, period.start, *reversed(period.previous))
        if request.param == "marked":
            fill_live_marks(NAIVE)
            assert live_period_rows(bounds) is not None
        else:
            assert live_period_rows(bounds) is None
    return two_weeks


def live_rows(text):
    """{campaign: [cell texts]} of the live table's body, and its totals line."""
    table = text[text.index('<table class="data stats live-stats">'):]
    table = table[:table.index("</table>")]
    body, foot = table.split("<tfoot>")
    rows = {}
    for campaign, row in re.findall(r'<tr data-campaign="(\d+)">(.*?)</tr>', body, re.S):
        rows[int(campaign)] = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    totals = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", foot, re.S)]
    return rows, totals


def test_stats_live_7_days_per_campaign_against_the_7_before_to_the_cent(admin, weeks):  # noqa: F811
    text = html(admin.get("/admin/campaigns?period=7d"))
    rows, totals = live_rows(text)
    # revenue, vs before, RPM, impressions, clicks, CTR, CTR vs before, conversions, CVR, EPC
    assert rows[4] == ["$15.55", "+180.2 %", "$10.37", "1,500", "50", "3.33%", "+33.3 %", "5", "10.00%", "$0.31"]
    assert rows[5] == ["$0.00", "−100.0 %", "$0.00", "200", "5", "2.50%", "+150.0 %", "0", "0.00%", "$0.00"]
    assert totals == ["$15.55", "+133.5 %", "$9.15", "1,700", "55", "3.24%", "+38.7 %", "5", "9.09%", "$0.28"]
    assert "Nov 21 – Nov 27, 2026 against the period before, Nov 14 – Nov 20, 2026" in unescape(text)
    assert 'aria-current="true">Live: last 7 days' in text


def test_stats_live_sorts_by_the_change_and_keeps_to_the_id_prefix(admin, weeks):  # noqa: F811
    rows, _ = live_rows(html(admin.get("/admin/campaigns?period=7d&sort=revenue_change&dir=desc")))
    assert list(rows) == [4, 5]
    rows, _ = live_rows(html(admin.get("/admin/campaigns?period=7d&sort=revenue_change")))
    assert list(rows) == [5, 4]
    rows, totals = live_rows(html(admin.get("/admin/campaigns?period=7d&campaign=5")))
    assert list(rows) == [5] and totals[3] == "200"


def test_stats_live_custom_range_and_a_bad_one_says_why(admin, weeks):  # noqa: F811
    rows, _ = live_rows(html(admin.get("/admin/campaigns?period=custom&from=2026-11-13&to=2026-11-13")))
    assert rows[4][:2] == ["$99.99", "—"]  # nothing the day before to compare with
    text = unescape(html(admin.get("/admin/campaigns?period=custom&from=2026-11-20&to=2026-11-01")))
    assert "ends before it starts" in text and "Instead, showing the last 24 hours" in text


def test_stats_live_csv_is_the_view_with_its_period_and_the_one_before(admin, weeks):  # noqa: F811
    response = admin.get("/admin/campaigns.csv?period=7d&sort=revenue&dir=desc")
    assert response.status_code == 200
    assert 'filename="campaign-stats_live-2026-11-21-to-2026-11-27_by-revenue-desc.csv"' in response.headers["Content-Disposition"]
    lines = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [line["campaign"] for line in lines] == ["4", "5", "total"]
    four = lines[0]
    assert (four["period_start_utc"], four["period_end_utc"]) == ("2026-11-21T00:00Z", "2026-11-28T00:00Z")
    assert (four["impressions"], four["revenue_usd"], four["previous_revenue_usd"]) == ("1500", "15.550000", "5.550000")
    assert lines[-1]["revenue_usd"] == "15.550000" and lines[-1]["previous_impressions"] == "900"


def test_stats_live_htmx_sort_swaps_the_live_table_and_pushes_its_url(admin, weeks):  # noqa: F811
    response = admin.get("/admin/campaigns?period=7d&sort=clicks&dir=desc", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert 'class="data stats live-stats"' in text and "<h1>" not in text
    assert response.headers["HX-Push-Url"] == "/admin/campaigns?sort=clicks&dir=desc&period=7d"
    assert 'name="period" value="7d"' in text  # the filters, redrawn, keep the period


def test_stats_switching_between_the_imported_hour_and_a_live_period_keeps_the_filter(admin, weeks):  # noqa: F811
    text = unescape(html(admin.get("/admin/campaigns?slot=2&campaign=4&sort=quarter&rule=1")))
    assert 'href="/admin/campaigns?campaign=4&period=30d"' in text  # no slot, no rule columns, no slot sort
    text = unescape(html(admin.get("/admin/campaigns?period=30d&campaign=4&sort=ctr_change&dir=desc")))
    assert 'href="/admin/campaigns?campaign=4"' in text  # back to the imported hour: a sort it has not, dropped
    assert 'id="filter-slot"' not in text and 'id="toggle-rule"' not in text


def test_stats_live_without_any_live_event_says_so(admin, loaded):  # noqa: F811
    text = html(admin.get("/admin/campaigns?period=24h"))
    assert "No live figures match this view" in text
    assert "nothing to download" in text
