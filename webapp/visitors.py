"""A visitor on the serving path: its vid (parameter, then cookie), its rotations read from Redis with one
GET and saved with the request's events in one script call, only if no other view of the visitor saved first;
while Redis is away, any banner and nothing kept.

Visitors have no flask-session: a view that arrives without a vid is given a new one and leaves no key
behind (visitor_state explains how its next view rebuilds what it was shown).
"""

import functools
from dataclasses import dataclass, field

import msgspec

from flask import current_app, request

from live.events import event_commands, expiries_sent, impression_event, queue_event, visitor_key
from rotation import next_banner, remember
from visitor_state import COOKIE, cycle_seed, first_state, is_minted, is_vid, new_vid, site_of, state_key
from webapp.clicks import new_impression_id
from webapp.outage import REDIS_ERRORS


@dataclass
class Visitor:
    """Who is asking, and their rotations (None while the state's Redis is away: nothing is kept)."""

    vid: str
    site: str
    minted: bool  # made by this request: its first views are rebuilt, not stored
    from_cookie: bool
    rotations: dict | None
    stored: bytes | None = None  # the state as read from Redis, which a save expects to find unchanged
    changed: bool = False
    events: list = field(default_factory=list)


class VisitorStore:
    """Where visitors' rotations live (the session Redis) and where their events go (the events Redis).

    Rotations are kept as msgpack, as the sessions kept them: at MAX_ROTATIONS campaigns under 2 KB."""

    def __init__(self, client, events_client, breaker, events_breaker, prefix, lifetime_seconds):
        self.client, self.events_client = client, events_client
        self.breaker, self.events_breaker = breaker, events_breaker
        self.prefix, self.lifetime_seconds = prefix, lifetime_seconds
        self.save_if_unchanged = client.register_script(_SAVE_IF_UNCHANGED)


def open_visitor(site=None) -> Visitor:
    """This request's visitor: `vid` parameter, else the cookie, else a new vid; its rotations on `site`
    (default: the request's Origin, '' for our own pages)."""
    store, secret = current_app.extensions["visitors"], current_app.secret_key
    site = site_of(request.headers.get("Origin")) if site is None else site
    # A vid parameter is rare (the JS tag's decisions, publishers' servers): a query without one is not parsed.
    vid = request.args.get("vid") if "vid=" in request.environ.get("QUERY_STRING", "") else None
    from_cookie = False
    if not is_vid(vid):
        vid, from_cookie = request.cookies.get(COOKIE), True
    minted = not is_vid(vid)
    if minted:
        vid, from_cookie = new_vid(secret, site), False
    visitor = Visitor(vid, site, minted, from_cookie, rotations=None)
    if store.breaker.is_open():
        return visitor
    if minted:
        visitor.rotations = {}
        return visitor
    try:
        stored = store.client.get(store.prefix + state_key(secret, site, vid))
    except REDIS_ERRORS as exc:
        store.breaker.record(exc)
        return visitor
    visitor.rotations, visitor.stored = _decode(stored), stored
    return visitor


def choose_banner(visitor, campaign_id: int, banner_ids, rng) -> int:
    """The next banner of the visitor's rotation over `banner_ids`; any of them while the state is away."""
    if visitor.rotations is None:
        current_app.extensions["degraded"].add("views")
        return rng.choice(banner_ids)
    secret, name = current_app.secret_key, str(campaign_id)
    state = visitor.rotations.get(name)
    if state is None and is_minted(secret, visitor.vid, visitor.site):
        # The first view of a vid we minted was not stored: it showed the first banner of this seed's cycle.
        state = first_state(banner_ids, cycle_seed(secret, visitor.site, visitor.vid, campaign_id))
        if visitor.minted:  # this is that first view
            visitor.rotations[name] = state
            return state[1]
    banner, state = next_banner(banner_ids, state, rng)
    remember(visitor.rotations, name, state)
    visitor.changed = True
    return banner


def can_record() -> bool:
    """Whether events are recorded now (they are on, and the events' Redis is not known to be away)."""
    return current_app.extensions["settings"].events_enabled and not current_app.extensions["visitors"].events_breaker.is_open()


def record(visitor, event) -> None:
    """Keep `event` to send with the visitor's state at the end of the request."""
    if can_record():
        visitor.events.append(event)


def pseudonym(visitor) -> str:
    """The visitor as events name it: stable per site and vid, revealing neither."""
    return visitor_key(current_app.secret_key, f"{visitor.site}|{visitor.vid}")


# Two views of one visitor (two tabs) may read the same state: the second to save finds it moved and chooses
# again from what the first saved, so the two show different banners. One call sets the state only if it is
# the one read (or whatever it is, when ARGV[1] is 2) and sends the view's event commands with it.
# KEYS: the state, then each command's key. ARGV: 0 (none was read), 1 (ARGV[2] was read) or 2; the new
# state; its lifetime in seconds; then per command its argument count, name and arguments after the key.
_SAVE_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '1' and current ~= ARGV[2]) or (ARGV[1] == '0' and current) then
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
local at = 5
for k = 2, #KEYS do
  local count = tonumber(ARGV[at])
  redis.call(ARGV[at + 1], KEYS[k], unpack(ARGV, at + 2, at + 1 + count))
  at = at + 2 + count
end
return {1}
"""
ATTEMPTS = 5  # a visitor's views racing each other, each saved in turn; the last attempt saves whatever


def in_turn(visitor, pick):
    """`pick()` (choose this view's banners, record their events), saved: when another view of the visitor saved
    first, picked again from the state it left. Returns what the saved pick returned."""
    for _ in range(ATTEMPTS - 1):
        picked = pick()
        if save(visitor):
            return picked
    picked = pick()
    save(visitor, unless_moved=False)
    return picked


def show(visitor, campaign_id: int, banner_ids, rng, now, quarter: int, data_version) -> tuple:
    """A page's or a frame's view: the visitor's next banner of `banner_ids` with its impression recorded, saved in
    turn; (banner_id, impression_id)."""

    def pick():
        banner_id, impression_id = choose_banner(visitor, campaign_id, banner_ids, rng), new_impression_id()
        record(visitor, impression_event(now, quarter, campaign_id, banner_id, pseudonym(visitor), data_version,
                                         impression_id))
        return banner_id, impression_id

    return in_turn(visitor, pick)


def save(visitor, unless_moved=True) -> bool:
    """Send the visitor's new state (a minted vid's first views excepted) and its events: with one script call when
    one Redis holds both, else a call and a pipeline. False, with nothing sent and the visitor holding the state
    found, when `unless_moved` and another view saved the visitor's state since it was read."""
    store, ctx = current_app.extensions["visitors"], current_app.extensions["runtime"]
    keep = visitor.changed and not visitor.minted and visitor.rotations is not None
    events_apart = not keep or store.events_client is not store.client
    if keep:
        commands = [] if events_apart else [c for event in visitor.events for c in event_commands(ctx, event)]
        state = msgspec.msgpack.encode(visitor.rotations)
        read = "2" if not unless_moved else "0" if visitor.stored is None else "1"
        args = [read, visitor.stored or b"", state, store.lifetime_seconds]
        for name, _, *rest in commands:
            args += [len(rest), name, *rest]
        try:
            reply = store.save_if_unchanged(keys=[store.prefix + state_key(current_app.secret_key, visitor.site, visitor.vid),
                                                  *(command[1] for command in commands)], args=args)
        except REDIS_ERRORS as exc:
            store.breaker.record(exc)
            current_app.logger.debug("a visitor's state or events were not kept: %s", exc)
            visitor.rotations = None  # the state's Redis is away: no cookie promises a rotation either
        else:
            if reply[0] == 0:
                visitor.rotations, visitor.stored, visitor.events = _decode(reply[1]), reply[1], []
                return False
            visitor.stored = state
            expiries_sent(commands)
    if visitor.events and events_apart:
        client, breaker = (store.client, store.breaker) if store.events_client is store.client else (
            store.events_client, store.events_breaker)
        pipe = client.pipeline(transaction=False)
        queued = [command for event in visitor.events for command in queue_event(pipe, ctx, event)]
        try:
            pipe.execute()
            expiries_sent(queued)
        except REDIS_ERRORS as exc:
            breaker.record(exc)
            current_app.logger.debug("a visitor's events were not kept: %s", exc)
            if breaker is store.breaker:
                visitor.rotations = None  # the state's Redis is away: no cookie promises a rotation either
    return True


def set_cookie(response, visitor) -> None:
    """Give the vid back in a cookie (renewing its lifetime): partitioned on HTTPS, Lax on plain HTTP.

    Not for a vid the request passed as a parameter (its owner keeps it), nor while nothing is kept."""
    if visitor.rotations is None or not (visitor.minted or visitor.from_cookie):
        return
    store, settings = current_app.extensions["visitors"], current_app.extensions["settings"]
    # request.is_secure sees X-Forwarded-Proto through ProxyFix when the proxy is trusted.
    secure = request.is_secure or settings.session_cookie_secure
    # A vid is url-safe characters only (is_vid), so it needs no quoting.
    response.headers.add("Set-Cookie", COOKIE + "=" + visitor.vid + _cookie_attributes(store.lifetime_seconds, secure))


@functools.lru_cache(maxsize=8)
def _cookie_attributes(max_age: int, secure: bool) -> str:
    """The vid cookie's attributes. Max-Age alone sets its lifetime (every current browser reads it), so no
    Expires date is formatted on every view. On HTTPS it is partitioned: a partitioned cookie is kept in a
    cross-site frame (keyed by the top-level site) where others are not."""
    if secure:
        return f"; Max-Age={max_age}; Secure; HttpOnly; Path=/; SameSite=None; Partitioned"
    return f"; Max-Age={max_age}; HttpOnly; Path=/; SameSite=Lax"


def _decode(stored) -> dict:
    try:
        rotations = msgspec.msgpack.decode(stored) if stored else {}
    except (msgspec.MsgspecError, ValueError):
        return {}
    return rotations if isinstance(rotations, dict) else {}
