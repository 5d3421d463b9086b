"""Render beacons of decided impressions: signed tokens naming one impression, each beacon recorded once.

The JSON decision records nothing; whoever renders the banner posts its impression URL, and its
viewable URL once it has been in view. No Flask: the secret and the clients come in as arguments.
"""

import hashlib
import hmac
from dataclasses import dataclass

from live.events import derived_key, expiries_sent, impression_event, queue_event, viewable_event

# A beacon counts only this long after its decision: the once-only marks are kept as long, per minute
# of issue in one set, so they cost a few bytes per impression for an hour, not a key per impression.
BEACON_MAX_AGE = 3600
MAX_CLOCK_SKEW_SECONDS = 60
KINDS = ("impression", "viewable")


@dataclass(frozen=True)
class Beacon:
    campaign_id: int
    banner_id: int
    quarter: int
    impression_id: str
    data_version: int
    visitor: str
    issued: int


class BeaconForged(ValueError):
    """The token was not made by us (or was altered)."""


class BeaconExpired(ValueError):
    """The token is ours but older than BEACON_MAX_AGE."""


def beacon_token(secret, campaign_id, banner_id, quarter, impression_id, data_version, visitor, now) -> str:
    """A signed token naming one decided impression, for its impression and viewable beacons."""
    payload = f"{int(campaign_id)}.{int(banner_id)}.{int(quarter)}.{impression_id}.{int(data_version)}.{visitor}.{int(now)}"
    return f"{payload}.{_mac(secret, payload)}"


def read_beacon_token(secret, token: str, now, max_age=BEACON_MAX_AGE) -> Beacon:
    """The Beacon of a valid token; BeaconForged or BeaconExpired otherwise."""
    payload, _, mac = token.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise BeaconForged(token)
    try:
        campaign, banner, quarter, impression_id, version, visitor, issued = payload.split(".")
        beacon = Beacon(int(campaign), int(banner), int(quarter), impression_id, int(version), visitor, int(issued))
    except ValueError:
        raise BeaconForged(token) from None
    if beacon.issued > now + MAX_CLOCK_SKEW_SECONDS or not 1 <= beacon.quarter <= 4:
        raise BeaconForged(token)
    if now - beacon.issued > max_age:
        raise BeaconExpired(token)
    return beacon


def record_beacon(client, ctx, kind, beacon, when, events_enabled=True) -> bool:
    """Record `kind` ("impression" or "viewable") of `beacon` at `when` (a datetime) unless it was already;
    True when this call recorded it."""
    mark = ctx.key(f"beacon:{kind}:{beacon.issued // 60}")
    pipe = client.pipeline(transaction=False)
    pipe.sadd(mark, beacon.impression_id)
    pipe.expire(mark, BEACON_MAX_AGE + 120)
    added, _ = pipe.execute()
    if not added:
        return False
    if events_enabled:
        if kind == "impression":
            event = impression_event(when, beacon.quarter, beacon.campaign_id, beacon.banner_id, beacon.visitor,
                                     beacon.data_version, beacon.impression_id, measured=True)
        else:
            event = viewable_event(when, beacon.quarter, beacon.campaign_id, beacon.banner_id, beacon.visitor,
                                   beacon.impression_id)
        pipe = client.pipeline(transaction=False)
        queued = queue_event(pipe, ctx, event)
        pipe.execute()
        expiries_sent(queued)
    return True


def _mac(secret, payload: str) -> str:
    return hashlib.blake2b(payload.encode(), key=derived_key(secret, b"bs.beacon"), digest_size=16).hexdigest()
