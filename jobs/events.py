"""Live events (impressions, clicks, conversions): their shape in the Redis Stream, and the
per-minute counters behind the dashboard's live panel.

The web process queues these commands on a pipeline it already sends, so recording an event
costs no round trip of its own.
"""

import hashlib
import hmac
from datetime import datetime, timezone

STREAM = "events"
GROUP = "exporters"
STREAM_MAXLEN = 5_000_000  # a bound on memory if exports stop for days; trimming is approximate
COUNTER_TTL = 2 * 3600
# Live click ids start far above any id in the historical exports, so the two never collide.
FIRST_LIVE_CLICK_ID = 10**12
FIRST_LIVE_CONVERSION_ID = 10**12
CLICK_TTL = 30 * 86400  # how long a click can still receive a conversion


def visitor_key(secret: str, session_id: str) -> str:
    """A stable pseudonym of a visitor that does not reveal (or let anyone rebuild) the session id."""
    return hmac.new(secret.encode(), session_id.encode(), hashlib.sha256).hexdigest()[:20]


def impression_event(now, quarter, campaign_id, banner_id, visitor, data_version, impression_id) -> dict:
    return {
        "type": "impression", "ts": _ts(now), "q": quarter, "c": campaign_id, "b": banner_id,
        "v": visitor, "dv": data_version, "imp": impression_id,
    }


def click_event(now, quarter, campaign_id, banner_id, visitor, impression_id, click_id) -> dict:
    return {
        "type": "click", "ts": _ts(now), "q": quarter, "c": campaign_id, "b": banner_id,
        "v": visitor, "imp": impression_id, "click": click_id,
    }


def conversion_event(now, quarter, campaign_id, banner_id, click_id, conversion_id, revenue, advertiser) -> dict:
    return {
        "type": "conversion", "ts": _ts(now), "q": quarter, "c": campaign_id, "b": banner_id,
        "click": click_id, "conv": conversion_id, "rev": str(revenue), "adv": advertiser,
    }


def queue_event(pipe, ctx, event) -> None:
    """Queue XADD of `event` and its live-panel counters on `pipe` (a Redis pipeline)."""
    pipe.xadd(ctx.key(STREAM), event, maxlen=STREAM_MAXLEN, approximate=True)
    if event["type"] in ("impression", "click"):
        bucket = ctx.key(f"live:{event['type']}s:{minute_of(event['ts'])}")
        pipe.hincrby(bucket, event["c"], 1)
        pipe.expire(bucket, COUNTER_TTL)


def minute_of(ts: float) -> int:
    return int(float(ts) // 60)


def recent_counts(ctx, now: datetime, minutes=60) -> dict:
    """{campaign_id: [impressions, clicks]} over the last `minutes` minutes, from the live counters."""
    last = minute_of(now.timestamp())
    pipe = ctx.redis.pipeline(transaction=False)
    for kind in ("impressions", "clicks"):
        for minute in range(last - minutes + 1, last + 1):
            pipe.hgetall(ctx.key(f"live:{kind}:{minute}"))
    replies = pipe.execute()
    counts = {}
    for index, reply in enumerate(replies):
        column = 0 if index < minutes else 1
        for campaign, value in reply.items():
            counts.setdefault(int(campaign), [0, 0])[column] += int(value)
    return counts


def _ts(now: datetime) -> str:
    return f"{now.astimezone(timezone.utc).timestamp():.3f}"
