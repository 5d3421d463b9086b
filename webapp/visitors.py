"""A visitor on the serving path: its vid (parameter, then cookie), the next step of its rotations taken in Redis with
the view's events in one script call; while Redis is away, any banner and nothing kept.

Visitors have no flask-session: a view that arrives without a vid is given a new one and leaves no key
behind (visitor_state explains how its next view rebuilds what it was shown).
"""

import functools
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import redis
from flask import current_app

from live.events import event_commands, expiries_sent, impression_event, queue_event, visitor_key
from rotation import MAX_ROTATIONS, code, next_banner, set_key
from visitor_state import COOKIE, cycle_seed, first_state, is_minted, is_vid, new_vid, site_of, state_key
from webapp.clicks import new_impression_id
from webapp.outage import REDIS_ERRORS

BANNER_SLOT = "\1"  # stands in an event command for the banner the script chooses
ROTATION_STEP = (Path(__file__).parent / "rotation_step.lua").read_text()


@dataclass
class Visitor:
    """Who is asking, and whether its rotations are kept (not while the state's Redis is away)."""

    vid: str
    site: str
    minted: bool  # made by this request: its first views are rebuilt, not stored
    from_cookie: bool
    kept: bool
    secure: bool  # asked over HTTPS (request.is_secure: through ProxyFix, the proxy's X-Forwarded-Proto)
    first_views: dict = field(default_factory=dict)  # a minted vid's rotations within this request


class VisitorStore:
    """Where visitors' rotations live (the session Redis) and where their events go (the events Redis).

    A visitor's rotations are one hash: a field per campaign (about 30 bytes), at most MAX_ROTATIONS of them."""

    def __init__(self, client, events_client, breaker, events_breaker, prefix, lifetime_seconds):
        self.client, self.events_client = client, events_client
        self.breaker, self.events_breaker = breaker, events_breaker
        self.prefix, self.lifetime_seconds = prefix, lifetime_seconds
        self.step = client.register_script(ROTATION_STEP)
        self._local = threading.local()

    def step_client(self):
        """This thread's own connection for the rotation step: redis-py's single-connection client skips the pool's
        checkout, its check for unread data and the return, a quarter of the client's CPU per view. Made in each
        thread of each process (after the web server forks its workers), so no thread waits out another's round trip
        (a frozen Redis's timeout) nor writes to its parent's socket; raises what connecting raises."""
        mine = getattr(self._local, "client", None)
        if mine is None or mine[0] != os.getpid():
            mine = self._local.client = (os.getpid(), redis.Redis(connection_pool=self.client.connection_pool,
                                                                  single_connection_client=True))
        return mine[1]


def open_visitor(req, site=None) -> Visitor:
    """The visitor of request `req`: its `vid` parameter, else the cookie, else a new vid; its rotations on `site`
    (default: the request's Origin, '' for our own pages)."""
    store, secret, environ = current_app.extensions["visitors"], current_app.secret_key, req.environ
    site = site_of(environ.get("HTTP_ORIGIN")) if site is None else site
    # A vid parameter is rare (the JS tag's decisions, publishers' servers): a query without one is not parsed.
    vid = req.args.get("vid") if "vid=" in environ.get("QUERY_STRING", "") else None
    from_cookie = False
    if not is_vid(vid):
        vid, from_cookie = vid_cookie(environ.get("HTTP_COOKIE")), True
    minted = not is_vid(vid)
    if minted:
        vid, from_cookie = new_vid(secret, site), False
    return Visitor(vid, site, minted, from_cookie, kept=not store.breaker.is_open(), secure=req.is_secure)


def vid_cookie(header):
    """The first `bs_vid` cookie's value in a Cookie header (None without one), as request.cookies.get(COOKIE) reads it
    for any value a vid can be, without parsing every other cookie of the publisher's page."""
    found = _VID_COOKIE.search(header) if header else None
    return found.group(1).strip().strip('"') if found else None


_VID_COOKIE = re.compile(r"(?:^|;)\s*" + COOKIE + r"\s*=([^;]*)")


def next_banners(visitor, slots, rng, event_of=None) -> list:
    """The next banner of the visitor's rotation for each (campaign_id, banner_ids) of `slots`, with the events
    `event_of(banner_id)` makes for the first slot recorded: one script call for a returning visitor; any banner
    while the state's Redis is away."""
    if not slots:
        return []
    store = current_app.extensions["visitors"]
    recording = event_of is not None and can_record()
    if not visitor.kept:
        banners = _any_banners(slots, rng)
    elif visitor.minted:
        banners = [_first_view(visitor, campaign_id, banner_ids, rng) for campaign_id, banner_ids in slots]
    else:
        together = recording and store.events_client is store.client
        commands = event_commands(current_app.extensions["runtime"], event_of(BANNER_SLOT)) if together else []
        banners = _step(visitor, slots, rng, commands)
        if together:  # the events went with the step, or were lost with it (their Redis is the one away)
            if banners is not None:
                expiries_sent(commands)
            return banners if banners is not None else _any_banners(slots, rng)
        banners = banners if banners is not None else _any_banners(slots, rng)
    if recording:
        _send_events(visitor, [event_of(banners[0])])
    return banners


def _step(visitor, slots, rng, commands):
    """The script call: each slot's banner (ints), or None when the state's Redis failed (nothing is kept then)."""
    store = current_app.extensions["visitors"]
    keys, args = step_call(visitor, slots, rng, commands)
    try:
        reply = store.step(keys=keys, args=args, client=store.step_client())
    except REDIS_ERRORS as exc:
        store.breaker.record(exc)
        current_app.logger.debug("a visitor's rotation or events were not kept: %s", exc)
        visitor.kept = False  # the state's Redis is away: no cookie promises a rotation either
        return None
    return [int(banner) for banner in reply]


def step_call(visitor, slots, rng, commands) -> tuple:
    """The keys and arguments of the script call (rotation_step.lua) that steps the visitor's rotations of `slots`
    and runs the event `commands`."""
    store, secret = current_app.extensions["visitors"], current_app.secret_key
    minted = is_minted(secret, visitor.vid, visitor.site)
    args = [store.lifetime_seconds, MAX_ROTATIONS, len(slots)]
    for campaign_id, banner_ids in slots:
        key, banners = rotation_set(tuple(banner_ids))
        args += [campaign_id, key, rng.getrandbits(32),
                 cycle_seed(secret, visitor.site, visitor.vid, campaign_id) if minted else "", *banners]
    for name, _, *rest in commands:
        args += [len(rest), name, *rest]
    return [store.prefix + state_key(secret, visitor.site, visitor.vid), *(command[1] for command in commands)], args


@functools.lru_cache(maxsize=20_000)
def rotation_set(banner_ids: tuple) -> tuple:
    """A banner set as the script reads it: (set_key, (the number of banners, then each one's id and code by ascending
    id))."""
    ordered = sorted(set(banner_ids))
    return set_key(ordered), (len(ordered), *(value for banner in ordered for value in (banner, code(banner))))


def _first_view(visitor, campaign_id: int, banner_ids, rng) -> int:
    """A minted vid's view, kept nowhere: the first banner of the cycle its next view will rebuild (visitor_state)."""
    secret, name = current_app.secret_key, str(campaign_id)
    state = visitor.first_views.get(name)
    if state is None:
        state = visitor.first_views[name] = first_state(banner_ids, cycle_seed(secret, visitor.site, visitor.vid, campaign_id))
        return state[1]
    banner, visitor.first_views[name] = next_banner(banner_ids, state, rng)  # the same campaign twice in one decision
    return banner


def _any_banners(slots, rng) -> list:
    current_app.extensions["degraded"].add("views")
    return [rng.choice(banner_ids) for _, banner_ids in slots]


def _send_events(visitor, events) -> None:
    """Events sent apart from the rotations (a minted vid, the events' own Redis, the state's Redis away)."""
    store, ctx = current_app.extensions["visitors"], current_app.extensions["runtime"]
    client, breaker = (store.client, store.breaker) if store.events_client is store.client else (
        store.events_client, store.events_breaker)
    pipe = client.pipeline(transaction=False)
    queued = [command for event in events for command in queue_event(pipe, ctx, event)]
    try:
        pipe.execute()
        expiries_sent(queued)
    except REDIS_ERRORS as exc:
        breaker.record(exc)
        current_app.logger.debug("a visitor's events were not kept: %s", exc)
        if breaker is store.breaker:
            visitor.kept = False  # the state's Redis is away: no cookie promises a rotation either


def can_record() -> bool:
    """Whether events are recorded now (they are on, and the events' Redis is not known to be away)."""
    return current_app.extensions["settings"].events_enabled and not current_app.extensions["visitors"].events_breaker.is_open()


def pseudonym(visitor) -> str:
    """The visitor as events name it: stable per site and vid, revealing neither."""
    return visitor_key(current_app.secret_key, f"{visitor.site}|{visitor.vid}")


def show(visitor, campaign_id: int, banner_ids, rng, now, quarter: int, data_version) -> tuple:
    """A page's or a frame's view: the visitor's next banner of `banner_ids` with its impression recorded;
    (banner_id, impression_id)."""
    impression_id, who = new_impression_id(), pseudonym(visitor)

    def impression(banner_id):
        return impression_event(now, quarter, campaign_id, banner_id, who, data_version, impression_id)

    [banner_id] = next_banners(visitor, [(campaign_id, banner_ids)], rng, impression)
    return banner_id, impression_id


def cookie_headers(visitor) -> tuple:
    """The header that gives the vid back in a cookie (renewing its lifetime), partitioned on HTTPS, Lax on plain HTTP;
    none for a vid the request passed as a parameter (its owner keeps it), nor while nothing is kept."""
    if not visitor.kept or not (visitor.minted or visitor.from_cookie):
        return ()
    store, settings = current_app.extensions["visitors"], current_app.extensions["settings"]
    secure = visitor.secure or settings.session_cookie_secure
    # A vid is url-safe characters only (is_vid), so it needs no quoting.
    return (("Set-Cookie", COOKIE + "=" + visitor.vid + _cookie_attributes(store.lifetime_seconds, secure)),)


@functools.lru_cache(maxsize=8)
def _cookie_attributes(max_age: int, secure: bool) -> str:
    """The vid cookie's attributes. Max-Age alone sets its lifetime (every current browser reads it), so no
    Expires date is formatted on every view. On HTTPS it is partitioned: a partitioned cookie is kept in a
    cross-site frame (keyed by the top-level site) where others are not."""
    if secure:
        return f"; Max-Age={max_age}; Secure; HttpOnly; Path=/; SameSite=None; Partitioned"
    return f"; Max-Age={max_age}; HttpOnly; Path=/; SameSite=Lax"
