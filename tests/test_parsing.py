"""CSV validation on inline text: every kind of bad row, header and repeat."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.parsing import FileRejected, parse_clicks, parse_conversions, parse_impressions


def lines(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.splitlines(keepends=True)


def test_parse_impressions_counts_repeated_rows_as_impressions_not_duplicates():
    counts, report = parse_impressions(lines("banner_id,campaign_id\n10,1\n10,1\n11,1\n10,2\n"))
    assert counts == {(1, 10): 2, (1, 11): 1, (2, 10): 1}
    assert (report.rows_read, report.loaded, report.duplicates, report.rejected) == (4, 4, 0, 0)


@pytest.mark.parametrize(
    "row, reason",
    [
        ("10", "expected 2 fields, found 1"),
        ("10,1,7", "expected 2 fields, found 3"),
        ("abc,1", "banner_id 'abc' is not a positive integer"),
        ("10,-1", "campaign_id '-1' is not a positive integer"),
        ("0,1", "banner_id is 0"),
        ("1.5,1", "banner_id '1.5' is not a positive integer"),
        ("10,", "campaign_id '' is not a positive integer"),
        ("10,99999999999999999999", "campaign_id 99999999999999999999 is beyond 64 bits"),
        ("１０,1", "is not a positive integer"),
    ],
)
def test_parse_impressions_rejects_bad_rows_with_line_and_reason(row, reason):
    counts, report = parse_impressions(lines(f"banner_id,campaign_id\n10,1\n{row}\n11,1\n"))
    assert counts == {(1, 10): 1, (1, 11): 1}
    assert report.rejected == 1 and report.loaded == 2 and report.rows_read == 3
    line, text = report.rejects[0]
    assert line == 3 and reason in text


def test_parse_ids_accept_the_largest_64_bit_value():
    counts, report = parse_impressions(lines(f"banner_id,campaign_id\n{2**63 - 1},1\n{2**63},1\n"))
    assert counts == {(1, 2**63 - 1): 1} and report.rejected == 1


def test_parse_header_with_bom_spaces_and_crlf_is_accepted():
    text = "\ufeff banner_id , campaign_id \r\n10,1\r\n 11 , 2 \r\n"
    counts, report = parse_impressions(lines(text))
    assert counts == {(1, 10): 1, (2, 11): 1} and report.rejected == 0


def test_parse_quoted_fields_are_unquoted():
    clicks, report = parse_clicks(lines('click_id,banner_id,campaign_id\n"5","10","1"\n'))
    assert clicks == {5: (10, 1)} and report.rejected == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("click_id,banner_id\n1,2\n", "does not match"),
        ("banner_id,campaign_id\n1,2\n", "does not match"),
        ("click_id,banner_id,campaign_id,extra\n", "does not match"),
        (b"\xff\xfeclick_id\n", "not UTF-8"),
    ],
)
def test_parse_wrong_or_missing_header_rejects_the_whole_file(text, message):
    with pytest.raises(FileRejected, match=message):
        parse_clicks(lines(text))


def test_parse_header_only_is_an_empty_but_valid_file():
    clicks, report = parse_clicks(lines("click_id,banner_id,campaign_id\n"))
    assert clicks == {} and report.rows_read == 0


def test_parse_non_utf8_row_is_rejected_and_the_rest_kept():
    data = b"banner_id,campaign_id\n10,1\n\xff\xfe,1\n11,1\n"
    counts, report = parse_impressions(lines(data))
    assert counts == {(1, 10): 1, (1, 11): 1}
    assert report.rejects == [(3, "row is not valid UTF-8")]


def test_parse_blank_lines_are_skipped_not_counted():
    counts, report = parse_impressions(lines("banner_id,campaign_id\n10,1\n\n11,1\n\n"))
    assert report.rows_read == 2 and report.rejected == 0 and sum(counts.values()) == 2


def test_parse_clicks_exact_repeat_is_a_duplicate_and_other_values_a_conflict_first_wins():
    text = "click_id,banner_id,campaign_id\n1,10,1\n1,10,1\n1,11,1\n2,10,1\n"
    clicks, report = parse_clicks(lines(text))
    assert clicks == {1: (10, 1), 2: (10, 1)}
    assert (report.loaded, report.duplicates, report.conflicts) == (2, 1, 1)
    assert report.conflict_samples[0][0] == 4 and "click_id 1" in report.conflict_samples[0][1]


def test_parse_conversions_duplicates_conflicts_orphans_and_exact_revenue():
    text = (
        "conversion_id,click_id,revenue\n"
        "1,100,1.10\n"
        "1,100,1.1\n"  # the same value written otherwise: a duplicate
        "1,100,2\n"  # a conflict: the first row wins
        "2,999,3\n"  # no such click: an orphan
        "3,101,0\n"
    )
    conversions, report = parse_conversions(lines(text), {100, 101})
    assert conversions == {1: (100, Decimal("1.10")), 3: (101, Decimal(0))}
    assert (report.rows_read, report.loaded, report.duplicates, report.conflicts, report.orphans) == (5, 2, 1, 1, 1)


@pytest.mark.parametrize(
    "revenue, reason",
    [
        ("-1", "negative"),
        ("-0.5", "negative"),
        ("nan", "not a number"),
        ("NaN", "not a number"),
        ("inf", "not a number"),
        ("-inf", "negative"),
        ("Infinity", "not a number"),
        ("1e400", "more than 12 integer digits"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("1_000", "not a number"),
        ("0x10", "not a number"),
        ("+5", "not a number"),
        ("１.5", "not a number"),  # fullwidth digits: Decimal() would take them
        ("٣", "not a number"),
        ("1e-999999999", "more than 9 decimal places"),
        ("1e-99999999999999999999999999", "more than 9 decimal places"),
        ("1e99999999999999999999999999", "more than 12 integer digits"),
        ("1234567890123", "more than 12 integer digits"),
        ("0.0000000001", "more than 9 decimal places"),
        ("1" * 5000, "more than 12 integer digits"),
    ],
)
def test_parse_conversions_rejects_revenue_that_is_not_money(revenue, reason):
    conversions, report = parse_conversions(lines(f"conversion_id,click_id,revenue\n1,100,{revenue}\n"), {100})
    assert conversions == {} and report.rejected == 1
    assert reason in report.rejects[0][1]
    assert report.rejects[0][0] == 2


@pytest.mark.parametrize(
    "revenue, value",
    [
        ("1.5e2", Decimal("150")),
        (".25", Decimal("0.25")),
        ("1e3", Decimal("1000")),
        ("999999999999", Decimal("999999999999")),
        ("999999999999.999999999", Decimal("999999999999.999999999")),
        ("0.0000000010", Decimal("0.000000001")),  # trailing zeros do not count as places
        ("123456789e-9", Decimal("0.123456789")),
        ("000000000000000000001.5", Decimal("1.5")),
        ("1.E2", Decimal("100")),
    ],
)
def test_parse_conversions_accepts_money_in_plain_or_exponent_form(revenue, value):
    conversions, report = parse_conversions(lines(f"conversion_id,click_id,revenue\n1,100,{revenue}\n"), {100})
    assert report.rejected == 0 and conversions[1][1] == value


def test_parse_revenue_of_a_huge_exponent_is_refused_without_building_the_number():
    from jobs.parsing import RowRejected, parse_revenue

    with pytest.raises(RowRejected):
        parse_revenue("1e-" + "9" * 40)
    with pytest.raises(RowRejected):
        parse_revenue("9" * 4000 + "e-4000")


def test_parse_reasons_quote_at_most_200_characters_of_input():
    from jobs.parsing import MAX_QUOTE

    long_value = "x" * 10_000
    for text, parse in [
        (f"banner_id,campaign_id\n{long_value},1\n", parse_impressions),
        (f"click_id,banner_id,campaign_id\n1,{long_value},1\n", parse_clicks),
        (f"conversion_id,click_id,revenue\n1,100,{long_value}\n", lambda ls: parse_conversions(ls, {100})),
        (f"conversion_id,click_id,revenue\n1,100,1e-{'9' * 5000}\n", lambda ls: parse_conversions(ls, {100})),
    ]:
        _, report = parse(lines(text))
        assert report.rejected == 1
        assert len(report.rejects[0][1]) <= MAX_QUOTE + 80, report.rejects[0][1][:300]
    assert MAX_QUOTE == 200


def test_parse_header_that_does_not_match_is_quoted_by_at_most_200_characters():
    with pytest.raises(FileRejected) as caught:
        parse_clicks(lines("a" * 19_000_000 + "\n1,1,1\n"))
    assert len(str(caught.value)) < 400 and "does not match" in str(caught.value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_parse_file_that_is_not_utf8_is_refused_with_that_reason(encoding):
    data = "click_id,banner_id,campaign_id\n1,10,1\n".encode(encoding)
    with pytest.raises(FileRejected) as caught:
        parse_clicks(lines(data))
    assert "UTF-16" in str(caught.value) or "UTF-32" in str(caught.value) or "not UTF-8" in str(caught.value)


def test_parse_line_over_one_mebibyte_is_a_rejected_row_with_its_line_number():
    from jobs.parsing import MAX_LINE

    text = b"click_id,banner_id,campaign_id\n1,10,1\n" + b"7" * (MAX_LINE + 10) + b",10,1\n2,10,1\n"
    clicks, report = parse_clicks(lines(text))
    assert clicks == {1: (10, 1), 2: (10, 1)}
    assert report.rejected == 1 and report.rejects[0][0] == 3 and "longer than" in report.rejects[0][1]
    assert MAX_LINE == 1 << 20


def test_parse_quoted_field_over_the_csv_limit_is_one_rejected_row_with_its_line():
    import csv

    big = '"' + "7" * (csv.field_size_limit() + 5) + '"'
    text = f"click_id,banner_id,campaign_id\n1,10,1\n{big},10,1\n2,10,1\n"
    clicks, report = parse_clicks(lines(text))
    assert clicks == {1: (10, 1), 2: (10, 1)}
    assert report.rejected == 1 and report.rejects[0][0] == 3


def test_parse_unbalanced_quote_is_one_rejected_row_not_a_swallowed_file():
    text = 'click_id,banner_id,campaign_id\n1,10,1\n"3,10,1\n2,10,1\n'
    clicks, report = parse_clicks(lines(text))
    assert clicks == {1: (10, 1), 2: (10, 1)} and report.rejected == 1 and report.rejects[0][0] == 3


def test_parse_rejects_keep_only_the_first_twenty_samples_but_count_all():
    body = "".join("x,1\n" for _ in range(50))
    _, report = parse_impressions(lines("banner_id,campaign_id\n" + body))
    assert report.rejected == 50 and len(report.rejects) == 20 and report.rejects[0][0] == 2


def test_parse_streams_from_a_generator_without_holding_the_file():
    def generate():
        yield b"banner_id,campaign_id\n"
        for i in range(100_000):
            yield f"{i % 7 + 1},{i % 3 + 1}\n".encode()

    counts, report = parse_impressions(generate())
    assert report.loaded == 100_000 and len(counts) == 21


rows = st.lists(
    st.tuples(st.integers(-3, 30), st.one_of(st.integers(-1, 5), st.just("x")), st.integers(1, 4)),
    max_size=60,
)


@given(rows)
def test_parse_clicks_every_row_is_accounted_for(raw_rows):
    text = "click_id,banner_id,campaign_id\n" + "".join(f"{a},{b},{c}\n" for a, b, c in raw_rows)
    clicks, report = parse_clicks(lines(text))
    assert report.rows_read == len(raw_rows)
    assert report.loaded + report.duplicates + report.conflicts + report.rejected == report.rows_read
    assert report.loaded == len(clicks)


def test_parse_conversions_repeat_of_an_orphan_is_a_duplicate_or_conflict_not_a_new_row():
    text = "conversion_id,click_id,revenue\n1,99,5\n1,7,3\n2,98,1\n2,98,1\n"
    conversions, report = parse_conversions(lines(text), {7})
    assert conversions == {}
    assert (report.loaded, report.orphans, report.conflicts, report.duplicates) == (0, 2, 1, 1)


def test_parse_id_with_thousands_of_digits_is_one_rejected_row():
    clicks, report = parse_clicks(lines("click_id,banner_id,campaign_id\n" + "9" * 5000 + ",1,1\n2,1,1\n"))
    assert clicks == {2: (1, 1)} and report.rejected == 1 and "beyond 64 bits" in report.rejects[0][1]


def test_parse_id_leading_zeros_do_not_count_against_the_64_bits():
    counts, report = parse_impressions(lines("banner_id,campaign_id\n" + "0" * 30 + "7,1\n"))
    assert counts == {(1, 7): 1} and report.rejected == 0


def test_parse_quoted_header_is_accepted():
    counts, _ = parse_impressions(lines('"banner_id","campaign_id"\n10,1\n'))
    assert counts == {(1, 10): 1}


def test_parse_impressions_of_distinct_lines_keep_a_bounded_cache():
    def generate():
        yield b"banner_id,campaign_id\n"
        for i in range(250_000):
            yield f"{i + 1},1\n".encode()

    counts, report = parse_impressions(generate())
    assert report.loaded == 250_000 and len(counts) == 250_000


@given(st.decimals(min_value=0, max_value=Decimal("999999999999.999999999"), places=9, allow_nan=False, allow_infinity=False),
       st.integers(-3, 3))
def test_parse_revenue_reads_back_any_money_value_in_plain_or_exponent_form(value, shift):
    from jobs.parsing import parse_revenue

    assert parse_revenue(f"{value:f}") == value
    assert parse_revenue(f"{value.scaleb(-shift):f}e{shift}") == value


def test_parse_clicks_of_a_later_file_lose_to_the_earlier_files_rows():
    first, _ = parse_clicks(lines("click_id,banner_id,campaign_id\n5,10,1\n7,11,1\n"))
    merged, report = parse_clicks(lines("click_id,banner_id,campaign_id\n7,11,1\n5,12,1\n6,10,1\n"), first)
    assert merged == {5: (10, 1), 6: (10, 1), 7: (11, 1)}
    assert (report.loaded, report.duplicates, report.conflicts) == (1, 1, 1)
    assert report.conflict_samples == [(3, "click_id 5 repeats with other values; the first row wins")]
    assert first == {5: (10, 1), 7: (11, 1)}  # the earlier result is left as it was


def test_parse_conversions_repeat_of_an_earlier_files_orphan_is_a_duplicate_or_conflict():
    clicks = {7}
    first, report = parse_conversions(lines("conversion_id,click_id,revenue\n1,99,5\n"), clicks)
    assert first == {} and report.orphans == 1
    later, report = parse_conversions(lines("conversion_id,click_id,revenue\n1,7,5\n1,99,5.0\n2,7,1\n"), clicks, first)
    assert later == {2: (7, Decimal(1))}
    assert (report.loaded, report.orphans, report.duplicates, report.conflicts) == (1, 0, 1, 1)
    assert report.conflict_samples[0][0] == 2


def test_parse_conflict_samples_are_the_first_twenty_by_line_with_their_line_numbers():
    # Ids out of order, blank lines and rejected rows between: the samples still name the right lines.
    body = ["9,1,1", "", "x,1,1"] + [f"{i},1,1" for i in range(30, 0, -1)] + [f"{i},2,1" for i in range(30, 0, -1)]
    clicks, report = parse_clicks(lines("click_id,banner_id,campaign_id\n" + "\n".join(body) + "\n"))
    assert report.conflicts == 30 and report.duplicates == 1 and report.rejected == 1
    assert len(report.conflict_samples) == 20
    first_conflict_line = 2 + 3 + 30  # header, the three rows above, thirty rows of banner 1
    assert report.conflict_samples[0] == (first_conflict_line, "click_id 30 repeats with other values; the first row wins")
    assert [line for line, _ in report.conflict_samples] == list(range(first_conflict_line, first_conflict_line + 20))
    assert clicks[9] == (1, 1) and clicks[1] == (1, 1) and len(clicks) == 30


def test_parse_impressions_add_to_an_earlier_files_counts():
    first, _ = parse_impressions(lines("banner_id,campaign_id\n10,1\n10,1\n"))
    total, report = parse_impressions(lines("banner_id,campaign_id\n10,1\n11,2\n"), first)
    assert total == {(1, 10): 3, (2, 11): 1} and report.loaded == 2
    assert first == {(1, 10): 2}


def test_parse_results_answer_lookups_like_the_mappings_they_stand_for():
    clicks, _ = parse_clicks(lines("click_id,banner_id,campaign_id\n5,10,1\n"))
    conversions, _ = parse_conversions(lines("conversion_id,click_id,revenue\n3,5,2.50\n4,6,1\n"), clicks)
    counts, _ = parse_impressions(lines("banner_id,campaign_id\n10,1\n"))
    assert 5 in clicks and 6 not in clicks and clicks.get(6) is None and list(clicks) == [5]
    assert conversions[3] == (5, Decimal("2.5")) and 4 not in conversions and len(conversions) == 1
    assert counts[(1, 10)] == 1 and (1, 11) not in counts and (2, 10) not in counts
    with pytest.raises(KeyError):
        conversions[4]  # an orphan is held for dedupe, not kept


def test_parse_impressions_folds_its_buffer_once_a_chunk_so_memory_stays_bounded(monkeypatch):
    # A file of millions of rows must not sit whole in the buffer: it is folded into distinct pairs every chunk.
    from collections import Counter

    from jobs.parsed import PairCounter

    monkeypatch.setattr(PairCounter, "CHUNK", 5)
    folds = []
    real_fold = PairCounter.fold

    def fold(counter):
        folds.append(len(counter.campaigns))
        real_fold(counter)

    monkeypatch.setattr(PairCounter, "fold", fold)
    rows = [(1 + i % 3, 10 + i % 4) for i in range(23)]
    counts, report = parse_impressions([b"banner_id,campaign_id\n"] + [f"{b},{c}\n".encode() for c, b in rows])
    assert dict(counts) == Counter(rows) and report.loaded == 23
    # Five rows, or the distinct pairs so far if more (the limit grows with them), then the rest at the end.
    assert max(folds) <= 12 and len(folds) <= 23 // 5 + 1 and sum(folds) == 23, folds


def test_quote_of_bytes_marks_a_cut_only_where_bytes_or_characters_were_dropped():
    from jobs.parsing import quote

    emoji = "\U0001F600"  # four bytes in UTF-8
    assert quote(b"a" * 100) == repr("a" * 100)  # short: nothing cut
    assert quote((emoji * 200).encode()) == repr(emoji * 200)  # 800 bytes, exactly 200 characters: whole
    assert quote((emoji * 201).encode()) == repr(emoji * 200 + "...")  # 804 bytes: one character dropped
    assert quote("b" * 201) == repr("b" * 200 + "...")


def test_parse_conversions_tells_click_ids_apart_beyond_float_precision():
    # 2**60 and 2**60 + 1 are one float: the known ids must be compared as integers.
    conversions, report = parse_conversions(
        [b"conversion_id,click_id,revenue\n", f"1,{2**60},1.5\n".encode(), f"2,{2**60 + 1},2.5\n".encode()], {2**60 + 1})
    assert report.orphans == 1 and list(conversions) == [2]
