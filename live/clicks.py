"""Clicks and conversions: signed click links, the click redirect, and the advertisers' conversions API."""

import hashlib
import hmac
import logging
import secrets
import time

from flask import Blueprint, current_app, jsonify, redirect, request, session, url_for
from peewee import fn

from live.events import (
    CLICK_TTL,
    derived_key,
    FIRST_LIVE_CLICK_ID,
    FIRST_LIVE_CONVERSION_ID,
    click_event,
    conversion_event,
    queue_event,
    visitor_key,
)
from jobs.parsing import RowRejected, parse_id, parse_revenue
from models import ApiKey, Banner, Click, Conversion
from webapp.clock import utc_now
from webapp.urls import is_safe_landing_url

bp = Blueprint("clicks", __name__)
log = logging.getLogger("bannerservice.clicks")


def click_token(campaign_id, banner_id, quarter, impression_id, now=None) -> str:
    """A signed, timestamped token naming one impression; /click/<token> turns it into a click.

    A keyed BLAKE2b MAC over a dotted payload: it is made on every banner view, where
    itsdangerous' JSON, zlib and HMAC cost several times more.
    """
    issued = int(time.time() if now is None else now)
    payload = f"{campaign_id}.{banner_id}.{quarter}.{impression_id}.{issued}"
    return f"{payload}.{_mac(payload)}"


def read_click_token(token: str, max_age: int, now=None):
    """(campaign_id, banner_id, quarter, impression_id) of a valid token; TokenExpired or TokenForged otherwise."""
    payload, _, mac = token.rpartition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(payload).encode()):
        raise TokenForged(token)
    try:
        campaign_id, banner_id, quarter, impression_id, issued = payload.split(".")
        values = int(campaign_id), int(banner_id), int(quarter), impression_id
        issued = int(issued)
    except ValueError:
        raise TokenForged(token) from None
    if (time.time() if now is None else now) - issued > max_age:
        raise TokenExpired(token)
    return values


class TokenForged(ValueError):
    """The token was not made by us (or was altered)."""


class TokenExpired(ValueError):
    """The token is ours but older than CLICK_TOKEN_MAX_AGE."""


def _mac(payload: str) -> str:
    return hashlib.blake2b(payload.encode(), key=derived_key(current_app.secret_key, b"bs.click"), digest_size=16).hexdigest()


def new_impression_id() -> str:
    return secrets.token_hex(8)


def current_visitor() -> str:
    sid = getattr(session, "sid", None) or ""
    return visitor_key(current_app.secret_key, sid) if sid else ""


@bp.get("/click/<token>")
def click(token):
    """Record the click of a served banner once, then send the visitor to the banner's landing page."""
    settings = current_app.extensions["settings"]
    try:
        campaign_id, banner_id, quarter, impression_id = read_click_token(token, settings.click_token_max_age)
    except TokenExpired:
        log.info("click refused: expired token")
        return redirect(url_for("public.index"))
    except TokenForged:
        log.warning("click refused: forged or damaged token addr=%s", request.remote_addr)
        return redirect(url_for("public.index"))
    ctx = current_app.extensions["runtime"]
    landing = landing_url(banner_id, settings.default_landing_url)
    # One click per impression: the first request sets the marker, replays find it.
    if not ctx.redis.set(ctx.key(f"clicked:{impression_id}"), 1, nx=True, ex=settings.click_token_max_age):
        log.info("click ignored: impression %s was clicked already", impression_id)
        return redirect(landing)
    click_id = _next_id(ctx, "live:click_id", FIRST_LIVE_CLICK_ID, Click.click_id)
    pipe = ctx.redis.pipeline(transaction=False)
    if settings.events_enabled:
        queue_event(pipe, ctx, click_event(utc_now(), quarter, campaign_id, banner_id, current_visitor(), impression_id, click_id))
    pipe.set(ctx.key(f"click:{click_id}"), f"{quarter},{campaign_id},{banner_id}", ex=CLICK_TTL)
    pipe.execute()
    return redirect(landing)


def landing_url(banner_id, default) -> str:
    """The banner's landing URL when it has a safe one, else the default; never a URL from the request."""
    banner = Banner.get_or_none(Banner.id == banner_id)
    url = banner.landing_url if banner and banner.landing_url else default
    return url if is_safe_landing_url(url) else "/"


@bp.post("/api/conversions")
def record_conversion():
    """Record a conversion of a live click: JSON {"click_id": int, "revenue": number}, with an advertiser's API key."""
    advertiser = _advertiser_of(request.headers.get("Authorization", ""))
    if advertiser is None:
        return jsonify(error="a valid API key is required: Authorization: Bearer <key>"), 401
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="send a JSON object with click_id and revenue"), 400
    try:
        click_id = parse_id(str(data.get("click_id", "")).strip(), "click_id")
        revenue = parse_revenue(str(data.get("revenue", "")).strip())
    except RowRejected as exc:
        return jsonify(error=str(exc)), 400
    ctx = current_app.extensions["runtime"]
    clicked = ctx.redis.get(ctx.key(f"click:{click_id}"))
    if clicked is None:
        return jsonify(error=f"click_id {click_id} is not a known live click"), 404
    quarter, campaign_id, banner_id = (int(v) for v in clicked.split(","))
    idempotency = request.headers.get("Idempotency-Key", "")
    if len(idempotency) > 200:
        return jsonify(error="Idempotency-Key is longer than 200 characters"), 400
    seen_key = ctx.key(f"conversion-request:{advertiser}:{hashlib.sha256(idempotency.encode()).hexdigest()}")
    if idempotency and not ctx.redis.set(seen_key, "pending", nx=True, ex=CLICK_TTL):
        # A retry of a request we have: the same answer, nothing recorded twice.
        earlier = ctx.redis.get(seen_key)
        return jsonify(conversion_id=None if earlier == "pending" else int(earlier), click_id=click_id, duplicate=True), 200
    conversion_id = _next_id(ctx, "live:conversion_id", FIRST_LIVE_CONVERSION_ID, Conversion.conversion_id)
    pipe = ctx.redis.pipeline(transaction=False)
    queue_event(pipe, ctx, conversion_event(utc_now(), quarter, campaign_id, banner_id, click_id, conversion_id, revenue, advertiser))
    if idempotency:
        pipe.set(seen_key, conversion_id, ex=CLICK_TTL)
    pipe.execute()
    return jsonify(conversion_id=conversion_id, click_id=click_id, revenue=str(revenue)), 201


def _advertiser_of(header: str):
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    row = ApiKey.get_or_none((ApiKey.key_hash == hash_api_key(key.strip())) & (ApiKey.revoked == False))  # noqa: E712
    return row.advertiser if row else None


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(advertiser: str) -> str:
    """A new key for `advertiser`; the plain key is returned once and only its hash is kept."""
    key = "bsk_" + secrets.token_urlsafe(32)
    ApiKey.create(advertiser=advertiser, key_hash=hash_api_key(key))
    return key


_INCR_IF_SET = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('incr', KEYS[1]) end return false"


def _next_id(ctx, name, first, column):
    """The next live id from a Redis counter; a lost counter restarts above every id the database has."""
    key = ctx.key(name)
    value = ctx.redis.eval(_INCR_IF_SET, 1, key)
    if value is None:
        highest = column.model.select(fn.MAX(column)).scalar() or 0
        ctx.redis.set(key, max(first - 1, highest), nx=True)
        value = ctx.redis.incr(key)
    return int(value)
