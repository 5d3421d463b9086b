"""The JSON API of the embeds: the decision (batched, CORS) and its render beacons."""

import functools
import random
import time

import msgspec

from flask import Blueprint, current_app, jsonify, request

from live.beacons import BeaconExpired, BeaconForged, beacon_token, read_beacon_token, record_beacon
from selection import quarter_of
from visitor_state import site_of
from webapp import visitors
from webapp.clicks import click_token, new_impression_id
from webapp.clock import utc_now
from webapp.outage import REDIS_ERRORS
from webapp.errors import REFERRER_POLICY
from webapp.publishers import TOKEN_SLOT, banner_alt, banner_size, campaign_id_of, image_path, publisher_site, token_path

bp = Blueprint("api", __name__)

_rng = random.SystemRandom()
MAX_SLOTS = 20  # campaigns in one decision: a page's slots, not a crawl of the catalogue


JSON_HEADERS = (("Content-Type", "application/json"),)


@bp.after_request
def cors_headers(response):
    """CORS for the JSON API: the allowed Origin (any, when no list is set); never cached by anyone."""
    response.headers.extend(_answer_headers(request)[:-1])
    response.headers["Cache-Control"] = "no-store"
    return response


def _answer_headers(req) -> tuple:
    """The CORS headers of an answer to `req`, and Cache-Control: no-store (last)."""
    allowed = current_app.extensions["settings"].allowed_sites()
    origin = req.headers.get("Origin") if allowed else None
    return _cors_headers(origin if site_of(origin) in allowed else None, bool(allowed)) + (("Cache-Control", "no-store"),)


@functools.lru_cache(maxsize=64)
def _cors_headers(allowed_origin, restricted: bool) -> tuple:
    """The CORS headers of an answer: to any origin when not `restricted`, else to `allowed_origin` (or none)."""
    origin = (("Access-Control-Allow-Origin", allowed_origin or "*"),) if allowed_origin or not restricted else ()
    return (*origin, ("Access-Control-Allow-Methods", "GET, POST"), ("Vary", "Origin"))


@bp.get("/api/decision")
def decision():
    """The next banner of the visitor's rotation for each campaign asked (`c=` or `campaign=`, repeated), as JSON."""
    answer = decision_answer(request)
    if not callable(answer):
        return answer
    body, headers = answer()
    return current_app.response_class(body, headers=headers)  # cors_headers adds the CORS ones


def decision_answer(req):
    """What the decision answers `req`: a refusal or a HEAD's answer at once, else the view to run, which moves the
    rotations and gives (body, headers) (webapp/direct.py runs it before Flask; the others it leaves to Flask's view)."""
    site, allowed = publisher_site(current_app.extensions["settings"].allowed_sites(), req)
    if not allowed:
        return jsonify(error="this site is not allowed to embed banners"), 403
    asked = req.args.getlist("c") + req.args.getlist("campaign")
    if not asked:
        return jsonify(error="name at least one campaign: /api/decision?c=<campaign id>"), 400
    if len(asked) > MAX_SLOTS:
        return jsonify(error=f"at most {MAX_SLOTS} campaigns in one decision"), 400
    if req.method == "HEAD":
        return "", 200, {"Content-Type": "application/json"}  # asks for nothing: no rotation moves
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    # The absolute URLs' scheme and host, as url_for(_external=True) has them.
    host, root = f"{req.scheme}://{req.host}", req.script_root
    wanted = [(raw, cid, snapshot.plans.get((quarter, cid)) if cid is not None else None)
              for raw, cid in ((raw, campaign_id_of(raw)) for raw in asked)]

    def view():
        visitor = visitors.open_visitor(req, site)
        who, issued, secret = visitors.pseudonym(visitor), time.time(), current_app.secret_key
        # One step of every asked rotation at once (a campaign asked twice takes two).
        chosen = iter(visitors.next_banners(visitor, [(cid, [b for b, _ in banners]) for _, cid, banners in wanted if banners],
                                            _rng))
        slots = []
        for raw, cid, banners in wanted:
            if not banners:
                slots.append({"campaign_id": cid if cid is not None else raw[:30], "error": "no banner"})
                continue
            banner_id = next(chosen)
            image_name = dict(banners)[banner_id]
            impression_id = new_impression_id()
            token = beacon_token(secret, cid, banner_id, quarter, impression_id, snapshot.version, who, issued)
            width, height = banner_size(snapshot.pages, image_name)
            slots.append({
                "campaign_id": cid, "banner_id": banner_id, "width": width, "height": height,
                "alt": banner_alt(cid, banner_id, image_name),
                "image_url": host + image_path(snapshot.pages, image_name, root),
                "click_url": host + _path("clicks.click", root, click_token(cid, banner_id, quarter, impression_id)),
                "impression_id": impression_id,
                "impression_url": host + _path("api.impression", root, token),
                "viewable_url": host + _path("api.viewable", root, token),
            })
        # msgspec encodes it at a tenth of jsonify's cost (keys in the order written, not sorted).
        return msgspec.json.encode({"vid": visitor.vid, "slots": slots}), JSON_HEADERS

    return view


def direct(req, rest: str):
    """webapp/direct.py's view of /api/decision: the decision's view to run (with the headers this blueprint's and
    the app's after_request hooks add), or None for Flask's view to answer."""
    answer = decision_answer(req) if rest == "" else None
    if not callable(answer):
        return None

    def view():
        body, headers = answer()
        return body, headers + _answer_headers(req) + (REFERRER_POLICY,)

    return view


@bp.post("/api/impressions/<token>")
def impression(token):
    """The decided banner was rendered: record its impression, once."""
    return _beacon("impression", token)


@bp.post("/api/viewable/<token>")
def viewable(token):
    """The rendered banner was at least half in view for a second: record it as viewable, once."""
    return _beacon("viewable", token)


def _beacon(kind, token):
    _, allowed = publisher_site(current_app.extensions["settings"].allowed_sites())
    if not allowed:
        return jsonify(error="this site is not allowed to embed banners"), 403
    try:
        beacon = read_beacon_token(current_app.secret_key, token, time.time())
    except BeaconExpired:
        return jsonify(error="this beacon's decision is too old to count"), 410
    except BeaconForged:
        return jsonify(error="not a beacon of ours"), 400
    breaker = current_app.extensions["redis_breaker"]
    if not breaker.is_open():
        ctx, client = current_app.extensions["runtime"], current_app.extensions["visitor_redis"]
        try:
            record_beacon(client, ctx, kind, beacon, utc_now(), current_app.extensions["settings"].events_enabled)
        except REDIS_ERRORS as exc:
            breaker.record(exc)
    return "", 204


def _path(endpoint, script_root, token) -> str:
    """url_for(endpoint, token=token)'s path: a path built once per endpoint and script root, the token put in."""
    return token_path(endpoint, script_root).replace(TOKEN_SLOT, token, 1)
