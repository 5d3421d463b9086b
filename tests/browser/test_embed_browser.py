"""Embedding as a publisher does it: pages on other sites (HTTPS, a throwaway CA) framing, tagging and
calling the ad server behind the real nginx, in Chromium with third-party cookies allowed, as shipped, and blocked."""

import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from browser.conftest import CHROMIUM, CHROMIUM_ARGS
from browser.embed_sites import AD_HOST, PUBLISHERS, SiteServer, chromium_args, third_party_cookie_preferences
from conftest import REDIS_URL, ROOT
from nginx_stack import nginx_and_web, require_program
from tls import make_ca

pytestmark = pytest.mark.browser

# How third-party cookies are set in the profile: "allowed" (Preferences say so), "default" (a new profile
# of this Chromium as it ships: no Preferences), "blocked" (Settings → Block third-party cookies).
COOKIE_MODES = ("allowed", "default", "blocked")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("ca"))


class AdServer:
    """The ad server as publishers reach it: https://ads.test:<port> (nginx → the web process, demo data)."""

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


@contextmanager
def running_ad_server(work, demo_source, tls, **settings):
    """nginx with TLS in front of the web process (2 workers) on the demo data, SQLite, a Redis prefix of its own."""
    require_program("nginx")
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"sqlite:///{work / 'bannerservice.db'}", "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix,
        "INSTANCE_DIR": str(work / "instance"), "IMAGE_DIR": str(work / "images"),
        "LOG_FILE": str(work / "bannerservice.log"), "SECRET_KEY": "embed-test", "QUEUE_NAME": f"{prefix}queue",
        "PYTHONPATH": str(ROOT), "WEB_WORKERS": "2", "TRUSTED_PROXY_COUNT": "1", **settings,
    })
    subprocess.run([Path(sys.executable).parent / "flask", "--app", "webapp", "ingest", str(demo_source)],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    with nginx_and_web(work, env, tls=tls) as (port, _):
        yield AdServer(port, env, tls)


@pytest.fixture(scope="module")
def ad_server(tmp_path_factory, demo_source, tls):
    with running_ad_server(tmp_path_factory.mktemp("ads"), demo_source, tls) as server:
        yield server


@pytest.fixture(scope="module")
def sites(tls):
    """The publishers' HTTPS server (publisher-a.test, publisher-b.test, and ads.test for the cookie check)."""
    with SiteServer(tls).running() as server:
        yield server


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


# --- The three ways, as publisher pages ---------------------------------------------------------------------

WAYS = ("iframe", "tag", "json")
LOADS = 12


def iframe_page(ad, campaign, target="top"):
    return (f'<!doctype html><title>Publisher</title><h1>News</h1>'
            f'<iframe src="{ad}/embed/{campaign}?target={target}" width="300" height="250" style="border:0" '
            f'title="Advertisement"></iframe>')


def tag_page(ad, campaigns, target="top", before="", after=""):
    slots = "".join(f'<ins class="bannerservice" data-campaign="{c}" data-target="{target}"></ins>' for c in campaigns)
    return (f'<!doctype html><title>Publisher</title><h1>News</h1>{before}{slots}{after}'
            f'<script async src="{ad}/static/tag.js"></script>')


def json_page(ad, campaign):
    """The publisher's own script: one decision, its vid kept in the publisher's localStorage, the impression posted."""
    return f'''<!doctype html><title>Publisher</title><h1>News</h1><div id="slot"></div>
<script>
(async () => {{
  const vid = localStorage.getItem("pub_vid");
  const answer = await (await fetch("{ad}/api/decision?c={campaign}" + (vid ? "&vid=" + vid : ""))).json();
  localStorage.setItem("pub_vid", answer.vid);
  const slot = answer.slots[0], img = new Image(slot.width, slot.height);
  img.alt = slot.alt;
  img.dataset.bannerId = slot.banner_id;
  img.onload = () => navigator.sendBeacon(slot.impression_url);
  img.src = slot.image_url;
  document.getElementById("slot").append(img);
}})();
</script>'''


@pytest.fixture(scope="module")
def plans(ad_server):
    """{(quarter, campaign id): its banner set} of the demo data."""
    out = subprocess.run([Path(sys.executable).parent / "flask", "--app", "webapp", "plans", "--json"],
                         cwd=ROOT, env=ad_server.env, check=True, capture_output=True, text=True).stdout
    return {(p["quarter"], p["campaign_id"]): set(p["banner_ids"]) for p in json.loads(out)}


def pick_campaign(plans, seconds=75):
    """(campaign id, banner set) of the current quarter with 3 to 6 banners (12 loads go through it twice),
    once the quarter has `seconds` left."""
    clear_of_quarter_turn(seconds)
    quarter = datetime.now(timezone.utc).minute // 15 + 1
    size, cid = max((len(b), c) for (q, c), b in plans.items() if q == quarter and 3 <= len(b) <= 6)
    return cid, plans[(quarter, cid)]


def clear_of_quarter_turn(seconds=75):
    """Wait until the current quarter of the hour has `seconds` left: a new quarter changes the set and restarts rotations."""
    now = datetime.now(timezone.utc)
    left = (15 - now.minute % 15) * 60 - now.second
    if left < seconds:
        time.sleep(left + 1)


def assert_rotation(shown, banners):
    """No banner twice in a row; from the first view on, each run of len(banners) views shows each banner once."""
    assert all(a != b for a, b in zip(shown, shown[1:])), f"a banner twice in a row: {shown}"
    size = len(banners)
    for start in range(0, len(shown), size):
        cycle = shown[start:start + size]
        assert len(set(cycle)) == len(cycle) and set(cycle) <= banners, f"repeated before the set was through: {shown}"


def load_banner(page, url, way, target=None):
    """Open the publisher page and return the banner id it shows (read from the DOM)."""
    page.goto(url)
    if way == "iframe":
        img = page.frame_locator("iframe").locator("img[data-banner-id]")
    elif way == "tag":
        img = page.locator("ins.bannerservice img[data-banner-id]")
    elif way == "json":
        img = page.locator("#slot img[data-banner-id]")
    else:  # the publisher's server rendered it into the page
        img = page.locator("img[data-banner-id]")
    img.first.wait_for()
    return int(img.first.get_attribute("data-banner-id"))


def publisher_url(sites, ad_server, way, cid, host=PUBLISHERS[0]):
    path = f"/{way}-{cid}"
    html = {"iframe": iframe_page, "tag": lambda a, c: tag_page(a, [c]), "json": json_page}[way](ad_server.base, cid)
    sites.page(path, html)
    return sites.url(host, path)


@pytest.mark.parametrize("mode", COOKIE_MODES)
@pytest.mark.parametrize("way", WAYS)
def test_embed_rotation_holds_across_loads_on_another_site(sites, ad_server, plans, open_chromium, way, mode):
    page = open_chromium(mode).new_page()
    cid, banners = pick_campaign(plans)
    url = publisher_url(sites, ad_server, way, cid)
    shown = [load_banner(page, url, way) for _ in range(LOADS)]
    assert_rotation(shown, banners)


def test_embed_json_from_a_publishers_server_keeps_the_rotation_by_its_own_visitor_id(sites, ad_server, plans, open_chromium):
    """A publisher's server asks for the decision with an id it keeps in its own first-party cookie."""
    page = open_chromium("blocked").new_page()
    cid, banners = pick_campaign(plans)

    def server_page(request):
        vid = request.cookies().get("pub_vid", "")
        status, _, body = ad_server.get(f"/api/decision?c={cid}" + (f"&vid={vid}" if vid else ""))
        assert status == 200, body
        answer = json.loads(body)
        slot = answer["slots"][0]
        assert ad_server.get(urlsplit(slot["impression_url"]).path, method="POST")[0] == 204
        return 200, {"Set-Cookie": f"pub_vid={answer['vid']}; Secure; SameSite=Lax; Path=/"}, (
            f'<!doctype html><title>Publisher</title><a href="{slot["click_url"]}"><img src="{slot["image_url"]}" '
            f'width="{slot["width"]}" height="{slot["height"]}" alt="{slot["alt"]}" data-banner-id="{slot["banner_id"]}"></a>')

    sites.routes[(PUBLISHERS[0], f"/server-{cid}")] = server_page
    shown = [load_banner(page, sites.url(PUBLISHERS[0], f"/server-{cid}"), "server") for _ in range(LOADS)]
    assert_rotation(shown, banners)


@pytest.mark.parametrize("way", WAYS)
def test_embed_two_publisher_sites_do_not_share_a_visitors_rotation(sites, ad_server, plans, open_chromium, way):
    """One browser alternates between two sites: each site's views on their own keep the guarantee.
    For the JSON way both sites even send the same vid, so only the server's per-site key keeps them apart."""
    page = open_chromium("blocked").new_page()
    cid, banners = pick_campaign(plans, seconds=120)
    urls = {host: publisher_url(sites, ad_server, way, cid, host) for host in PUBLISHERS}
    sites.page("/blank", "<!doctype html><title>Publisher</title>")
    shown = {host: [] for host in PUBLISHERS}
    for host in (PUBLISHERS[0], PUBLISHERS[1], PUBLISHERS[0], PUBLISHERS[1]):
        for _ in range(3):
            shown[host].append(load_banner(page, urls[host], way))
        if way == "json" and host == PUBLISHERS[0] and len(shown[host]) == 3:
            vid = page.evaluate("localStorage.getItem('pub_vid')")
            page.goto(sites.url(PUBLISHERS[1], "/blank"))
            page.evaluate("vid => localStorage.setItem('pub_vid', vid)", vid)
    print(shown, banners)
    for host in PUBLISHERS:
        assert_rotation(shown[host], banners)


@pytest.mark.parametrize("way, target", [("iframe", "top"), ("iframe", "blank"), ("tag", "top"), ("tag", "blank")])
def test_embed_click_opens_the_landing_page_in_the_top_window_or_a_new_tab(sites, ad_server, plans, open_chromium, way, target):
    context = open_chromium("blocked")
    page = context.new_page()
    cid, _ = pick_campaign(plans, seconds=30)
    path = f"/click-{way}-{target}"
    sites.page(path, iframe_page(ad_server.base, cid, target) if way == "iframe" else tag_page(ad_server.base, [cid], target))
    page.goto(sites.url(PUBLISHERS[0], path))
    scope = page.frame_locator("iframe") if way == "iframe" else page
    link = scope.locator("a:has(img[data-banner-id])")
    assert link.get_attribute("target") == f"_{target}"
    if target == "top":
        with page.expect_navigation():
            link.click()
        assert page.url == ad_server.base + "/"  # the default landing page, in the publisher's window
        assert len(page.frames) == 1
    else:
        with context.expect_page() as opened:
            link.click()
        landing = opened.value
        landing.wait_for_load_state()
        assert landing.url == ad_server.base + "/"
        assert page.url == sites.url(PUBLISHERS[0], path)  # the publisher's page stays


def test_embed_iframe_document_is_exactly_the_frame_without_margin_or_scrollbar(sites, ad_server, plans, open_chromium):
    page = open_chromium("default").new_page()
    cid, _ = pick_campaign(plans, seconds=30)
    page.goto(publisher_url(sites, ad_server, "iframe", cid))
    frame = page.frame_locator("iframe")
    frame.locator("img[data-banner-id]").wait_for()
    size = frame.locator("html").evaluate("""html => [html.scrollWidth, html.scrollHeight, html.clientWidth,
        html.clientHeight, getComputedStyle(document.body).margin]""")
    assert size == [300, 250, 300, 250, "0px"]
    box = frame.locator("img[data-banner-id]").evaluate("img => { const r = img.getBoundingClientRect(); "
                                                         "return [r.left >= 0, r.top >= 0, r.right <= 300, r.bottom <= 250, img.alt]; }")
    assert box[:4] == [True, True, True, True] and box[4]


def test_tag_fills_many_slots_with_one_decision_request(sites, ad_server, plans, open_chromium):
    page = open_chromium("default").new_page()
    clear_of_quarter_turn(30)
    quarter = datetime.now(timezone.utc).minute // 15 + 1
    campaigns = sorted(c for q, c in plans if q == quarter)[:6]
    sites.page("/many", tag_page(ad_server.base, campaigns))
    decisions, impressions = [], []
    page.on("request", lambda r: decisions.append(r.url) if "/api/decision" in r.url else None)
    page.on("request", lambda r: impressions.append(r.url) if "/api/impressions/" in r.url else None)
    page.goto(sites.url(PUBLISHERS[0], "/many"))
    images = page.locator("ins.bannerservice a > img[data-banner-id]")
    page.wait_for_function("n => document.querySelectorAll('ins.bannerservice img[data-banner-id]').length === n", arg=len(campaigns))
    assert len(decisions) == 1 and sorted(parse_qs(urlsplit(decisions[0]).query)["c"]) == sorted(map(str, campaigns))
    for i in range(len(campaigns)):
        attributes = images.nth(i).evaluate("img => [img.getAttribute('width'), img.getAttribute('height'), img.hasAttribute('alt'), "
                                            "img.parentElement.target, img.parentElement.rel]")
        assert attributes[0] and attributes[1] and attributes[2]
        assert attributes[3:] == ["_top", "nofollow sponsored noopener"]
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    _wait(page, lambda: len(impressions) == len(campaigns), "one impression beacon per rendered banner")
    assert page.evaluate("Object.keys(window).filter(k => /banner/i.test(k))") == []  # no global


def test_tag_slot_without_a_banner_collapses_and_the_others_render(sites, ad_server, plans, open_chromium):
    page = open_chromium("default").new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    cid, _ = pick_campaign(plans, seconds=30)
    sites.page("/missing", tag_page(ad_server.base, [cid, 987654321]))
    page.goto(sites.url(PUBLISHERS[0], "/missing"))
    page.locator(f'ins[data-campaign="{cid}"] img[data-banner-id]').wait_for()
    page.wait_for_function("() => getComputedStyle(document.querySelector('ins[data-campaign=\"987654321\"]')).display === 'none'")
    assert errors == []


@pytest.mark.parametrize("failure", ["refused", "error 500", "not json"])
def test_tag_collapses_the_slot_silently_when_the_server_is_away(sites, tls, open_chromium, failure):
    """The tag (served here from the test) calls a server that is not there, fails or answers nonsense."""
    page = open_chromium("default").new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    tag = (ROOT / "webapp" / "static" / "tag.js").read_text()
    if failure == "refused":
        with socket.socket() as sock:  # a port nothing listens on
            sock.bind(("127.0.0.1", 0))
            base = f"https://{AD_HOST}:{sock.getsockname()[1]}"
    else:
        base = sites.url(AD_HOST, "").rstrip("/")
        sites.routes[(AD_HOST, "/api/decision")] = (
            (lambda request: (500, {"Content-Type": "text/html"}, "<h1>Internal Server Error</h1>")) if failure == "error 500"
            else (lambda request: (200, {"Content-Type": "application/json", "Access-Control-Allow-Origin": "*"}, "{not json")))
    page.route(f"{base}/static/tag.js", lambda route: route.fulfill(body=tag, content_type="application/javascript"))
    sites.page("/away", tag_page(base, [1], before='<p id="before">text</p>', after='<p id="after">more</p>'))
    page.goto(sites.url(PUBLISHERS[0], "/away"))
    page.wait_for_function("() => getComputedStyle(document.querySelector('ins.bannerservice')).display === 'none'")
    assert errors == []
    assert page.locator("#after").is_visible()


SCROLL_SLOT_INTO_VIEW = """async ([share, ms]) => {
  const r = document.querySelector("ins.bannerservice img").getBoundingClientRect(), top = r.top + scrollY;
  scrollTo(0, top + share * r.height - innerHeight);   // `share` of the banner at the bottom of the viewport
  await new Promise(done => setTimeout(done, ms));
  scrollTo(0, 0);
}"""


@pytest.mark.parametrize("share, ms, viewable", [(0.55, 900, 0), (0.55, 1100, 1), (0.45, 1500, 0), (1.0, 1100, 1)])
def test_tag_counts_viewable_after_half_the_banner_was_visible_for_one_continuous_second(
        sites, ad_server, plans, open_chromium, share, ms, viewable):
    page = open_chromium("default").new_page()
    cid, _ = pick_campaign(plans, seconds=30)
    sites.page("/scroll", tag_page(ad_server.base, [cid], before='<div style="height:1600px">Article</div>',
                                   after='<div style="height:3000px">More</div>'))
    beacons, statuses = [], []
    page.on("request", lambda r: beacons.append(r.url.split("/api/")[1].split("/")[0].split("?")[0]) if "/api/" in r.url else None)
    page.on("response", lambda r: statuses.append(r.status) if "/api/viewable/" in r.url or "/api/impressions/" in r.url else None)
    page.goto(sites.url(PUBLISHERS[0], "/scroll"))
    page.wait_for_function("() => { const i = document.querySelector('ins.bannerservice img'); return i && i.complete; }")
    _wait(page, lambda: "impressions" in beacons, "the impression beacon")
    assert page.evaluate("() => document.querySelector('ins.bannerservice').getBoundingClientRect().top") > 700  # out of view
    page.evaluate(SCROLL_SLOT_INTO_VIEW, [share, ms])
    page.wait_for_timeout(1500)  # longer than the tag's second: a beacon due would have gone
    assert beacons == ["decision", "impressions"] + ["viewable"] * viewable
    assert set(statuses) <= {204}  # the beacons whose answers the browser reports were recorded



def test_embed_site_not_in_the_allowed_list_gets_no_banner(sites, tls, demo_source, tmp_path, open_chromium, plans):
    """EMBED_ALLOWED_SITES lists publisher-a only: publisher-b's iframe is not rendered and its tag slot collapses."""
    allowed = sites.url(PUBLISHERS[0], "").rstrip("/")
    with running_ad_server(tmp_path / "restricted", demo_source, tls, EMBED_ALLOWED_SITES=allowed) as restricted:
        page = open_chromium("default").new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        cid, _ = pick_campaign(plans, seconds=30)
        sites.page("/allowed-iframe", iframe_page(restricted.base, cid))
        sites.page("/allowed-tag", tag_page(restricted.base, [cid]))
        for host, shown in ((PUBLISHERS[0], True), (PUBLISHERS[1], False)):
            page.goto(sites.url(host, "/allowed-tag"))
            if shown:
                page.locator("ins.bannerservice img[data-banner-id]").wait_for()
            else:
                page.wait_for_function("() => getComputedStyle(document.querySelector('ins.bannerservice')).display === 'none'")
            page.goto(sites.url(host, "/allowed-iframe"))
            page.wait_for_load_state("load")
            frame = page.frames[1] if len(page.frames) > 1 else None
            banner = frame.query_selector("img[data-banner-id]") if frame else None
            assert (banner is not None) == shown, host
        assert errors == []


def _wait(page, check, what, seconds=10):
    """Poll `check` while Playwright runs: its sync API delivers page events (requests seen) only inside its own calls."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")
