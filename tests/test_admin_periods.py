"""The live figures' period picker: presets and a custom range in the URL, each compared with the period before."""

import re
from datetime import datetime, timezone
from html import unescape

import pytest

from test_admin import admin, html, loaded, manager, settings_overrides  # noqa: F401  (fixtures)
from test_admin_trends import buckets
from test_auth import users  # noqa: F401  (users is a fixture)
from webapp.trends import period_of

NOW = datetime(2026, 11, 27, 10, 20, tzinfo=timezone.utc)
NAIVE = NOW.replace(tzinfo=None)


@pytest.mark.parametrize("args, start, end, unit, previous_start", [
    ({}, datetime(2026, 11, 26, 11), datetime(2026, 11, 27, 11), "hour", datetime(2026, 11, 25, 11)),
    ({"period": "today"}, datetime(2026, 11, 27), datetime(2026, 11, 27, 11), "hour", datetime(2026, 11, 26)),
    ({"period": "yesterday"}, datetime(2026, 11, 26), datetime(2026, 11, 27), "hour", datetime(2026, 11, 25)),
    ({"period": "7d"}, datetime(2026, 11, 21), datetime(2026, 11, 28), "day", datetime(2026, 11, 14)),
    ({"period": "30d"}, datetime(2026, 10, 29), datetime(2026, 11, 28), "day", datetime(2026, 9, 29)),
    ({"range": "30d"}, datetime(2026, 10, 29), datetime(2026, 11, 28), "day", datetime(2026, 9, 29)),  # old links
    ({"period": "custom", "from": "2026-11-01", "to": "2026-11-10"}, datetime(2026, 11, 1), datetime(2026, 11, 11),
     "day", datetime(2026, 10, 22)),
    ({"period": "custom", "from": "2026-11-03", "to": "2026-11-03"}, datetime(2026, 11, 3), datetime(2026, 11, 4),
     "hour", datetime(2026, 11, 2)),
])
def test_period_of_each_preset_and_a_custom_range(args, start, end, unit, previous_start):
    period = period_of(args, NAIVE)
    assert (period.start, period.end, period.unit, period.error) == (start, end, unit, None)
    assert period.previous == (previous_start, previous_start + (end - start))  # as long; today: yesterday until this hour


@pytest.mark.parametrize("args, words", [
    ({"period": "custom", "from": "2026-11-10", "to": "2026-11-01"}, "ends before it starts"),
    ({"period": "custom", "from": "11/01/2026", "to": "2026-11-10"}, "not a date"),
    ({"period": "custom", "from": "2025-01-01", "to": "2026-11-10"}, "at most 366 days"),
    ({"period": "custom"}, "not a date"),
    ({"period": "fortnight"}, "no period called"),
])
def test_period_of_bad_input_says_why_and_shows_the_last_24_hours(args, words):
    period = period_of(args, NAIVE)
    assert words in period.error and period.key == "24h"


@pytest.fixture
def two_weeks(loaded, app):  # noqa: F811
    from models import add_live_hours, db

    app.config["CLOCK"] = lambda: NOW
    with db.atomic():
        add_live_hours({
            # this week (Nov 21-27)
            (4, datetime(2026, 11, 27, 9)): [1000, 40, 4, 12.34],
            (4, datetime(2026, 11, 22, 15)): [500, 10, 1, 3.21],
            (5, datetime(2026, 11, 25, 8)): [200, 5, 0, 0.0],
            # the week before (Nov 14-20)
            (4, datetime(2026, 11, 20, 23)): [800, 20, 2, 5.55],
            (5, datetime(2026, 11, 14, 0)): [100, 1, 1, 1.11],
            (4, datetime(2026, 11, 13, 23)): [9999, 99, 9, 99.99],  # before both
        })
    return app


def comparison(text):
    """{metric: (this period, previous period, change)} from the comparison table."""
    table = text[text.index('<table class="data comparison">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr data-metric="(\w+)">(.*?)</tr>', table, re.S)
    return {m: tuple(unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S))
            for m, row in rows}


def test_overview_last_7_days_against_the_7_before_to_the_cent(admin, two_weeks):  # noqa: F811
    text = html(admin.get("/admin/?period=7d"))
    figures = comparison(text)
    assert figures["impressions"] == ("1,700", "900", "+88.9 %")
    assert figures["clicks"] == ("55", "21", "+161.9 %")
    assert figures["conversions"] == ("5", "3", "+66.7 %")
    assert figures["revenue"] == ("$15.55", "$6.66", "+133.5 %")
    assert figures["rpm"] == ("$9.15", "$7.40", "+23.6 %")
    assert figures["ctr"][:2] == ("3.24%", "2.33%")
    rows = buckets(text)
    assert len(rows) == 7 and rows["2026-11-27T00:00:00"] == [1000, 40] and rows["2026-11-22T00:00:00"] == [500, 10]
    assert "Nov 21 – Nov 27, 2026" in text and "Nov 14 – Nov 20, 2026" in text  # both periods named
    assert '<a href="/admin/?period=7d#trend" aria-current="true">Last 7 days</a>' in text


def test_campaign_page_compares_that_campaigns_own_periods(admin, two_weeks):  # noqa: F811
    figures = comparison(html(admin.get("/admin/campaigns/5?period=7d")))
    assert figures["impressions"] == ("200", "100", "+100.0 %") and figures["revenue"] == ("$0.00", "$1.11", "−100.0 %")
    assert 'href="/admin/campaigns/5?period=30d#trend"' in html(admin.get("/admin/campaigns/5?period=7d"))


def test_custom_range_is_in_the_url_and_compared_with_the_days_before(admin, two_weeks):  # noqa: F811
    text = html(admin.get("/admin/?period=custom&from=2026-11-20&to=2026-11-22"))
    figures = comparison(text)
    assert figures["impressions"] == ("1,300", "0", "—")  # Nov 20-22 against Nov 17-19: nothing then
    assert 'name="from" value="2026-11-20"' in text and 'name="to" value="2026-11-22"' in text
    assert len(buckets(text)) == 3


def test_bad_custom_range_says_so_and_shows_the_last_24_hours(admin, two_weeks):  # noqa: F811
    text = html(admin.get("/admin/?period=custom&from=2026-11-22&to=2026-11-20"))
    assert "ends before it starts" in text and "showing the last 24 hours" in text
    assert len(buckets(text)) == 24


def test_previous_period_is_drawn_beside_this_one(admin, two_weeks):  # noqa: F811
    text = html(admin.get("/admin/?period=7d"))
    chart = text[text.index('id="trend-revenue-title"'):]
    chart = chart[:chart.index("</svg>")]
    assert 'class="previous-line"' in chart and "previous period" in chart.lower()


def test_live_figures_say_they_are_not_the_imported_hour(admin, two_weeks):  # noqa: F811
    text = unescape(html(admin.get("/admin/?period=7d")))
    assert "The imported figures above describe an average hour with no dates" in text
