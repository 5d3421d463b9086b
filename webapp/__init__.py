"""The Flask application: `create_app()` wires settings, database, sessions and blueprints."""

import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask

from config import INSTANCE_DIR, load_settings
from jobs import runtime
from models import db
from webapp import sessions
from webapp.serving import PlanCache


def create_app(overrides=None):
    """Build the app; `overrides` (a dict of Settings fields) replace environment settings, for tests."""
    settings = load_settings(**(overrides or {}))
    ctx = runtime.context(settings)
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(
        SECRET_KEY=settings.secret_key or _instance_secret(),
        SESSION_TYPE="redis",
        SESSION_REDIS=runtime.redis_client(settings.redis_url),
        SESSION_KEY_PREFIX=settings.redis_prefix + "session:",
        SESSION_PERMANENT=False,  # a browser-session cookie; the Redis TTL ends idle sessions
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_lifetime_minutes),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="bs_session",
    )
    app.extensions["settings"] = settings
    app.extensions["runtime"] = ctx
    app.extensions["plans"] = PlanCache(ctx.redis, ctx.key("data_version"), settings.plan_refresh_seconds)
    sessions.install(app, app.config["SESSION_REDIS"], app.config["SESSION_KEY_PREFIX"])

    @app.teardown_appcontext
    def close_db(exc):
        if not db.is_closed():
            db.close()

    from webapp import admin, auth
    from live import clicks, panel
    from webapp import cli, health, public

    app.register_blueprint(public.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(clicks.bp)
    app.register_blueprint(panel.bp)
    cli.register(app)

    return app


def _instance_secret() -> str:
    """A SECRET_KEY kept in instance/ when none is configured, so cookies survive restarts."""
    path = Path(INSTANCE_DIR) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
