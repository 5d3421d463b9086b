"""Parsed columns of one quarter in, per-banner statistics and every campaign's plan out (pure)."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from jobs.columns import (
    EMPTY, PairCodec, found_in, group_starts, money_carry, money_decimal, money_split, money_text,
)
from selection import PLAN_SIZE_MAX, PLAN_SIZE_MIN, BannerStats, Plan, rank_banners

POOL_TEXT_CHUNK = 1 << 16


@dataclass
class QuarterData:
    """Per-(campaign, banner) totals of one quarter, as columns sorted by campaign then banner.

    Revenue is exact money in three columns (see jobs.columns); plans are made on demand, a campaign at a time.
    """

    quarter: int
    seed: str
    campaigns: np.ndarray
    banners: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    revenue: tuple  # (high, low, nanos) columns

    def stats_of(self, campaign_id, banner_id) -> tuple:
        """(impressions, clicks, conversions, revenue) of one banner in one campaign."""
        start, end = (int(np.searchsorted(self.campaigns, campaign_id, side=side)) for side in ("left", "right"))
        at = start + int(np.searchsorted(self.banners[start:end], banner_id))
        if at >= end or self.banners[at] != banner_id:
            raise KeyError((campaign_id, banner_id))
        return int(self.impressions[at]), int(self.clicks[at]), int(self.conversions[at]), self.revenue_at(at)

    def revenue_at(self, row) -> Decimal:
        return money_decimal(*(column[row] for column in self.revenue))

    def revenue_floats(self) -> np.ndarray:
        """Each row's revenue as the nearest float (what the dashboard's statistics hold)."""
        out = np.zeros(len(self.campaigns))
        for row in np.flatnonzero(self.conversions).tolist():
            high, low, nanos = (int(column[row]) for column in self.revenue)
            out[row] = float(money_text(high * 10**6 + low, nanos))
        return out

    @property
    def campaign_count(self) -> int:
        return len(group_starts(self.campaigns))

    def campaign_plans(self):
        """(campaign_id, Plan, (impressions, clicks, conversions, revenue)) of every campaign, in id order."""
        starts = group_starts(self.campaigns)
        ends = np.append(starts[1:], len(self.campaigns))
        totals = [np.add.reduceat(column, starts) if len(starts) else EMPTY
                  for column in (self.impressions, self.clicks, self.conversions, *self.revenue)]
        money = money_carry(*totals[3:])
        converted = np.add.reduceat((self.conversions > 0).astype(np.int64), starts) if len(starts) else EMPTY
        candidates = self._candidates()
        bounds = np.searchsorted(candidates, np.append(starts, len(self.campaigns)))
        for i, campaign_id in enumerate(self.campaigns[starts].tolist()):
            rows = candidates[bounds[i]:bounds[i + 1]].tolist()
            stats = [
                BannerStats(int(self.banners[row]), int(self.clicks[row]), int(self.conversions[row]), self.revenue_at(row))
                for row in rows
            ]
            _, scenario, chosen = rank_banners(stats)
            fill = self._fill(campaign_id, self.banners[starts[i]:ends[i]], chosen)
            plan = Plan(x=int(converted[i]), scenario=scenario, banner_ids=tuple(chosen + fill), random_fill=len(fill))
            revenue = money_decimal(*(column[i] for column in money))
            yield campaign_id, plan, (int(totals[0][i]), int(totals[1][i]), int(totals[2][i]), revenue)

    def _candidates(self) -> np.ndarray:
        """Rows the rules can pick, sorted: each campaign's top ten by revenue and top five clicked unconverted.

        The rules look no further (X itself is counted separately), so only these become BannerStats.
        """
        high, low, nanos = self.revenue
        by_revenue = np.flatnonzero(self.conversions > 0)
        by_revenue = by_revenue[np.lexsort((
            self.banners[by_revenue], -self.clicks[by_revenue], -nanos[by_revenue], -low[by_revenue],
            -high[by_revenue], self.campaigns[by_revenue],
        ))]
        by_clicks = np.flatnonzero((self.clicks > 0) & (self.conversions == 0))
        by_clicks = by_clicks[np.lexsort((self.banners[by_clicks], -self.clicks[by_clicks], self.campaigns[by_clicks]))]
        return np.sort(np.concatenate((_first_of_each(by_revenue, self.campaigns, PLAN_SIZE_MAX),
                                       _first_of_each(by_clicks, self.campaigns, PLAN_SIZE_MIN))))

    def _fill(self, campaign_id, pool, chosen) -> list[int]:
        """selection.draw_fill over a pool held as a sorted column: the same seed and the same draw."""
        missing = PLAN_SIZE_MIN - len(chosen)
        if missing <= 0:
            return []
        pieces = (", ".join(map(str, pool[i:i + POOL_TEXT_CHUNK].tolist())) for i in range(0, len(pool), POOL_TEXT_CHUNK))
        rng = random.Random(f"{self.seed}:{self.quarter}:{campaign_id}:[{', '.join(pieces)}]")
        candidates = np.setdiff1d(pool, np.asarray(chosen, dtype=np.int64), assume_unique=True)
        return rng.sample(_Ids(candidates), min(missing, len(candidates)))


class _Ids(Sequence):
    """A sorted id column as a sequence of Python ints, for random.sample."""

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        return int(self.values[index])


def _first_of_each(rows, campaigns, count) -> np.ndarray:
    """The first `count` of `rows` (grouped by campaign) in each campaign."""
    if not len(rows):
        return EMPTY
    keys = campaigns[rows]
    starts = group_starts(keys)
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.append(starts, len(rows))))
    return rows[rank < count]


def build_quarter(quarter: int, impressions, clicks, conversions, seed: str = "") -> QuarterData:
    """Aggregate a quarter's parsed columns per (campaign, banner), exactly.

    `impressions` is an ImpressionCounts, `clicks` a Clicks and `conversions` a Conversions (jobs.columns).
    The random fill of a plan is seeded by the quarter, the campaign and its pool (and `seed`), so the
    same data gives the same plans however its files are written.
    """
    codec = PairCodec((impressions.campaigns, clicks.campaigns), (impressions.banners, clicks.banners))
    click_keys = codec.encode(clicks.campaigns, clicks.banners)
    clicked_keys, clicked_counts = np.unique(click_keys, return_counts=True)
    impression_keys = codec.encode(impressions.campaigns, impressions.banners)
    keys = np.union1d(impression_keys, clicked_keys)
    impression_counts = np.zeros(len(keys), dtype=np.int64)
    impression_counts[np.searchsorted(keys, impression_keys)] = impressions.counts
    click_counts = np.zeros(len(keys), dtype=np.int64)
    click_counts[np.searchsorted(keys, clicked_keys)] = clicked_counts
    del impression_keys, clicked_keys, clicked_counts
    _, click_ids, units, nanos = conversions.kept()
    at_conversions = np.searchsorted(keys, click_keys[found_in(clicks.ids, click_ids)[0]])
    del click_keys
    conversion_counts = np.bincount(at_conversions, minlength=len(keys)).astype(np.int64)
    revenue = []
    for part in money_split(units, nanos):
        sums = np.zeros(len(keys), dtype=np.int64)
        np.add.at(sums, at_conversions, part)
        revenue.append(sums)
    campaigns, banners = codec.decode(keys)
    return QuarterData(quarter, seed, campaigns, banners, impression_counts, click_counts, conversion_counts,
                       money_carry(*revenue))
