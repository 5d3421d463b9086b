"""Live events (impressions, viewable impressions, clicks, conversions): their shape in the Redis Stream, and the
per-minute counters behind the dashboard's live panel.

The web process queues these commands on a pipeline it already sends, so recording an event
costs no round trip of its own.
"""

import functools
import hashlib
from datetime import datetime, timezone

STREAM = "events"
GROUP = "exporters"
STREAM_MAXLEN = 5_000_000  # a bound on memory if exports stop for days; trimming is approximate
COUNTER_TTL = 2 * 3600
# /healthz and the overview warn when the oldest unexported event is this old, or the stream this full.
EXPORT_BEHIND_SECONDS = 15 * 60
NEAR_CAP_RATIO = 0.8
# Live click ids start far above any id in the historical exports, so the two never collide.
FIRST_LIVE_CLICK_ID = 10**12
FIRST_LIVE_CONVERSION_ID = 10**12
CLICK_TTL = 30 * 86400  # how long a click can still receive a conversion


def visitor_key(secret: str, session_id: str) -> str:
    """A stable pseudonym of a visitor that does not reveal (or let anyone rebuild) the session id."""
    return hashlib.blake2b(session_id.encode(), key=derived_key(secret, b"bs.visitor"), digest_size=10).hexdigest()


@functools.lru_cache(maxsize=16)
def derived_key(secret: str, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose (BLAKE2b's key is at most 64 bytes; SECRET_KEY may be longer)."""
    return hashlib.blake2b(secret.encode(), digest_size=32, person=purpose).digest()


def impression_event(now, quarter, campaign_id, banner_id, visitor, data_version, impression_id, measured=False) -> dict:
    """A banner shown; `measured` when its renderer watches it for viewability (the JS tag's beacons)."""
    return {
        "type": "impression", "ts": _ts(now), "q": quarter, "c": campaign_id, "b": banner_id,
        "v": visitor, "dv": data_version, "imp": impression_id, "m": int(measured),
    }


def viewable_event(now, quarter, campaign_id, banner_id, visitor, impression_id) -> dict:
    """An impression that was at least half in view for a continuous second (the IAB/MRC display rule)."""
    return {
        "type": "viewable", "ts": _ts(now), "q": quarter, "c": campaign_id, "b": banner_id, "v": visitor,
        "imp": impression_id,
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


_expiry_set = set()  # counter buckets this process has already given a TTL (see expiries_sent)


# Each event is one stream field of '|'-separated values, in this order after its type: one field
# instead of eight costs less to send, store and read, on a path every banner view takes.
FIELDS = {
    "impression": ("ts", "q", "c", "b", "v", "dv", "imp", "m"),  # entries written before "m" decode without it
    "viewable": ("ts", "q", "c", "b", "v", "imp"),
    "click": ("ts", "q", "c", "b", "v", "imp", "click"),
    "conversion": ("ts", "q", "c", "b", "click", "conv", "rev", "adv"),
}


def encode(event: dict) -> str:
    """The stream form of an event: its type and values joined by '|' ('|' in a value becomes '/')."""
    return "|".join([event["type"], *(str(event[name]).replace("|", "/") for name in FIELDS[event["type"]])])


def decode(fields: dict) -> dict:
    """An event from a stream entry's fields (values as strings)."""
    kind, *values = fields["e"].split("|")
    return {"type": kind, **dict(zip(FIELDS[kind], values))}


def queue_event(pipe, ctx, event) -> list:
    """Queue XADD of `event` and its live-panel counters on `pipe` (a Redis pipeline); returns the commands queued,
    for expiries_sent() once the pipeline has been sent."""
    commands = event_commands(ctx, event)
    for command in commands:
        pipe.execute_command(*command)
    return commands


def event_commands(ctx, event) -> list:
    """The Redis commands that record `event`: XADD to the stream, and the live panel's counter when it has one.
    Each is (name, key, arguments...), the key always second."""
    commands = [("XADD", ctx.key(STREAM), "MAXLEN", "~", STREAM_MAXLEN, "*", "e", encode(event))]
    if event["type"] in ("impression", "click"):
        bucket = ctx.key(f"live:{event['type']}s:{minute_of(event['ts'])}")
        commands.append(("HINCRBY", bucket, event["c"], 1))
        if bucket not in _expiry_set:
            commands.append(("EXPIRE", bucket, COUNTER_TTL))
    return commands


def expiries_sent(commands) -> None:
    """event_commands() that Redis has run: later events of their counters leave the EXPIRE out. Called only after a
    send succeeded, so commands that never reached Redis (a failure, a lost race) leave it to the next ones."""
    for name, key, *_ in commands:
        if name == "EXPIRE":
            # Once per bucket and process is enough: the TTL only has to outlive the panel's hour.
            if len(_expiry_set) > 64:
                _expiry_set.clear()
            _expiry_set.add(key)


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


# INCR, raised to at least (Redis' clock in ms) * 1000 + first: a counter that Redis lost (restart
# without persistence, flush) restarts above every id it gave before, with no database to ask.
# 1000 ids per millisecond before the counter runs ahead of the clock; still exact in Lua's doubles
# (below 2**53) until the year 2255.
_NEXT_ID = """
local now = redis.call('time')
local floor = (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) * 1000 + tonumber(ARGV[1])
local value = redis.call('incr', KEYS[1])
if value < floor then
  redis.call('set', KEYS[1], floor)
  value = floor
end
return value
"""


def next_live_id(redis, key: str, first: int) -> int:
    """The next live click or conversion id from the counter at `key`: never one given before."""
    return int(redis.eval(_NEXT_ID, 1, key, first))


def trim_exported(redis, stream) -> None:
    """Drop the entries every exporter has acknowledged, so the length cap only bites while the export is behind."""
    groups = [g for g in redis.xinfo_groups(stream) if _text(g["name"]) == GROUP]
    if not groups:
        return
    pending = redis.xpending(stream, GROUP)
    if pending["pending"]:
        keep_from = _text(pending["min"])
    else:
        ms, seq = _text(groups[0]["last-delivered-id"]).split("-")
        keep_from = f"{ms}-{int(seq) + 1}"
    redis.xtrim(stream, minid=keep_from, approximate=False)


def stream_health(redis, stream, now: datetime, cap=STREAM_MAXLEN) -> dict:
    """How far the export is behind: entries in the stream (all unexported, once trimmed), the oldest's age."""
    length = redis.xlen(stream)
    oldest = redis.xrange(stream, count=1)
    age = now.timestamp() - int(_text(oldest[0][0]).split("-")[0]) / 1000 if oldest else 0.0
    return {
        "length": length, "cap": cap, "oldest_seconds": round(max(age, 0.0)),
        "near_cap": length >= NEAR_CAP_RATIO * cap, "export_behind": age > EXPORT_BEHIND_SECONDS,
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
