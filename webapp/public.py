"""The visitor's side: a campaign's ad slot, banner images, and the campaign index."""

import random

from flask import Blueprint, abort, current_app, render_template, send_from_directory, url_for

from webapp.clicks import click_token
from selection import quarter_of
from webapp import visitors
from webapp.clock import utc_now
from webapp.formatting import slot_label
from webapp.slots import slot_page

bp = Blueprint("public", __name__)

_rng = random.SystemRandom()
TOKEN_SLOT = "0clicktoken0"  # stands in the cached page where each view's click token goes
NOT_STORED = {"Cache-Control": "no-store"}


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
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    banners = snapshot.plans.get((quarter, cid))
    if not banners:
        if cid in snapshot.campaigns:
            abort(404, f"Campaign {cid} has no banners in this slot of the hour ({slot_label(quarter)} UTC).")
        abort(404, f"There is no campaign {cid}.")
    visitor = visitors.open_visitor()
    banner_id, impression_id = visitors.show(visitor, cid, [b for b, _ in banners], _rng, now, quarter, snapshot.version)
    key = (quarter, cid, banner_id)
    page = snapshot.pages.get(key)
    if page is None:
        # The page depends only on the key (the click token is put in per view), so each
        # process renders it once per data version.
        page = snapshot.pages[key] = slot_page(
            snapshot.pages, cid, banner_id, dict(banners)[banner_id], quarter, url_for("clicks.click", token=TOKEN_SLOT),
        )
    # Never stored: a stored copy would replay a used click token and show a banner nobody counted.
    response = current_app.response_class(page.replace(TOKEN_SLOT, click_token(cid, banner_id, quarter, impression_id), 1),
                                          headers=NOT_STORED)
    visitors.set_cookie(response, visitor)
    return response


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
