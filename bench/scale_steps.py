"""The measurements of scripts/bench_scale.py, one function per step, each returning plain figures."""

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def postgres_answers(url) -> bool:
    try:
        import psycopg2

        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except Exception:
        return False


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_source(folder, campaigns, banners, rows, images) -> dict:
    """Generate a source once (a marker file keeps its figures); return them."""
    marker = folder / "_generated.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from jobs.demo import write_demo_source

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    summary = write_demo_source(folder, campaigns=campaigns, banners=banners, rows=rows, images=images)
    figures = {"seconds": round(time.perf_counter() - started, 1), "summary": summary, "campaigns": campaigns,
               "banners": banners, "rows": count_rows(folder),
               "bytes": sum(p.stat().st_size for p in folder.rglob("*.csv"))}
    marker.write_text(json.dumps(figures))
    return figures


def count_rows(folder) -> int:
    rows = 0
    for path in folder.glob("*/*.csv"):
        with open(path, "rb") as f:
            rows += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
    return rows


class PostgresDatabase:
    """A database of its own on the server of `url`, dropped on exit."""

    def __init__(self, url):
        self.admin_url, self.name = url, f"bench_scale_{uuid.uuid4().hex[:8]}"
        self.url = urlunsplit(urlsplit(url)._replace(path=f"/{self.name}"))

    def __enter__(self):
        self._run(f'CREATE DATABASE "{self.name}"')
        return self.url

    def __exit__(self, *exc):
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _run(self, sql):
        import psycopg2

        connection = psycopg2.connect(self.admin_url)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
        connection.close()


# --- ingest -----------------------------------------------------------------------------------

def ingest_once(source, database_url, postgres_bulk="") -> dict:
    """One full load in this process (a fresh one per run, so its peak memory is the load's).

    `postgres_bulk` ("copy" or "values") picks jobs.store's PostgreSQL path, to compare them.
    """
    import logging

    if postgres_bulk:
        from jobs import store

        store.POSTGRES_BULK = postgres_bulk

    from config import load_settings
    from jobs import runtime
    from jobs.ingest import run_ingest
    from models import IngestFile, IngestRun

    logging.getLogger("bannerservice").disabled = True
    from jobs import ingest as ingest_module

    # Time the images apart from the rows: the sources' banners grow faster than their rows (1x: 400, 10x: 10,000).
    images_seconds = []
    load_images = ingest_module.ingest_images

    def timed_images(*args, **kwargs):
        started = time.perf_counter()
        try:
            return load_images(*args, **kwargs)
        finally:
            images_seconds.append(time.perf_counter() - started)

    ingest_module.ingest_images = timed_images
    prefix = f"benchscale:{uuid.uuid4().hex[:8]}:"
    images = Path(f"/tmp/bench-scale-images-{uuid.uuid4().hex[:8]}")
    settings = load_settings(database_url=database_url, image_dir=str(images), log_file="",
                             redis_prefix=prefix, redis_url=REDIS_URL)
    ctx = runtime.context(settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    run_id = run_ingest(str(source), trigger="cli")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run = IngestRun.get_by_id(run_id)
    rows = sum(f.rows_read for f in IngestFile.select().where(IngestFile.run == run_id, IngestFile.quarter.is_null(False)))
    keys = list(ctx.redis.scan_iter(f"{prefix}*"))
    if keys:
        ctx.redis.delete(*keys)
    shutil.rmtree(images, ignore_errors=True)
    return {"seconds": round(seconds, 2), "images_seconds": round(sum(images_seconds), 2), "peak_mb": round(peak),
            "start_mb": round(before), "rows": rows, "status": run.status, "error": run.error, "database_mb": round(database_bytes(database_url) / 2**20)}


def database_bytes(database_url) -> int:
    from models import db

    if database_url.startswith("sqlite:///"):
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return Path(database_url[len("sqlite:///"):]).stat().st_size
    return db.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]


def ingest_in_subprocess(source, database_url, postgres_bulk="") -> dict:
    out = subprocess.run([PY, str(ROOT / "scripts" / "bench_scale.py"), "_ingest", str(source), database_url, postgres_bulk],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest_growth(work, sizes, postgres) -> dict:
    figures = {"sqlite": {}, "postgresql": {}, "postgresql (execute_values)": {}}
    for size in sizes:
        source = work / "sources" / size
        database = work / "db" / f"ingest-{size}.db"
        database.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        figures["sqlite"][size] = ingest_in_subprocess(source, f"sqlite:///{database}")
        print("  sqlite", size, figures["sqlite"][size], flush=True)
        database.unlink(missing_ok=True)
        if postgres:
            # The previous path is compared at 1x and 10x; at 100x it would only add ten minutes.
            paths = (("postgresql", "copy"),) + ((("postgresql (execute_values)", "values"),) if size != "100x" else ())
            for engine, bulk in paths:
                with PostgresDatabase(postgres) as url:
                    figures[engine][size] = ingest_in_subprocess(source, url, bulk)
                print(" ", engine, size, figures[engine][size], flush=True)
    return figures


def postgres_write_path(postgres, rows=500_000) -> dict:
    """jobs.store.insert of `rows` click rows on PostgreSQL: COPY against execute_values, alternating, twice."""
    from jobs import store
    from models import Click, db, init_db

    if not postgres:
        return {}
    data = [(1, 10**6 + i, 100 + i % 1000, 1 + i % 500) for i in range(rows)]
    figures = {"rows": rows, "copy": [], "values": []}
    with PostgresDatabase(postgres) as url:
        init_db(url)
        for _ in range(2):
            for mode in ("values", "copy"):
                store.POSTGRES_BULK = mode
                with db.atomic():
                    Click.delete().execute()
                started, cpu = time.perf_counter(), time.process_time()
                with db.atomic():
                    store.insert(Click, ("quarter", "click_id", "banner_id", "campaign_id"), iter(data))
                figures[mode].append({"seconds": round(time.perf_counter() - started, 2),
                                      "cpu_seconds": round(time.process_time() - cpu, 2)})
        db.close()
    store.POSTGRES_BULK = "copy"
    return figures


# --- serving ----------------------------------------------------------------------------------

def loaded_database(work, name, source) -> tuple[str, dict]:
    """A SQLite database with `source` loaded, made once and kept for the steps that read it."""
    database = work / "db" / f"{name}.db"
    marker = work / "db" / f"{name}.json"
    if not marker.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        database.unlink(missing_ok=True)
        marker.write_text(json.dumps(ingest_in_subprocess(source, f"sqlite:///{database}")))
    return f"sqlite:///{database}", json.loads(marker.read_text())


def demo_source(work) -> Path:
    folder = work / "sources" / "demo"
    if not (folder / "4" / "conversions.csv").exists():
        from jobs.demo import write_demo_source

        write_demo_source(folder)
    return folder


def serving_growth(work) -> dict:
    """Per catalogue: plans, the time to load them, their memory, and a rendered page's size."""
    figures = {}
    for name, source in (("50", demo_source(work)), ("10000", work / "sources" / "catalogue")):
        url, ingest = loaded_database(work, f"serving-{name}", source)
        app = make_app(url)
        cache = app.extensions["plans"]
        with app.app_context():
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                cache._load()
                timings.append(time.perf_counter() - started)
            tracemalloc.start()
            snapshot = cache._load()
            held, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        client = app.test_client()
        campaign = min(snapshot.campaigns)
        page = client.get(f"/campaigns/{campaign}")
        assert page.status_code == 200, page.status_code
        from webapp.serving import PAGES_MAX

        figures[name] = {
            "plans": len(snapshot.plans), "campaigns": len(snapshot.campaigns),
            "load_ms": round(statistics.median(timings) * 1000, 1), "load_ms_all": [round(t * 1000) for t in timings],
            "plans_mb": round(held / 2**20, 2), "page_bytes": len(page.data),
            "pages_max_mb": round(len(page.data) * PAGES_MAX / 2**20, 1), "ingest": ingest,
        }
    return figures


def make_app(database_url, **overrides):
    from webapp import create_app

    prefix = f"benchscale:{uuid.uuid4().hex[:8]}:"
    app = create_app({"database_url": database_url, "redis_url": REDIS_URL, "redis_prefix": prefix,
                      "secret_key": "bench", "log_file": "", "plan_refresh_seconds": 3600.0,
                      "queue_name": f"{prefix}queue", **overrides})
    app.config["TESTING"] = True
    import logging

    logging.getLogger("bannerservice").disabled = True
    return app


# --- dashboard --------------------------------------------------------------------------------

_today = datetime.now(timezone.utc).date()
CUSTOM_RANGE = f"from={_today - timedelta(days=19)}&to={_today}"  # 20 days, all of them in the rollups
DASHBOARD_VIEWS = (
    ("overview", "/admin/"),
    ("stats, first page", "/admin/campaigns"),
    ("sorted by revenue, desc", "/admin/campaigns?sort=revenue&dir=desc"),
    ("sorted by CTR", "/admin/campaigns?sort=ctr"),
    ("slot 3 by EPC, page 300", "/admin/campaigns?slot=3&sort=epc&dir=desc&page=300"),
    ("one campaign", "/admin/campaigns?campaign=7777"),
    ("last page", "/admin/campaigns?page=2000"),
    ("htmx table, sorted by scenario", "/admin/campaigns?sort=scenario&dir=desc"),
    ("overview, last 30 days vs the 30 before", "/admin/?period=30d"),
    ("overview, last 7 days vs the 7 before", "/admin/?period=7d"),
    ("overview, today vs yesterday", "/admin/?period=today"),
    ("overview, a custom 20 days vs the 20 before", f"/admin/?period=custom&{CUSTOM_RANGE}"),
    ("one campaign, last 30 days vs the 30 before", "/admin/campaigns/7777?period=30d"),
    ("one campaign, last 7 days vs the 7 before", "/admin/campaigns/7777?period=7d"),
    ("one campaign, a custom 20 days vs the 20 before", f"/admin/campaigns/7777?period=custom&{CUSTOM_RANGE}"),
    ("overview, yesterday vs the day before", "/admin/?period=yesterday"),
    ("one campaign, last 24 hours vs the 24 before", "/admin/campaigns/7777"),
    ("one campaign, today vs yesterday", "/admin/campaigns/7777?period=today"),
    ("one campaign, yesterday vs the day before", "/admin/campaigns/7777?period=yesterday"),
    ("stats live, last 24 hours per campaign", "/admin/campaigns?period=24h"),
    ("stats live, today by revenue, desc", "/admin/campaigns?period=today&sort=revenue&dir=desc"),
    ("stats live, yesterday by CTR", "/admin/campaigns?period=yesterday&sort=ctr"),
    ("stats live, last 7 days by revenue change", "/admin/campaigns?period=7d&sort=revenue_change&dir=desc"),
    ("stats live, last 30 days by revenue, desc", "/admin/campaigns?period=30d&sort=revenue&dir=desc"),
    ("stats live, a custom 20 days, page 100", f"/admin/campaigns?period=custom&{CUSTOM_RANGE}&page=100"),
    ("stats live, ids starting with 7, last 7 days", "/admin/campaigns?period=7d&campaign=7"),
)
LIVE_DAYS = 30  # the rollups hold every campaign's every hour of the longest preset period


def dashboard_growth(work, postgres) -> dict:
    url, _ = loaded_database(work, "serving-10000", work / "sources" / "catalogue")
    figures = {"sqlite": dashboard_timings(url)}
    if postgres:
        with PostgresDatabase(postgres) as pg:
            ingest_in_subprocess(work / "sources" / "catalogue", pg)
            figures["postgresql"] = dashboard_timings(pg)
            figures["postgresql"]["ratio_sort"] = ratio_sort_timings(pg)
    return figures


def ratio_sort_timings(url, repeat=9) -> dict:
    """The CTR-sorted first page on PostgreSQL with the ratio as an exact NUMERIC (clicks * 1.0 / impressions,
    as the stats table sorted before) and as a double (as it sorts now), alternating; medians in ms."""
    import psycopg2

    query = ("SELECT * FROM campaignstat ORDER BY CASE WHEN impressions = 0 THEN NULL ELSE {} / impressions END "
             "ASC NULLS LAST, campaign_id, quarter LIMIT 50")
    forms = {"numeric": query.format("clicks * 1.0"), "double": query.format("CAST(clicks AS DOUBLE PRECISION)")}
    timings = {name: [] for name in forms}
    connection = psycopg2.connect(url)
    with connection.cursor() as cursor:
        for _ in range(repeat):
            for name, sql in forms.items():
                started = time.perf_counter()
                cursor.execute(sql)
                cursor.fetchall()
                timings[name].append(time.perf_counter() - started)
    connection.close()
    return {name: round(statistics.median(t) * 1000, 1) for name, t in timings.items()}


def dashboard_timings(url, repeat=7) -> dict:
    from models import CampaignStat
    from webapp.auth import create_user

    # Filling 7.2 million LiveHour rows takes longer than a request may wait for the database.
    with make_app(url, database_query_timeout=600.0).app_context():
        live = fill_live_hours(LIVE_DAYS * 24)
    app = make_app(url)
    with app.app_context():
        rows = CampaignStat.select().count()
        from models import user_by_name

        if user_by_name("bench") is None:
            create_user("bench", "bench-password-1234", "manager")
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    assert client.post("/login", data={"username": "bench", "password": "bench-password-1234",
                                       "csrf_token": token}).status_code in (302, 303)
    views = {}
    for name, path in DASHBOARD_VIEWS:
        headers = {"HX-Request": "true"} if name.startswith("htmx") else {}
        timings, cpu = [], []
        for _ in range(repeat):
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(path, headers=headers)
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
            assert response.status_code == 200, (path, response.status_code)
        # CPU time of this process: on SQLite that is all of the server's work, and unlike the wall
        # clock it does not count the time other processes of a busy machine held the cores.
        views[name] = {"path": path, "median_ms": round(statistics.median(timings) * 1000, 1),
                       "max_ms": round(max(timings) * 1000, 1), "cpu_ms": round(statistics.median(cpu) * 1000, 1)}
    tracemalloc.start()
    started = time.perf_counter()
    response = client.get("/admin/campaigns.csv?sort=revenue&dir=desc", buffered=False)
    size = sum(len(chunk) for chunk in response.response)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with app.app_context():
        live["summed_per_request_ms"] = summed_trend_ms(LIVE_DAYS)
    return {"rows": rows, "views": views, "live": live,
            "csv": {"bytes": size, "seconds": round(seconds, 2), "peak_mb": round(peak / 2**20, 2)}}


def fill_live_hours(hours) -> dict:
    """Give every campaign of the loaded catalogue a LiveHour row for each of the last `hours` hours, as the
    export job would after that many hours of traffic on all of them, the site's sums per hour, and the marks."""
    from peewee import SqliteDatabase

    from models import CampaignStat, LiveHour, db, fill_live_marks, fill_live_site_hours

    newest = datetime.utcnow().replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    with db.atomic():
        LiveHour.delete().execute()
        # One INSERT ... SELECT over campaigns x hours: millions of rows, built by the database, not by Python.
        db.execute_sql("CREATE TEMPORARY TABLE bench_hours (hour TIMESTAMP)")
        marks = ", ".join([f"({db.obj.param})"] * hours)
        db.execute_sql(f"INSERT INTO bench_hours (hour) VALUES {marks}",
                       [LiveHour.hour.db_value(newest - timedelta(hours=back)) for back in range(hours)])
        mod = "%%" if db.obj.param == "%s" else "%"  # psycopg2 reads a lone % as a parameter
        db.execute_sql(
            "INSERT INTO livehour (campaign_id, hour, impressions, clicks, conversions, revenue, measured, viewable) "
            f"SELECT c.campaign_id, h.hour, 100 + c.campaign_id {mod} 50, c.campaign_id {mod} 7, c.campaign_id {mod} 3, "
            f"(c.campaign_id {mod} 11) / 4.0, 50, 30 + c.campaign_id {mod} 20 FROM (SELECT DISTINCT campaign_id FROM campaignstat) AS c CROSS JOIN bench_hours AS h")
        db.execute_sql("DROP TABLE bench_hours")
    fill_live_site_hours()
    fill_live_marks()
    if not isinstance(db.obj, SqliteDatabase):
        # 30 days of rows arrive here at once, where autovacuum would have analyzed them as they grew.
        db.execute_sql("ANALYZE")
    campaigns = CampaignStat.select(CampaignStat.campaign_id).distinct().count()
    return {"campaigns": campaigns, "hours": hours, "rows": LiveHour.select().count(),
            "fill_seconds": round(time.perf_counter() - started, 1)}


def _naive_hour(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite gives text


def summed_trend_ms(days, repeat=5) -> float:
    """The 30-day trend as the overview read it before LiveSiteHour: every campaign's hours summed per request."""

    from peewee import fn

    from models import LiveHour

    # From the newest hour filled, not the clock's: a run may cross an hour's start.
    until = _naive_hour(LiveHour.select(fn.MAX(LiveHour.hour)).scalar()) + timedelta(hours=1)
    since = until - timedelta(days=days)
    query = (LiveHour.select(LiveHour.hour, fn.SUM(LiveHour.impressions), fn.SUM(LiveHour.clicks), fn.SUM(LiveHour.conversions),
                             fn.SUM(LiveHour.revenue))
             .where((LiveHour.hour >= since) & (LiveHour.hour < until)).group_by(LiveHour.hour))
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        assert len(list(query.tuples())) == days * 24
        timings.append(time.perf_counter() - started)
    return round(statistics.median(timings) * 1000, 1)


# --- live export ------------------------------------------------------------------------------

def export_throughput(work, events=200_000) -> dict:
    """Events per second of one export run draining `events` impressions into directory batches."""
    from datetime import datetime, timezone

    from live.events import STREAM, encode, impression_event
    from live.export import export_events
    from models import ExportRun

    live_root = work / "export-live"
    shutil.rmtree(live_root, ignore_errors=True)
    database = work / "db" / "export.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    app = make_app(f"sqlite:///{database}", live_root=str(live_root))
    ctx = app.extensions["runtime"]
    now = datetime.now(timezone.utc)
    stream = ctx.key(STREAM)
    pipe = ctx.redis.pipeline(transaction=False)
    sent = []
    for i in range(events):
        event = impression_event(now, 1 + i % 4, 1 + i % 10_000, 100_000 + i % 100_000, "v" * 16, 1, 10**12 + i)
        sent.append(encode(event))
        pipe.xadd(stream, {"e": sent[-1]})
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    with app.app_context():
        started, cpu_started = time.perf_counter(), time.process_time()
        run_id = export_events(time_budget=600)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        exported = ExportRun.get_by_id(run_id).events
        rollup = rollup_throughput(sent)
    keys = list(ctx.redis.scan_iter(f"{ctx.settings.redis_prefix}*"))
    if keys:
        ctx.redis.delete(*keys)
    shutil.rmtree(live_root, ignore_errors=True)
    return {"events": exported, "seconds": round(seconds, 2), "events_per_second": round(exported / seconds),
            "cpu_seconds": round(cpu, 2), "events_per_cpu_second": round(exported / cpu), "rollup": rollup}


def rollup_throughput(encoded) -> dict:
    """The rollups' share of an export: the exported events (10,000 campaigns) counted again into emptied
    rollups, in the export's chunks."""
    from live.events import decode
    from live.export import READ_COUNT, entry_key, folder_of
    from live.rollup import rollup_entries
    from models import LiveHour, LiveSiteHour, Meta

    entries = [(f"{1 + i}-0", decode({"e": e})) for i, e in enumerate(encoded)]
    LiveHour.delete().execute()
    LiveSiteHour.delete().execute()
    Meta.delete().where(Meta.key.startswith("rollup:")).execute()
    started = time.perf_counter()
    for start in range(0, len(entries), READ_COUNT):
        rollup_entries(entries[start:start + READ_COUNT], folder_of, entry_key)
    seconds = time.perf_counter() - started
    return {"events": len(entries), "campaigns": LiveHour.select(LiveHour.campaign_id).distinct().count(),
            "seconds": round(seconds, 2), "events_per_second": round(len(entries) / seconds)}


# --- sessions ---------------------------------------------------------------------------------

def session_bytes() -> dict:
    """Bytes of a visitor's rotations in Redis (MEMORY USAGE of its hash) after visiting N campaigns once each, with the
    bound the script keeps (MAX_ROTATIONS) and without it (a bound no visitor reaches)."""
    import random

    import redis

    from rotation import MAX_ROTATIONS
    from webapp.visitors import ROTATION_STEP, rotation_set

    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    step, rng = client.register_script(ROTATION_STEP), random.Random(1)
    keys = {"bounded": "bench:scale:visitor:bounded", "unbounded": "bench:scale:visitor:unbounded"}
    client.delete(*keys.values())
    points = (1, 10, 50, 64, 100, 1_000, 10_000)
    figures = {"points": []}
    try:
        for campaign in range(1, max(points) + 1):
            key, banners = rotation_set(tuple(100_000 + campaign * 10 + i for i in range(10)))
            for name, most in (("bounded", MAX_ROTATIONS), ("unbounded", 10**9)):
                step(keys=[keys[name]], args=[3600, most, 1, campaign, key, rng.getrandbits(32), "", *banners])
            if campaign in points:
                figures["points"].append({"campaigns": campaign, **{name: client.memory_usage(key, samples=0)
                                                                  for name, key in keys.items()}})
    finally:
        client.delete(*keys.values())
    return figures


# --- load test --------------------------------------------------------------------------------

def loadtest_growth(work, seconds) -> dict:
    """scripts/loadtest.sh (page runs only) at 50 and at 10,000 campaigns, each also during reloads."""
    runs = {}
    reload_every = 2
    during = f"{PY} scripts/bench_scale.py _reloads {seconds} {reload_every}"
    for name, source in (("50", demo_source(work)), ("10000", work / "sources" / "catalogue")):
        env = {**os.environ, "LOADTEST_SOURCE": str(source), "LOADTEST_PAGE_ONLY": "1", "LOADTEST_QUIET_WAIT": "5",
               "LOADTEST_DURING": during}
        subprocess.run(["bash", "scripts/loadtest.sh", str(seconds)], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        folder = ROOT / ".run" / "loadtest"
        steady = wrk_result(folder / "wrk-campaign.txt")
        before, after = (json.loads((folder / f"cpu-{i}.json").read_text()) for i in (0, 1))
        # CPU per page view of each process tree (clock ticks of 10 ms): the cost, whatever the machine's load.
        steady["cpu_us"] = {k: round((after[k] - before[k]) * 10_000 / steady["requests"]) for k in after}
        runs[name] = {"steady": steady, "reloading": wrk_result(folder / "wrk-campaign-during.txt")}
        print("  ", name, runs[name], flush=True)
    return {"runs": runs, "seconds": seconds, "reload_every": reload_every}


def wrk_result(path) -> dict:
    line = next(line for line in Path(path).read_text().splitlines() if line.startswith("RESULT "))
    values = dict(item.split("=") for item in line.split()[1:])
    requests, duration = int(values["requests"]), int(values["duration_us"]) / 1e6
    return {"requests": requests, "per_minute": round(requests / duration * 60), "p50_ms": round(int(values["p50_us"]) / 1000, 1),
            "p99_ms": round(int(values["p99_us"]) / 1000, 1), "errors": int(values["non2xx"]) + sum(
                int(values[k]) for k in ("connect", "read", "write", "timeout"))}


def publish_reloads(seconds, every):
    """Bump and publish the data version every `every` seconds for `seconds`: every web process reloads."""
    from jobs import runtime
    from models import bump_data_version, db

    ctx = runtime.context()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with db.atomic():
            version = bump_data_version()
        runtime.publish_data_version(ctx, version)
        time.sleep(every)
