"""Health of a web process: /healthz for load balancers and compose, /ping as the trivial baseline."""

import time

import redis as redis_lib
from flask import Blueprint, current_app, jsonify

from live.events import STREAM, stream_health
from models import db, get_data_version
from webapp.clock import utc_now
from webapp.outage import is_full

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 with database, Redis and data-version status; 503 when the database or a Redis is down or full."""
    database, db_version = _check(_database_version)
    redis, published = _check(_published_version)
    _, serving = _check(lambda: current_app.extensions["plans"].snapshot().version)
    _, events = _check(_stream_health)
    stores = {"database": database, "redis": redis}
    if current_app.extensions["settings"].session_redis_url:
        # A Redis of its own for sessions: the dashboard and rotations need it, the API and events do not.
        stores["session_redis"], _ = _check(lambda: _take_write(_health_redis("session_redis_url")))
    healthy = all(store["ok"] for store in stores.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        **stores,
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
        error = f"{type(exc).__name__}: {exc}"
        return {"ok": False, "ms": _ms_since(started), "error": f"Redis full: {error}" if is_full(exc) else error}, None
    return {"ok": True, "ms": _ms_since(started)}, value


def _ms_since(started) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _database_version() -> int:
    with db.connection_context():
        return get_data_version()


def _stream_health():
    runtime = current_app.extensions["runtime"]
    return stream_health(_health_redis(), runtime.key(STREAM), utc_now())


def _health_redis(setting="redis_url"):
    """A client of its own for the Redis named by `setting`, with short timeouts: a hung Redis must
    make the check fail, not hang it."""
    clients = current_app.extensions.setdefault("health_redis", {})
    if setting not in clients:
        url = getattr(current_app.extensions["settings"], setting)
        clients[setting] = redis_lib.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, decode_responses=True)
    return clients[setting]


def _take_write(client):
    """Write a small key: a Redis at maxmemory under noeviction still answers reads, only a write shows it full."""
    client.set(current_app.extensions["runtime"].key("healthz"), "1", ex=60)


def _published_version():
    runtime = current_app.extensions["runtime"]
    client = _health_redis()
    _take_write(client)
    value = client.get(runtime.key("data_version"))
    return int(value) if value is not None else None
