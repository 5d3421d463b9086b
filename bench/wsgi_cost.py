"""CPU per WSGI call, in-process (no nginx, no HTTP): our /ping, our page for a returning visitor, the no-state
baseline's page; then the floor under the page's Redis call, in alternating batches: a bare PING on the step's own
connection (redis-py), the step's script call (no event) on that connection and through the pool, and a PING on a raw
socket. Needs the database a load test left (scripts/loadtest.sh) and a Redis at REDIS_URL.

Usage: .venv/bin/python bench/wsgi_cost.py [--profile NAME]     NAME: ping, page or baseline (cProfile, by own time)
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".run" / "loadtest"
sys.path.insert(0, str(ROOT))
os.environ.update(DATABASE_URL=f"sqlite:///{WORK}/instance/bannerservice.db", INSTANCE_DIR=str(WORK / "instance"),
                  SECRET_KEY="wsgi-cost", REDIS_PREFIX="wsgicost:", LOG_FILE="")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
CALLS, REPEATS = 2000, 5


def environ(path, cookie=None) -> dict:
    from werkzeug.test import EnvironBuilder

    return EnvironBuilder(path=path, headers={"Cookie": cookie} if cookie else {}).get_environ()


def call(wsgi, env) -> str:
    """One request through `wsgi`, its body read; returns the status line."""
    status = []
    body = wsgi(dict(env, **{"wsgi.input": io.BytesIO()}), lambda s, headers, exc_info=None: status.append(s))
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return status[0]


def cpu_per_call(fn) -> float:
    """The median CPU (µs, this process: user + system) of one call of `fn`, over REPEATS batches of CALLS."""
    return alternating({"": fn})[""]


def alternating(fns: dict) -> dict:
    """Each named function's median CPU per call (µs), their batches of CALLS taking turns REPEATS times, so that a
    drift of the machine's speed falls on all of them alike."""
    runs = {name: [] for name in fns}
    for _ in range(REPEATS):
        for name, fn in fns.items():
            started = time.process_time()
            for _ in range(CALLS):
                fn()
            runs[name].append((time.process_time() - started) / CALLS * 1e6)
    return {name: statistics.median(costs) for name, costs in runs.items()}


def redis_floor(app, campaign) -> dict:
    """What the page's one Redis round trip costs this process before any of the view's own work; the step's script
    call on its own connection against one checked out of the pool per call (as before 2026-12-05)."""
    import random
    import socket
    from urllib.parse import urlsplit

    from webapp import visitors

    store, plans = app.extensions["visitors"], app.extensions["plans"].snapshot().plans
    banner_ids = [b for b, _ in plans[next(key for key in plans if key[1] == campaign)]]
    visitor = visitors.Visitor("wsgi-cost-floor-0123456789", "", minted=False, from_cookie=True, kept=True,
                               secure=False)
    with app.app_context():  # the call the page makes, built as the page builds it (one random draw for all calls)
        keys, args = visitors.step_call(visitor, [(campaign, banner_ids)], random.Random(1), [])
    own = store.step_client()
    url = urlsplit(os.environ["REDIS_URL"])
    raw = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reply = bytearray(64)

    def raw_ping():
        raw.sendall(b"*1\r\n$4\r\nPING\r\n")
        raw.recv_into(reply)

    with raw:
        return alternating({
            "PING on the step's own connection (redis-py)": own.ping,
            "the step's script call on its own connection": lambda: store.step(keys=keys, args=args, client=own),
            "the step's script call through the pool (a checkout per call)":
                lambda: store.step(keys=keys, args=args, client=store.client),
            "PING on a raw socket (the syscalls' floor)": raw_ping})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("ping", "page", "baseline"))
    args = parser.parse_args()
    if not (WORK / "instance" / "bannerservice.db").exists():
        sys.exit(f"no load-test database in {WORK}: run scripts/loadtest.sh first")
    import baseline_app
    from webapp import create_app

    app = create_app()
    app.extensions["plans"].preload()
    campaign = baseline_app.PAGES and min(c for _, c in baseline_app.PAGES)
    cases = {"ping": (app, environ("/ping")),
             "page": (app, environ(f"/campaigns/{campaign}", "bs_vid=wsgi-cost-visitor-0123456789")),
             "baseline": (baseline_app.application, environ(f"/campaigns/{campaign}"))}
    for name, (wsgi, env) in cases.items():
        assert call(wsgi, env).startswith("200"), name
        print(f"{name}: {cpu_per_call(lambda: call(wsgi, env)):.0f} µs of CPU per call (median of {REPEATS} x {CALLS})")
    for name, cost in redis_floor(app, campaign).items():
        print(f"{name}: {cost:.0f} µs of CPU per call (median of {REPEATS} x {CALLS}, alternating)")
    redis = app.extensions["visitor_redis"]
    stale = list(redis.scan_iter(os.environ["REDIS_PREFIX"] + "*"))
    if stale:
        redis.delete(*stale)  # the visitor's state and the events of the page's calls
    if args.profile:
        import cProfile
        import pstats

        wsgi, env = cases[args.profile]
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(CALLS):
            call(wsgi, env)
        profile.disable()
        pstats.Stats(profile).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "20")))


if __name__ == "__main__":
    main()
