"""Trends from the live rollups: the last 24 hours per hour or the last 30 days per day."""

from datetime import timedelta, timezone

from models import has_live_hours, live_hours

RANGES = {"24h": ("Last 24 hours", "hour", 24), "30d": ("Last 30 days", "day", 30)}


def trend(range_key, now, campaign_id=None) -> dict:
    """Buckets (oldest first) of live impressions, clicks, conversions and revenue; zeros where nothing happened."""
    label, unit, count = RANGES.get(range_key, RANGES["24h"])
    range_key = range_key if range_key in RANGES else "24h"
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    if unit == "hour":
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        starts = [end - timedelta(hours=count - i) for i in range(count)]
    else:
        end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        starts = [end - timedelta(days=count - i) for i in range(count)]
    step = starts[1] - starts[0]
    sums = {start: [0, 0, 0, 0.0] for start in starts}
    for hour, values in live_hours(starts[0], end, campaign_id).items():
        bucket = hour if unit == "hour" else hour.replace(hour=0)
        if bucket in sums:
            for i, v in enumerate(values):
                sums[bucket][i] += v
    buckets = [{"start": s, "end": s + step, "impressions": v[0], "clicks": v[1], "conversions": v[2], "revenue": v[3],
                "label": f"{s:%H:%M}" if unit == "hour" else f"{s:%b %d}"} for s, v in sums.items()]
    return {"range": range_key, "label": label, "unit": unit, "buckets": buckets, "ranges": RANGES,
            "has_data": has_live_hours(campaign_id)}
