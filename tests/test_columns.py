"""The column operations under the parsers: dedupe, merging, pair counting and exact money."""

from array import array
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.columns import (
    LineNumbers, PairCodec, first_wins, merge_sorted, money_carry, money_decimal, money_parts, money_split, money_text,
)
from jobs.parsed import PairCounter


def ints(values):
    return np.asarray(values, dtype=np.int64)


def test_first_wins_keeps_the_first_row_of_each_id_and_compares_the_repeats():
    ids = ints([5, 3, 5, 3, 9, 5])
    values = (ints([1, 2, 1, 7, 4, 2]),)
    winners, repeats, same = first_wins(ids, values, ints([]), (ints([]),))
    assert ids[winners].tolist() == [3, 5, 9] and winners.tolist() == [1, 0, 4]
    assert repeats.tolist() == [2, 3, 5] and same.tolist() == [True, False, False]


def test_first_wins_an_earlier_files_row_wins_over_every_row_of_this_file():
    ids = ints([4, 2, 4])
    values = (ints([1, 1, 8]), ints([0, 0, 0]))
    winners, repeats, same = first_wins(ids, values, ints([4, 6]), (ints([8, 1]), ints([0, 0])))
    assert ids[winners].tolist() == [2]
    assert repeats.tolist() == [0, 2] and same.tolist() == [False, True]


def test_first_wins_ids_already_in_order_are_all_winners_without_a_copy():
    ids = ints([1, 2, 7])
    winners, repeats, _ = first_wins(ids, (ids,), ints([]), (ints([]),))
    assert winners == slice(None) and len(repeats) == 0
    assert first_wins(ints([1, 1]), (ints([1, 1]),), ints([]), (ints([]),))[1].tolist() == [1]


def test_first_wins_compares_every_value_column():
    ids = ints([1, 1, 1])
    winners, repeats, same = first_wins(ids, (ints([5, 5, 5]), ints([6, 7, 6])), ints([]), (ints([]), ints([])))
    assert same.tolist() == [False, True]


@given(st.lists(st.tuples(st.integers(1, 30), st.integers(0, 2)), max_size=80), st.lists(st.integers(1, 30), max_size=10, unique=True))
def test_first_wins_agrees_with_a_dict_of_first_rows(rows, earlier):
    earlier = sorted(earlier)
    first = {k: k % 3 for k in earlier}
    expected_same = []
    for key, value in rows:
        if key in first:
            expected_same.append(first[key] == value)
        else:
            first[key] = value
    ids, values = ints([k for k, _ in rows]), ints([v for _, v in rows])
    winners, repeats, same = first_wins(ids, (values,), ints(earlier), (ints([k % 3 for k in earlier]),))
    assert sorted(set(ids[winners].tolist()) | set(earlier)) == sorted(first)
    assert same.tolist() == expected_same and len(repeats) + len(ids[winners]) == len(rows)


def test_merge_sorted_interleaves_two_tables_by_id():
    ids, (values,) = merge_sorted(ints([2, 5, 9]), (ints([20, 50, 90]),), ints([1, 6, 10]), (ints([10, 60, 100]),))
    assert ids.tolist() == [1, 2, 5, 6, 9, 10] and values.tolist() == [10, 20, 50, 60, 90, 100]
    assert merge_sorted(ints([]), (ints([]),), ints([3]), (ints([4]),))[0].tolist() == [3]
    assert merge_sorted(ints([3]), (ints([4]),), ints([]), (ints([]),))[1][0].tolist() == [4]


pairs = st.lists(st.tuples(st.sampled_from([1, 2, 2**31 - 1, 2**31, 2**63 - 1]), st.sampled_from([1, 5, 2**32 - 1, 2**32, 2**63 - 1])), max_size=60)


@settings(deadline=None)
@given(pairs, pairs)
def test_pair_counter_folds_chunks_into_the_counts_a_counter_gives(first, second):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PairCounter, "CHUNK", 4)
        counter = PairCounter()
        for campaign, banner in first:
            counter.campaigns.append(campaign)
            counter.banners.append(banner)
            if len(counter.campaigns) == counter.limit:
                counter.fold()
        counter.fold()
        again = PairCounter(counter.total)  # an earlier file's counts, continued
        for campaign, banner in second:
            again.campaigns.append(campaign)
            again.banners.append(banner)
        again.fold()
    total = again.total
    assert dict(total) == Counter(first + second)
    keys = list(zip(total.campaigns.tolist(), total.banners.tolist()))
    assert keys == sorted(keys)


def test_pair_codec_keeps_the_order_of_pairs_however_large_the_ids():
    campaigns, banners = ints([2**63 - 1, 3, 3]), ints([1, 2**40, 7])
    codec = PairCodec((campaigns,), (banners,))
    keys = codec.encode(campaigns, banners)
    assert np.argsort(keys).tolist() == [2, 1, 0]
    assert [c.tolist() for c in codec.decode(keys)] == [campaigns.tolist(), banners.tolist()]
    small = PairCodec((ints([3]),), (ints([7]),))
    assert small.encode(ints([3]), ints([7])).tolist() == [(3 << 32) | 7]


@pytest.mark.parametrize("text, parts", [
    ("0", (0, 0)), ("1.5", (1, 500_000_000)), ("0.000000001", (0, 1)), ("150", (150, 0)),
    ("999999999999.999999999", (999_999_999_999, 999_999_999)), ("1E+3", (1000, 0)), ("2.50", (2, 500_000_000)),
])
def test_money_parts_are_exact_units_and_nanos(text, parts):
    assert money_parts(Decimal(text)) == parts


def test_money_parts_refuse_what_the_money_rule_refuses():
    with pytest.raises(ValueError, match="9 decimal places"):
        money_parts(Decimal("0.0000000001"))


@pytest.mark.parametrize("parts, text", [((0, 0), "0"), ((12, 500_000_000), "12.5"), ((3, 1), "3.000000001"), ((150, 0), "150")])
def test_money_text_is_plain_decimal_without_trailing_zeros(parts, text):
    assert money_text(*parts) == text


def test_money_sums_carry_exactly_beyond_int64_units():
    units = ints([999_999_999_999] * 4 + [0])
    nanos = ints([999_999_999] * 4 + [4])
    high, low, nano = (np.asarray([part.sum()]) for part in money_split(units, nanos))
    high, low, nano = money_carry(high, low, nano)
    assert (low[0] < 10**6, nano[0]) == (True, 0)
    assert money_decimal(high[0], low[0], nano[0]) == 4 * Decimal("999999999999.999999999") + Decimal("0.000000004")


def test_line_numbers_follow_rows_across_skipped_lines():
    lines = LineNumbers()
    for row, line in enumerate([2, 3, 4, 7, 8, 12]):
        lines.mark(row, line)
    assert lines.of(ints([0, 2, 3, 4, 5])).tolist() == [2, 4, 7, 8, 12]
    assert len(lines.rows) == 3  # one entry per break, not per row
    assert isinstance(lines.rows, array)
