"""Answers for a store that is away (a styled 503 with Retry-After, JSON on the API), and the
security headers every response carries."""

from flask import current_app, jsonify, render_template, request
from werkzeug.exceptions import InternalServerError, ServiceUnavailable

from webapp.outage import DATABASE_ERRORS, REDIS_ERRORS, RETRY_AFTER_SECONDS, StoreFailed, outage_of

# Only files from this site; no inline script or style (htmx's indicator style is off, see base.html).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# The ad slot and the embed frame are meant to be framed by publishers' pages (the embed frame sets its
# own frame-ancestors from EMBED_ALLOWED_SITES), and the embeds' JSON API answers data, not a page anyone
# could frame: none of them gets the dashboard's page policy. Every other page is never framed.
WITHOUT_PAGE_POLICY = ("public", "embed", "api")
REFERRER_POLICY = ("Referrer-Policy", "strict-origin-when-cross-origin")


def unavailable(what="A service this page needs", outage="is unavailable"):
    """The 503 answer: JSON under /api/, else the styled page; both say what failed and when to retry."""
    message = f"{what} {outage} right now. Try again in {RETRY_AFTER_SECONDS} seconds."
    if request.path.startswith("/api/"):
        response = jsonify(error=message)
    else:
        response = current_app.make_response(render_template("errors/503.html", message=message))
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _store_of(exc):
    """(the store's name, its breaker or None, the store's error) when `exc` says a store is away;
    (None, None, exc) otherwise."""
    if isinstance(exc, StoreFailed):
        return exc.breaker.name, exc.breaker, exc.cause
    if isinstance(exc, REDIS_ERRORS):
        # Outside the session, the app's own Redis calls all go to REDIS_URL's (the events') Redis.
        breaker = current_app.extensions["redis_breaker"]
        return breaker.name, breaker, exc
    if isinstance(exc, DATABASE_ERRORS):
        return "The database", None, exc
    return None, None, exc


def install(app):
    """Register the 503 handlers and the headers."""

    @app.errorhandler(ServiceUnavailable)
    def service_unavailable(error):
        return unavailable()

    def store_away(exc):
        store, breaker, cause = _store_of(exc)
        if breaker is not None:
            breaker.record(cause)
        else:
            current_app.logger.warning("%s is unavailable: %s: %s", store, type(cause).__name__, cause)
        return unavailable(store, outage_of(cause))

    for error_class in (StoreFailed, *REDIS_ERRORS, *DATABASE_ERRORS):
        app.register_error_handler(error_class, store_away)

    @app.errorhandler(InternalServerError)
    def internal_error(error):
        # Errors outside the view (opening or saving the session) arrive here wrapped.
        original = getattr(error, "original_exception", None)
        if original is not None and _store_of(original)[0]:
            return store_away(original)
        return error

    @app.after_request
    def security_headers(response):
        response.headers.setdefault(*REFERRER_POLICY)
        if request.blueprint not in WITHOUT_PAGE_POLICY:
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
