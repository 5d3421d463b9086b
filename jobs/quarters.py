"""Parsed columns of one quarter in, per-banner statistics and every campaign's plan out (pure)."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from jobs.columns import EMPTY, PairCodec, found_in, group_starts, money_carry, money_decimal, money_split, money_text
from selection import PLAN_SIZE_MAX, PLAN_SIZE_MIN, BannerStats, Plan, rank_banners

POOL_TEXT_CHUNK = 1 << 16
ROWS_BATCH = 5000


@dataclass
class QuarterData:
    """Per-(campaign, banner) totals of one quarter, as columns sorted by campaign then banner.

    Conversions and revenue are held only for the rows that have conversions (`converted`, sorted);
    revenue is exact money in three columns (see jobs.columns). Plans are made a campaign at a time.
    """

    quarter: int
    seed: str
    campaigns: np.ndarray
    banners: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    converted: np.ndarray  # rows with conversions
    conversions: np.ndarray  # of each converted row
    revenue: tuple  # (high, low, nanos) of each converted row

    def stats_of(self, campaign_id, banner_id) -> tuple:
        """(impressions, clicks, conversions, revenue) of one banner in one campaign."""
        start, end = (int(np.searchsorted(self.campaigns, campaign_id, side=side)) for side in ("left", "right"))
        row = start + int(np.searchsorted(self.banners[start:end], banner_id))
        if row >= end or self.banners[row] != banner_id:
            raise KeyError((campaign_id, banner_id))
        return (int(self.impressions[row]), int(self.clicks[row])) + self._conversions_of(row)

    def _conversions_of(self, row) -> tuple:
        """(conversions, revenue) of one row."""
        at, hit = found_in(self.converted, np.asarray([row]))
        if not hit[0]:
            return 0, Decimal(0)
        return int(self.conversions[at[0]]), money_decimal(*(column[at[0]] for column in self.revenue))

    @property
    def campaign_count(self) -> int:
        return len(group_starts(self.campaigns))

    def stat_rows(self):
        """(campaign_id, banner_id, impressions, clicks, conversions, revenue as the nearest float) of every row."""
        for start in range(0, len(self.campaigns), ROWS_BATCH):
            end = min(start + ROWS_BATCH, len(self.campaigns))
            first, last = np.searchsorted(self.converted, [start, end])
            conversions, revenue = [0] * (end - start), [0.0] * (end - start)
            for i in range(first, last):
                high, low, nanos = (int(column[i]) for column in self.revenue)
                conversions[self.converted[i] - start] = int(self.conversions[i])
                revenue[self.converted[i] - start] = float(money_text(high * 10**6 + low, nanos))
            yield from zip(self.campaigns[start:end].tolist(), self.banners[start:end].tolist(),
                           self.impressions[start:end].tolist(), self.clicks[start:end].tolist(), conversions, revenue)

    def campaign_plans(self):
        """(campaign_id, Plan, (impressions, clicks, conversions, revenue)) of every campaign, in id order."""
        starts = group_starts(self.campaigns)
        ends = np.append(starts[1:], len(self.campaigns))
        campaign_ids = self.campaigns[starts].tolist()
        impressions, clicks = (np.add.reduceat(c, starts) if len(starts) else EMPTY for c in (self.impressions, self.clicks))
        of_campaign = np.searchsorted(starts, self.converted, side="right") - 1
        x = np.bincount(of_campaign, minlength=len(starts))
        conversions = np.zeros(len(starts), dtype=np.int64)
        np.add.at(conversions, of_campaign, self.conversions)
        money = []
        for part in self.revenue:
            sums = np.zeros(len(starts), dtype=np.int64)
            np.add.at(sums, of_campaign, part)
            money.append(sums)
        money = money_carry(*money)
        candidates = self._candidates()
        bounds = np.searchsorted(candidates, np.append(starts, len(self.campaigns)))
        for i, campaign_id in enumerate(campaign_ids):
            stats = [
                BannerStats(int(self.banners[row]), int(self.clicks[row]), *self._conversions_of(row))
                for row in candidates[bounds[i]:bounds[i + 1]].tolist()
            ]
            _, scenario, chosen = rank_banners(stats)
            fill = self._fill(campaign_id, self.banners[starts[i]:ends[i]], chosen)
            plan = Plan(x=int(x[i]), scenario=scenario, banner_ids=tuple(chosen + fill), random_fill=len(fill))
            revenue = money_decimal(*(column[i] for column in money))
            yield campaign_id, plan, (int(impressions[i]), int(clicks[i]), int(conversions[i]), revenue)

    def _candidates(self) -> np.ndarray:
        """Rows the rules can pick, sorted: each campaign's top ten by revenue and top five clicked unconverted.

        The rules look no further (X itself is counted separately), so only these become BannerStats.
        """
        high, low, nanos = self.revenue
        rows = self.converted
        by_revenue = rows[np.lexsort((self.banners[rows], -self.clicks[rows], -nanos, -low, -high, self.campaigns[rows]))]
        clicked = self.clicks > 0
        clicked[self.converted] = False
        by_clicks = np.flatnonzero(clicked)
        del clicked
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
    starts = group_starts(campaigns[rows])
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
    del impression_keys
    click_counts = np.zeros(len(keys), dtype=np.int64)
    click_counts[np.searchsorted(keys, clicked_keys)] = clicked_counts
    del clicked_keys, clicked_counts
    _, click_ids, units, nanos = conversions.kept()
    converted, at_converted = np.unique(
        np.searchsorted(keys, click_keys[found_in(clicks.ids, click_ids)[0]]), return_inverse=True
    )
    del click_keys
    conversion_counts = np.bincount(at_converted, minlength=len(converted)).astype(np.int64)
    revenue = []
    for part in money_split(units, nanos):
        sums = np.zeros(len(converted), dtype=np.int64)
        np.add.at(sums, at_converted, part)
        revenue.append(sums)
    campaigns, banners = codec.decode(keys)
    return QuarterData(quarter, seed, campaigns, banners, impression_counts, click_counts, converted,
                       conversion_counts, money_carry(*revenue))
