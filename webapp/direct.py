"""The ad slot's views answered before Flask's request machinery: a GET of the slot page, the iframe document or
the JSON decision that its view can answer gets the response Flask's view would give (the view modules build both),
without the request context, routing and hooks around it; every other request, and any view that cannot be
answered so (a refusal, a 404, a page to render first), goes on to Flask."""

from werkzeug.wrappers import Request

from webapp import api, embed, public

# Path prefix -> the view module's direct(req, rest of the path): None, or the view to run.
ROUTES = (("/campaigns/", public.direct), ("/embed/", embed.direct), ("/api/decision", api.direct))


class Direct:
    """WSGI middleware in front of `app.wsgi_app` (and behind the proxy fix, which it needs for is_secure)."""

    def __init__(self, app, wsgi_app):
        self.app, self.wsgi_app = app, wsgi_app
        self.enabled = True  # tests turn it off to compare with Flask's own answer

    def __call__(self, environ, start_response):
        if self.enabled and environ.get("REQUEST_METHOD") == "GET":
            path = environ.get("PATH_INFO", "")
            for prefix, route in ROUTES:
                if path.startswith(prefix):
                    with self.app.app_context():
                        answer = self._answer(environ, route, path[len(prefix):])
                        if answer is not None:
                            return answer(environ, start_response)
                    break
        return self.wsgi_app(environ, start_response)

    def _answer(self, environ, route, rest):
        """The WSGI answer of the direct view, or None to leave the request to Flask."""
        req = Request(environ)
        try:
            view = route(req, rest)
        except Exception:  # nothing moved yet: Flask's view runs the same and answers it (plans not loadable: its 503)
            return None
        if view is None:
            return None
        try:
            body, headers = view()
        except Exception as exc:  # the rotation may have moved: answer as Flask would, not run the view again
            return self._flask_error(environ, exc)
        return _sent(body.encode() if isinstance(body, str) else body, headers)

    def _flask_error(self, environ, exc):
        """What Flask answers when its view raises `exc`: its handler's response (a store away: the 503 page), else its
        logged 500."""
        with self.app.request_context(environ):
            try:
                return self.app.finalize_request(self.app.handle_user_exception(exc))
            except Exception as unhandled:
                return self.app.handle_exception(unhandled)


def _sent(data: bytes, headers):
    """A 200 of `data` with `headers` (they name its Content-Type), as a WSGI app: what werkzeug's Response would send."""

    def answer(environ, start_response):
        start_response("200 OK", [*headers, ("Content-Length", str(len(data)))])
        return [data]

    return answer
