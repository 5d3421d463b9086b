"""A quarter's columns to statistics and plans: exact money, the same plans as the rules over every banner."""

import random
from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.parsing import parse_clicks, parse_conversions, parse_impressions
from jobs import quarters
from jobs.quarters import build_quarter
from selection import BannerStats, draw_fill, select_banners


def lines(text):
    return text.encode().splitlines(keepends=True)


def parse_all(impressions="", clicks="", conversions=""):
    counts, _ = parse_impressions(lines("banner_id,campaign_id\n" + impressions))
    click_map, _ = parse_clicks(lines("click_id,banner_id,campaign_id\n" + clicks))
    converted, _ = parse_conversions(lines("conversion_id,click_id,revenue\n" + conversions), click_map)
    return counts, click_map, converted


def build(quarter=1, seed="", **files):
    return build_quarter(quarter, *parse_all(**files), seed=seed)


def plans_of(data):
    return {campaign: plan for campaign, plan, _ in data.campaign_plans()}


def reference(quarter, counts, clicks, conversions, seed=""):
    """The rules over every banner with plain dicts: per-pair totals, plans and campaign totals."""
    totals = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for key, count in counts.items():
        totals[key][0] += count
    for banner, campaign in clicks.values():
        totals[(campaign, banner)][1] += 1
    for click_id, revenue in conversions.values():
        banner, campaign = clicks[click_id]
        totals[(campaign, banner)][2] += 1
        totals[(campaign, banner)][3] += revenue
    by_campaign = defaultdict(list)
    for (campaign, banner), (_, n_clicks, n_conv, revenue) in totals.items():
        by_campaign[campaign].append(BannerStats(banner, n_clicks, n_conv, revenue))
    plans, sums = {}, {}
    for campaign, stats in by_campaign.items():
        pool = sorted(s.banner_id for s in stats)
        plans[campaign] = select_banners(stats, pool, random.Random(f"{seed}:{quarter}:{campaign}:{pool}"))
        rows = [totals[(campaign, b)] for b in pool]
        sums[campaign] = tuple(sum(row[i] for row in rows) for i in range(3)) + (sum((row[3] for row in rows), Decimal(0)),)
    return {key: tuple(value) for key, value in totals.items()}, plans, sums


def test_build_quarter_sums_revenue_exactly_at_the_money_limit():
    # 999999999999.999999999 + 0.000000001 and 500000000000 + 500000000000 are both 10^12: a tie, which
    # more clicks break; in floats the first sum would differ from the second.
    data = build(
        clicks="1,100,7\n2,100,7\n3,101,7\n4,101,7\n5,101,7\n",
        conversions="1,1,999999999999.999999999\n2,2,0.000000001\n3,3,500000000000\n4,4,500000000000\n",
    )
    assert data.stats_of(7, 100)[3] == data.stats_of(7, 101)[3] == Decimal(10**12)
    assert data.stats_of(7, 101) == (0, 3, 2, Decimal(10**12))
    assert plans_of(data)[7].banner_ids[:2] == (101, 100)
    _, _, (impressions, clicks, conversions, revenue) = next(data.campaign_plans())
    assert (impressions, clicks, conversions, revenue) == (0, 5, 4, Decimal(2 * 10**12))


def test_build_quarter_carries_nanos_into_units_so_equal_money_ties():
    data = build(
        clicks="1,100,7\n2,100,7\n3,101,7\n",
        conversions="1,1,0.7\n2,2,0.6\n3,3,1.3\n",
    )
    assert data.stats_of(7, 100)[3] == data.stats_of(7, 101)[3] == Decimal("1.3")
    assert [tuple(int(c[i]) for c in data.revenue) for i in range(2)] == [(0, 1, 300_000_000)] * 2
    assert plans_of(data)[7].banner_ids[:2] == (100, 101)  # the tie goes to more clicks


def test_build_quarter_stat_rows_hold_revenue_as_the_nearest_float_of_the_exact_sum():
    data = build(clicks="1,100,7\n2,100,7\n3,101,7\n", conversions="1,1,0.1\n2,2,0.2\n")
    rows = list(data.stat_rows())
    assert rows == [(7, 100, 0, 2, 2, 0.3), (7, 101, 0, 1, 0, 0.0)]  # 0.1 + 0.2 in floats is 0.30000000000000004


def test_build_quarter_counts_impressions_clicks_and_conversions_per_banner():
    data = build(
        impressions="100,7\n100,7\n102,7\n100,8\n",
        clicks="1,100,7\n2,101,7\n3,100,8\n",
        conversions="1,1,2\n9,3,1\n",
    )
    assert data.stats_of(7, 100) == (2, 1, 1, Decimal(2))
    assert data.stats_of(7, 101) == (0, 1, 0, Decimal(0))
    assert data.stats_of(7, 102) == (1, 0, 0, Decimal(0))
    assert data.stats_of(8, 100) == (1, 1, 1, Decimal(1))
    assert data.campaign_count == 2


def test_build_quarter_x_counts_every_converted_banner_not_only_the_ten_shown():
    clicks = "".join(f"{i},{100 + i},7\n" for i in range(1, 15))
    conversions = "".join(f"{i},{i},{i}\n" for i in range(1, 15))
    plan = plans_of(build(clicks=clicks, conversions=conversions))[7]
    assert plan.x == 14 and plan.scenario == "top10_revenue"
    assert plan.banner_ids == tuple(100 + i for i in range(14, 4, -1))


def test_build_quarter_fill_from_a_large_pool_draws_what_draw_fill_draws():
    impressions = "".join(f"{1000 + i},5\n" for i in range(3000))
    data = build(quarter=3, seed="s", impressions=impressions, clicks="1,1001,5\n")
    pool = list(range(1000, 3000 + 1000))
    expected = [1001] + draw_fill([1001], pool, random.Random(f"s:3:5:{pool}"))
    plan = plans_of(data)[5]
    assert list(plan.banner_ids) == expected and plan.random_fill == 4


ids = st.one_of(st.integers(1, 12), st.integers(2**31 - 2, 2**31 + 1), st.integers(2**63 - 3, 2**63 - 1))
campaigns = st.sampled_from([1, 2, 3, 2**31, 2**63 - 1])
money = st.one_of(st.just("0"), st.just("999999999999.999999999"), st.decimals(0, 1000, places=9).map(str))


@settings(max_examples=150, deadline=None)
@given(
    impressions=st.lists(st.tuples(ids, campaigns), max_size=40),
    clicks=st.lists(st.tuples(st.integers(1, 60), ids, campaigns), max_size=60),
    conversions=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 70), money), max_size=40),
    quarter=st.integers(1, 4),
)
def test_build_quarter_gives_the_rules_over_every_banner(impressions, clicks, conversions, quarter):
    files = {
        "impressions": "".join(f"{b},{c}\n" for b, c in impressions),
        "clicks": "".join(f"{k},{b},{c}\n" for k, b, c in clicks),
        "conversions": "".join(f"{k},{click},{r}\n" for k, click, r in conversions),
    }
    parsed = parse_all(**files)
    data = build_quarter(quarter, *parsed, seed="x")
    totals, plans, sums = reference(quarter, *(dict(p) for p in parsed), seed="x")
    assert {(c, b): data.stats_of(c, b) for c, b in zip(data.campaigns.tolist(), data.banners.tolist())} == totals
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quarters, "ROWS_BATCH", 3)  # batches end inside the data
        rows = list(data.stat_rows())
    assert [row[:5] for row in rows] == [(c, b, *totals[(c, b)][:3]) for c, b in sorted(totals)]
    assert [row[5] for row in rows] == [float(totals[key][3]) for key in sorted(totals)]
    assert {c: (p, t) for c, p, t in data.campaign_plans()} == {c: (plans[c], sums[c]) for c in plans}
