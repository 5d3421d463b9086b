"""Fixtures: an app over a temp database file, a real Redis under a private prefix, sources on disk."""

import os
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DATA = ROOT.parent / "shared" / "reference-data"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")

HEADERS = {
    "impressions": "banner_id,campaign_id",
    "clicks": "click_id,banner_id,campaign_id",
    "conversions": "conversion_id,click_id,revenue",
}


def _database_params():
    params = ["sqlite"]
    if TEST_DATABASE_URL:
        params.append("postgresql")
    return params


@pytest.fixture(scope="session")
def redis_server():
    """The real Redis server the suite runs against (scripts/test.sh makes sure there is one)."""
    client = redis_lib.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis_lib.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} does not answer ({exc}); run the suite with scripts/test.sh")
    return client


@pytest.fixture
def redis_prefix(redis_server):
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"bstest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    keys = list(redis_server.scan_iter(f"{prefix}*", count=1000))
    if keys:
        redis_server.delete(*keys)


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database of this test run's own on TEST_DATABASE_URL's server, dropped at the end,
    so concurrent runs on one server never drop each other's tables."""
    import psycopg2
    from urllib.parse import urlsplit, urlunsplit

    name = f"bannerservice_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(TEST_DATABASE_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}"))
    from models import db, limit_database_waits

    if db.obj is not None and not db.is_closed():
        db.close()
    limit_database_waits()  # the apps' query deadline is process-wide; dropping may take longer on a busy server
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=_database_params())
def database_url(request, tmp_path):
    """A fresh database: a temp SQLite file, and PostgreSQL too when TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    from models import ALL_MODELS, db, init_db

    url = request.getfixturevalue("postgres_url")
    init_db(url)
    with db.connection_context():
        db.drop_tables(ALL_MODELS, safe=True, cascade=True)
        # create_app keeps a bound database of the same URL without re-creating tables.
        db.create_tables(ALL_MODELS)
    return url


@pytest.fixture
def settings_overrides(tmp_path, database_url, redis_prefix):
    """Settings of an isolated deployment: its own database, image folder, log file, Redis prefix and queue."""
    return {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix,
        "image_dir": str(tmp_path / "served-images"),
        "log_file": str(tmp_path / "logs" / "bannerservice.log"),
        "secret_key": "test-secret",
        "queue_name": f"{redis_prefix}queue",
        "plan_refresh_seconds": 0.0,
        "s3_max_attempts": 2,
    }


@pytest.fixture
def app(settings_overrides):
    from webapp import create_app

    app = create_app(settings_overrides)
    app.config["TESTING"] = True
    yield app
    from models import db

    if not db.is_closed():
        db.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def worker_env(settings_overrides):
    """Environment for a subprocess (RQ worker, CLI) that shares this test's deployment."""
    names = {
        "database_url": "DATABASE_URL", "redis_url": "REDIS_URL", "redis_prefix": "REDIS_PREFIX",
        "image_dir": "IMAGE_DIR", "log_file": "LOG_FILE", "secret_key": "SECRET_KEY",
        "queue_name": "QUEUE_NAME", "s3_max_attempts": "S3_MAX_ATTEMPTS",
    }
    env = dict(os.environ)
    env.update({env_name: str(settings_overrides[name]) for name, env_name in names.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


def serve_rows(app, root, impressions: str):
    """Ingest `impressions` rows (banner_id,campaign_id) into every quarter, have the plans checked on the next view,
    and stop the app's clock at 12:03:30 (quarter 1); returns the app."""
    from jobs.ingest import run_ingest

    source = write_source(root, {q: {"impressions": impressions} for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(source), trigger="cli")
    app.extensions["plans"].invalidate()
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 3, 30, tzinfo=timezone.utc)
    return app


def write_source(root, quarters, images=None):
    """Write a source directory: quarters = {q: {"impressions": "rows...", ...}}; rows without header
    get the standard header, a value of None leaves the file out, bytes are written as they are."""
    root = Path(root)
    for quarter, files in quarters.items():
        folder = root / str(quarter)
        folder.mkdir(parents=True, exist_ok=True)
        for kind in HEADERS:
            content = files.get(kind, "")
            if content is None:
                continue
            if isinstance(content, bytes):
                (folder / f"{kind}.csv").write_bytes(content)
            else:
                text = content if content.startswith(HEADERS[kind].split(",")[0]) else HEADERS[kind] + "\n" + content
                (folder / f"{kind}.csv").write_text(text)
    if images:
        (root / "images").mkdir(parents=True, exist_ok=True)
        for name, data in images.items():
            (root / "images" / name).write_bytes(data)
    return root


@pytest.fixture
def reference_data():
    """The real dataset of the challenge, when the workplace has it."""
    if not (REFERENCE_DATA / "1" / "impressions.csv").exists():
        pytest.skip(f"reference data not found at {REFERENCE_DATA} (it is not part of the repo)")
    return REFERENCE_DATA


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory):
    """The demo source the quick start serves, generated once per session."""
    from jobs.demo import write_demo_source

    root = tmp_path_factory.mktemp("demo")
    write_demo_source(root)
    return root


class RedisProcess:
    """A private redis-server on a free loopback port, without persistence, that a test may stop,
    restart empty and freeze (SIGSTOP)."""

    def __init__(self, work):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.work, self.process = Path(work), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        import shutil
        import subprocess
        import time

        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self):
        if self.process is not None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def freeze(self):
        import signal

        self.process.send_signal(signal.SIGSTOP)

    def thaw(self):
        import signal

        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own (see RedisProcess), stopped at the end."""
    server = RedisProcess(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def sql(app, monkeypatch):
    """Statements the database runs from now on for this thread (the test client's requests run in it)."""
    from models import db

    seen = []
    real = db.obj.execute_sql
    me = threading.current_thread()

    def execute_sql(query, *args, **kwargs):
        if threading.current_thread() is me:
            seen.append(query)
        return real(query, *args, **kwargs)

    monkeypatch.setattr(db.obj, "execute_sql", execute_sql)
    return seen
