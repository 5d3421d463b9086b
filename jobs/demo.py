"""A synthetic source that exercises every rule: the quick start's demo data, and scaled copies of it."""

import csv
import random
from pathlib import Path

QUARTERS = (1, 2, 3, 4)
FIRST_BANNER = 100

# The branch a campaign takes in a quarter, cycling so that every quarter has all of them.
BRANCHES = ("top10", "top_x", "revenue_then_clicks", "top5_clicks", "sparse")

# Rows of one campaign in one quarter at the default volume, by kind (the mean over the default source).
DEFAULT_ROWS = {"impressions": 1083.0, "clicks": 84.6, "conversions": 10.4}
# The reference dataset's mix, which a scaled source (rows given) follows.
REFERENCE_MIX = {"impressions": 0.75, "clicks": 0.226, "conversions": 0.024}
# Campaigns generated, shuffled and written together: bounds the generator's memory at any size.
BLOCK = 50
# One set of faults (bad rows, a duplicate, a conflict, an orphan) per this many rows, and at
# least one per block: real exports have a few such rows, not a fixed number.
ROWS_PER_FAULT_SET = 100_000
# Above this many banners, images repeat a palette rather than drawing every banner's id.
DRAWN_IMAGES_MAX = 1000


def write_demo_source(directory, seed=2014, campaigns=50, banners=200, rows=None, images=True) -> str:
    """Write `<dir>/<q>/{impressions,clicks,conversions}.csv` and `<dir>/images/`; return a summary.

    Campaigns are 1..`campaigns`, banners FIRST_BANNER.. (`banners` of them; the last has no image).
    `rows` asks for about that many CSV rows in the reference data's mix; without it each campaign
    gets the demo's own volume. The defaults write the quick start's demo source.
    """
    root = Path(directory)
    rng = random.Random(seed)
    banner_ids = range(FIRST_BANNER, FIRST_BANNER + banners)
    volume = _volume(campaigns, rows)
    counter = _Ids()
    counts = {"impressions": 0, "clicks": 0, "conversions": 0}
    for quarter in QUARTERS:
        folder = root / str(quarter)
        folder.mkdir(parents=True, exist_ok=True)
        with _Writers(folder) as out:
            for start in range(1, campaigns + 1, BLOCK):
                block = range(start, min(start + BLOCK, campaigns + 1))
                impressions, clicks, conversions = [], [], []
                for campaign in block:
                    branch = BRANCHES[(campaign + quarter) % len(BRANCHES)]
                    imp, clk, conv = _campaign_rows(rng, campaign, branch, banner_ids, volume, counter)
                    impressions += imp
                    clicks += clk
                    conversions += conv
                rng.shuffle(impressions)
                fault_sets = max(1, round((len(impressions) + len(clicks) + len(conversions)) / ROWS_PER_FAULT_SET))
                for n in range(fault_sets):
                    _add_faults(rng, quarter, impressions, clicks, conversions, counter if start > 1 or n else None)
                out.write(impressions, clicks, conversions)
                counts["impressions"] += len(impressions)
                counts["clicks"] += len(clicks)
                counts["conversions"] += len(conversions)
    drawn = 0
    if images:
        drawn = write_demo_images(root / "images", banner_ids[:-1])
    return (f"{campaigns} campaigns, {banners} banners: {counts['impressions']} impressions, "
            f"{counts['clicks']} clicks, {counts['conversions']} conversions, {drawn} images")


def _volume(campaigns, rows) -> dict:
    """Multipliers of the default per-campaign volume of each kind of row."""
    if rows is None:
        return {kind: 1.0 for kind in DEFAULT_ROWS}
    per_campaign_quarter = rows / (campaigns * len(QUARTERS))
    return {kind: per_campaign_quarter * REFERENCE_MIX[kind] / DEFAULT_ROWS[kind] for kind in DEFAULT_ROWS}


def _scaled(count, factor) -> int:
    return count if factor == 1.0 else max(1, round(count * factor))


class _Ids:
    """Click and conversion ids, unique over the whole source."""

    def __init__(self):
        self.clicks, self.conversions, self.faults = 0, 0, 0

    def click(self) -> int:
        self.clicks += 1
        return 1_000_000 + self.clicks - 1

    def conversion(self) -> int:
        self.conversions += 1
        n = self.conversions - 1
        # Past 4 million, leave 9,000,000.. to the first block's fault rows (the demo's own ids).
        return 5_000_000 + n if n < 4_000_000 else 10**10 + n

    def fault(self) -> int:
        self.faults += 1
        return 2 * 10**10 + self.faults


def _campaign_rows(rng, campaign, branch, banner_ids, volume, ids):
    """Rows for one campaign in one quarter shaped so the rules take `branch`."""
    if branch == "top10":
        pool_size, x, clicked = rng.randint(14, 24), rng.randint(10, 13), rng.randint(0, 1)
    elif branch == "top_x":
        pool_size, x, clicked = rng.randint(10, 16), rng.randint(5, 9), rng.randint(0, 1)
    elif branch == "revenue_then_clicks":
        pool_size, x, clicked = rng.randint(8, 14), rng.randint(1, 4), rng.randint(0, 4)
    elif branch == "top5_clicks":
        pool_size, x, clicked = rng.randint(8, 14), 0, rng.randint(5, 8)
    else:  # sparse: too few banners clicked, so the random fill runs (and may run out)
        pool_size, x, clicked = rng.randint(3, 7), 0, 2
    pool = rng.sample(banner_ids, pool_size)
    impressions = [(b, campaign) for b in pool for _ in range(_scaled(rng.randint(20, 160), volume["impressions"]))]
    clicked = pool[: x + clicked] if x else pool[:clicked]
    clicks, conversions = [], []
    for banner in clicked:
        for _ in range(_scaled(rng.randint(1, 25), volume["clicks"])):
            clicks.append((ids.click(), banner, campaign))
    by_banner = {}
    for click_id, banner, _ in clicks:
        by_banner.setdefault(banner, []).append(click_id)
    for banner in clicked[:x]:
        wanted = _scaled(rng.randint(1, 4), volume["conversions"])
        for click_id in rng.sample(by_banner[banner], min(len(by_banner[banner]), wanted)):
            revenue = 0 if rng.random() < 0.05 else round(rng.uniform(0.05, 12.0), 6)
            conversions.append((ids.conversion(), click_id, revenue))
    return impressions, clicks, conversions


def _add_faults(rng, quarter, impressions, clicks, conversions, ids=None):
    """A few rows of each kind ingest must reject, skip or report, as real exports have.

    Without `ids` the bad conversions get the demo's fixed ids (9,000,000 + quarter ...).
    """
    impressions.insert(rng.randrange(len(impressions)), ("banner", 7))
    impressions.insert(rng.randrange(len(impressions)), (0, 7))
    clicks.append(clicks[rng.randrange(len(clicks))])  # an exact repeat: a duplicate
    victim = clicks[rng.randrange(len(clicks) - 1)]
    clicks.append((victim[0], victim[1] + 1, victim[2]))  # the same click_id, other values: a conflict
    if conversions:
        conversions.append(conversions[rng.randrange(len(conversions))])
    orphan, negative = (ids.fault(), ids.fault()) if ids else (9_000_000 + quarter, 9_100_000 + quarter)
    conversions.append((orphan, 999_999_999, 1.5))  # no such click: an orphan
    conversions.append((negative, clicks[0][0], -3))  # negative revenue: rejected


class _Writers:
    """The three CSV files of a quarter, written a block of campaigns at a time."""

    HEADERS = {
        "impressions": ("banner_id", "campaign_id"),
        "clicks": ("click_id", "banner_id", "campaign_id"),
        "conversions": ("conversion_id", "click_id", "revenue"),
    }

    def __init__(self, folder):
        self.folder = folder

    def __enter__(self):
        self.files = {kind: open(self.folder / f"{kind}.csv", "w", newline="") for kind in self.HEADERS}
        self.writers = {kind: csv.writer(f, lineterminator="\n") for kind, f in self.files.items()}
        for kind, header in self.HEADERS.items():
            self.writers[kind].writerow(header)
        return self

    def write(self, impressions, clicks, conversions):
        self.writers["impressions"].writerows(impressions)
        self.writers["clicks"].writerows(clicks)
        self.writers["conversions"].writerows(conversions)

    def __exit__(self, *exc):
        for f in self.files.values():
            f.close()


def write_demo_images(folder, banner_ids) -> int:
    """A 300x250 PNG per banner, its id written large on a colour of its own.

    Past DRAWN_IMAGES_MAX banners the rest reuse one of those drawings (by colour), so a
    source of 100,000 banners takes seconds, not minutes; ingest still reads every file.
    """
    from PIL import Image, ImageDraw, ImageFont

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    font = _font(ImageFont, 72)
    small = _font(ImageFont, 20)
    banner_ids = list(banner_ids)
    for banner_id in banner_ids[:DRAWN_IMAGES_MAX]:
        hue = (banner_id * 47) % 360
        image = Image.new("RGB", (300, 250), _hsv(hue, 0.45, 0.95))
        draw = ImageDraw.Draw(image)
        draw.rectangle((6, 6, 293, 243), outline=_hsv(hue, 0.8, 0.45), width=4)
        draw.text((150, 110), str(banner_id), fill=_hsv(hue, 0.9, 0.3), font=font, anchor="mm")
        draw.text((150, 200), "BannerService demo", fill=_hsv(hue, 0.9, 0.3), font=small, anchor="mm")
        image.save(folder / f"image_{banner_id}.png", optimize=True)
    drawn = banner_ids[:DRAWN_IMAGES_MAX]
    for i, banner_id in enumerate(banner_ids[DRAWN_IMAGES_MAX:]):
        source = folder / f"image_{drawn[i % len(drawn)]}.png"
        (folder / f"image_{banner_id}.png").write_bytes(source.read_bytes())
    return len(banner_ids)


def _font(image_font, size):
    try:
        return image_font.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        return image_font.load_default()


def _hsv(hue, saturation, value):
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue / 360, saturation, value)
    return int(r * 255), int(g * 255), int(b * 255)
