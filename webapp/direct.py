"""The slot page answered before Flask's request machinery: GET /campaigns/<id> with a plan and its page skeleton
at hand gets the response Flask's view would give (webapp/public.py builds both), without the request context,
routing and response hooks around it; every other request, and any slot view it cannot answer, goes on to Flask."""

from werkzeug.wrappers import Request

from webapp import public
from webapp.outage import DATABASE_ERRORS, REDIS_ERRORS

PREFIX = "/campaigns/"


class DirectSlot:
    """WSGI middleware in front of `app.wsgi_app` (and behind the proxy fix, which it needs for is_secure)."""

    def __init__(self, app, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app
        self.enabled = True  # tests turn it off to compare with Flask's own answer

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if self.enabled and path.startswith(PREFIX) and environ.get("REQUEST_METHOD") == "GET":
            digits = path[len(PREFIX):]
            # The view's own checks, in the same words: anything else (a 404, a number past 64 bits) is Flask's.
            if digits.isascii() and digits.isdigit() and len(digits.lstrip("0")) <= 19:
                with self.app.app_context():
                    req = Request(environ)
                    try:
                        slot = public.open_slot(int(digits), req, rendered_only=True)
                    except (*DATABASE_ERRORS, *REDIS_ERRORS):
                        slot = None  # no plans could be loaded: Flask's view answers with its 503 page
                    if slot is not None:
                        try:
                            response = public.show_slot(slot, req)
                        except Exception as exc:  # the rotation may have moved: answer as Flask would, not again
                            response = self._flask_error(environ, exc)
                        return response(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _flask_error(self, environ, exc):
        """What Flask answers when its view raises `exc`: its handler's response (a store away: the 503 page), else its
        logged 500."""
        with self.app.request_context(environ):
            try:
                return self.app.finalize_request(self.app.handle_user_exception(exc))
            except Exception as unhandled:
                return self.app.handle_exception(unhandled)
