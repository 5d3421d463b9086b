"""Embedding as a publisher does it: pages on other sites (HTTPS, a throwaway CA) framing, tagging and
calling the ad server behind the real nginx, in Chromium with third-party cookies allowed, as shipped, and blocked."""

import gzip
import http.client
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from browser.conftest import CHROMIUM, CHROMIUM_ARGS
from browser.embed_sites import AD_HOST, PUBLISHERS, SiteServer, chromium_args, third_party_cookie_preferences
from conftest import REDIS_URL, ROOT
from nginx_stack import nginx_and_gunicorn, require_program
from tls import make_ca

pytestmark = pytest.mark.browser

# How third-party cookies are set in the profile: "allowed" (Preferences say so), "default" (a new profile
# of this Chromium as it ships: no Preferences), "blocked" (Settings → Block third-party cookies).
COOKIE_MODES = ("allowed", "default", "blocked")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("ca"))


class AdServer:
    """The ad server as publishers reach it: https://ads.test:<port> (nginx → gunicorn, demo data)."""

    def __init__(self, port, env, tls):
        self.port, self.env, self.tls = port, env, tls
        self.base = f"https://{AD_HOST}:{port}"

    def get(self, path, headers=None, method="GET"):
        """(status, lower-cased headers, body) of one request from Python, trusting only the test CA."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.tls.client_context())
        try:
            conn.request(method, path, headers={"Host": f"{AD_HOST}:{self.port}", **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def ad_server(tmp_path_factory, demo_source, tls):
    """nginx with TLS in front of gunicorn (2 workers) on the demo data, SQLite, a Redis prefix of its own."""
    require_program("nginx")
    work = tmp_path_factory.mktemp("ads")
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"sqlite:///{work / 'bannerservice.db'}", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
        "INSTANCE_DIR": str(work / "instance"), "IMAGE_DIR": str(work / "images"),
        "LOG_FILE": str(work / "bannerservice.log"), "SECRET_KEY": "embed-test", "QUEUE_NAME": f"{prefix}queue",
        "PYTHONPATH": str(ROOT), "WEB_WORKERS": "2", "TRUSTED_PROXY_COUNT": "1",
    })
    subprocess.run([Path(sys.executable).parent / "flask", "--app", "webapp", "ingest", str(demo_source)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    with nginx_and_gunicorn(work, env, tls=tls) as (port, _):
        yield AdServer(port, env, tls)


@pytest.fixture(scope="module")
def sites(tls):
    """The publishers' HTTPS server (publisher-a.test, publisher-b.test, and ads.test for the cookie check)."""
    with SiteServer(tls).running() as server:
        yield server


@pytest.fixture(scope="module")
def playwright():
    if not os.path.exists(CHROMIUM):
        message = f"Chromium not found at {CHROMIUM}: apt-get install chromium (scripts/test.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:
        yield running


@pytest.fixture
def open_chromium(playwright, tls, tmp_path):
    """A function (cookie mode) -> a new Chromium with a fresh profile; all are closed after the test."""
    contexts = []

    def open_(mode):
        profile = tmp_path / f"profile-{len(contexts)}"
        (profile / "Default").mkdir(parents=True)
        if mode != "default":
            blocked = mode == "blocked"
            (profile / "Default" / "Preferences").write_text(json.dumps(third_party_cookie_preferences(blocked)))
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=chromium_args(tls, CHROMIUM_ARGS),
            viewport={"width": 1000, "height": 700})
        context.set_default_timeout(15000)
        contexts.append(context)
        return context

    yield open_
    for context in contexts:
        context.close()


def _cookie_frame(request):
    """A frame on ads.test that sets an unpartitioned and a partitioned cross-site cookie and shows those it got."""
    return 200, {"Set-Cookie": ["plain=1; Secure; SameSite=None; Path=/; Max-Age=600",
                                "part=1; Secure; SameSite=None; Partitioned; Path=/; Max-Age=600"]}, \
        f'<p id="got">{" ".join(sorted(request.cookies()))}</p>'


@pytest.mark.parametrize("mode, kept", [("allowed", "part plain"), ("default", "part"), ("blocked", "part")])
def test_chromium_profile_third_party_cookie_mode_is_what_it_says(sites, open_chromium, mode, kept):
    """The harness check: the blocked profile really drops a SameSite=None cookie in a cross-site frame
    (and keeps a Partitioned one); the allowed one keeps both. This Chromium as shipped already blocks them."""
    sites.routes[(AD_HOST, "/cookie-frame")] = _cookie_frame
    sites.page("/framing", f'<iframe src="{sites.url(AD_HOST, "/cookie-frame")}"></iframe>')
    page = open_chromium(mode).new_page()
    seen = []
    for _ in range(2):
        page.goto(sites.url(PUBLISHERS[0], "/framing"))
        seen.append(page.frame_locator("iframe").locator("#got").text_content())
    assert seen == ["", kept]
    # The partitioned cookie belongs to publisher-a's partition: ads.test as a top-level site gets only
    # the unpartitioned one, when it was kept at all.
    page.goto(sites.url(AD_HOST, "/cookie-frame"))
    assert page.locator("#got").text_content() == ("plain" if "plain" in kept else "")


def test_tag_is_served_by_nginx_cached_for_an_hour_with_etag_and_small_gzipped(ad_server):
    status, headers, body = ad_server.get("/static/tag.js", {"Accept-Encoding": "gzip"})
    source = (ROOT / "webapp" / "static" / "tag.js").read_bytes()
    assert status == 200 and headers["content-type"].startswith("application/javascript")
    assert headers["cache-control"] == "max-age=3600"
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == source
    assert len(body) < 4096, f"tag.js is {len(body)} bytes gzipped"
    # nginx's ETag of a gzipped answer is weak; a revalidation with it is answered 304 without a body.
    status, _, body = ad_server.get("/static/tag.js", {"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]})
    assert status == 304 and body == b""
