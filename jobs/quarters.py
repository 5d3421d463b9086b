"""Parsed rows of one quarter in, per-banner statistics and every campaign's plan out (pure)."""

import random
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

from selection import BannerStats, select_banners


@dataclass
class QuarterData:
    """Everything ingest stores for one quarter."""

    banner_stats: dict  # {(campaign_id, banner_id): (impressions, clicks, conversions, revenue)}
    plans: dict  # {campaign_id: Plan}


def build_quarter(quarter: int, impressions, clicks, conversions, seed: str = "") -> QuarterData:
    """Aggregate a quarter's rows and apply the rules to every campaign.

    `impressions` is {(campaign_id, banner_id): count}, `clicks` {click_id: (banner_id, campaign_id)},
    `conversions` {conversion_id: (click_id, revenue)} with orphans already left out.
    The random fill is seeded by the quarter, the campaign and its pool (and `seed`), so the same
    data gives the same plans however its files are written.
    """
    with localcontext() as exact:
        # Revenues have at most 12 + 9 digits (the money rule), so 40 digits hold any sum of them
        # exactly; a sum that did not fit would raise (Inexact) rather than round.
        exact.prec = 40
        exact.traps[Inexact] = True
        return _build_quarter(quarter, impressions, clicks, conversions, seed)


def _build_quarter(quarter, impressions, clicks, conversions, seed) -> QuarterData:
    totals = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for key, count in impressions.items():
        totals[key][0] += count
    for banner_id, campaign_id in clicks.values():
        totals[(campaign_id, banner_id)][1] += 1
    for click_id, revenue in conversions.values():
        banner_id, campaign_id = clicks[click_id]
        row = totals[(campaign_id, banner_id)]
        row[2] += 1
        row[3] += revenue

    by_campaign = defaultdict(list)
    for (campaign_id, banner_id), (_, n_clicks, n_conv, revenue) in totals.items():
        by_campaign[campaign_id].append(BannerStats(banner_id, n_clicks, n_conv, revenue))

    plans = {}
    for campaign_id, stats in by_campaign.items():
        pool = sorted(s.banner_id for s in stats)
        rng = random.Random(f"{seed}:{quarter}:{campaign_id}:{pool}")
        plans[campaign_id] = select_banners(stats, pool, rng)
    return QuarterData({key: tuple(value) for key, value in totals.items()}, plans)


def campaign_totals(data: QuarterData) -> dict:
    """{campaign_id: (impressions, clicks, conversions, revenue)} summed over banners."""
    sums = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    for (campaign_id, _), values in data.banner_stats.items():
        row = sums[campaign_id]
        for i, value in enumerate(values):
            row[i] += value
    return {campaign_id: tuple(row) for campaign_id, row in sums.items()}
