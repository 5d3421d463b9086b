"""The stats table's live view reads a period's figures per campaign in one query over the marks at its bounds; any
period, sort, filter and data give the same rows, order and totals as summing from the nearest marks."""

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_live_marks import HOUR, START, batch, live_db  # noqa: F401  (live_db is a fixture)
from webapp.period_stats import LIVE_COLUMNS, campaign_periods, period_table, sorted_rows, totals
from webapp.trends import PRESETS, period_of

periods = st.one_of(
    st.sampled_from(sorted(PRESETS)).map(lambda key: {"period": key}),
    st.tuples(st.integers(0, 6), st.integers(0, 3)).map(
        lambda d: {"period": "custom", "from": f"{(START + timedelta(days=d[0])).date()}",
                   "to": f"{(START + timedelta(days=d[0] + d[1])).date()}"}),
)


def figures(rows) -> list:
    return [(r.campaign_id, r.impressions, r.clicks, r.conversions, pytest.approx(r.revenue), r.previous[:3],
             pytest.approx(r.previous[3])) for r in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(batch, min_size=1, max_size=4), later=st.integers(0, 24 * 3), args=periods,
       sort=st.sampled_from(LIVE_COLUMNS), descending=st.booleans(), prefix=st.sampled_from([None, 1, 3]))
def test_period_table_from_the_marks_at_its_bounds_equals_the_sums_from_the_nearest_marks(
        live_db, batches, later, args, sort, descending, prefix):  # noqa: F811
    from models import LiveHour, LiveMark, LiveSiteHour, add_live_hours, fill_live_marks
    from dashboard_queries import live_period_rows

    for model in (LiveHour, LiveSiteHour, LiveMark):
        model.delete().execute()
    newest = max((hour for counts in batches for _, hour in counts), default=START)
    now = newest + later * HOUR + timedelta(minutes=20)  # live hours are of the past (a later one would be summed)
    with live_db.atomic():
        for counts in batches:
            add_live_hours({key: list(values) for key, values in counts.items()}, now=now)
    fill_live_marks(now)
    period = period_of(args, now)
    bounds = (period.end, period.start, *reversed(period.previous))
    assert live_period_rows(bounds) is not None  # the one query answered
    rows, total, _ = period_table(period, prefix, sort, descending)
    expected = sorted_rows(campaign_periods(period, prefix), sort, descending)
    assert figures(rows) == figures(expected)
    want = totals(expected)
    assert {k: v for k, v in total.items() if k not in ("revenue", "previous")} == {
        k: (pytest.approx(v) if isinstance(v, float) else v) for k, v in want.items() if k not in ("revenue", "previous")}
    assert total["revenue"] == pytest.approx(want["revenue"])


def test_period_table_pages_clamp_to_the_last_page(live_db):  # noqa: F811
    from models import add_live_hours, fill_live_marks

    now = START + 30 * HOUR
    with live_db.atomic():
        add_live_hours({(c, START): [c, 0, 0, 0.0] for c in range(1, 26)}, now=now)
    fill_live_marks(now)
    period = period_of({"period": "7d"}, now)
    rows, total, page = period_table(period, None, "impressions", True, page=9, size=10)
    assert (page, total["rows"], [r.campaign_id for r in rows]) == (3, 25, [5, 4, 3, 2, 1])
