"""Health of a web process: /healthz for load balancers and compose, /ping as the trivial baseline."""

import time

import redis as redis_lib
from flask import Blueprint, current_app, jsonify

from live.events import STREAM, stream_health
from models import db, get_data_version
from webapp.clock import utc_now

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 with database, Redis and data-version status; 503 when the database or Redis is down."""
    database, db_version = _check(_database_version)
    redis, published = _check(_published_version)
    _, serving = _check(lambda: current_app.extensions["plans"].snapshot().version)
    _, events = _check(_stream_health)
    healthy = database["ok"] and redis["ok"]
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": database,
        "redis": redis,
        # Since this process started: views served without Redis, clicks it could not keep.
        "degraded": current_app.extensions["degraded"].as_dict(),
        # Unexported events: "export_behind" when the oldest is over 15 minutes old, "near_cap" at 80% of the cap.
        "events": events,
        "data_version": {
            "database": db_version,
            "redis": published,
            "serving": serving,
        },
    }
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/ping")
def ping():
    """A trivial page through the same stack: the load test's baseline."""
    return "pong\n", 200, {"Content-Type": "text/plain"}


def _check(probe):
    """({"ok", "ms", "error"?}, value) of calling `probe`, which raises when its dependency is down."""
    started = time.perf_counter()
    try:
        value = probe()
    except Exception as exc:  # a health check reports every failure, whatever its kind
        return {"ok": False, "ms": _ms_since(started), "error": f"{type(exc).__name__}: {exc}"}, None
    return {"ok": True, "ms": _ms_since(started)}, value


def _ms_since(started) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _database_version() -> int:
    with db.connection_context():
        return get_data_version()


def _stream_health():
    runtime = current_app.extensions["runtime"]
    return stream_health(_health_redis(), runtime.key(STREAM), utc_now())


def _health_redis():
    client = current_app.extensions.get("health_redis")
    if client is None:
        # Short timeouts of its own: a hung Redis must make the check fail, not hang it.
        url = current_app.extensions["settings"].redis_url
        client = redis_lib.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, decode_responses=True)
        current_app.extensions["health_redis"] = client
    return client


def _published_version():
    runtime = current_app.extensions["runtime"]
    value = _health_redis().get(runtime.key("data_version"))
    return int(value) if value is not None else None
