"""Large synthetic sources for ingest's memory cases: millions of distinct clicks, impression pairs or conversions."""

from pathlib import Path

SMALL = {
    "impressions": "10,1\n11,1\n12,1\n13,1\n14,1\n15,1\n20,2\n21,2\n",
    "clicks": "1,10,1\n2,11,1\n3,11,1\n4,20,2\n",
    "conversions": "1,1,2.5\n2,2,1.25\n",
}
HEADERS = {
    "impressions": "banner_id,campaign_id",
    "clicks": "click_id,banner_id,campaign_id",
    "conversions": "conversion_id,click_id,revenue",
}
CLICKS = 3_600_000
IMPRESSION_PAIRS = 2_000_000
CONVERSIONS, CONVERSION_CLICKS = 2_400_000, 1_000_000


def click_rows(count):
    return (f"{1_000_000 + i},{100 + i % 900},{1 + i % 50}\n" for i in range(count))


def impression_rows(count):
    """Distinct pairs: the first half in one campaign of `count // 2` banners, the rest 100 banners a campaign."""
    half = count // 2
    for i in range(count):
        campaign = 100_000 if i < half else 100_001 + (i - half) // 100
        yield f"{10_000_000 + i},{campaign}\n"


def conversion_rows(count, clicks):
    """Conversions whose click ids span twice the clicks' ids: about half are orphans."""
    return (f"{1_000_000 + i},{1_000_000 + (i * 7) % (2 * clicks)},{i % 100}.{i % 97:02d}\n" for i in range(count))


CASES = {
    # name: {quarter 1 file: rows}; every other file is SMALL
    "clicks": lambda: {"clicks": click_rows(CLICKS)},
    "impressions": lambda: {"impressions": impression_rows(IMPRESSION_PAIRS)},
    "conversions": lambda: {"clicks": click_rows(CONVERSION_CLICKS), "conversions": conversion_rows(CONVERSIONS, CONVERSION_CLICKS)},
}


def write_big_source(directory, case: str) -> Path:
    """Write a four-quarter source whose quarter 1 holds the large file(s) of `case` (see CASES)."""
    root = Path(directory)
    big = CASES[case]()
    for quarter in (1, 2, 3, 4):
        folder = root / str(quarter)
        folder.mkdir(parents=True, exist_ok=True)
        for kind, header in HEADERS.items():
            rows = big[kind] if quarter == 1 and kind in big else iter([SMALL[kind]])
            write_rows(folder / f"{kind}.csv", header, rows)
    return root


def write_rows(path, header, rows, block=200_000) -> None:
    """A CSV file from a header and an iterator of row strings, written a block at a time."""
    with open(path, "w") as out:
        out.write(header + "\n")
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) == block:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
