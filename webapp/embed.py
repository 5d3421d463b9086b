"""Banners on publishers' pages: the JSON decision (batched, CORS), its render beacons, and the iframe document."""

import base64
import functools
import hashlib
import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from PIL import Image, UnidentifiedImageError

from flask import Blueprint, abort, current_app, jsonify, make_response, render_template, request, url_for

from live.beacons import BeaconExpired, BeaconForged, beacon_token, read_beacon_token, record_beacon
from webapp.clicks import click_token, new_impression_id
from live.events import impression_event
from selection import quarter_of
from visitor_state import site_of
from webapp import visitors
from webapp.clock import utc_now
from webapp.outage import REDIS_ERRORS

bp = Blueprint("embed", __name__)

_rng = random.SystemRandom()
MAX_SLOTS = 20  # campaigns in one decision: a page's slots, not a crawl of the catalogue
DEFAULT_SIZE = (300, 250)  # the banner's size when its image's is not known
TARGETS = {"top": "_top", "blank": "_blank"}
TOKEN_SLOT = "0clicktoken0"  # stands in the cached frame document where each view's click token goes
# The frame is the banner and nothing else: no margin, no scrollbar, the image scaled into the frame whole.
FRAME_STYLE = ("html,body{margin:0;padding:0;width:100%;height:100%;overflow:hidden;background:transparent}"
               "a{display:block;width:100%;height:100%}"
               "img{display:block;width:100%;height:100%;object-fit:contain;border:0}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(FRAME_STYLE.encode()).digest()).decode()


def publisher_site():
    """(site, allowed): the site asking (its Origin, else its Referer's origin, else ''), and whether it may embed.

    A request naming no site (a publisher's server, an app) is allowed: only browsers say where they are."""
    environ = request.environ  # read directly: asked on every embed request
    site = site_of(environ.get("HTTP_ORIGIN") or _origin_of(environ.get("HTTP_REFERER")))
    allowed = current_app.extensions["settings"].allowed_sites()
    if not allowed or not site or site in allowed:
        return site, True
    return site, site == request.host_url.rstrip("/").lower()  # our own pages (the admin's preview)


@bp.after_request
def cors_headers(response):
    """CORS for the JSON API: the allowed Origin (any, when no list is set); never cached by anyone."""
    if request.path.startswith("/api/"):
        allowed = current_app.extensions["settings"].allowed_sites()
        origin = site_of(request.headers.get("Origin"))
        if not allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Vary"] = "Origin"
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/decision")
def decision():
    """The next banner of the visitor's rotation for each campaign asked (`c=` or `campaign=`, repeated), as JSON."""
    site, allowed = publisher_site()
    if not allowed:
        return jsonify(error="this site is not allowed to embed banners"), 403
    asked = request.args.getlist("c") + request.args.getlist("campaign")
    if not asked:
        return jsonify(error="name at least one campaign: /api/decision?c=<campaign id>"), 400
    if len(asked) > MAX_SLOTS:
        return jsonify(error=f"at most {MAX_SLOTS} campaigns in one decision"), 400
    if request.method == "HEAD":
        return "", 200, {"Content-Type": "application/json"}  # asks for nothing: no rotation moves
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    visitor = visitors.open_visitor(site)
    who, issued, secret = visitors.pseudonym(visitor), time.time(), current_app.secret_key
    host = f"{request.scheme}://{request.host}"  # the absolute URLs' scheme and host, as url_for(_external=True) has them
    slots = []
    for raw in asked:
        cid = _campaign_id(raw)
        banners = snapshot.plans.get((quarter, cid)) if cid is not None else None
        if not banners:
            slots.append({"campaign_id": cid if cid is not None else raw[:30], "error": "no banner"})
            continue
        banner_id = visitors.choose_banner(visitor, cid, [b for b, _ in banners], _rng)
        image_name = dict(banners)[banner_id]
        impression_id = new_impression_id()
        token = beacon_token(secret, cid, banner_id, quarter, impression_id, snapshot.version, who, issued)
        width, height = banner_size(snapshot.pages, image_name)
        slots.append({
            "campaign_id": cid, "banner_id": banner_id, "width": width, "height": height,
            "alt": banner_alt(cid, banner_id, image_name),
            "image_url": host + _image_path(snapshot.pages, image_name),
            "click_url": host + _path("clicks.click", click_token(cid, banner_id, quarter, impression_id)),
            "impression_id": impression_id,
            "impression_url": host + _path("embed.impression", token),
            "viewable_url": host + _path("embed.viewable", token),
        })
    visitors.save(visitor)
    # msgspec encodes it at a tenth of jsonify's cost (keys in the order written, not sorted).
    return current_app.response_class(msgspec.json.encode({"vid": visitor.vid, "slots": slots}), mimetype="application/json")


@bp.post("/api/impressions/<token>")
def impression(token):
    """The decided banner was rendered: record its impression, once."""
    return _beacon("impression", token)


@bp.post("/api/viewable/<token>")
def viewable(token):
    """The rendered banner was at least half in view for a second: record it as viewable, once."""
    return _beacon("viewable", token)


@bp.get("/embed/<campaign_id>")
def frame(campaign_id):
    """The iframe document: the next banner of the visitor's rotation, its impression recorded as it is served."""
    site, allowed = publisher_site()
    settings = current_app.extensions["settings"]
    if settings.allowed_sites() and not site and request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
        allowed = False  # framed by another site that sent no Referer: it cannot be checked against the list
    if not allowed:
        return _frame_headers(make_response("", 403))
    cid = _campaign_id(campaign_id)
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    banners = snapshot.plans.get((quarter, cid)) if cid is not None else None
    if not banners:
        abort(404, f"There is no campaign {campaign_id[:30]} with banners this quarter.")
    if request.method == "HEAD":
        # A link checker or a prefetch: nobody sees a banner, so no rotation moves and no impression counts.
        return _frame_headers(make_response("", 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}))
    target = TARGETS.get(request.args.get("target", "top"), "_top") if request.query_string else "_top"
    visitor = visitors.open_visitor(site)
    banner_id = visitors.choose_banner(visitor, cid, [b for b, _ in banners], _rng)
    key = ("embed", quarter, cid, banner_id, target)
    page = snapshot.pages.get(key)
    if page is None:
        # Like the slot page: rendered once per process and data version, the click token put in per view.
        image_name = dict(banners)[banner_id]
        width, height = banner_size(snapshot.pages, image_name)
        page = snapshot.pages[key] = render_template(
            "public/embed.html", style=FRAME_STYLE, campaign_id=cid, banner_id=banner_id, quarter=quarter,
            target=target, width=width, height=height, alt=banner_alt(cid, banner_id, image_name),
            image_src=url_for("public.image", name=image_name) if image_name else url_for("static", filename="placeholder.svg"),
            click_href=url_for("clicks.click", token=TOKEN_SLOT),
        )
    impression_id = new_impression_id()
    visitors.record(visitor, impression_event(now, quarter, cid, banner_id, visitors.pseudonym(visitor),
                                              snapshot.version, impression_id))
    visitors.save(visitor)
    response = current_app.response_class(page.replace(TOKEN_SLOT, click_token(cid, banner_id, quarter, impression_id), 1),
                                          headers={"Cache-Control": "no-store",
                                                   "Content-Security-Policy": _frame_policy(settings.allowed_sites())})
    visitors.set_cookie(response, visitor)
    return response


def _frame_headers(response):
    """Only this frame's style and same-site images; framed only by the allowed sites (any, when none are listed)."""
    response.headers["Content-Security-Policy"] = _frame_policy(current_app.extensions["settings"].allowed_sites())
    return response


@functools.lru_cache(maxsize=8)
def _frame_policy(allowed: frozenset) -> str:
    policy = (f"default-src 'none'; img-src 'self' data:; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
              "form-action 'none'")
    if allowed:
        policy += "; frame-ancestors 'self' " + " ".join(sorted(allowed))
    return policy


def _beacon(kind, token):
    _, allowed = publisher_site()
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


def banner_alt(campaign_id, banner_id, image_name) -> str:
    """The banner's alt text, as the slot page gives it."""
    missing = "" if image_name else " (no image available)"
    return f"Banner {banner_id} of campaign {campaign_id}{missing}"


def banner_size(cache, image_name) -> tuple:
    """(width, height) of the banner's image, read once per process and data version; DEFAULT_SIZE when unknown."""
    if not image_name:
        return DEFAULT_SIZE
    key = ("size", image_name)
    size = cache.get(key)
    if size is None:
        try:
            with Image.open(Path(current_app.extensions["settings"].image_dir) / image_name) as image:
                size = image.size  # the header only: the pixels are not decoded
        except (OSError, UnidentifiedImageError, ValueError):
            size = DEFAULT_SIZE
        cache[key] = size
    return size


def _image_path(cache, image_name) -> str:
    """The path of the banner's image (of the placeholder when it has none), made once per process and data version."""
    key = ("image_path", request.script_root, image_name)
    path = cache.get(key)
    if path is None:
        path = cache[key] = (url_for("public.image", name=image_name) if image_name
                             else url_for("static", filename="placeholder.svg"))
    return path


_paths = {}


def _path(endpoint, token) -> str:
    """url_for(endpoint, token=token)'s path: url_for once per endpoint and script root, then the token put in."""
    key = (endpoint, request.script_root)
    template = _paths.get(key)
    if template is None:
        template = _paths[key] = url_for(endpoint, token=TOKEN_SLOT)
    return template.replace(TOKEN_SLOT, token, 1)


def _campaign_id(raw):
    if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > 19:
        return None
    return int(raw)


@functools.lru_cache(maxsize=4096)  # a publisher's pages send the same few Referers over and over
def _origin_of(url):
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""
