"""Hourly rollups of live events per campaign, written by the export job for the dashboard's trends.

Each folder (hour and slot) keeps a watermark, the last stream entry it has counted, in `Meta`, moved
in the same transaction as the counts: entries a crashed export re-claims are never counted twice.
"""

from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

from models import Meta, add_live_hours, db


def rollup_entries(entries, folder_of, entry_key) -> int:
    """Add (stream id, event) `entries` to the hourly rollups, skipping those already counted; returns how many were added."""
    by_folder = defaultdict(list)
    for entry_id, event in entries:
        by_folder[folder_of(event)].append((entry_id, event))
    added = 0
    with db.atomic():
        for folder, items in by_folder.items():
            key = f"rollup:{folder}"
            mark = Meta.get_or_none(Meta.key == key)
            last = entry_key(mark.value) if mark else (0, 0)
            fresh = [(i, e) for i, e in items if entry_key(i) > last]
            if not fresh:
                continue
            add_live_hours(count_events(e for _, e in fresh))
            newest = str(max(fresh, key=lambda item: entry_key(item[0]))[0])
            Meta.insert(key=key, value=newest).on_conflict(conflict_target=[Meta.key], update={Meta.value: newest}).execute()
            added += len(fresh)
    return added


def count_events(events) -> dict:
    """{(campaign_id, hour start): [impressions, clicks, conversions, revenue, viewable, measured]} of decoded events
    (measured: the impressions whose renderer watched them for viewability)."""
    counts = defaultdict(lambda: [0, 0, 0, 0.0, 0, 0])
    column = {"impression": 0, "click": 1, "conversion": 2, "viewable": 4}
    for event in events:
        when = datetime.fromtimestamp(float(event["ts"]), timezone.utc).replace(minute=0, second=0, microsecond=0, tzinfo=None)
        row = counts[(int(event["c"]), when)]
        row[column[event["type"]]] += 1
        if event["type"] == "conversion":
            row[3] += float(Decimal(event["rev"]))
        elif event["type"] == "impression" and event.get("m") == "1":
            row[5] += 1
    return counts
