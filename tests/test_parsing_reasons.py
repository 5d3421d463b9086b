"""The parser's report, exactly: each reason as the dashboard shows it, each count, each limit at its edge."""

from collections import Counter
from decimal import Decimal

import pytest

from jobs import parsing
from jobs.parsing import (
    MAX_LINE, FileRejected, RowRejected, parse_clicks, parse_conversions, parse_id, parse_impressions, parse_revenue, quote,
)


def lines(data):
    data = data.encode() if isinstance(data, str) else data
    return data.splitlines(keepends=True)


IMPRESSIONS = "banner_id,campaign_id\n"
CLICKS = "click_id,banner_id,campaign_id\n"
CONVERSIONS = "conversion_id,click_id,revenue\n"


def test_parse_reports_are_named_after_their_file():
    assert parse_impressions(lines(IMPRESSIONS))[1].name == "impressions.csv"
    assert parse_clicks(lines(CLICKS))[1].name == "clicks.csv"
    assert parse_conversions(lines(CONVERSIONS), set())[1].name == "conversions.csv"


@pytest.mark.parametrize(
    "parse, text, reason",
    [
        (parse_impressions, IMPRESSIONS + "x,1\n", "banner_id 'x' is not a positive integer"),
        (parse_impressions, IMPRESSIONS + "1,x\n", "campaign_id 'x' is not a positive integer"),
        (parse_clicks, CLICKS + "x,1,1\n", "click_id 'x' is not a positive integer"),
        (parse_clicks, CLICKS + "1,x,1\n", "banner_id 'x' is not a positive integer"),
        (parse_clicks, CLICKS + "1,1,x\n", "campaign_id 'x' is not a positive integer"),
        (lambda ls: parse_conversions(ls, {1}), CONVERSIONS + "x,1,1\n", "conversion_id 'x' is not a positive integer"),
        (lambda ls: parse_conversions(ls, {1}), CONVERSIONS + "1,x,1\n", "click_id 'x' is not a positive integer"),
        (parse_clicks, CLICKS + "1,1\n", "expected 3 fields, found 2"),
        (parse_clicks, CLICKS + "1,\xe9,1\n", "banner_id '\xe9' is not a positive integer"),
    ],
)
def test_parse_reason_names_the_field_of_its_file(parse, text, reason):
    _, report = parse(lines(text))
    assert report.rejects == [(2, reason)]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("0", "banner_id is 0; ids are positive"),
        (str(2**63), f"banner_id {2**63} is beyond 64 bits"),
        ("9" * 20, "banner_id " + "9" * 20 + " is beyond 64 bits"),
        ("9" * 30, "banner_id " + "9" * 30 + " is beyond 64 bits"),
        ("9" * 31, "banner_id " + "9" * 30 + "... is beyond 64 bits"),
        ("9" * 5000, "banner_id " + "9" * 30 + "... is beyond 64 bits"),
    ],
)
def test_parse_id_reason_quotes_at_most_30_digits(text, reason):
    with pytest.raises(RowRejected) as caught:
        parse_id(text, "banner_id")
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    "text, reason",
    [
        ("-1", "revenue '-1' is negative"),
        ("abc", "revenue 'abc' is not a number (ASCII digits, an optional point and exponent)"),
        ("1234567890123", "revenue '1234567890123' has more than 12 integer digits"),
        ("0.0000000001", "revenue '0.0000000001' has more than 9 decimal places"),
        ("1e1234567", "revenue '1e1234567' has more than 12 integer digits"),
        ("1e-1234567", "revenue '1e-1234567' has more than 9 decimal places"),
    ],
)
def test_parse_revenue_reason_says_what_is_wrong(text, reason):
    with pytest.raises(RowRejected) as caught:
        parse_revenue(text)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    "text, stored",
    [("1000", "1000"), ("1e3", "1000"), ("1.50", "1.5"), ("2.25", "2.25"), ("0.0000000010", "1E-9"), ("0", "0")],
)
def test_parse_revenue_keeps_the_places_written_and_no_more(text, stored):
    # The text is what the database stores for a conversion.
    assert str(parse_revenue(text)) == stored


def test_parse_revenue_six_digit_exponent_that_fits_is_money():
    # 0.000...001 (100,000 places) times 10^100000 is 1: a long way to write it, but money.
    assert parse_revenue("0." + "0" * 99_999 + "1e100000") == Decimal(1)


def test_quote_cuts_at_the_limit_and_says_so():
    assert quote("a" * 200) == repr("a" * 200)
    assert quote("a" * 201) == repr("a" * 200 + "...")
    assert quote("abc", limit=2) == repr("ab...")
    assert quote(b"\xfa" * 300) == repr("\ufffd" * 200 + "...")


def test_parse_header_over_a_mebibyte_of_bad_bytes_is_refused_quoting_200_characters():
    with pytest.raises(FileRejected) as caught:
        parse_clicks([b"\xfa" * (MAX_LINE + 1) + b"\n", b"1,1,1\n"])
    expected = "header " + repr("\ufffd" * 200 + "...") + " does not match 'click_id,banner_id,campaign_id' (it is longer than 1 MiB)"
    assert str(caught.value) == expected


def test_parse_line_of_exactly_a_mebibyte_is_read_and_one_byte_more_is_rejected():
    head = b"1,10,"
    exact = head + b" " * (MAX_LINE - len(head) - 2) + b"1\n"  # spaces around a field are allowed
    assert len(exact) == MAX_LINE
    clicks, report = parse_clicks([CLICKS.encode(), exact, b"2,10, " + exact[len(head):]])
    assert clicks == {1: (10, 1)}
    assert report.rejects == [(3, "line is longer than 1 MiB")]


def test_parse_into_earlier_results_merges_them():
    counts, _ = parse_impressions(lines(IMPRESSIONS + "10,1\n"))
    counts, report = parse_impressions(lines(IMPRESSIONS + "10,1\n11,1\n"), counts)
    assert counts == Counter({(1, 10): 2, (1, 11): 1}) and report.loaded == 2
    clicks, _ = parse_clicks(lines(CLICKS + "1,10,1\n"))
    clicks, report = parse_clicks(lines(CLICKS + "1,10,1\n2,11,1\n"), clicks)
    assert clicks == {1: (10, 1), 2: (11, 1)} and (report.loaded, report.duplicates) == (1, 1)
    conversions, _ = parse_conversions(lines(CONVERSIONS + "5,1,2\n"), clicks)
    conversions, report = parse_conversions(lines(CONVERSIONS + "5,1,2\n6,2,1\n"), clicks, conversions)
    assert conversions == {5: (1, Decimal(2)), 6: (2, Decimal(1))} and (report.loaded, report.duplicates) == (1, 1)


def test_parse_conflicts_are_all_counted_and_the_first_twenty_kept_with_line_and_reason():
    text = CONVERSIONS + "1,100,1\n" + "".join(f"1,100,{n}\n" for n in range(2, 27))
    conversions, report = parse_conversions(lines(text), {100})
    assert conversions == {1: (100, Decimal(1))}
    assert report.conflicts == 25 and len(report.conflict_samples) == 20
    assert report.conflict_samples[0] == (3, "conversion_id 1 repeats with other values; the first row wins")


def test_parse_conversions_rejected_row_does_not_stop_the_file():
    conversions, report = parse_conversions(lines(CONVERSIONS + "1,100,x\n2,100,1\n3,100,2\n"), {100})
    assert set(conversions) == {2, 3} and report.rejected == 1 and report.loaded == 2


def test_parse_impressions_parses_each_distinct_line_once_within_a_bounded_cache(monkeypatch):
    calls = []
    real = parsing.parse_id

    def counting(text, name):
        calls.append(text)
        return real(text, name)

    monkeypatch.setattr(parsing, "parse_id", counting)
    parse_impressions(lines(IMPRESSIONS + "10,1\n11,1\n" * 50))
    assert len(calls) == 4  # two distinct lines, two ids each
    calls.clear()
    monkeypatch.setattr(parsing, "KNOWN_LINES_MAX", 2)
    counts, _ = parse_impressions(lines(IMPRESSIONS + "10,1\n11,1\n12,1\n10,1\n"))
    # The cache is full at the third line and starts over: "10,1" is parsed again.
    assert len(calls) == 8 and counts == Counter({(1, 10): 2, (1, 11): 1, (1, 12): 1})


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file: no header"),
        ("click_id,banner_id,campaign_id\n".encode("utf-16"), "file is UTF-16 text, not UTF-8; save it as UTF-8"),
        ("click_id,banner_id,campaign_id\n".encode("utf-32"), "file is UTF-32 text, not UTF-8; save it as UTF-8"),
        ("click_id,banner_id,campaign_id\n".encode("utf-16-le"), "file is UTF-16 or UTF-32 text, not UTF-8; save it as UTF-8"),
        (b"click_\xfaid,banner_id,campaign_id\n", "header is not UTF-8 text"),
        (b"id,banner,campaign\n", "header 'id,banner,campaign' does not match 'click_id,banner_id,campaign_id'"),
        # A NUL after the first 200 bytes is not taken for UTF-16: the header just does not match.
        (b"a" * 200 + b"\x00\n", "header " + repr("a" * 200 + "...") + " does not match 'click_id,banner_id,campaign_id'"),
    ],
)
def test_parse_file_refused_says_why_exactly(data, message):
    with pytest.raises(FileRejected) as caught:
        parse_clicks(lines(data) if data else [])
    assert str(caught.value) == message


def test_parse_header_of_exactly_a_mebibyte_is_read():
    header = CLICKS.rstrip("\n").encode()
    exact = header + b" " * (MAX_LINE - len(header) - 1) + b"\n"
    assert len(exact) == MAX_LINE
    clicks, report = parse_clicks([exact, b"1,10,1\n"])
    assert clicks == {1: (10, 1)} and report.rejected == 0


@pytest.mark.parametrize(
    "row, reason",
    [
        ("1,10,X", "campaign_id 'X' is not a positive integer"),
        ("1,10,1\x00", "campaign_id '1\\x00' is not a positive integer"),
    ],
)
def test_parse_row_reason_quotes_the_field_as_written(row, reason):
    _, report = parse_clicks(lines(CLICKS + row + "\n"))
    assert report.rejects == [(2, reason)]


def test_parse_unquoted_field_over_the_csv_limit_is_split_without_the_csv_module():
    import csv

    clicks, report = parse_clicks(lines(CLICKS + "1,10," + " " * (csv.field_size_limit() + 1) + "1\n"))
    assert clicks == {1: (10, 1)} and report.rejected == 0


def test_parse_quoted_field_over_the_csv_limit_says_so():
    import csv

    _, report = parse_clicks(lines(CLICKS + '1,"' + "7" * (csv.field_size_limit() + 1) + '",1\n'))
    assert report.rejects == [(2, f"row is not valid CSV: field larger than field limit ({csv.field_size_limit()})")]


def test_parse_id_with_thousands_of_leading_zeros_is_one_row_not_a_failed_file():
    # int() refuses over 4300 digits, leading zeros included: they must go before it is called.
    counts, report = parse_impressions(lines(IMPRESSIONS + "0" * 5000 + "1,1\n10,1\n"))
    assert report.rows_read == 2 and report.loaded == 2 and report.rejected == 0


def test_quote_of_long_bytes_says_it_was_cut_whatever_the_characters():
    from jobs.parsing import quote

    assert quote("😀".encode() * 1000).endswith("...'")
    assert quote(b"x" * 1000).endswith("...'") and quote(b"short") == "'short'"
