"""CPU per WSGI call, in-process (no nginx, no HTTP): our /ping, our page for a returning visitor, the no-state
baseline's page. Needs the database a load test left (scripts/loadtest.sh) and a Redis at REDIS_URL.

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
        runs = []
        for _ in range(REPEATS):
            started = time.process_time()
            for _ in range(CALLS):
                call(wsgi, env)
            runs.append((time.process_time() - started) / CALLS * 1e6)
        print(f"{name}: {statistics.median(runs):.0f} µs of CPU per call (median of {REPEATS} x {CALLS})")
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
