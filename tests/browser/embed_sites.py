"""Sites for the embed browser tests: a small HTTPS server for publisher pages, and Chromium on loopback
with test host names, the test CA trusted and third-party cookies allowed or blocked."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PUBLISHERS = ("publisher-a.test", "publisher-b.test")
AD_HOST = "ads.test"


class SiteServer:
    """An HTTPS server on a free loopback port answering for any host name; the test adds its pages.

    A route is a function (request) -> (status, headers dict, body str|bytes), looked up by the
    request's host and path, then by path alone. `requests` lists (host, method, path, headers) as they came.
    """

    def __init__(self, tls):
        self.routes, self.requests = {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def _answer(self, method):
                url = urlsplit(self.path)
                host = (self.headers.get("Host") or "").split(":")[0]
                request = Request(host, method, url.path, parse_qs(url.query), dict(self.headers))
                server.requests.append(request)
                route = server.routes.get((host, url.path)) or server.routes.get(url.path)
                status, headers, body = route(request) if route else (404, {}, "not found")
                body = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", **headers}
                for name, value in headers.items():
                    for one in value if isinstance(value, list) else [value]:
                        self.send_header(name, one)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = tls.server_context().wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]

    def url(self, host, path="/"):
        return f"https://{host}:{self.port}{path}"

    def page(self, path, html, host=None):
        """Serve `html` at `path` (on `host` only, when given)."""
        self.routes[(host, path) if host else path] = lambda request: (200, {}, html)

    @contextmanager
    def running(self):
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()


class Request:
    def __init__(self, host, method, path, query, headers):
        self.host, self.method, self.path, self.query, self.headers = host, method, path, query, headers

    def cookies(self) -> dict:
        header = self.headers.get("Cookie") or ""
        return dict(part.strip().split("=", 1) for part in header.split(";") if "=" in part)

    def json(self, value):
        return 200, {"Content-Type": "application/json"}, json.dumps(value)


def chromium_args(tls, base_args):
    """Chromium flags: test host names on loopback, the test CA's certificates trusted."""
    rules = ", ".join(f"MAP {host} 127.0.0.1" for host in (*PUBLISHERS, AD_HOST))
    return [*base_args, f"--host-resolver-rules={rules}",
            # Honoured because Playwright always passes --user-data-dir; only certificates of this CA.
            f"--ignore-certificate-errors-spki-list={tls.spki_hash()}"]


def third_party_cookie_preferences(blocked: bool) -> dict:
    """A Chromium profile's Preferences with third-party cookies blocked (as Settings → "Block
    third-party cookies" does: cookie_controls_mode 1) or allowed (0)."""
    return {"profile": {"cookie_controls_mode": 1 if blocked else 0,
                        "block_third_party_cookies": blocked}}
