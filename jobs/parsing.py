"""CSV lines in, validated rows and a report out: impressions, clicks and conversions.

Pure and streaming: each parser takes an iterable of byte lines (a file object will do)
and keeps only what it must, never the whole file.
"""

import csv
import re
from array import array
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from jobs.columns import LineNumbers, column, first_wins, found_in, merge_sorted, money_parts
from jobs.parsed import Clicks, Conversions, PairCounter

MAX_ID = 2**63 - 1  # ids are stored in signed 64-bit columns
SAMPLE_SIZE = 20
KNOWN_LINES_MAX = 100_000
# No reason, error or log line quotes more of the input than this.
MAX_QUOTE = 200
# A longer line is a rejected row; line splitters may hand over only its first MAX_LINE + 1 bytes.
MAX_LINE = 1 << 20
# Money: at most this many digits before and after the point, once trailing zeros are dropped.
REVENUE_INT_DIGITS = 12
REVENUE_PLACES = 9

HEADERS = {
    "impressions": ("banner_id", "campaign_id"),
    "clicks": ("click_id", "banner_id", "campaign_id"),
    "conversions": ("conversion_id", "click_id", "revenue"),
}
_MONEY = re.compile(r"([0-9]*)(?:\.([0-9]*))?(?:[eE]([-+]?[0-9]+))?", re.ASCII)


class FileRejected(Exception):
    """The whole file is unusable (missing, empty, wrong header)."""


class RowRejected(ValueError):
    """One row is unusable; the message says why."""


@dataclass
class FileReport:
    """What happened to the rows of one file."""

    name: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    orphans: int = 0
    # The first SAMPLE_SIZE rejected and conflicting rows: (line number, reason).
    rejects: list = field(default_factory=list)
    conflict_samples: list = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejects) < SAMPLE_SIZE:
            self.rejects.append((line, reason))


def parse_impressions(lines, counts=None):
    """Count impressions per (campaign_id, banner_id); repeated rows are normal, not duplicates.

    Returns an ImpressionCounts (a mapping {(campaign_id, banner_id): count} held in columns).
    Pass the `counts` of an earlier file to add this one's to them.
    """
    report = FileReport("impressions.csv")
    counter = PairCounter(counts)
    campaigns, banners, pending = counter.campaigns.append, counter.banners.append, 0
    known = {}  # raw line -> key or the reason it was rejected; most lines repeat, so parse each once
    for lineno, raw in _data_lines(lines, "impressions"):
        report.rows_read += 1
        key = known.get(raw)
        if key is None:
            if len(known) >= KNOWN_LINES_MAX:
                known.clear()  # a file of mostly distinct lines must not grow the cache without bound
            try:
                banner_id, campaign_id = _fields(raw, 2)
                key = (parse_id(campaign_id, "campaign_id"), parse_id(banner_id, "banner_id"))
            except RowRejected as exc:
                key = str(exc)
            known[raw] = key
        if isinstance(key, str):
            report.reject(lineno, key)
            continue
        campaigns(key[0])
        banners(key[1])
        report.loaded += 1
        pending += 1
        if pending == counter.limit:
            counter.fold()
            campaigns, banners, pending = counter.campaigns.append, counter.banners.append, 0
    counter.fold()
    return counter.total, report


def parse_clicks(lines, clicks=None):
    """Clicks by click_id: {click_id: (banner_id, campaign_id)}; a repeated id is a duplicate or a conflict.

    Returns a Clicks (that mapping, held in columns). Pass the `clicks` of an earlier file to merge
    this one into them: its ids count as seen, and its rows win.
    """
    report = FileReport("clicks.csv")
    clicks = Clicks() if clicks is None else clicks
    ids, banners, campaigns, lines_of = array("q"), array("q"), array("q"), LineNumbers()
    for lineno, raw in _data_lines(lines, "clicks"):
        report.rows_read += 1
        try:
            click_id, banner_id, campaign_id = _fields(raw, 3)
            click_id = parse_id(click_id, "click_id")
            banner_id, campaign_id = parse_id(banner_id, "banner_id"), parse_id(campaign_id, "campaign_id")
        except RowRejected as exc:
            report.reject(lineno, str(exc))
            continue
        lines_of.mark(len(ids), lineno)
        ids.append(click_id)
        banners.append(banner_id)
        campaigns.append(campaign_id)
    ids, banners, campaigns = column(ids), column(banners), column(campaigns)
    winners = _count_repeats(report, "click_id", ids, (banners, campaigns), clicks.ids, (clicks.banners, clicks.campaigns), lines_of)
    # One column at a time, each buffer freed as its winners are taken: memory for one extra column, not three.
    ids = ids[winners]
    banners = banners[winners]
    campaigns = campaigns[winners]
    report.loaded = len(ids)
    merged, (banners, campaigns) = merge_sorted(clicks.ids, (clicks.banners, clicks.campaigns), ids, (banners, campaigns))
    return Clicks(merged, banners, campaigns), report


def parse_conversions(lines, click_ids, conversions=None):
    """Conversions by conversion_id: {conversion_id: (click_id, revenue)}.

    A conversion whose click_id is not in `click_ids` (a Clicks, or any collection of ids) is an
    orphan: counted, not kept, but its id is taken: a later row with it is a duplicate or a conflict.
    Returns a Conversions (that mapping, held in columns). Pass the `conversions` of an earlier file
    to merge this one into them.
    """
    report = FileReport("conversions.csv")
    conversions = Conversions() if conversions is None else conversions
    ids, clicks, units, nanos, lines_of = array("q"), array("q"), array("q"), array("q"), LineNumbers()
    for lineno, raw in _data_lines(lines, "conversions"):
        report.rows_read += 1
        try:
            conversion_id, click_id, revenue = _fields(raw, 3)
            conversion_id = parse_id(conversion_id, "conversion_id")
            click_id, (whole, nano) = parse_id(click_id, "click_id"), money_parts(parse_revenue(revenue))
        except RowRejected as exc:
            report.reject(lineno, str(exc))
            continue
        lines_of.mark(len(ids), lineno)
        ids.append(conversion_id)
        clicks.append(click_id)
        units.append(whole)
        nanos.append(nano)
    ids, clicks, units, nanos = column(ids), column(clicks), column(units), column(nanos)
    earlier = conversions
    winners = _count_repeats(report, "conversion_id", ids, (clicks, units, nanos), earlier.ids,
                             (earlier.click_ids, earlier.units, earlier.nanos), lines_of)
    ids = ids[winners]
    clicks = clicks[winners]
    units = units[winners]
    nanos = nanos[winners]
    known_ids = click_ids.ids if isinstance(click_ids, Clicks) else np.unique(np.fromiter(click_ids, dtype=np.int64))
    known = found_in(known_ids, clicks)[1]
    report.loaded = int(np.count_nonzero(known))
    report.orphans = len(ids) - report.loaded
    merged, columns = merge_sorted(
        earlier.ids, (earlier.click_ids, earlier.units, earlier.nanos, earlier.known), ids, (clicks, units, nanos, known)
    )
    return Conversions(merged, *columns), report


def parse_id(text: str, name: str) -> int:
    """A positive integer id that fits in 64 signed bits."""
    if not (text.isascii() and text.isdigit()):
        raise RowRejected(f"{name} {quote(text)} is not a positive integer")
    if len(text.lstrip("0")) > len(str(MAX_ID)):  # before int(): Python refuses over 4300 digits
        raise RowRejected(f"{name} {text[:30]}{'...' if len(text) > 30 else ''} is beyond 64 bits")
    value = int(text.lstrip("0") or "0")  # int() refuses over 4300 digits, leading zeros included
    if value == 0:
        raise RowRejected(f"{name} is 0; ids are positive")
    if value > MAX_ID:
        raise RowRejected(f"{name} {text} is beyond 64 bits")
    return value


def parse_revenue(text: str) -> Decimal:
    """Money: a plain ASCII decimal >= 0 with at most 12 integer digits and 9 decimal places.

    An exponent is fine when the value fits (`1e3` is 1000). The limits are checked on the digits,
    before any number is built, so `1e-999999999` costs no more than `1.5`.
    """
    if text.startswith("-"):
        raise RowRejected(f"revenue {quote(text)} is negative")
    match = _MONEY.fullmatch(text)
    if match is None or not (match.group(1) or match.group(2)):
        raise RowRejected(f"revenue {quote(text)} is not a number (ASCII digits, an optional point and exponent)")
    whole, fraction, exponent = match.group(1), match.group(2) or "", match.group(3)
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return Decimal(0)
    # The value is 0.<digits> x 10^point: point = integer digits (negative: zeros after the point).
    point = len(whole.lstrip("0")) if whole.lstrip("0") else -(len(fraction) - len(fraction.lstrip("0")))
    if exponent is not None:
        if len(exponent.lstrip("+-").lstrip("0")) > 6:  # beyond any limit either way
            too_big = not exponent.startswith("-")
            raise RowRejected(f"revenue {quote(text)} has {'more than 12 integer digits' if too_big else 'more than 9 decimal places'}")
        point += int(exponent)
    places = len(digits.rstrip("0")) - point
    if point > REVENUE_INT_DIGITS:
        raise RowRejected(f"revenue {quote(text)} has more than {REVENUE_INT_DIGITS} integer digits")
    if places > REVENUE_PLACES:
        raise RowRejected(f"revenue {quote(text)} has more than {REVENUE_PLACES} decimal places")
    return Decimal(text).quantize(Decimal(1).scaleb(-max(places, 0)))


def quote(text, limit: int = MAX_QUOTE) -> str:
    """`text` in quotes for a message, cut to `limit` characters (bytes are shown as text)."""
    cut = False
    if isinstance(text, bytes):
        cut = len(text) > limit * 4
        text = text[: limit * 4].decode("utf-8", "replace")
    return repr(text[:limit] + "...") if cut or len(text) > limit else repr(text)


def _count_repeats(report, name, ids, values, earlier_ids, earlier_values, lines_of):
    """Count the rows that repeat an id as duplicates or conflicts (sampling the first conflicts); the winners' rows."""
    winners, repeats, same = first_wins(ids, values, earlier_ids, earlier_values)
    report.duplicates = int(np.count_nonzero(same))
    conflicts = repeats[~same]
    report.conflicts = len(conflicts)
    sample = conflicts[:SAMPLE_SIZE]
    report.conflict_samples = [
        (line, f"{name} {row_id} repeats with other values; the first row wins")
        for line, row_id in zip(lines_of.of(sample).tolist(), ids[sample].tolist())
    ]
    return winners


_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)


def _data_lines(lines, kind):
    """(line number, raw bytes) of each non-blank data row, after checking the header."""
    lines = iter(lines)
    header = next(lines, None)
    if header is None:
        raise FileRejected("empty file: no header")
    encoding = next((name for bom, name in _BOMS if header.startswith(bom)), None)
    if encoding is None and b"\x00" in header[:200]:
        encoding = "UTF-16 or UTF-32"  # without a byte order mark: NULs between the ASCII letters
    if encoding:
        raise FileRejected(f"file is {encoding} text, not UTF-8; save it as UTF-8")
    if len(header) > MAX_LINE:
        raise FileRejected(f"header {quote(header)} does not match {','.join(HEADERS[kind])!r} (it is longer than 1 MiB)")
    try:
        header_text = header.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRejected("header is not UTF-8 text") from None
    try:
        names = tuple(name.strip() for name in next(csv.reader([header_text.strip()]), []))
    except csv.Error:
        names = ()
    if names != HEADERS[kind]:
        raise FileRejected(f"header {quote(header_text.strip())} does not match {','.join(HEADERS[kind])!r}")
    for lineno, raw in enumerate(lines, start=2):
        if raw.strip():
            yield lineno, raw


def _fields(raw: bytes, count: int) -> list[str]:
    if len(raw) > MAX_LINE:
        raise RowRejected(f"line is longer than {MAX_LINE // (1 << 20)} MiB")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise RowRejected("row is not valid UTF-8") from None
    try:
        parts = next(csv.reader([text])) if '"' in text else text.split(",")
    except csv.Error as exc:  # a quoted field over the csv module's limit, a stray NUL
        raise RowRejected(f"row is not valid CSV: {exc}") from None
    if len(parts) != count:
        raise RowRejected(f"expected {count} fields, found {len(parts)}")
    return [part.strip() for part in parts]
