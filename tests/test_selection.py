"""The four banner rules, each tie-break, the random fill, and the quarter of the hour."""

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selection import (
    SCENARIO_REVENUE_THEN_CLICKS,
    SCENARIO_TOP10_REVENUE,
    SCENARIO_TOP5_CLICKS,
    SCENARIO_TOP_X_REVENUE,
    BannerStats,
    Plan,
    click_key,
    describe,
    quarter_of,
    revenue_key,
    select_banners,
)


def converting(banner_id, revenue, clicks=1, conversions=1):
    return BannerStats(banner_id, clicks=clicks, conversions=conversions, revenue=Decimal(str(revenue)))


def clicked(banner_id, clicks):
    return BannerStats(banner_id, clicks=clicks)


def select(stats, pool=None, seed=0):
    pool = pool if pool is not None else [s.banner_id for s in stats]
    return select_banners(stats, pool, random.Random(seed))


def test_select_banners_x_at_least_10_takes_top_10_by_revenue():
    stats = [converting(100 + i, revenue=i) for i in range(12)]
    plan = select(stats)
    assert plan.x == 12 and plan.scenario == SCENARIO_TOP10_REVENUE
    assert plan.banner_ids == tuple(100 + i for i in range(11, 1, -1))


def test_select_banners_x_exactly_10_takes_all_ten():
    plan = select([converting(100 + i, revenue=i + 1) for i in range(10)] + [clicked(200, 99)])
    assert plan.scenario == SCENARIO_TOP10_REVENUE and len(plan.banner_ids) == 10 and 200 not in plan.banner_ids


@pytest.mark.parametrize("x", [5, 7, 9])
def test_select_banners_x_5_to_9_takes_the_x_by_revenue_only(x):
    stats = [converting(100 + i, revenue=i + 1) for i in range(x)] + [clicked(300, 50), clicked(301, 40)]
    plan = select(stats)
    assert plan.scenario == SCENARIO_TOP_X_REVENUE and plan.x == x
    assert plan.banner_ids == tuple(100 + i for i in reversed(range(x)))
    assert plan.random_fill == 0


@pytest.mark.parametrize("x", [1, 2, 3, 4])
def test_select_banners_x_1_to_4_tops_up_with_most_clicked(x):
    stats = [converting(100 + i, revenue=10 - i, clicks=1) for i in range(x)]
    stats += [clicked(200, 5), clicked(201, 9), clicked(202, 7), clicked(203, 1), clicked(204, 8)]
    plan = select(stats)
    assert plan.scenario == SCENARIO_REVENUE_THEN_CLICKS and plan.x == x
    by_clicks = [201, 204, 202, 200, 203][: 5 - x]
    assert plan.banner_ids == tuple(100 + i for i in range(x)) + tuple(by_clicks)


def test_select_banners_x_1_to_4_does_not_repeat_a_converting_banner_in_the_click_part():
    stats = [converting(100, revenue=1, clicks=50), clicked(200, 5), clicked(201, 4), clicked(202, 3), clicked(203, 2)]
    plan = select(stats)
    assert plan.banner_ids == (100, 200, 201, 202, 203)


def test_select_banners_x_0_takes_top_5_by_clicks():
    stats = [clicked(100 + i, clicks=i + 1) for i in range(8)]
    plan = select(stats)
    assert plan.scenario == SCENARIO_TOP5_CLICKS and plan.x == 0
    assert plan.banner_ids == (107, 106, 105, 104, 103)


def test_select_banners_revenue_zero_conversion_counts_for_x():
    stats = [converting(100, revenue=0), clicked(101, 3)]
    plan = select(stats, pool=[100, 101, 102, 103, 104])
    assert plan.x == 1 and plan.banner_ids[:2] == (100, 101)


def test_select_banners_revenue_tie_broken_by_clicks_then_lower_id():
    stats = [
        converting(105, revenue="2.5", clicks=3),
        converting(104, revenue="2.5", clicks=7),
        converting(103, revenue="2.5", clicks=7),
        converting(102, revenue="9", clicks=1),
        converting(101, revenue="1", clicks=1),
    ]
    assert select(stats).banner_ids == (102, 103, 104, 105, 101)


def test_select_banners_click_tie_broken_by_revenue_then_lower_id():
    stats = [
        converting(100, revenue=5, clicks=1),
        BannerStats(210, clicks=4),
        BannerStats(205, clicks=4),
        BannerStats(207, clicks=6),
        BannerStats(201, clicks=2),
    ]
    assert select(stats).banner_ids == (100, 207, 205, 210, 201)


def test_select_banners_exact_decimal_revenue_ties_are_ties():
    # 0.1 + 0.2 == 0.3 exactly: a float sum would rank these two differently.
    a = BannerStats(101, clicks=1, conversions=2, revenue=Decimal("0.1") + Decimal("0.2"))
    b = BannerStats(100, clicks=1, conversions=1, revenue=Decimal("0.3"))
    plan = select([a, b] + [converting(200 + i, revenue=1) for i in range(3)])
    assert plan.banner_ids[-2:] == (100, 101)


def test_select_banners_random_fill_tops_up_to_five_from_the_pool():
    stats = [clicked(100, 3), clicked(101, 2)]
    pool = [100, 101, 102, 103, 104, 105, 106]
    plan = select(stats, pool=pool)
    assert plan.banner_ids[:2] == (100, 101)
    assert len(plan.banner_ids) == 5 and plan.random_fill == 3
    assert set(plan.banner_ids[2:]) <= {102, 103, 104, 105, 106}
    assert len(set(plan.banner_ids)) == 5


def test_select_banners_random_fill_stops_when_the_pool_is_used_up():
    plan = select([clicked(100, 3)], pool=[100, 101, 102])
    assert sorted(plan.banner_ids) == [100, 101, 102] and plan.random_fill == 2


def test_select_banners_random_fill_is_stable_for_the_same_seed():
    stats, pool = [clicked(1, 1)], list(range(1, 40))
    assert select(stats, pool, seed="q1:c7").banner_ids == select(stats, pool, seed="q1:c7").banner_ids
    draws = {select(stats, pool, seed=s).banner_ids for s in range(30)}
    assert len(draws) > 1


def test_select_banners_no_clicks_no_conversions_is_all_random_fill():
    plan = select([BannerStats(b) for b in range(10, 20)])
    assert plan.scenario == SCENARIO_TOP5_CLICKS and plan.random_fill == 5 and len(set(plan.banner_ids)) == 5


stats_strategy = st.lists(
    st.builds(
        BannerStats,
        banner_id=st.integers(1, 60),
        clicks=st.integers(0, 6),
        conversions=st.integers(0, 2),
        revenue=st.decimals(0, 20, places=2),
    ),
    max_size=30,
    unique_by=lambda s: s.banner_id,
)


@given(stats_strategy, st.sets(st.integers(1, 80), max_size=30), st.integers())
def test_select_banners_plan_is_distinct_bounded_and_from_the_pool(stats, extra_pool, seed):
    pool = {s.banner_id for s in stats} | extra_pool
    plan = select(stats, pool=pool, seed=seed)
    assert len(plan.banner_ids) == len(set(plan.banner_ids))
    assert set(plan.banner_ids) <= pool
    assert len(plan.banner_ids) <= 10
    assert len(plan.banner_ids) >= min(5, len(pool))
    assert plan.x == sum(1 for s in stats if s.conversions > 0)


@pytest.mark.parametrize(
    "plan, text",
    [
        (Plan(3, SCENARIO_REVENUE_THEN_CLICKS, (1, 2, 3, 4, 5)), "X = 3: 3 banners by revenue, 2 by clicks."),
        (Plan(12, SCENARIO_TOP10_REVENUE, tuple(range(10))), "X = 12: the top 10 banners by revenue."),
        (Plan(7, SCENARIO_TOP_X_REVENUE, tuple(range(7))), "X = 7: all 7 converting banners by revenue."),
        (Plan(1, SCENARIO_REVENUE_THEN_CLICKS, (1, 2, 3, 4, 5), random_fill=2),
         "X = 1: 1 banner by revenue, 2 by clicks, 2 drawn at random from the campaign's banners."),
        (Plan(2, SCENARIO_REVENUE_THEN_CLICKS, (1, 2, 3, 4), random_fill=1),
         "X = 2: 2 banners by revenue, 1 by clicks, 1 drawn at random from the campaign's banners."),
        (Plan(0, SCENARIO_TOP5_CLICKS, (1, 2, 3, 4, 5)), "X = 0: 5 banners by clicks."),
        (Plan(0, SCENARIO_TOP5_CLICKS, (1, 2, 3), random_fill=2),
         "X = 0: 1 banner by clicks, 2 drawn at random from the campaign's banners."),
        (Plan(0, SCENARIO_TOP5_CLICKS, (1, 2, 3, 4), random_fill=2),
         "X = 0: 2 banners by clicks, 2 drawn at random from the campaign's banners."),
    ],
)
def test_describe_says_which_rule_applied(plan, text):
    assert describe(plan) == text


@given(stats_strategy)
def test_click_key_orders_by_clicks_then_revenue_desc_then_lower_id(stats):
    ranked = sorted(stats, key=click_key)
    for a, b in zip(ranked, ranked[1:]):
        assert (a.clicks, a.revenue, -a.banner_id) > (b.clicks, b.revenue, -b.banner_id)


@given(stats_strategy)
def test_revenue_key_orders_by_revenue_then_clicks_desc_then_lower_id(stats):
    ranked = sorted(stats, key=revenue_key)
    for a, b in zip(ranked, ranked[1:]):
        assert (a.revenue, a.clicks, -a.banner_id) > (b.revenue, b.clicks, -b.banner_id)


def test_select_banners_x_0_a_single_click_counts_as_clicked():
    plan = select([clicked(11, 1), clicked(12, 1), BannerStats(13)], pool=range(11, 30))
    assert plan.banner_ids[:2] == (11, 12) and plan.random_fill == 3


@pytest.mark.parametrize(
    "minute, second, micro, quarter",
    [(0, 0, 0, 1), (14, 59, 999000, 1), (15, 0, 0, 2), (29, 59, 999999, 2), (30, 0, 0, 3), (44, 59, 0, 3), (45, 0, 0, 4), (59, 59, 999999, 4)],
)
def test_quarter_of_boundaries_in_utc(minute, second, micro, quarter):
    assert quarter_of(datetime(2026, 3, 1, 10, minute, second, micro, tzinfo=timezone.utc)) == quarter


def test_quarter_of_converts_other_timezones_to_utc():
    # 10:44 at UTC+05:30 is 05:14 UTC: quarter 1, not 3.
    ist = timezone(timedelta(hours=5, minutes=30))
    assert quarter_of(datetime(2026, 3, 1, 10, 44, tzinfo=ist)) == 1


def test_quarter_of_is_utc_whatever_the_machine_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "IST-5:30")  # the process's local zone: UTC+05:30
    time.tzset()
    try:
        ist = timezone(timedelta(hours=5, minutes=30))
        assert quarter_of(datetime(2026, 3, 1, 10, 44, tzinfo=ist)) == 1
        assert quarter_of(datetime(2026, 3, 1, 5, 14, tzinfo=timezone.utc)) == 1
    finally:
        monkeypatch.undo()
        time.tzset()


def test_draw_fill_one_missing_banner_draws_exactly_one():
    from selection import draw_fill

    for seed in range(20):
        fill = draw_fill([1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7], random.Random(seed))
        assert len(fill) == 1 and fill[0] in {5, 6, 7}
