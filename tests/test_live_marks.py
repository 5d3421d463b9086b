"""Live marks: each campaign's totals before an hour, kept so a period's figures per campaign need no sum of
its hours. Whatever order batches come in (late ones too) and whichever marks exist, the totals before any
hour equal the sum of the live hours before it."""

from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

START = datetime(2026, 11, 1)
HOUR = timedelta(hours=1)

batch = st.dictionaries(
    st.tuples(st.integers(1, 4), st.integers(0, 24 * 6).map(lambda h: START + h * HOUR)),
    st.tuples(st.integers(0, 50), st.integers(0, 5), st.integers(0, 2), st.integers(0, 400).map(lambda c: c / 4)),
    max_size=6,
)


def summed_before(batches, at) -> dict:
    """The brute-force answer: every batch's counts of the hours before `at`, per campaign."""
    totals = defaultdict(lambda: [0, 0, 0, 0.0])
    for counts in batches:
        for (campaign, hour), values in counts.items():
            if hour < at:
                for index, value in enumerate(values):
                    totals[campaign][index] += value
    return dict(totals)


def nonzero(totals) -> dict:
    return {c: [v[0], v[1], v[2], pytest.approx(v[3])] for c, v in totals.items() if any(v)}


@pytest.fixture
def live_db(app):
    from models import db

    with app.app_context():
        db.connect(reuse_if_open=True)
        yield db


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(batch, st.integers(0, 24 * 6)), min_size=1, max_size=5),
       asked=st.lists(st.integers(-2, 24 * 7), min_size=1, max_size=6))
def test_live_totals_before_any_hour_equal_the_sum_of_the_hours_before_it(live_db, batches, asked):
    from models import LiveHour, LiveMark, LiveSiteHour, add_live_hours
    from dashboard_queries import live_totals_before

    for model in (LiveHour, LiveSiteHour, LiveMark):
        model.delete().execute()
    # Each batch is exported at its own hour: batches of hours before it arrive late, after marks were made.
    for counts, exported in batches:
        with live_db.atomic():
            add_live_hours({key: list(values) for key, values in counts.items()}, now=START + exported * HOUR)
    for hour in asked:
        at = START + hour * HOUR
        assert nonzero(live_totals_before(at)) == nonzero(summed_before([c for c, _ in batches], at)), at


def test_live_totals_before_an_hour_keep_to_the_campaign_prefix(live_db):
    from models import add_live_hours
    from dashboard_queries import live_totals_before

    with live_db.atomic():
        add_live_hours({(1, START): [5, 1, 0, 0.0], (12, START): [7, 2, 1, 3.0], (2, START): [9, 0, 0, 0.0]},
                       now=START + 3 * HOUR)
    assert set(live_totals_before(START + HOUR, campaign_prefix=1)) == {1, 12}
    assert live_totals_before(START + HOUR, campaign_prefix=0) == {}


def test_fill_live_marks_makes_the_marks_of_a_database_from_before_them(live_db):
    from models import LiveMark, add_live_hours, fill_live_marks
    from dashboard_queries import live_totals_before

    with live_db.atomic():
        add_live_hours({(1, START + h * HOUR): [1, 0, 0, 0.5] for h in range(72)}, now=START)
    LiveMark.delete().execute()
    now = START + 80 * HOUR
    fill_live_marks(now)
    marked = {m.at for m in LiveMark.select(LiveMark.at).distinct()}
    assert now.replace(hour=0) - timedelta(days=1) in marked and now - 49 * HOUR in marked  # midnights and recent hours
    assert live_totals_before(START + 50 * HOUR) == {1: [50, 0, 0, 25.0]}


def test_an_hours_mark_is_dropped_after_two_days_and_a_midnights_is_kept(live_db):
    from models import LiveMark, add_live_hours

    for hour in range(0, 60):
        with live_db.atomic():
            add_live_hours({(1, START + hour * HOUR): [1, 0, 0, 0.0]}, now=START + hour * HOUR)
    marked = {m.at for m in LiveMark.select(LiveMark.at).distinct()}
    assert START + 5 * HOUR not in marked and START + 24 * HOUR in marked and START in marked
    assert START + 59 * HOUR in marked and START + 10 * HOUR in marked


def test_a_late_batch_adds_to_the_marks_after_its_hours_and_not_to_the_mark_of_its_own_hour(live_db):
    from models import add_live_hours
    from dashboard_queries import live_totals_before

    with live_db.atomic():
        add_live_hours({(1, START): [1, 0, 0, 0.0]}, now=START + 5 * HOUR)  # marks the hour 5
    with live_db.atomic():
        add_live_hours({(1, START + 3 * HOUR): [10, 1, 0, 0.0], (1, START + 5 * HOUR): [100, 0, 0, 0.0]},
                       now=START + 5 * HOUR)
    assert live_totals_before(START + 5 * HOUR) == {1: [11, 1, 0, 0.0]}
    assert live_totals_before(START + 6 * HOUR) == {1: [111, 1, 0, 0.0]}
