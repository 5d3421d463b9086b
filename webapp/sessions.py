"""Server-side sessions in Redis for the dashboard's users, and a degraded (empty, unsaved) session
instead of an error while Redis is away.

Visitors have no session: the serving path never writes one (webapp/visitors.py keeps their rotations).
"""

from flask import request
from flask_session.redis import RedisSessionInterface

from webapp.outage import REDIS_ERRORS, StoreFailed


def is_degraded(session) -> bool:
    """True when this request's session could not be read from Redis: nothing of it will be kept."""
    return getattr(session, "degraded", False)


class DashboardRedisSessionInterface(RedisSessionInterface):
    """flask-session's Redis interface, with a breaker.

    The cookie carries only the session id, without an expiry: the server-side TTL
    (PERMANENT_SESSION_LIFETIME, renewed by every write) is what ends an idle session. So the
    cookie is sent only when the id changes, not rebuilt on every page.
    """

    def __init__(self, app, *, breaker, **kwargs):
        super().__init__(app, **kwargs)
        self.breaker = breaker

    def open_session(self, app, request):
        # Opened before the URL is matched (request.endpoint is still None): the path says whose request it is.
        if not request.path.startswith(SESSION_PATHS):
            return self._unkept()  # visitors and the API have no session: nothing read, made or saved
        # A full Redis still answers reads: the dashboard goes on reading its sessions.
        if self.breaker.is_open() and not self.breaker.is_full:
            return self._unkept(degraded=True)
        try:
            return super().open_session(app, request)
        except REDIS_ERRORS as exc:
            self.breaker.record(exc)
            return self._unkept(degraded=True)

    def _unkept(self, degraded=False):
        """An empty session that is never saved; `degraded` when Redis could not be asked for the real one."""
        session = self.session_class(sid="", permanent=False)
        session.unkept, session.degraded = True, degraded
        return session

    def save_session(self, app, session, response):
        if getattr(session, "unkept", False):
            return
        try:
            super().save_session(app, session, response)
        except REDIS_ERRORS as exc:
            self.breaker.record(exc)
            # A refused refresh of an unchanged session costs only its TTL's renewal.
            if session.modified:  # only the dashboard's paths have a session to save (see open_session)
                # The dashboard answers 503: a sign-in that was not kept must not look kept.
                raise StoreFailed(self.breaker, exc) from exc

    def get_cookie_secure(self, app):
        # request.is_secure sees X-Forwarded-Proto through ProxyFix when the proxy is trusted.
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)

    def should_set_cookie(self, app, session):
        return request.cookies.get(self.get_cookie_name(app)) != session.sid


SESSION_PATHS = ("/admin", "/login", "/logout")  # the dashboard's: the only requests that have a session
VISITOR_ENDPOINTS = frozenset({"public.index", "public.campaign", "public.image", "clicks.click",
                               "api.decision", "api.impression", "api.viewable", "embed.frame",
                               "health.healthz", "health.ping", "static"})


def is_visitor_request() -> bool:
    """True on the visitor's path (the ad slot, the embeds, the click redirect), which must answer without Redis."""
    return request.endpoint in VISITOR_ENDPOINTS


def install(app, client, key_prefix, breaker):
    """Use the dashboard's session interface for `app`."""
    app.session_interface = DashboardRedisSessionInterface(
        app,
        client=client,
        key_prefix=key_prefix,
        use_signer=False,
        permanent=False,
        sid_length=app.config.get("SESSION_ID_LENGTH", 32),
        serialization_format=app.config.get("SESSION_SERIALIZATION_FORMAT", "msgpack"),
        breaker=breaker,
    )
