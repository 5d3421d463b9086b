"""A visitor's rotation state in Redis stays small whatever they visit: the 64 most recent campaigns only."""

import re

import pytest

from conftest import serve_rows
from rotation import MAX_ROTATIONS

BANNER = re.compile(r'<img[^>]*data-banner-id="(\d+)"')
CAMPAIGNS = 150


def banner_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    return int(BANNER.search(response.get_data(as_text=True)).group(1))


@pytest.fixture
def many_campaigns(app, tmp_path):
    """CAMPAIGNS campaigns in quarter 1, each with five banners of its own, ids past 16 bits."""
    rows = "".join(f"{100_000 + c * 10 + b},{c}\n" for c in range(1, CAMPAIGNS + 1) for b in range(5))
    return serve_rows(app, tmp_path / "src", rows)


def state_of(client, app):
    """(Redis client, key) of the visitor's rotations: a hash of a field per campaign and the tick ("#")."""
    import redis

    from visitor_state import state_key

    store = redis.Redis.from_url(app.extensions["settings"].redis_url)
    vid = client.get_cookie("bs_vid").value
    return store, app.extensions["settings"].redis_prefix + state_key(app.secret_key, "", vid)


def session_bytes(client, app) -> int:
    """What the visitor's rotations take in Redis (MEMORY USAGE: key and overhead included)."""
    store, key = state_of(client, app)
    return store.memory_usage(key, samples=0) or 0


def held_campaigns(client, app) -> list:
    store, key = state_of(client, app)
    return sorted(int(field) for field in store.hkeys(key) if field != b"#")


def test_session_keeps_the_most_recent_campaigns_and_stays_under_2_kb(many_campaigns):
    client = many_campaigns.test_client()
    largest = 0
    for campaign in range(1, CAMPAIGNS + 1):
        banner_of(client.get(f"/campaigns/{campaign}"))
        largest = max(largest, session_bytes(client, many_campaigns))
    assert largest <= 2048  # six-digit banner ids
    assert held_campaigns(client, many_campaigns) == list(range(CAMPAIGNS - MAX_ROTATIONS + 1, CAMPAIGNS + 1))


def test_session_rotation_of_a_held_campaign_goes_on_after_visits_elsewhere(many_campaigns):
    client = many_campaigns.test_client()
    first = [banner_of(client.get("/campaigns/5")) for _ in range(3)]
    for campaign in range(10, 10 + MAX_ROTATIONS - 1):  # 63 others: campaign 5 is still held
        client.get(f"/campaigns/{campaign}")
    rest = [banner_of(client.get("/campaigns/5")) for _ in range(2)]
    assert sorted(first + rest) == [100_050 + b for b in range(5)]
    for campaign in range(80, 80 + MAX_ROTATIONS):  # 64 others since: campaign 5 is dropped
        client.get(f"/campaigns/{campaign}")
    assert 5 not in held_campaigns(client, many_campaigns)
    assert banner_of(client.get("/campaigns/5")) in range(100_050, 100_055)
