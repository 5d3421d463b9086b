"""Clicks and conversions: signed click links, the click redirect, and the advertisers' conversions API."""

import hashlib
import hmac
import json
import logging
import secrets
import time

from flask import Blueprint, current_app, jsonify, redirect, request, url_for

from jobs.parsing import RowRejected, parse_id, parse_revenue
from jobs.runtime import release_if_held
from live.events import (
    CLICK_TTL,
    FIRST_LIVE_CLICK_ID,
    FIRST_LIVE_CONVERSION_ID,
    click_event,
    conversion_event,
    derived_key,
    expiries_sent,
    next_live_id,
    queue_event,
    visitor_key,
)
from models import ApiKey
from visitor_state import COOKIE, is_vid
from webapp.clock import utc_now
from webapp.outage import DATABASE_ERRORS, REDIS_ERRORS
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
    now = time.time() if now is None else now
    # We never sign these: a valid MAC on them means a leaked key or a bug, not a visitor.
    if issued > now + MAX_CLOCK_SKEW_SECONDS or not 1 <= values[2] <= 4:
        raise TokenForged(token)
    if now - issued > max_age:
        raise TokenExpired(token)
    return values


MAX_CLOCK_SKEW_SECONDS = 60


class TokenForged(ValueError):
    """The token was not made by us (or was altered)."""


class TokenExpired(ValueError):
    """The token is ours but older than CLICK_TOKEN_MAX_AGE."""


def _mac(payload: str) -> str:
    return hashlib.blake2b(payload.encode(), key=derived_key(current_app.secret_key, b"bs.click"), digest_size=16).hexdigest()


def new_impression_id() -> str:
    return secrets.token_hex(8)


def current_visitor() -> str:
    """The clicking visitor's pseudonym, as its impressions on our own pages name it (their vid cookie)."""
    vid = request.cookies.get(COOKIE)
    return visitor_key(current_app.secret_key, f"|{vid}") if is_vid(vid) else ""


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
    landing = landing_url(banner_id, settings.default_landing_url)
    if request.method != "HEAD":  # a link checker's or a prefetch's HEAD must not use up the visitor's click
        _record_click(settings, campaign_id, banner_id, quarter, impression_id)
    return redirect(landing)


def _record_click(settings, campaign_id, banner_id, quarter, impression_id):
    """Put the click in the stream, once per impression; while Redis is away, count it as dropped."""
    breaker, degraded = current_app.extensions["redis_breaker"], current_app.extensions["degraded"]
    if breaker.is_open():
        degraded.add("clicks_dropped")
        return
    ctx, client = current_app.extensions["runtime"], current_app.extensions["visitor_redis"]
    try:
        # One click per impression: the first request sets the marker, replays find it.
        if not client.set(ctx.key(f"clicked:{impression_id}"), 1, nx=True, ex=settings.click_token_max_age):
            log.info("click ignored: impression %s was clicked already", impression_id)
            return
        click_id = next_live_id(client, ctx.key("live:click_id"), FIRST_LIVE_CLICK_ID)
        pipe, queued = client.pipeline(transaction=False), []
        if settings.events_enabled:
            queued = queue_event(pipe, ctx, click_event(utc_now(), quarter, campaign_id, banner_id, current_visitor(),
                                                        impression_id, click_id))
        pipe.set(ctx.key(f"click:{click_id}"), f"{quarter},{campaign_id},{banner_id}", ex=CLICK_TTL)
        pipe.execute()
        expiries_sent(queued)
    except REDIS_ERRORS as exc:
        breaker.record(exc)
        degraded.add("clicks_dropped")


def landing_url(banner_id, default) -> str:
    """The banner's landing URL when it has a safe one, else the default; never a URL from the request.

    Read from the process's plan snapshot, so a click waits on no database, even one that hangs.
    """
    try:
        landings = current_app.extensions["plans"].snapshot().landings
    except DATABASE_ERRORS:  # no plans loaded yet, and the database away
        current_app.extensions["degraded"].add("clicks_without_database")
        landings = {}
    url = landings.get(banner_id) or default
    return url if is_safe_landing_url(url) else "/"


API_MAX_BYTES = 64 * 1024
CLAIM_SECONDS = 30  # a claimed Idempotency-Key whose request died is free again after this


@bp.post("/api/conversions")
def record_conversion():
    """Record a conversion of a live click: JSON {"click_id": int, "revenue": number}, with an advertiser's API key."""
    if (request.content_length or 0) > API_MAX_BYTES:
        return _too_large()
    advertiser = _advertiser_of(request.headers.get("Authorization", ""))
    if advertiser is None:
        return jsonify(error="a valid API key is required: Authorization: Bearer <key>"), 401
    # A chunked body has no Content-Length to check: read one byte past the limit to know it is longer.
    body = request.stream.read(API_MAX_BYTES + 1)
    if len(body) > API_MAX_BYTES:
        return _too_large()
    data = _json_body(body)
    if not isinstance(data, dict):
        return jsonify(error="send a JSON object with click_id and revenue"), 400
    try:
        click_id = parse_id(str(data.get("click_id", "")).strip(), "click_id")
        revenue = parse_revenue(str(data.get("revenue", "")).strip())
    except RowRejected as exc:
        return jsonify(error=str(exc)), 400
    idempotency = request.headers.get("Idempotency-Key", "")
    if len(idempotency) > 200:
        return jsonify(error="Idempotency-Key is longer than 200 characters"), 400
    ctx = current_app.extensions["runtime"]
    clicked = ctx.redis.get(ctx.key(f"click:{click_id}"))
    if clicked is None:
        return jsonify(error=f"click_id {click_id} is not a known live click"), 404
    quarter, campaign_id, banner_id = (int(v) for v in clicked.split(","))
    if not idempotency:
        conversion_id = _record_conversion(ctx, quarter, campaign_id, banner_id, click_id, revenue, advertiser)
        return jsonify(conversion_id=conversion_id, click_id=click_id, revenue=str(revenue)), 201
    key = ctx.key(f"conversion-request:{advertiser}:{hashlib.sha256(idempotency.encode()).hexdigest()}")
    fingerprint = hashlib.sha256(f"{click_id}|{revenue}".encode()).hexdigest()[:32]
    claim = f"pending:{fingerprint}:{secrets.token_hex(8)}"
    if not ctx.redis.set(key, claim, nx=True, ex=CLAIM_SECONDS):
        return _answer_retry(ctx.redis.get(key), fingerprint, click_id)
    try:
        conversion_id = _record_conversion(ctx, quarter, campaign_id, banner_id, click_id, revenue, advertiser)
    except BaseException:
        # Nothing was recorded: free the key, so the client's retry records the conversion.
        release_if_held(ctx.redis, key, claim)
        raise
    ctx.redis.set(key, f"done:{fingerprint}:{conversion_id}", ex=CLICK_TTL)
    return jsonify(conversion_id=conversion_id, click_id=click_id, revenue=str(revenue)), 201


def _too_large():
    return jsonify(error=f"the body is larger than {API_MAX_BYTES // 1024} KB"), 413


def _json_body(body: bytes):
    """The body's JSON with numbers kept as their text (the money rule reads the literal); None if it is not JSON."""
    try:
        return json.loads(body.decode("utf-8"), parse_float=str, parse_int=str, parse_constant=str)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, or nesting deeper than the parser goes
        return None


def _answer_retry(stored, fingerprint, click_id):
    """The answer to a request whose Idempotency-Key is taken: 422 for another body, 409 while in flight, else the first answer."""
    if stored is None:  # the claim just expired: let the client try again
        return jsonify(error="the earlier request with this Idempotency-Key did not finish; retry"), 409
    if stored.count(":") < 2:  # written before keys carried their request's hash: a plain id or "pending"
        return jsonify(conversion_id=int(stored) if stored.isdigit() else None, click_id=click_id, duplicate=True), 200
    state, stored_fingerprint, rest = stored.split(":", 2)
    if stored_fingerprint != fingerprint:
        return jsonify(error="this Idempotency-Key was used with a different request body"), 422
    if state == "pending":
        return jsonify(error="a request with this Idempotency-Key is in progress; retry in a few seconds"), 409
    return jsonify(conversion_id=int(rest), click_id=click_id, duplicate=True), 200


def _record_conversion(ctx, quarter, campaign_id, banner_id, click_id, revenue, advertiser) -> int:
    conversion_id = next_live_id(ctx.redis, ctx.key("live:conversion_id"), FIRST_LIVE_CONVERSION_ID)
    pipe = ctx.redis.pipeline(transaction=False)
    queued = queue_event(pipe, ctx, conversion_event(utc_now(), quarter, campaign_id, banner_id, click_id, conversion_id,
                                                     revenue, advertiser))
    pipe.execute()
    expiries_sent(queued)
    return conversion_id


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
