"""The Flask application: `create_app()` wires settings, database, sessions and blueprints."""

import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask

from config import INSTANCE_DIR, load_settings
from jobs import runtime
from models import db
from webapp import errors, proxies, sessions
from webapp.direct import Direct
from webapp.visitors import VisitorStore
from webapp.outage import Breaker, DegradedCounts
from webapp.serving import PlanCache

# The visitor's path gives up on Redis quickly (a frozen server must not hold a banner view for
# seconds) and does not retry: the breaker sends the next views down the degraded path instead.
VISITOR_REDIS_TIMEOUT = 0.5
FORM_MAX_BYTES = 1 << 20


def create_app(overrides=None):
    """Build the app; `overrides` (a dict of Settings fields) replace environment settings, for tests."""
    settings = load_settings(**(overrides or {}))
    ctx = runtime.context(settings)
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    # Inside the proxy fix, so that the views answered before Flask see the forwarded scheme too.
    app.wsgi_app = app.extensions["direct"] = Direct(app, app.wsgi_app)
    proxies.install(app, settings.trusted_proxy_count)
    events_redis = runtime.redis_client(settings.redis_url, socket_timeout=VISITOR_REDIS_TIMEOUT, retries=0,
                                        decode_responses=True)
    session_url = settings.session_redis_url or settings.redis_url
    session_redis = runtime.redis_client(session_url, socket_timeout=VISITOR_REDIS_TIMEOUT, retries=0)
    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_secret(),
        MAX_FORM_MEMORY_SIZE=FORM_MAX_BYTES,
        MAX_CONTENT_LENGTH=FORM_MAX_BYTES,
        SESSION_TYPE="redis",
        SESSION_REDIS=session_redis,
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_KEY_PREFIX=settings.redis_prefix + "session:",
        SESSION_PERMANENT=False,  # a browser-session cookie; the Redis TTL ends idle sessions
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_lifetime_minutes),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="bs_session",
    )
    app.extensions["settings"] = settings
    app.extensions["runtime"] = ctx
    app.extensions["visitor_redis"] = events_redis
    shared = session_url == settings.redis_url
    # A breaker and a name per Redis role, so an outage of one neither stops nor is blamed on the other.
    app.extensions["redis_breaker"] = events_breaker = Breaker("Redis" if shared else "The events Redis")
    app.extensions["session_breaker"] = session_breaker = events_breaker if shared else Breaker("The session Redis")
    app.extensions["degraded"] = DegradedCounts()
    # Visitors' rotations live beside the sessions (a Redis that may evict: only rotations restart); with
    # one Redis for both, a view's events ride the same pipeline as its rotations (no round trip of their own).
    app.extensions["visitors"] = VisitorStore(
        session_redis, session_redis if session_url == settings.redis_url else events_redis, session_breaker, events_breaker,
        settings.redis_prefix, settings.session_lifetime_minutes * 60)
    app.extensions["plans"] = PlanCache(events_redis, ctx.key("data_version"), settings.plan_refresh_seconds)
    sessions.install(app, session_redis, app.config["SESSION_KEY_PREFIX"], session_breaker)

    @app.teardown_appcontext
    def close_db(exc):
        if not db.is_closed():
            db.close()

    from webapp import admin, auth
    from webapp import clicks, live_panel
    from webapp import api, cli, embed, health, public

    app.register_blueprint(public.bp)
    app.register_blueprint(embed.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(clicks.bp)
    app.register_blueprint(live_panel.bp)
    cli.register(app)

    errors.install(app)

    return app


def _instance_secret() -> str:
    """A SECRET_KEY kept in instance/ when none is configured, so cookies survive restarts."""
    path = Path(INSTANCE_DIR) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
