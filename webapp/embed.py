"""The iframe document: a banner of the visitor's rotation, framed by publishers' pages."""

import base64
import functools
import hashlib
import random

from flask import Blueprint, abort, current_app, render_template, request

from selection import quarter_of
from webapp import visitors
from webapp.clicks import click_token
from webapp.clock import utc_now
from webapp.formatting import slot_label
from webapp.errors import REFERRER_POLICY
from webapp.publishers import TOKEN_SLOT, banner_alt, banner_size, campaign_id_of, image_path, publisher_site, token_path

bp = Blueprint("embed", __name__)

_rng = random.SystemRandom()
TARGETS = {"top": "_top", "blank": "_blank"}
# The snippets' own query strings (and none): their target known without parsing the query.
SNIPPET_QUERIES = {"": "_top", "target=top": "_top", "target=blank": "_blank"}
# The frame is the banner and nothing else: no margin, no scrollbar, the image scaled into the frame whole.
FRAME_STYLE = ("html,body{margin:0;padding:0;width:100%;height:100%;overflow:hidden;background:transparent}"
               "a{display:block;width:100%;height:100%}"
               "img{display:block;width:100%;height:100%;object-fit:contain;border:0}")
_STYLE_HASH = base64.b64encode(hashlib.sha256(FRAME_STYLE.encode()).digest()).decode()
# Only this frame's style and same-site images. The document carries it (a <meta> ahead of the style: no
# header to send on every view); only frame-ancestors, which a <meta> cannot hold, goes in a header.
DOCUMENT_POLICY = (f"default-src 'none'; img-src 'self' data:; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
                   "form-action 'none'")


@bp.get("/embed/<campaign_id>")
def frame(campaign_id):
    """The iframe document: the next banner of the visitor's rotation, its impression recorded as it is served."""
    answer = frame_answer(request, campaign_id)
    if not callable(answer):
        return answer
    body, headers = answer()
    return current_app.response_class(body, headers=headers)


def frame_answer(req, campaign_id):
    """What the frame answers `req`: a refusal or a HEAD's answer at once (a 404 is raised), else the view to run,
    which moves the rotation and gives (body, headers) (webapp/direct.py runs it before Flask; the others it leaves to
    Flask's view)."""
    allowed = current_app.extensions["settings"].allowed_sites()
    headers = _frame_headers(allowed)
    environ = req.environ  # read directly: asked on every view
    site, may_embed = publisher_site(allowed, req)
    if allowed and not site and environ.get("HTTP_SEC_FETCH_SITE") in ("cross-site", "same-site"):
        may_embed = False  # framed by another site that sent no Referer: it cannot be checked against the list
    if not may_embed:
        return "", 403, headers
    cid = campaign_id_of(campaign_id)
    snapshot = current_app.extensions["plans"].snapshot()
    now = utc_now()
    quarter = quarter_of(now)
    banners = snapshot.plans.get((quarter, cid)) if cid is not None else None
    if not banners:
        if cid in snapshot.campaigns:
            abort(404, f"Campaign {cid} has no banners in this slot of the hour ({slot_label(quarter)} UTC).")
        abort(404, f"There is no campaign {campaign_id[:30]}.")
    if environ["REQUEST_METHOD"] == "HEAD":
        # A link checker or a prefetch: nobody sees a banner, so no rotation moves and no impression counts.
        return "", 200, headers
    query = environ.get("QUERY_STRING", "")
    target = SNIPPET_QUERIES.get(query) or TARGETS.get(req.args.get("target", "top"), "_top")

    def view():
        visitor = visitors.open_visitor(req, site)
        banner_id, impression_id = visitors.show(visitor, cid, [b for b, _ in banners], _rng, now, quarter,
                                                 snapshot.version)
        key = ("embed", quarter, cid, banner_id, target)
        page = snapshot.pages.get(key)
        if page is None:
            # Like the slot page: rendered once per process and data version, the click token put in per view.
            image_name = dict(banners)[banner_id]
            width, height = banner_size(snapshot.pages, image_name)
            page = snapshot.pages[key] = render_template(
                "public/embed.html", policy=DOCUMENT_POLICY, style=FRAME_STYLE, campaign_id=cid, banner_id=banner_id,
                quarter=quarter, target=target, width=width, height=height, alt=banner_alt(cid, banner_id, image_name),
                image_src=image_path(snapshot.pages, image_name, req.script_root),
                click_href=token_path("clicks.click", req.script_root),
            )
        return (page.replace(TOKEN_SLOT, click_token(cid, banner_id, quarter, impression_id), 1),
                headers + visitors.cookie_headers(visitor))

    return view


def direct(req, rest: str):
    """webapp/direct.py's view of /embed/<rest>: the frame's view to run, or None for Flask's view to answer (a 404
    raised here is left to Flask too, whose page says why)."""
    answer = frame_answer(req, rest)
    return answer if callable(answer) else None


@functools.lru_cache(maxsize=8)
def _frame_headers(allowed: frozenset) -> tuple:
    """Never stored; framed only by the allowed sites (any, when none are listed)."""
    # The Referrer-Policy every response gets (webapp/errors.py), here for the frame answered before Flask too.
    headers = (("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"), REFERRER_POLICY)
    if allowed:
        headers += (("Content-Security-Policy", "frame-ancestors 'self' " + " ".join(sorted(allowed))),)
    return headers
