"""The parsers' results: mappings of impressions, clicks and conversions held as numpy columns (pure: numpy only)."""

from array import array
from collections.abc import Mapping
from decimal import Decimal

import numpy as np

from jobs.columns import EMPTY, column, found_in, group_pairs, merge_sorted, money_text, packable


class ImpressionCounts(Mapping):
    """{(campaign_id, banner_id): impressions}, as columns sorted by campaign then banner."""

    def __init__(self, campaigns=EMPTY, banners=EMPTY, counts=EMPTY):
        self.campaigns, self.banners, self.counts = campaigns, banners, counts

    def __getitem__(self, key):
        campaign, banner = key
        lo, hi = np.searchsorted(self.campaigns, campaign), np.searchsorted(self.campaigns, campaign, side="right")
        at = lo + np.searchsorted(self.banners[lo:hi], banner)
        if at < hi and self.banners[at] == banner:
            return int(self.counts[at])
        raise KeyError(key)

    def __iter__(self):
        return zip(self.campaigns.tolist(), self.banners.tolist())

    def __len__(self):
        return len(self.campaigns)


class Clicks(Mapping):
    """{click_id: (banner_id, campaign_id)}, as columns sorted by click id."""

    def __init__(self, ids=EMPTY, banners=EMPTY, campaigns=EMPTY):
        self.ids, self.banners, self.campaigns = ids, banners, campaigns

    def __getitem__(self, click_id):
        pos, hit = found_in(self.ids, np.asarray([click_id], dtype=np.int64))
        if not hit[0]:
            raise KeyError(click_id)
        return int(self.banners[pos[0]]), int(self.campaigns[pos[0]])

    def __iter__(self):
        return iter(self.ids.tolist())

    def __len__(self):
        return len(self.ids)


class Conversions(Mapping):
    """{conversion_id: (click_id, revenue)} of the conversions kept; orphans are held for dedupe only."""

    def __init__(self, ids=EMPTY, click_ids=EMPTY, units=EMPTY, nanos=EMPTY, known=np.zeros(0, dtype=bool)):
        self.ids, self.click_ids, self.units, self.nanos, self.known = ids, click_ids, units, nanos, known

    def kept(self):
        """(conversion ids, click ids, units, nanos) of the conversions whose click is known."""
        return self.ids[self.known], self.click_ids[self.known], self.units[self.known], self.nanos[self.known]

    def __getitem__(self, conversion_id):
        pos, hit = found_in(self.ids, np.asarray([conversion_id], dtype=np.int64))
        if not (hit[0] and self.known[pos[0]]):
            raise KeyError(conversion_id)
        at = pos[0]
        return int(self.click_ids[at]), Decimal(money_text(int(self.units[at]), int(self.nanos[at])))

    def __iter__(self):
        return iter(self.ids[self.known].tolist())

    def __len__(self):
        return int(np.count_nonzero(self.known))


class PairCounter:
    """Impressions per (campaign, banner): rows buffered a chunk at a time, folded into distinct pairs.

    A chunk is at least as large as the distinct pairs so far, so folding costs O(rows log rows) in all.
    While ids fit, pairs are kept as one packed int64 key and each chunk is merged into the sorted total
    without sorting it again; a larger id switches to sorting (campaign, banner) columns.
    """

    CHUNK = 1 << 20

    def __init__(self, start=None):
        self.keys, self.counts, self.columns = EMPTY, EMPTY, None
        self.campaigns, self.banners = array("q"), array("q")
        if start is not None and len(start):
            self._add(start.campaigns, start.banners, start.counts)
        self.limit = max(self.CHUNK, len(self))

    def __len__(self):
        return len(self.keys) if self.columns is None else len(self.columns[0])

    def fold(self) -> None:
        """Add the buffered rows to the total and empty the buffers."""
        campaigns, banners = column(self.campaigns), column(self.banners)
        self.campaigns, self.banners = array("q"), array("q")
        self._add(campaigns, banners, None)
        self.limit = max(self.CHUNK, len(self))

    def _add(self, campaigns, banners, weights) -> None:
        """Add rows of pairs, each counting 1 or, given distinct sorted pairs, its weight."""
        if self.columns is None and packable(campaigns, banners):
            if weights is None:
                keys, counts = np.unique((campaigns << 32) | banners, return_counts=True)
            else:  # rows already distinct and sorted (an earlier file's total)
                keys, counts = (campaigns << 32) | banners, weights.copy()
            del campaigns, banners
            pos, hit = found_in(self.keys, keys)
            self.counts[pos[hit]] += counts[hit]
            self.keys, (self.counts,) = merge_sorted(self.keys, (self.counts,), keys[~hit], (counts[~hit],))
        else:
            if self.columns is None:
                self.columns = (self.keys >> 32, self.keys & (2**32 - 1), self.counts)
                self.keys, self.counts = EMPTY, EMPTY
            weights = np.ones(len(campaigns), dtype=np.int64) if weights is None else weights
            total = self.columns
            first, second, _, counts = group_pairs(np.concatenate((total[0], campaigns)), np.concatenate((total[1], banners)),
                                                   np.concatenate((total[2], weights)))
            self.columns = (first, second, counts)

    @property
    def total(self):
        """The counts so far, as ImpressionCounts."""
        if self.columns is None:
            return ImpressionCounts(self.keys >> 32, self.keys & (2**32 - 1), self.counts)
        return ImpressionCounts(*self.columns)
