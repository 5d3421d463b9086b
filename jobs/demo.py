"""A synthetic source that exercises every rule: the quick start's embedded demo data."""

import csv
import random
from pathlib import Path

QUARTERS = (1, 2, 3, 4)
CAMPAIGNS = range(1, 51)
BANNERS = range(100, 300)
# Banner ids with no image file, so the placeholder shows in the demo too.
MISSING_IMAGES = {299}

# The branch a campaign takes in a quarter, cycling so that every quarter has all of them.
BRANCHES = ("top10", "top_x", "revenue_then_clicks", "top5_clicks", "sparse")


def write_demo_source(directory, seed=2014) -> str:
    """Write `<dir>/<q>/{impressions,clicks,conversions}.csv` and `<dir>/images/`; return a summary."""
    root = Path(directory)
    rng = random.Random(seed)
    counts = {"impressions": 0, "clicks": 0, "conversions": 0}
    next_click, next_conversion = 1_000_000, 5_000_000
    for quarter in QUARTERS:
        impressions, clicks, conversions = [], [], []
        for campaign in CAMPAIGNS:
            branch = BRANCHES[(campaign + quarter) % len(BRANCHES)]
            imp, clk, conv = _campaign_rows(rng, campaign, branch, next_click, next_conversion)
            next_click += len(clk)
            next_conversion += len(conv)
            impressions += imp
            clicks += clk
            conversions += conv
        rng.shuffle(impressions)
        _add_faults(rng, quarter, impressions, clicks, conversions)
        folder = root / str(quarter)
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(folder / "impressions.csv", ("banner_id", "campaign_id"), impressions)
        _write_csv(folder / "clicks.csv", ("click_id", "banner_id", "campaign_id"), clicks)
        _write_csv(folder / "conversions.csv", ("conversion_id", "click_id", "revenue"), conversions)
        counts["impressions"] += len(impressions)
        counts["clicks"] += len(clicks)
        counts["conversions"] += len(conversions)
    images = write_demo_images(root / "images", [b for b in BANNERS if b not in MISSING_IMAGES])
    return f"{counts['impressions']} impressions, {counts['clicks']} clicks, {counts['conversions']} conversions, {images} images"


def _campaign_rows(rng, campaign, branch, first_click, first_conversion):
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
    pool = rng.sample(BANNERS, pool_size)
    impressions = [(b, campaign) for b in pool for _ in range(rng.randint(20, 160))]
    clicked = pool[: x + clicked] if x else pool[:clicked]
    clicks, conversions = [], []
    for banner in clicked:
        for _ in range(rng.randint(1, 25)):
            clicks.append((first_click + len(clicks), banner, campaign))
    by_banner = {}
    for click_id, banner, _ in clicks:
        by_banner.setdefault(banner, []).append(click_id)
    for banner in clicked[:x]:
        for click_id in rng.sample(by_banner[banner], min(len(by_banner[banner]), rng.randint(1, 4))):
            revenue = 0 if rng.random() < 0.05 else round(rng.uniform(0.05, 12.0), 6)
            conversions.append((first_conversion + len(conversions), click_id, revenue))
    return impressions, clicks, conversions


def _add_faults(rng, quarter, impressions, clicks, conversions):
    """A few rows of each kind ingest must reject, skip or report, as real exports have."""
    impressions.insert(rng.randrange(len(impressions)), ("banner", 7))
    impressions.insert(rng.randrange(len(impressions)), (0, 7))
    clicks.append(clicks[rng.randrange(len(clicks))])  # an exact repeat: a duplicate
    victim = clicks[rng.randrange(len(clicks) - 1)]
    clicks.append((victim[0], victim[1] + 1, victim[2]))  # the same click_id, other values: a conflict
    if conversions:
        conversions.append(conversions[rng.randrange(len(conversions))])
    conversions.append((9_000_000 + quarter, 999_999_999, 1.5))  # no such click: an orphan
    conversions.append((9_100_000 + quarter, clicks[0][0], -3))  # negative revenue: rejected


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_demo_images(folder, banner_ids) -> int:
    """A 300x250 PNG per banner, its id written large on a colour of its own."""
    from PIL import Image, ImageDraw, ImageFont

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    font = _font(ImageFont, 72)
    small = _font(ImageFont, 20)
    for banner_id in banner_ids:
        hue = (banner_id * 47) % 360
        image = Image.new("RGB", (300, 250), _hsv(hue, 0.45, 0.95))
        draw = ImageDraw.Draw(image)
        draw.rectangle((6, 6, 293, 243), outline=_hsv(hue, 0.8, 0.45), width=4)
        draw.text((150, 110), str(banner_id), fill=_hsv(hue, 0.9, 0.3), font=font, anchor="mm")
        draw.text((150, 200), "BannerService demo", fill=_hsv(hue, 0.9, 0.3), font=small, anchor="mm")
        image.save(folder / f"image_{banner_id}.png", optimize=True)
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
