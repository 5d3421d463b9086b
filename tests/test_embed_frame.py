"""The iframe document /embed/<id>: fits its frame, clicks leave it, framing follows EMBED_ALLOWED_SITES."""

import base64
import hashlib
import re

import pytest

from conftest import write_source
from test_embed_api import VID, events, make_app
from test_visitors import BANNERS, assert_rotation, banner_of, keys_under


@pytest.fixture
def api(settings_overrides, tmp_path):
    return make_app(settings_overrides, tmp_path)


@pytest.fixture
def restricted(settings_overrides, tmp_path):
    return make_app(settings_overrides, tmp_path, embed_allowed_sites="https://allowed.example")


def document_policy(html):
    """The Content-Security-Policy the frame document carries in its <meta>."""
    return re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html).group(1).replace("&#39;", "'")


def test_embed_frame_is_the_banner_alone_scaled_to_the_frame(api, redis_server, redis_prefix):
    client = api.test_client()
    response = client.get("/embed/1")
    assert response.status_code == 200 and response.content_type.startswith("text/html")
    html = response.get_data(as_text=True)
    banner = banner_of(response)
    img = re.search(r"<img[^>]*>", html).group(0)
    assert f'alt="Banner {banner} of campaign 1' in img
    width, height = (30, 25) if banner == 11 else (300, 250)  # the image's own size; 300x250 without one
    assert f'width="{width}"' in img and f'height="{height}"' in img
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert "margin:0" in style and "overflow:hidden" in style and "object-fit:contain" in style
    link = re.search(r"<a [^>]*>", html).group(0)
    assert 'target="_top"' in link and 'href="/click/' in link
    # The frame's one inline style is allowed by its hash, nothing else is: a policy the document carries
    # ahead of that style (no header to send per view), with no frame-ancestors (a <meta> cannot hold it).
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = document_policy(html)
    assert f"'sha256-{digest}'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert html.index("Content-Security-Policy") < html.index("<style>") and "frame-ancestors" not in policy
    (event,) = events(redis_server, redis_prefix, "impression")  # recorded as it is served
    assert (event["c"], event["b"]) == ("1", str(banner))


def test_embed_frame_target_blank_opens_a_new_tab_without_opener(api):
    html = api.test_client().get("/embed/1?target=blank").get_data(as_text=True)
    link = re.search(r"<a [^>]*>", html).group(0)
    assert 'target="_blank"' in link and "noopener" in link
    assert 'target="_top"' in api.test_client().get("/embed/1?target=nonsense").get_data(as_text=True)


def test_embed_frame_any_site_may_frame_it_when_no_list_is_set(api):
    response = api.test_client().get("/embed/1", headers={"Referer": "https://news.example/a.html",
                                                          "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "iframe"})
    assert response.status_code == 200
    assert "X-Frame-Options" not in response.headers and "Content-Security-Policy" not in response.headers
    assert "default-src 'none'" in document_policy(response.get_data(as_text=True))


def test_embed_frame_twelve_views_with_the_cookie_keep_the_rotation(api, redis_server, redis_prefix):
    client = api.test_client()
    first = client.get("/embed/1", base_url="https://ads.example")
    assert "Partitioned" in first.headers["Set-Cookie"] and "SameSite=None" in first.headers["Set-Cookie"]
    shown = [banner_of(first)] + [banner_of(client.get("/embed/1", base_url="https://ads.example")) for _ in range(14)]
    assert_rotation(shown)
    assert len(events(redis_server, redis_prefix, "impression")) == 15


def test_embed_frame_lists_the_allowed_sites_in_frame_ancestors(restricted):
    response = restricted.test_client().get("/embed/1", headers={"Referer": "https://allowed.example/page"})
    assert response.status_code == 200 and banner_of(response) in BANNERS
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self' https://allowed.example"
    assert "X-Frame-Options" not in response.headers
    assert "default-src 'none'" in document_policy(response.get_data(as_text=True))  # the document's own, as ever


@pytest.mark.parametrize("headers", [
    {"Referer": "https://evil.example/page", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "iframe"},  # no Referer to check
])
def test_embed_frame_site_not_allowed_gets_no_banner_and_no_event(restricted, redis_server, redis_prefix, headers):
    client = restricted.test_client()
    before = keys_under(redis_server, redis_prefix)
    response = client.get(f"/embed/1?vid={VID}", headers=headers)
    assert response.status_code == 403 and b"<img" not in response.data
    assert "frame-ancestors 'self' https://allowed.example" in response.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in response.headers
    assert keys_under(redis_server, redis_prefix) == before and events(redis_server, redis_prefix) == []


def test_embed_frame_unknown_campaign_is_404(api):
    assert api.test_client().get("/embed/999").status_code == 404
    assert api.test_client().get("/embed/abc").status_code == 404


def test_embed_frame_unknown_campaign_404_speaks_of_the_slot_not_a_quarter(api):
    response = api.test_client().get("/embed/999999")
    assert response.status_code == 404
    assert "There is no campaign 999999." in response.text and "quarter" not in response.text.lower()


def test_embed_frame_campaign_without_banners_in_this_slot_404_names_the_slot(settings_overrides, tmp_path):
    from jobs.ingest import run_ingest
    from test_embed_api import NOW
    from webapp import create_app

    app = create_app(settings_overrides)
    app.config["TESTING"] = True
    # Campaign 1 has banners in the slot :15–:29 only; NOW falls in :00–:14.
    source = write_source(tmp_path / "src", {1: {}, 2: {"impressions": "".join(f"{b},1\n" for b in BANNERS)}, 3: {}, 4: {}})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.config["CLOCK"] = lambda: NOW
    response = app.test_client().get("/embed/1")
    assert response.status_code == 404
    assert "Campaign 1 has no banners in this slot of the hour (:00–:14 UTC)." in response.text
    assert "quarter" not in response.text.lower()


def test_embed_frame_head_request_moves_no_rotation_and_counts_nothing(api, redis_server, redis_prefix):
    client = api.test_client(use_cookies=False)
    before = keys_under(redis_server, redis_prefix)
    for _ in range(3):
        response = client.head(f"/embed/1?vid={VID}")
        assert response.status_code == 200 and "X-Frame-Options" not in response.headers
        assert client.head(f"/api/decision?c=1&vid={VID}").status_code == 200
    assert keys_under(redis_server, redis_prefix) == before and events(redis_server, redis_prefix) == []
    assert client.head("/embed/999").status_code == 404
