"""The JSON decision and its render beacons, over the Flask test client with a real Redis."""

import time
from datetime import datetime, timezone

import pytest

from conftest import write_source
from test_visitors import BANNERS, assert_rotation, keys_under

VID = "tag-made-visitor-id-00000001"
NOW = datetime(2026, 1, 1, 12, 3, 30, tzinfo=timezone.utc)


def make_app(settings_overrides, tmp_path, **extra):
    from jobs.ingest import run_ingest
    from webapp import create_app

    app = create_app({**settings_overrides, **extra})
    app.config["TESTING"] = True
    rows = "".join(f"{b},1\n" for b in BANNERS) + "".join(f"{b},2\n" for b in (41, 42, 43))
    source = write_source(tmp_path / f"src{len(extra)}", {q: {"impressions": rows} for q in (1, 2, 3, 4)},
                          images={"image_11.png": _png()})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    app.config["CLOCK"] = lambda: NOW
    return app


def _png():
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (30, 25), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def api(settings_overrides, tmp_path):
    return make_app(settings_overrides, tmp_path)


@pytest.fixture
def restricted(settings_overrides, tmp_path):
    return make_app(settings_overrides, tmp_path, embed_allowed_sites="https://allowed.example, https://other.example/")


def events(redis_server, prefix, kind=None):
    from live.events import decode

    found = [decode(fields) for _, fields in redis_server.xrange(prefix + "events")]
    return [e for e in found if kind is None or e["type"] == kind]


def decide(client, query, **headers):
    response = client.get(f"/api/decision?{query}", headers=headers)
    return response, response.get_json()


def test_embed_api_decision_has_the_documented_shape_and_records_nothing(api, redis_server, redis_prefix):
    client = api.test_client(use_cookies=False)
    response, body = decide(client, f"c=1&vid={VID}")
    assert response.status_code == 200 and response.content_type == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Origin" in response.headers["Vary"] and response.headers["Cache-Control"] == "no-store"
    assert body["vid"] == VID
    (slot,) = body["slots"]
    assert slot["campaign_id"] == 1 and slot["banner_id"] in BANNERS
    assert (slot["width"], slot["height"]) == ((30, 25) if slot["banner_id"] == 11 else (300, 250))
    assert slot["alt"].startswith(f"Banner {slot['banner_id']} of campaign 1")
    for name in ("image_url", "click_url", "impression_url", "viewable_url"):
        assert slot[name].startswith("http://localhost/"), slot
    assert "/click/" in slot["click_url"] and "/api/impressions/" in slot["impression_url"]
    assert "/api/viewable/" in slot["viewable_url"] and len(slot["impression_id"]) >= 16
    assert client.get(slot["image_url"].removeprefix("http://localhost")).status_code == 200
    assert events(redis_server, redis_prefix) == []  # the one who renders posts impression_url


def test_embed_api_size_is_the_images_own_or_300_by_250_without_one(api):
    client = api.test_client(use_cookies=False)
    sizes = {}
    for _ in range(5):  # one cycle: every banner once
        slot = decide(client, f"c=1&vid={VID}")[1]["slots"][0]
        sizes[slot["banner_id"]] = (slot["width"], slot["height"])
    assert sizes == {11: (30, 25), **{b: (300, 250) for b in BANNERS if b != 11}}


def test_embed_api_twelve_decisions_with_a_vid_keep_the_rotation(api):
    client = api.test_client(use_cookies=False)
    shown = [decide(client, f"c=1&vid={VID}")[1]["slots"][0]["banner_id"] for _ in range(15)]
    assert_rotation(shown)


def test_embed_api_without_a_vid_gives_one_that_keeps_no_key_until_it_returns(api, redis_server, redis_prefix):
    client = api.test_client(use_cookies=False)
    _, first = decide(client, "c=1")
    vid = first["vid"]
    assert len(vid) >= 22 and not [k for k in keys_under(redis_server, redis_prefix) if ":visitor:" in k]
    shown = [first["slots"][0]["banner_id"]] + [decide(client, f"c=1&vid={vid}")[1]["slots"][0]["banner_id"]
                                                for _ in range(14)]
    assert_rotation(shown)


def test_embed_api_batches_several_campaigns_in_one_call(api):
    client = api.test_client(use_cookies=False)
    response, body = decide(client, f"c=1&c=2&c=999&c=abc&campaign=1&vid={VID}")
    assert response.status_code == 200
    slots = body["slots"]
    assert [s["campaign_id"] for s in slots] == [1, 2, 999, "abc", 1]
    assert slots[2]["error"] == slots[3]["error"] == "no banner"
    assert slots[1]["banner_id"] in (41, 42, 43)
    assert slots[0]["banner_id"] != slots[4]["banner_id"]  # two slots of one campaign on a page: two banners
    assert len({s.get("impression_id") for s in slots if "banner_id" in s}) == 3
    # Batched views keep each campaign's rotation: the next five of campaign 1 finish the cycle the two began.
    more = [decide(client, f"c=1&vid={VID}")[1]["slots"][0]["banner_id"] for _ in range(3)]
    assert sorted([slots[0]["banner_id"], slots[4]["banner_id"]] + more) == BANNERS


def test_embed_api_limits_a_decision_to_twenty_campaigns_and_needs_one(api):
    client = api.test_client(use_cookies=False)
    assert decide(client, "&".join(["c=1"] * 21))[0].status_code == 400
    assert decide(client, "vid=" + VID)[0].status_code == 400


def test_embed_api_same_vid_on_two_sites_keeps_two_rotations(api):
    client = api.test_client(use_cookies=False)
    shown = {"https://a.example": [], "https://b.example": []}
    for _ in range(10):
        for site in shown:
            shown[site].append(decide(client, f"c=1&vid={VID}", Origin=site)[1]["slots"][0]["banner_id"])
    for sequence in shown.values():
        assert_rotation(sequence)


def test_embed_api_allowed_origin_is_echoed_in_cors(restricted):
    client = restricted.test_client(use_cookies=False)
    response, body = decide(client, f"c=1&vid={VID}", Origin="https://allowed.example")
    assert response.status_code == 200 and body["slots"][0]["banner_id"] in BANNERS
    assert response.headers["Access-Control-Allow-Origin"] == "https://allowed.example"
    response, _ = decide(client, f"c=1&vid={VID}", Origin="https://other.example")
    assert response.headers["Access-Control-Allow-Origin"] == "https://other.example"


def test_embed_api_origin_not_allowed_gets_403_and_leaves_no_state_nor_event(restricted, redis_server, redis_prefix):
    client = restricted.test_client(use_cookies=False)
    _, allowed = decide(client, f"c=1&vid={VID}", Origin="https://allowed.example")
    before = keys_under(redis_server, redis_prefix)
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page.html"}):
        response, body = decide(client, f"c=1&vid=another-visitor-id-000000001", **headers)
        assert response.status_code == 403 and "not allowed" in body["error"]
        assert "Access-Control-Allow-Origin" not in response.headers
    token_url = allowed["slots"][0]["impression_url"].removeprefix("http://localhost")
    assert client.post(token_url, headers={"Origin": "https://evil.example"}).status_code == 403
    assert keys_under(redis_server, redis_prefix) == before
    assert events(redis_server, redis_prefix) == []


def test_embed_api_server_side_call_without_origin_is_allowed_with_a_list(restricted):
    client = restricted.test_client(use_cookies=False)
    response, body = decide(client, f"c=1&vid={VID}")
    assert response.status_code == 200 and body["slots"][0]["banner_id"] in BANNERS
    assert "Access-Control-Allow-Origin" not in response.headers


def test_embed_api_beacons_are_counted_once_per_impression(api, redis_server, redis_prefix):
    client = api.test_client(use_cookies=False)
    _, body = decide(client, f"c=1&c=2&vid={VID}", Origin="https://a.example")
    first, second = body["slots"]
    for url in (first["impression_url"], first["impression_url"], second["impression_url"]):
        response = client.post(url.removeprefix("http://localhost"), data="ignored", headers={"Origin": "https://a.example"})
        assert response.status_code == 204 and response.headers["Access-Control-Allow-Origin"] == "*"
    for _ in range(3):
        assert client.post(first["viewable_url"].removeprefix("http://localhost")).status_code == 204
    impressions = events(redis_server, redis_prefix, "impression")
    viewables = events(redis_server, redis_prefix, "viewable")
    assert sorted(e["imp"] for e in impressions) == sorted([first["impression_id"], second["impression_id"]])
    (seen,) = viewables
    assert (seen["imp"], seen["c"], seen["b"], seen["q"]) == (first["impression_id"], "1", str(first["banner_id"]), "1")
    assert seen["v"] == impressions[0]["v"] and seen["v"] and VID not in seen["v"]


def test_embed_api_forged_or_expired_beacons_are_refused_and_record_nothing(api, redis_server, redis_prefix):
    from live.beacons import BEACON_MAX_AGE, beacon_token

    client = api.test_client(use_cookies=False)
    _, body = decide(client, f"c=1&vid={VID}")
    token = body["slots"][0]["impression_url"].rsplit("/", 1)[1]
    payload, _, mac = token.rpartition(".")
    tampered = payload.replace(f".{body['slots'][0]['banner_id']}.", ".99.", 1) + "." + mac
    for bad in (tampered, "1.11.1.abc.1.v.1700000000.deadbeef", "nonsense", token[:-1] + ("0" if token[-1] != "0" else "1")):
        response = client.post(f"/api/impressions/{bad}")
        assert response.status_code == 400 and response.get_json()["error"]
    old = beacon_token("test-secret", 1, 11, 1, "abcd", 1, "v", time.time() - BEACON_MAX_AGE - 5)
    response = client.post(f"/api/viewable/{old}")
    assert response.status_code == 410 and response.get_json()["error"]
    click_token = body["slots"][0]["click_url"].rsplit("/", 1)[1]
    assert client.post(f"/api/impressions/{click_token}").status_code == 400  # a click token is no beacon
    assert events(redis_server, redis_prefix) == []


def test_embed_api_while_redis_is_away_decides_frames_and_takes_beacons(settings_overrides, private_redis, tmp_path):
    """Redis stopped: the decision and the iframe still give a banner of the set (no state, no event), beacons 204."""
    app = make_app({**settings_overrides, "redis_url": private_redis.url}, tmp_path)
    client = app.test_client(use_cookies=False)
    _, before = decide(client, f"c=1&vid={VID}")
    private_redis.stop()
    for _ in range(3):
        response, body = decide(client, f"c=1&c=2&vid={VID}")
        assert response.status_code == 200 and body["slots"][0]["banner_id"] in BANNERS
        frame = client.get("/embed/1")
        assert frame.status_code == 200 and b"data-banner-id" in frame.data and "Set-Cookie" not in frame.headers
        assert client.post(before["slots"][0]["impression_url"]).status_code == 204
        assert client.post(before["slots"][0]["viewable_url"]).status_code == 204
    assert app.extensions["degraded"].as_dict()["views"] >= 6


def test_embed_api_vid_minted_on_one_site_starts_a_whole_cycle_on_another(api):
    # A vid the server minted for site A, sent from site B (a publisher's server passing it on): B never saw
    # A's unstored first view, so B's rotation must start a whole cycle of its own, not go on from a view it never had.
    client = api.test_client(use_cookies=False)
    vid = decide(client, "c=1", Origin="https://a.example")[1]["vid"]
    shown = [decide(client, f"c=1&vid={vid}", Origin="https://b.example")[1]["slots"][0]["banner_id"]
             for _ in range(2 * len(BANNERS))]
    assert_rotation(shown)
