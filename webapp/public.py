"""The visitor's side: a campaign's ad slot, banner images, and the campaign index."""

import random
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

from webapp.clicks import click_token
from selection import quarter_of
from webapp import visitors
from webapp.clock import utc_now
from webapp.formatting import slot_label
from webapp.errors import REFERRER_POLICY
from webapp.serving import Snapshot
from webapp.publishers import TOKEN_SLOT, token_path
from webapp.slots import can_fill, slot_page

bp = Blueprint("public", __name__)

_rng = random.SystemRandom()
# Never stored; the Referrer-Policy every response gets (webapp/errors.py), here for the view answered before Flask too.
SLOT_HEADERS = (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"), REFERRER_POLICY)


@bp.get("/")
def index():
    """The campaigns that have banners this quarter, each a link to its ad slot."""
    snapshot = current_app.extensions["plans"].snapshot()
    quarter = quarter_of(utc_now())
    campaigns = sorted(c for q, c in snapshot.plans if q == quarter)
    return render_template("public/index.html", campaigns=campaigns, quarter=quarter)


@bp.get("/campaigns/<campaign_id>")
def campaign(campaign_id):
    """One banner: the next of this visitor's rotation over the campaign's current set."""
    if not (campaign_id.isascii() and campaign_id.isdigit()):
        abort(404, f"Campaign id {campaign_id!r} is not a number.")
    if len(campaign_id.lstrip("0")) > 19:  # beyond any 64-bit id (and before int() has to read it)
        abort(404, f"There is no campaign {campaign_id[:30]}.")
    cid = int(campaign_id)
    slot = open_slot(cid, request)
    if not slot.banners:
        if cid in slot.snapshot.campaigns:
            abort(404, f"Campaign {cid} has no banners in this slot of the hour ({slot_label(slot.quarter)} UTC).")
        abort(404, f"There is no campaign {cid}.")
    body, headers = show_slot(slot, request)
    return current_app.response_class(body, headers=headers)


@dataclass(frozen=True)
class Slot:
    """What a slot page view serves from: the plan of the campaign this quarter, and its click link's stand-in."""

    campaign_id: int
    snapshot: Snapshot
    now: datetime
    quarter: int
    banners: tuple
    click_href: str


def open_slot(campaign_id: int, req) -> Slot:
    """The slot of `campaign_id` now (no banners when it has none this quarter)."""
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    return Slot(campaign_id, snapshot, now, quarter, snapshot.plans.get((quarter, campaign_id)) or (),
                token_path("clicks.click", req.script_root))


def show_slot(slot, req) -> tuple:
    """The view: the visitor's next banner of the slot, its impression recorded, its page with a fresh click token;
    (body, headers)."""
    cid, snapshot, quarter = slot.campaign_id, slot.snapshot, slot.quarter
    visitor = visitors.open_visitor(req)
    banner_id, impression_id = visitors.show(visitor, cid, [b for b, _ in slot.banners], _rng, slot.now, quarter,
                                             snapshot.version)
    key = (quarter, cid, banner_id)
    page = snapshot.pages.get(key)
    if page is None:
        # The page depends only on the key (the click token is put in per view), so each
        # process renders it once per data version.
        page = snapshot.pages[key] = slot_page(snapshot.pages, cid, banner_id, dict(slot.banners)[banner_id], quarter,
                                               slot.click_href)
    # Never stored: a stored copy would replay a used click token and show a banner nobody counted.
    return (page.replace(TOKEN_SLOT, click_token(cid, banner_id, quarter, impression_id), 1),
            SLOT_HEADERS + visitors.cookie_headers(visitor))


def direct(req, rest: str):
    """webapp/direct.py's view of /campaigns/<rest>: the slot's view to run, or None for Flask's view to answer (a 404,
    or a page to render from the template first)."""
    # The view's own checks: anything else (a 404, a number past 64 bits) is Flask's.
    if not (rest.isascii() and rest.isdigit() and len(rest.lstrip("0")) <= 19):
        return None
    slot = open_slot(int(rest), req)
    if not slot.banners or not can_fill(slot.snapshot.pages, slot.banners, slot.click_href):
        return None
    return lambda: show_slot(slot, req)


@bp.get("/images/<path:name>")
def image(name):
    """A banner image from the served image folder (nginx serves the same folder in production)."""
    response = send_from_directory(current_app.extensions["settings"].image_dir, name, max_age=86400)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/favicon.ico")
def favicon():
    """The site icon, for browsers that ask for it before (or without) reading the page's <link rel="icon">."""
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
