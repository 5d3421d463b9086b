"""What a cookie-less banner view and a click cost in Redis memory, measured on a private redis-server.

Writes its figures to the "## Redis memory per view" section of docs/deployment.md.
Usage: .venv/bin/python scripts/measure_redis_bytes.py [--views N] [--no-write]
"""

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
START, END = "<!-- redis-bytes:start -->", "<!-- redis-bytes:end -->"
CLICK_HREF = re.compile(r'href="(/click/[^"]+)"')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/deployment.md alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="redis-bytes-"))
    server = None
    try:
        port, server = _start_redis(work)
        result = measure(work, f"redis://127.0.0.1:{port}/0", args.views)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = render(result, args.views)
    print(text)
    if not args.no_write:
        path = ROOT / "docs" / "deployment.md"
        doc = path.read_text()
        before, _, rest = doc.partition(START)
        _, _, after = rest.partition(END)
        path.write_text(f"{before}{START}\n{text}\n{END}{after}")


def _start_redis(work):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return port, server
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def measure(work, redis_url, views):
    import redis

    from jobs.demo import write_demo_source
    from jobs.ingest import run_ingest
    from webapp import create_app

    app = create_app({
        "database_url": f"sqlite:///{work / 'db.sqlite'}", "redis_url": redis_url, "redis_prefix": "bs:",
        "image_dir": str(work / "images"), "log_file": str(work / "log"), "secret_key": "measure",
        "queue_name": "measure", "plan_refresh_seconds": 60.0,
    })
    write_demo_source(work / "demo")
    with app.app_context():
        run_ingest(str(work / "demo"), trigger="cli")
    app.extensions["plans"].invalidate()
    client = redis.Redis.from_url(redis_url)
    web = app.test_client()
    campaign = _a_campaign(web)

    def used():
        return client.info("memory")["used_memory"]

    def by_kind():
        sizes = {}
        for key in client.scan_iter("bs:*", count=1000):
            kind = key.decode().split(":")[1]
            sizes[kind] = sizes.get(kind, 0) + (client.memory_usage(key, samples=0) or 0)
        return sizes

    base, base_kinds = used(), by_kind()
    hrefs = []
    for _ in range(views):
        web = app.test_client()  # a new visitor each time: no cookie
        page = web.get(f"/campaigns/{campaign}").get_data(as_text=True)
        hrefs.append(CLICK_HREF.search(page).group(1))
    after_views, view_kinds = used(), by_kind()
    clicks = views // 10
    for href in hrefs[:clicks]:
        app.test_client().get(href)
    after_clicks, click_kinds = used(), by_kind()
    return {
        "view": (after_views - base) / views,
        "view_kinds": {k: (view_kinds.get(k, 0) - base_kinds.get(k, 0)) / views for k in view_kinds},
        "click": (after_clicks - after_views) / clicks,
        "click_kinds": {k: (click_kinds.get(k, 0) - view_kinds.get(k, 0)) / clicks for k in click_kinds},
        "redis": client.info("server")["redis_version"],
    }


def _a_campaign(web):
    page = web.get("/").get_data(as_text=True)
    return int(re.search(r"/campaigns/(\d+)", page).group(1))


def render(result, views):
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    view_parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(result["view_kinds"].items()) if v >= 1)
    click_parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(result["click_kinds"].items()) if v >= 1)
    return (
        f"Measured {stamp} on Redis {result['redis']}, {views} cookie-less views and {views // 10} clicks, "
        f"with `python scripts/measure_redis_bytes.py --views {views}`:\n\n"
        f"| what | bytes each (used_memory) | by key kind (MEMORY USAGE) | lives |\n|---|---|---|---|\n"
        f"| cookie-less banner view | {result['view']:.0f} | {view_parts} | stream entry: until exported (no visitor key: see embedding.md) |\n"
        f"| click | {result['click']:.0f} | {click_parts} | click: 30 days; clicked: CLICK_TOKEN_MAX_AGE |"
    )


if __name__ == "__main__":
    main()
