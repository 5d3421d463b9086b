"""Server-side sessions in Redis that also carry the request's live events to Redis, and that
give the visitor a degraded (empty, unsaved) session instead of an error while Redis is away.

flask-session writes a visitor's session with one SET at the end of the request. Events the
request recorded (an impression) ride in the same pipeline when sessions and events share a
Redis, so recording costs no round trip; with a separate session Redis they go at teardown.
"""

from flask import current_app, g, request
from flask_session.redis import RedisSessionInterface

from webapp.outage import REDIS_ERRORS, StoreFailed

PENDING = "pending_events"


def queue_for_redis(command) -> None:
    """Run `command(pipe)` on the pipeline of the events Redis at the end of this request."""
    g.setdefault(PENDING, []).append(command)


def is_degraded(session) -> bool:
    """True when this request's session could not be read from Redis: nothing of it will be kept."""
    return getattr(session, "degraded", False)


class EventfulRedisSessionInterface(RedisSessionInterface):
    """flask-session's Redis interface; its session write also sends the queued commands.

    The cookie carries only the session id, without an expiry: the server-side TTL
    (PERMANENT_SESSION_LIFETIME, renewed by every write) is what ends an idle session. So the
    cookie is sent only when the id changes, not rebuilt on every banner view.
    """

    def __init__(self, app, *, breaker, events_client, **kwargs):
        super().__init__(app, **kwargs)
        self.breaker, self.events_client = breaker, events_client

    def open_session(self, app, request):
        # A full Redis still answers reads: only the visitor's path, which writes on every view, skips it.
        if self.breaker.is_open() and (is_visitor_request() or not self.breaker.is_full):
            return self._degraded()
        try:
            return super().open_session(app, request)
        except REDIS_ERRORS as exc:
            self.breaker.record(exc)
            return self._degraded()

    def _degraded(self):
        session = self.session_class(sid="", permanent=False)
        session.degraded = True
        return session

    def save_session(self, app, session, response):
        if is_degraded(session):
            return
        try:
            super().save_session(app, session, response)
        except REDIS_ERRORS as exc:
            self.breaker.record(exc)
            # A refused refresh of an unchanged session costs only its TTL's renewal.
            if session.modified and not is_visitor_request():
                # The dashboard answers 503: a sign-in that was not kept must not look kept.
                raise StoreFailed(self.breaker, exc) from exc

    def get_cookie_secure(self, app):
        # request.is_secure sees X-Forwarded-Proto through ProxyFix when the proxy is trusted.
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)

    def should_set_cookie(self, app, session):
        return request.cookies.get(self.get_cookie_name(app)) != session.sid

    def _upsert_session(self, session_lifetime, session, store_id):
        pipe = self.client.pipeline(transaction=False)
        pipe.set(name=store_id, value=self.serializer.encode(session), ex=int(session_lifetime.total_seconds()))
        if self.events_client is self.client:
            for command in g.pop(PENDING, ()):
                command(pipe)
        pipe.execute()


VISITOR_ENDPOINTS = frozenset({"public.index", "public.campaign", "public.image", "clicks.click",
                               "health.healthz", "health.ping", "static"})


def is_visitor_request() -> bool:
    """True on the visitor's path (the ad slot, the click redirect), which must answer without Redis."""
    return request.endpoint in VISITOR_ENDPOINTS


def install(app, client, key_prefix, events_client, breaker, events_breaker):
    """Use the eventful interface for `app`, and send commands left over when no session was saved.

    `breaker` is the session Redis', `events_breaker` the events Redis' (one and the same when they share a server).
    """
    app.session_interface = EventfulRedisSessionInterface(
        app,
        client=client,
        key_prefix=key_prefix,
        use_signer=False,
        permanent=False,
        sid_length=app.config.get("SESSION_ID_LENGTH", 32),
        serialization_format=app.config.get("SESSION_SERIALIZATION_FORMAT", "msgpack"),
        breaker=breaker,
        events_client=events_client,
    )

    @app.teardown_request
    def send_leftover_commands(exc):
        commands = g.pop(PENDING, None)
        if commands:
            try:
                pipe = events_client.pipeline(transaction=False)
                for command in commands:
                    command(pipe)
                pipe.execute()
            except REDIS_ERRORS as error:
                events_breaker.record(error)
                current_app.logger.debug("events of this request were not kept: %s", error)
