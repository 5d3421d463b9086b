"""Sign-in for the dashboard: users and roles, login/logout, throttling of failed logins, CSRF."""

import functools
import hmac
import logging
import secrets

from flask import (
    Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash

from models import User, has_admin, user_by_name
from webapp.urls import is_local_path, page_of

bp = Blueprint("auth", __name__)
log = logging.getLogger("bannerservice.auth")

ROLES = ("admin", "manager")
MIN_PASSWORD_LENGTH = 8
# Failed sign-ins within the window lock the username (from any address) or the address (for any name).
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW_SECONDS = 15 * 60
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRFToken"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class UserError(Exception):
    """A user could not be created; the message says why."""


def create_user(username: str, password: str, role: str) -> User:
    """Store a new user with a hashed password."""
    username = (username or "").strip()
    if not username:
        raise UserError("the username is empty")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if user_by_name(username):
        raise UserError(f"user {username!r} already exists")
    return User.create(username=username, password_hash=generate_password_hash(password), role=role)


def bootstrap_admin():
    """Create user `admin` with a generated password when no admin exists; return (user, password) or None."""
    if has_admin():
        return None
    password = secrets.token_urlsafe(12)
    return create_user("admin", password, "admin"), password


def is_htmx_request() -> bool:
    """True when htmx sent the request for a fragment (a history restore wants the full page)."""
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


@bp.app_context_processor
def template_globals():
    return {"csrf_token": csrf_token, "current_user": g.get("user")}


@bp.before_app_request
def load_user_and_check_csrf():
    """Put the signed-in user on `g` and refuse state-changing requests without the session's token."""
    user_id = session.get("user_id")
    g.user = User.get_or_none(User.id == user_id) if user_id else None
    # /api/ is authenticated by an API key in a header, never by the cookie: CSRF cannot ride on it.
    if request.method in UNSAFE_METHODS and not request.path.startswith("/api/"):
        sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
        expected = session.get(CSRF_FIELD) or ""
        # Bytes: compare_digest refuses non-ASCII str, and a forged token must be a 400, not a 500.
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            log.warning("csrf rejected path=%s addr=%s", request.path, request.remote_addr)
            abort(400, "The form was stale or not sent by this site (CSRF token missing or wrong). Reload the page and try again.")


def login_required(view):
    """Send visitors who are not signed in to the login page (htmx: by HX-Redirect)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            if is_htmx_request():
                # htmx asked for a fragment; after signing in the user belongs on the page that showed it.
                page = page_of(request.headers.get("HX-Current-URL"), request.host)
                return "", 401, {"HX-Redirect": url_for("auth.login", next=page)}
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def admin_required(view):
    """Like login_required, and 403 for users who are not admins."""

    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if g.user.role != "admin":
            abort(403, "Only admins may do this.")
        return view(*args, **kwargs)

    return wrapped


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form, and signing in."""
    error, status, username = None, 200, ""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET" and g.user:
        return redirect(next_url or url_for("admin.overview"))
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        throttle = _Throttle(username, request.remote_addr or "-")
        if throttle.is_locked():
            log.warning("login locked user=%s addr=%s", username, request.remote_addr)
            error, status = "Too many failed sign-ins. Wait 15 minutes and try again.", 429
        else:
            user = user_by_name(username)
            if user and check_password_hash(user.password_hash, password):
                throttle.clear()
                _start_session(user)
                log.info("login user=%s addr=%s", user.username, request.remote_addr)
                return redirect(next_url or url_for("admin.overview"))
            throttle.record_failure()
            log.warning("login failed user=%s addr=%s", username, request.remote_addr)
            error, status = "Wrong username or password.", 401
    return render_template("auth/login.html", error=error, next_url=next_url, username=username,
                           signed_out=request.args.get("signed_out") == "1"), status


@bp.post("/logout")
def logout():
    """Sign out: the session and its id are dropped."""
    if g.user:
        log.info("logout user=%s", g.user.username)
    session.clear()  # an emptied session is deleted from Redis along with its cookie
    return redirect(url_for("auth.login", signed_out=1))


def _start_session(user):
    # A new session id at sign-in, so an id planted before login (session fixation) is worthless.
    session.clear()
    session["user_id"] = user.id
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    current_app.session_interface.regenerate(session)


def _safe_next(target):
    """Only paths on this site, never another host (an open redirect)."""
    return target if is_local_path(target) else None


class _Throttle:
    """Counters of failed sign-ins in Redis, per username and per address, that expire with the window."""

    def __init__(self, username, address):
        ctx = current_app.extensions["runtime"]
        self.redis = ctx.redis
        self.keys = (
            (ctx.key(f"login-failures:user:{username.lower()}"), MAX_FAILURES_PER_USER),
            (ctx.key(f"login-failures:addr:{address}"), MAX_FAILURES_PER_ADDRESS),
        )

    def is_locked(self) -> bool:
        counts = self.redis.mget([key for key, _ in self.keys])
        return any(int(count or 0) >= limit for count, (_, limit) in zip(counts, self.keys))

    def record_failure(self):
        with self.redis.pipeline() as pipe:
            for key, _ in self.keys:
                pipe.incr(key)
                pipe.expire(key, FAILURE_WINDOW_SECONDS, nx=True)
            pipe.execute()

    def clear(self):
        self.redis.delete(self.keys[0][0])
