"""Which proxies' X-Forwarded-For and -Proto the app believes: TRUSTED_PROXY_COUNT, or by default one on this machine."""

import ipaddress
import logging

from werkzeug.middleware.proxy_fix import ProxyFix

from config import LOCAL_PROXY

log = logging.getLogger("bannerservice.proxies")


def install(app, trusted_proxy_count):
    """Wrap `app.wsgi_app` so the client's address and scheme come from the trusted proxies' headers."""
    if trusted_proxy_count == LOCAL_PROXY:
        app.wsgi_app = LocalProxyFix(app.wsgi_app)
    elif trusted_proxy_count > 0:
        # Only the configured proxies' X-Forwarded-* are believed: a client cannot pick its address.
        n = trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)
    else:
        app.wsgi_app = WarnUntrustedForwarding(app.wsgi_app)


def is_local_peer(remote_addr) -> bool:
    """True for a unix socket peer (granian, like gunicorn, gives it an empty address) or a loopback address."""
    if not remote_addr:
        return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    # An IPv4 peer of a socket listening on IPv6 ([::]) arrives as ::ffff:127.0.0.1, which is_loopback rejects.
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


class WarnUntrustedForwarding:
    """Passes requests through; says once per process that X-Forwarded-For arrives from a proxy nobody trusts."""

    def __init__(self, app):
        self.app = app
        self.warned = False

    def __call__(self, environ, start_response):
        if not self.warned and environ.get("HTTP_X_FORWARDED_FOR"):
            self.warned = True
            log.warning(
                "requests arrive with X-Forwarded-For from %s, a proxy this app does not trust: every client behind "
                "it has its address (one sign-in throttle for all). Set TRUSTED_PROXY_COUNT to the proxies in front",
                environ.get("REMOTE_ADDR") or "a unix socket")
        return self.app(environ, start_response)


class LocalProxyFix(WarnUntrustedForwarding):
    """Trusts one proxy when the request comes from this machine (the shipped nginx), none otherwise."""

    def __init__(self, app):
        super().__init__(app)
        self.trusting = ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)

    def __call__(self, environ, start_response):
        if is_local_peer(environ.get("REMOTE_ADDR")):
            return self.trusting(environ, start_response)
        return super().__call__(environ, start_response)
