"""The no-state baseline of the load test: our slot page served as fast as plain Python serves it, remembering nobody.

What a server of the brief without per-visitor guarantees does, done right: every campaign's banners per slot
of the hour and its pages are made once per process from the same database (the same bytes as our page), and a
view is a random banner of the current slot with a fresh click token. No Redis, no events, no rotation, no
cookie, no framework on the request path: a bare WSGI callable, so there is no race to get wrong either.
scripts/loadtest.sh serves it after its /ping run, with granian behind the same nginx, to price what the
guarantees cost: the state's round trips, the event, Flask.

    granian --interface wsgi --workers 3 bench.baseline_app:application     (the app's environment: DATABASE_URL, ...)
"""

import random
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from selection import quarter_of  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.clicks import click_token, new_impression_id  # noqa: E402
from webapp.public import TOKEN_SLOT  # noqa: E402
from webapp.slots import slot_page  # noqa: E402

_CAMPAIGN = re.compile(r"/campaigns/(\d{1,19})")
_rng = random.SystemRandom()
_HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]


def _pages():
    """{(quarter, campaign): [page of each banner]} rendered by our own slot_page, click token left to fill in."""
    app = create_app()
    plans = app.extensions["plans"].snapshot().plans
    pages = {}
    with app.test_request_context("/"):
        from flask import url_for

        click_href, cache = url_for("clicks.click", token=TOKEN_SLOT), {}
        for quarter, campaign_id in list(plans):
            pages[quarter, campaign_id] = [  # plans.get gives (banner, image) pairs, as the slot view reads them
                (banner_id, slot_page(cache, campaign_id, banner_id, image_name, quarter, click_href))
                for banner_id, image_name in plans.get((quarter, campaign_id))
            ]
    return app, pages


_app, PAGES = _pages()


def application(environ, start_response):
    """A random banner of the campaign's current set, or a 404."""
    match = _CAMPAIGN.fullmatch(environ.get("PATH_INFO", ""))
    if environ.get("PATH_INFO") == "/ping":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong"]
    quarter = quarter_of(datetime.now(timezone.utc))
    choices = PAGES.get((quarter, int(match.group(1)))) if match else None
    if not choices:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such campaign in this slot of the hour"]
    banner_id, page = _rng.choice(choices)
    with _app.app_context():  # click_token's key is the app's secret, as on our page (a few µs; any worker class)
        token = click_token(int(match.group(1)), banner_id, quarter, new_impression_id())
    body = page.replace(TOKEN_SLOT, token, 1).encode()
    start_response("200 OK", _HEADERS + [("Content-Length", str(len(body)))])
    return [body]
