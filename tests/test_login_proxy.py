"""Sign-in behind the shipped nginx (rendered from the project's template) in front of the web process:
clients are told apart by the address nginx forwards, and one client's failures lock nobody else out."""

import http.client
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REDIS_URL, ROOT
from nginx_stack import nginx_and_web, require_program

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A client from one loopback address (127.0.0.x) with its own cookie, talking to nginx."""

    def __init__(self, port, address):
        self.port, self.address, self.cookie = port, address, None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20, source_address=(self.address, 0))
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            found = {k.lower(): v for k, v in response.getheaders()}
            if "set-cookie" in found:
                self.cookie = found["set-cookie"].split(";", 1)[0]
            return response.status, found, response.read().decode()
        finally:
            conn.close()

    def login(self, username, password):
        status, _, page = self.request("GET", "/login")
        token = CSRF.search(page).group(1)
        from urllib.parse import urlencode

        body = urlencode({"username": username, "password": password, "csrf_token": token})
        return self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})


@contextmanager
def _stack(work, trusted_proxy_count):
    """nginx → the web process on SQLite with admin `ada`; TRUSTED_PROXY_COUNT as given (None: unset)."""
    require_program("nginx")
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    env = {k: v for k, v in os.environ.items() if k != "TRUSTED_PROXY_COUNT"}
    env.update({
        "DATABASE_URL": f"sqlite:///{work / 'bannerservice.db'}", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
        "INSTANCE_DIR": str(work / "instance"), "IMAGE_DIR": str(work / "images"),
        "LOG_FILE": str(work / "bannerservice.log"), "SECRET_KEY": "proxy-test", "QUEUE_NAME": f"{prefix}queue",
        "PYTHONPATH": str(ROOT), "WEB_WORKERS": "2", "BANNERSERVICE_PASSWORD": "ada-secret-1",
    })
    if trusted_proxy_count is not None:
        env["TRUSTED_PROXY_COUNT"] = trusted_proxy_count
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "flask", "--app", "webapp", "users", "create", "ada", "--role", "admin"],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    with nginx_and_web(work, env) as (port, _):
        yield port


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """nginx → the web process with TRUSTED_PROXY_COUNT=1, as docker-compose runs it."""
    with _stack(tmp_path_factory.mktemp("proxied"), "1") as port:
        yield port


@pytest.fixture(scope="module")
def proxied_by_default(tmp_path_factory):
    """nginx → the web process on a unix socket without TRUSTED_PROXY_COUNT: the README's commands outside Docker."""
    with _stack(tmp_path_factory.mktemp("default"), None) as port:
        yield port


def test_login_through_nginx_one_clients_failures_do_not_lock_out_another(proxied):
    attacker = Browser(proxied, "127.0.0.2")
    refused = [attacker.login("ada", f"guess-{n}")[0] for n in range(25)]
    assert set(refused) <= {401, 429} and 429 in refused  # the attacker is slowed down
    admin = Browser(proxied, "127.0.0.3")
    status, headers, _ = admin.login("ada", "ada-secret-1")
    assert status == 302 and headers["location"].endswith("/admin/")


def test_login_through_nginx_session_cookie_is_secure_when_the_proxy_says_https(proxied):
    # nginx sets X-Forwarded-Proto from its own scheme; a TLS front in front of it would say https.
    browser = Browser(proxied, "127.0.0.4")
    status, headers, _ = browser.login("ada", "ada-secret-1")
    assert status == 302 and "Secure" not in headers["set-cookie"]  # plain HTTP to nginx: not Secure


def test_login_page_through_nginx_is_not_frameable_and_has_a_policy(proxied):
    status, headers, _ = Browser(proxied, "127.0.0.5").request("GET", "/login")
    assert status == 200 and headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and headers["referrer-policy"]


def test_login_through_nginx_a_forged_forwarded_for_does_not_pick_the_address(proxied):
    # An attacker rotating X-Forwarded-For values is still one address to the throttle.
    attacker = Browser(proxied, "127.0.0.6")
    statuses = []
    for n in range(8):
        status, _, page = attacker.request("GET", "/login")
        from urllib.parse import urlencode

        body = urlencode({"username": "ada", "password": f"guess-{n}", "csrf_token": CSRF.search(page).group(1)})
        statuses.append(attacker.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                                   "X-Forwarded-For": f"10.0.0.{n}"})[0])
    assert 429 in statuses


def test_login_through_nginx_without_trusted_proxy_count_one_clients_failures_do_not_lock_out_another(proxied_by_default):
    # The README's commands outside Docker set no TRUSTED_PROXY_COUNT: nginx and the app must still agree.
    attacker = Browser(proxied_by_default, "127.0.0.2")
    refused = [attacker.login("ada", f"guess-{n}")[0] for n in range(8)]
    assert 429 in refused
    status, headers, _ = Browser(proxied_by_default, "127.0.0.3").login("ada", "ada-secret-1")
    assert status == 302 and headers["location"].endswith("/admin/")
