"""Whose X-Forwarded-For the app believes: TRUSTED_PROXY_COUNT proxies, or by default one on this machine."""

import logging
from pathlib import Path

import pytest
from flask import request

from webapp import create_app

CLIENT = "203.0.113.5"


@pytest.fixture
def seen(settings_overrides):
    """seen(overrides, peer, forwarded_for) -> the client address the app sees, and the log file."""

    def seen(overrides, peer, forwarded_for=CLIENT):
        app = create_app({**settings_overrides, **overrides})
        app.add_url_rule("/whoami", "whoami", lambda: request.remote_addr or "-")
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        response = app.test_client().get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": peer})
        return response.get_data(as_text=True)

    return seen


def _warnings(settings_overrides):
    path = Path(settings_overrides["log_file"])
    return [line for line in path.read_text().splitlines() if "a proxy this app does not trust" in line] if path.exists() else []


# "": the web process on a unix socket, as the README runs it; "::ffff:127.0.0.1": a local nginx to BIND=[::]:PORT
@pytest.mark.parametrize("peer", ["", "127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_proxies_by_default_one_proxy_on_this_machine_is_trusted(seen, peer):
    assert seen({}, peer) == CLIENT
    # One proxy: only the entry it appended counts, not what the client wrote before it.
    assert seen({}, peer, f"10.9.9.9, {CLIENT}") == CLIENT


def test_proxies_by_default_a_remote_peer_cannot_pick_its_address_and_is_named_in_the_log(seen, settings_overrides):
    assert seen({}, "198.51.100.7") == "198.51.100.7"
    warnings = _warnings(settings_overrides)
    assert len(warnings) == 1 and "198.51.100.7" in warnings[0] and "TRUSTED_PROXY_COUNT" in warnings[0]


def test_proxies_zero_trusts_none_and_says_so_once(settings_overrides):
    app = create_app({**settings_overrides, "trusted_proxy_count": 0})
    app.add_url_rule("/whoami", "whoami", lambda: request.remote_addr or "-")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/whoami", headers={"X-Forwarded-For": CLIENT}).get_data(as_text=True) == "127.0.0.1"
    assert len(_warnings(settings_overrides)) == 1


def test_proxies_two_trusted_take_the_entry_the_outer_proxy_appended(seen):
    assert seen({"trusted_proxy_count": 2}, "10.0.0.2", f"10.9.9.9, {CLIENT}, 10.0.0.1") == CLIENT
