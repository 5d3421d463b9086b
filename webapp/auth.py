"""Sign-in for the dashboard: users and roles, login/logout, throttling of failed logins, CSRF."""

import functools
import hashlib
import hmac
import logging
import secrets
import time
from urllib.parse import unquote_to_bytes

from flask import (
    Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for,
)
from werkzeug.security import check_password_hash, generate_password_hash

from models import User, has_admin, user_by_name
from webapp.sessions import is_degraded, is_visitor_request
from webapp.urls import is_local_path, page_of

bp = Blueprint("auth", __name__)
log = logging.getLogger("bannerservice.auth")

ROLES = ("admin", "manager")
MIN_PASSWORD_LENGTH = 8
# Sign-in attempts per (username, client address) within the window: the first FREE_ATTEMPTS go
# at once, then each waits twice as long as the one before (2 s, 4 s, ... MAX_DELAY_SECONDS).
# A name is never locked: the same name from another address is not slowed.
FREE_ATTEMPTS = 5
MAX_DELAY_SECONDS = 15 * 60
FAILURE_WINDOW_SECONDS = 15 * 60
# Password checks per second over the whole site; above it sign-ins wait a second (a slowdown
# for guessing from many addresses at once, never a lock).
SITE_CHECKS_PER_SECOND = 20
# A hash of the same kind as the users', checked for unknown names so they take as long to refuse.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_urlsafe(16))
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
    g.user = None
    if is_visitor_request():
        return  # the ad slot and the click need neither the user nor the database
    if request.path.startswith("/api/"):
        return  # authenticated by an API key in a header, never by the session (nor open to CSRF through it)
    if is_degraded(session):
        abort(503)  # the session store is away: the dashboard cannot know who is signed in
    user_id = session.get("user_id")
    g.user = User.get_or_none(User.id == user_id) if user_id else None
    # No such page or method: the router's 404 or 405 (in the dashboard's layout), not a CSRF refusal.
    if request.method in UNSAFE_METHODS and request.routing_exception is None:
        if _form_has_bad_bytes():
            abort(400, "A form field holds characters no form of ours sends (NUL, control characters or bytes that are not UTF-8).")
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
                # A page of the dashboard was open, so the session ended under it: say so. After signing in,
                # a shareable view (a sort, a filter) opens as asked; a fragment's page opens as it was.
                if request.method == "GET" and _is_shareable(request.endpoint):
                    page = request.full_path.rstrip("?")
                else:
                    page = page_of(request.headers.get("HX-Current-URL"), request.host)
                return "", 401, {"HX-Redirect": url_for("auth.login", next=page, reason="expired")}
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def shareable(view):
    """Mark a view whose htmx GET is also a full page at the same URL (it pushes that URL)."""
    view.is_shareable = True
    return view


def _is_shareable(endpoint) -> bool:
    return getattr(current_app.view_functions.get(endpoint), "is_shareable", False)


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
        wait = throttle.claim_attempt()
        if wait:
            log.warning("login slowed user=%s addr=%s wait=%ss", username, request.remote_addr, wait)
            error, status = f"Too many failed sign-ins. Wait {wait} seconds and try again.", 429
            page = render_template("auth/login.html", error=error, next_url=next_url, username=username)
            return page, status, {"Retry-After": str(wait)}
        user = user_by_name(username)
        # An unknown name costs a hash check too, so refusing it takes as long as a wrong password.
        if check_password_hash(user.password_hash if user else _UNKNOWN_USER_HASH, password) and user:
            throttle.clear()
            _start_session(user)
            log.info("login user=%s addr=%s", user.username, request.remote_addr)
            return redirect(next_url or url_for("admin.overview"))
        log.warning("login failed user=%s addr=%s", username, request.remote_addr)
        error, status = "Wrong username or password.", 401
    return render_template("auth/login.html", error=error, next_url=next_url, username=username,
                           signed_out=request.args.get("signed_out") == "1",
                           expired=request.args.get("reason") == "expired" and request.method == "GET"), status


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


def _form_has_bad_bytes() -> bool:
    """True when a field of the query or the urlencoded body is not UTF-8, or holds NUL or another control."""
    # Read raw: werkzeug keeps undecodable bytes as their %XX text, which no later check could tell apart.
    raws = [request.query_string]
    if request.mimetype == "application/x-www-form-urlencoded":
        raws.append(request.get_data(cache=True))  # the form is still parsed from the cached body
    for raw in raws:
        for piece in raw.replace(b"=", b"&").split(b"&"):
            try:
                text = unquote_to_bytes(piece.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return True
            if any(ord(c) < 32 and c not in "\t\r\n" or c == "\x7f" for c in text):
                return True
    return False


# Atomically: refuse while this (name, address) must wait, else count the attempt and set the
# next one's earliest time; and count the site's checks this second. Returns seconds to wait (0: go).
_CLAIM_ATTEMPT = """
local now = tonumber(redis.call('time')[1])
local next_at = tonumber(redis.call('hget', KEYS[1], 'next') or '0')
if now < next_at then return next_at - now end
local site = redis.call('incr', KEYS[2])
if site == 1 then redis.call('expire', KEYS[2], 2) end
if site > tonumber(ARGV[4]) then return 1 end
local n = redis.call('hincrby', KEYS[1], 'n', 1)
local free = tonumber(ARGV[1])
if n >= free then
  redis.call('hset', KEYS[1], 'next', now + math.min(2 ^ (n - free + 1), tonumber(ARGV[2])))
end
redis.call('expire', KEYS[1], ARGV[3])
return 0
"""


class _Throttle:
    """Sign-in attempts in Redis per (username, address), with growing delays, and the site's checks per second."""

    def __init__(self, username, address):
        ctx = current_app.extensions["runtime"]
        self.redis = ctx.redis
        digest = hashlib.sha256(f"{username.lower()}\n{address}".encode()).hexdigest()[:32]
        self.key = ctx.key(f"login-failures:{digest}")
        self.site_key = ctx.key(f"login-checks:{int(time.time())}")

    def claim_attempt(self) -> int:
        """Seconds this attempt must wait (0: check the password now; the attempt is counted)."""
        args = (FREE_ATTEMPTS, MAX_DELAY_SECONDS, FAILURE_WINDOW_SECONDS, SITE_CHECKS_PER_SECOND)
        return int(self.redis.eval(_CLAIM_ATTEMPT, 2, self.key, self.site_key, *args))

    def clear(self):
        self.redis.delete(self.key)
