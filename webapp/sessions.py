"""Server-side sessions in Redis that also carry the request's live events to Redis.

flask-session writes a visitor's session with one SET at the end of the request. Events the
request recorded (an impression) ride in the same pipeline, so recording costs no round trip.
"""

from flask import g, request
from flask_session.redis import RedisSessionInterface

PENDING = "pending_events"


def queue_for_redis(command) -> None:
    """Run `command(pipe)` on the pipeline that saves this request's session (or at teardown)."""
    g.setdefault(PENDING, []).append(command)


class EventfulRedisSessionInterface(RedisSessionInterface):
    """flask-session's Redis interface; its session write also sends the queued commands.

    The cookie carries only the session id, without an expiry: the server-side TTL
    (PERMANENT_SESSION_LIFETIME, renewed by every write) is what ends an idle session. So the
    cookie is sent only when the id changes, not rebuilt on every banner view.
    """

    def should_set_cookie(self, app, session):
        return request.cookies.get(self.get_cookie_name(app)) != session.sid

    def _upsert_session(self, session_lifetime, session, store_id):
        pipe = self.client.pipeline(transaction=False)
        pipe.set(name=store_id, value=self.serializer.encode(session), ex=int(session_lifetime.total_seconds()))
        for command in g.pop(PENDING, ()):
            command(pipe)
        pipe.execute()


def install(app, client, key_prefix):
    """Use the eventful interface for `app`, and send commands left over when no session was saved."""
    app.session_interface = EventfulRedisSessionInterface(
        app,
        client=client,
        key_prefix=key_prefix,
        use_signer=False,
        permanent=False,
        sid_length=app.config.get("SESSION_ID_LENGTH", 32),
        serialization_format=app.config.get("SESSION_SERIALIZATION_FORMAT", "msgpack"),
    )

    @app.teardown_request
    def send_leftover_commands(exc):
        commands = g.pop(PENDING, None)
        if commands:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                command(pipe)
            pipe.execute()
