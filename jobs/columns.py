"""Parsed rows as numpy columns: first-row-wins dedupe, pair counts, exact money sums (pure: numpy only).

Memory grows with the distinct keys a file holds, a few int64s each, never with Python objects per row.
"""

from array import array
from decimal import Decimal

import numpy as np

NANO = 10**9
# Money is kept as whole units (< 10^12) and nanos; for sums the units are split at 10^6, so that every
# part is under 10^9 and no int64 sum of up to 9 * 10^9 rows can overflow; carried back afterwards.
SPLIT = 10**6
EMPTY = np.zeros(0, dtype=np.int64)


def column(buffer) -> np.ndarray:
    """An int64 column over an array('q') buffer, without copying it."""
    return np.frombuffer(buffer, dtype=np.int64) if len(buffer) else EMPTY


class LineNumbers:
    """The line number of each buffered row, kept only where lines stop being consecutive (blank, rejected)."""

    def __init__(self):
        self.rows, self.lines = array("q"), array("q")
        self.expected = None

    def mark(self, row: int, line: int) -> None:
        if line != self.expected:
            self.rows.append(row)
            self.lines.append(line)
        self.expected = line + 1

    def of(self, rows: np.ndarray) -> np.ndarray:
        at = np.searchsorted(column(self.rows), rows, side="right") - 1
        return column(self.lines)[at] + (rows - column(self.rows)[at])


def found_in(sorted_ids: np.ndarray, ids: np.ndarray):
    """(positions of `ids` in `sorted_ids`, whether each is there)."""
    pos = np.searchsorted(sorted_ids, ids)
    if not len(sorted_ids):
        return pos, np.zeros(len(ids), dtype=bool)
    np.minimum(pos, len(sorted_ids) - 1, out=pos)
    return pos, sorted_ids[pos] == ids


def first_wins(ids, values, earlier_ids, earlier_values):
    """Split one file's rows by id: the first row of an id wins unless an earlier file had the id.

    Returns (winners, repeats, same): the new winners' rows in id order (an index array, or a slice of
    all rows when they already are), the rows that repeat a winner (this file's or an earlier one's)
    in row order, and for each repeat whether its values equal the winner's (a duplicate) or not (a conflict).
    """
    if not len(earlier_ids) and bool(np.all(ids[1:] > ids[:-1])):
        return slice(None), EMPTY, np.ones(0, dtype=bool)  # ascending and new: nothing to sort or compare
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    first = np.ones(len(ids), dtype=bool)
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=first[1:])
    earlier = found_in(earlier_ids, sorted_ids)[1]
    del sorted_ids
    winners = order[first & ~earlier]
    repeats = np.sort(order[~first | earlier])
    del order, first, earlier
    repeat_ids = ids[repeats]
    in_file = found_in(ids[winners], repeat_ids)[0]
    in_earlier, is_earlier = found_in(earlier_ids, repeat_ids)
    same = np.ones(len(repeats), dtype=bool)
    for mine, theirs in zip(values, earlier_values):
        winner = mine[winners][in_file] if len(winners) else np.zeros(len(repeats), dtype=mine.dtype)
        if len(theirs):
            winner = np.where(is_earlier, theirs[in_earlier], winner)
        same &= mine[repeats] == winner
    return winners, repeats, same


def merge_sorted(ids_a, columns_a, ids_b, columns_b):
    """Two id-sorted tables with no id in common, merged into one sorted by id."""
    if not len(ids_a) or not len(ids_b):
        return (ids_b, columns_b) if len(ids_b) else (ids_a, columns_a)
    at = np.searchsorted(ids_a, ids_b) + np.arange(len(ids_b))
    from_b = np.zeros(len(ids_a) + len(ids_b), dtype=bool)
    from_b[at] = True
    merged = []
    for a, b in zip((ids_a, *columns_a), (ids_b, *columns_b)):
        out = np.empty(len(from_b), dtype=np.result_type(a, b))
        out[at], out[~from_b] = b, a
        merged.append(out)
    return merged[0], merged[1:]


def group_pairs(first, second, *values):
    """Sorted distinct (first, second) pairs: (first, second, row count, sum of each value column)."""
    if not len(first):
        return (EMPTY, EMPTY, EMPTY, *(EMPTY for _ in values))
    order = pair_order(first, second)
    first, second = first[order], second[order]
    starts = np.flatnonzero(np.concatenate(([True], (first[1:] != first[:-1]) | (second[1:] != second[:-1]))))
    counts = np.diff(np.append(starts, len(order)))
    sums = [np.add.reduceat(v[order], starts) for v in values]
    return (first[starts], second[starts], counts, *sums)


def group_starts(keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts in sorted `keys`."""
    if not len(keys):
        return EMPTY
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))


def money_parts(value: Decimal) -> tuple[int, int]:
    """(units, nanos) of a revenue that passed the money rule: exact integers."""
    nanos = value.scaleb(9)  # exact: at most 21 digits, inside the default 28-digit precision
    if nanos != nanos.to_integral_value():
        raise ValueError(f"revenue {value} has more than 9 decimal places")
    return divmod(int(nanos), NANO)


def money_split(units, nanos):
    """Money columns for summing: (units above 10^6, units below, nanos)."""
    high, low = np.divmod(units, SPLIT)
    return high, low, nanos


def money_carry(high, low, nanos):
    """Summed money columns back into (high, low < 10^6, nanos < 10^9); equal money, equal columns."""
    carry, nanos = np.divmod(nanos, NANO)
    carry, low = np.divmod(low + carry, SPLIT)
    return high + carry, low, nanos


def money_decimal(high, low, nanos) -> Decimal:
    """The exact Decimal of one money value held as (high, low, nanos)."""
    return Decimal(money_text(int(high) * SPLIT + int(low), int(nanos)))


def money_text(units: int, nanos: int) -> str:
    """'12.5' for (12, 500000000): plain decimal text, no trailing zeros."""
    return f"{units}.{nanos:09d}".rstrip("0").rstrip(".") if nanos else str(units)


def packable(campaigns, banners) -> bool:
    """Whether (campaign, banner) fits one int64 as campaign << 32 | banner (ids are positive)."""
    return (not len(campaigns) or campaigns.max() < 2**31) and (not len(banners) or banners.max() < 2**32)


class PairCodec:
    """(campaign, banner) pairs as one int64 each that sorts like the pair, for every table of a quarter alike.

    Ids that fit (campaign < 2^31, banner < 2^32) are packed as they are; otherwise each id is replaced
    by its rank among the ids the tables hold, which keeps the order and always fits.
    """

    def __init__(self, campaign_columns, banner_columns):
        fits = all(packable(c, b) for c, b in zip(campaign_columns, banner_columns))
        self.campaigns = None if fits else np.unique(np.concatenate(campaign_columns))
        self.banners = None if fits else np.unique(np.concatenate(banner_columns))

    def encode(self, campaigns, banners) -> np.ndarray:
        if self.campaigns is not None:
            campaigns, banners = np.searchsorted(self.campaigns, campaigns), np.searchsorted(self.banners, banners)
        return (campaigns << 32) | banners

    def decode(self, keys):
        campaigns, banners = keys >> 32, keys & (2**32 - 1)
        if self.campaigns is not None:
            return self.campaigns[campaigns], self.banners[banners]
        return campaigns, banners


def pair_order(first, second) -> np.ndarray:
    """The order that sorts rows by (first, second)."""
    if len(first) and first.max() < 2**31 and second.max() < 2**32:
        # Ids are positive: one packed int64 key sorts faster and in less memory than lexsort's two.
        return np.argsort((first << 32) | second, kind="stable")
    return np.lexsort((second, first))
