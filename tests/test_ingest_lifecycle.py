"""Every run ends and frees the lock, whatever happens: a database that refuses the final write, an oversized
error, a killed work horse, a run that waits in the queue past the lock's lifetime, a read that stalls."""

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import write_source
from jobs import runtime
from jobs.ingest import IngestBusy, reap_abandoned_runs, request_ingest, run_ingest
from models import IngestRun, Plan
from test_ingest import GOOD
from test_worker import big_impressions, refreshed, start_worker, wait_for


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})


def served(app):
    with app.app_context():
        return {(p.quarter, p.campaign_id): p.banner_ids for p in Plan.select()}


def lock_holder(app):
    with app.app_context():
        return runtime.lock_holder(runtime.context())


def sqlite_path(settings_overrides):
    url = settings_overrides["database_url"]
    if not url.startswith("sqlite:///"):
        pytest.skip("the database-lock case is SQLite's; PostgreSQL's is the revoked-rights test")
    return url[len("sqlite:///"):]


def test_run_whose_database_refuses_every_write_frees_the_lock_and_its_end_is_recorded_later(
    app, source, worker_env, settings_overrides
):
    path = sqlite_path(settings_overrides)
    with app.app_context():
        run_ingest(str(source), trigger="cli")
        before = served(app)
        run = request_ingest(str(source), trigger="manual")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database for the whole run
    try:
        env = dict(worker_env, DATABASE_URL=settings_overrides["database_url"] + "?timeout=0.2")
        worker = start_worker(env, settings_overrides["queue_name"])
        output, _ = worker.communicate(timeout=120)
        assert lock_holder(app) is None, output  # freed although no write of the run succeeded
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with app.app_context():
        # The next request starts at once; the reaper writes down how the run really ended.
        assert request_ingest(str(source), trigger="manual").status == IngestRun.QUEUED
        ended = refreshed(run.id)
        assert ended.status == IngestRun.FAILED and ended.finished_at
        assert "database is locked" in ended.error and "abandoned" not in ended.error
        assert "recorded late" in ended.error
    assert served(app) == before


def test_run_with_an_enormous_error_stores_it_cut_and_logs_it_cut(app, settings_overrides):
    spec = "/nonexistent/" + "x" * 100_000
    with app.app_context():
        run = IngestRun.get_by_id(run_ingest(spec, trigger="cli"))
        assert run.status == IngestRun.FAILED and "does not exist" in run.error
        assert len(run.error) <= 2000
        assert runtime.lock_holder(runtime.context()) is None
    for line in Path(settings_overrides["log_file"]).read_text().splitlines():
        assert "x" * 201 not in line


def horse_of(worker_pid):
    """The work horse: the worker's forked child."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == str(worker_pid):
                        return int(entry)
            except OSError:
                continue
    return None


def test_killed_work_horse_frees_the_lock_at_once_and_the_run_says_the_worker_died(
    app, tmp_path, worker_env, settings_overrides
):
    new = write_source(tmp_path / "new", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    big_impressions(new / "2" / "impressions.csv", 60, [(1, 30 + i) for i in range(40)])
    with app.app_context():
        run = request_ingest(str(new), trigger="manual")
    worker = start_worker(worker_env, settings_overrides["queue_name"], burst=True)  # INGEST_LOCK_SECONDS: default
    with app.app_context():
        wait_for(lambda: "quarter 2: reading" in (refreshed(run.id).stage or ""), timeout=120)
        os.kill(wait_for(lambda: horse_of(worker.pid)), signal.SIGKILL)
        worker.communicate(timeout=60)  # the worker notices its horse died, fails the job and exits (burst)
        # No waiting for the lock to expire: the job is known to have failed.
        again = request_ingest(str(new), trigger="manual")
        assert again.status == IngestRun.QUEUED
        ended = refreshed(run.id)
        assert ended.status == IngestRun.ABANDONED and "worker process died" in ended.error


def test_run_that_waits_in_the_queue_past_the_lock_lifetime_is_not_abandoned_and_still_runs(
    app, source, worker_env, settings_overrides
):
    from webapp import create_app

    short = create_app(dict(settings_overrides, ingest_lock_seconds=1))
    with short.app_context():
        run = request_ingest(str(source), trigger="manual")
        time.sleep(1.5)  # no worker yet: the lock's lifetime passes while the job waits
        assert reap_abandoned_runs() == 0
        assert refreshed(run.id).status == IngestRun.QUEUED
        with pytest.raises(IngestBusy):  # it still counts as the active run
            request_ingest(str(source), trigger="manual")
    worker = start_worker(dict(worker_env, INGEST_LOCK_SECONDS="1"), settings_overrides["queue_name"])
    output, _ = worker.communicate(timeout=120)
    with app.app_context():
        assert refreshed(run.id).status == IngestRun.SUCCEEDED, output


def test_read_that_stops_making_progress_fails_the_run_with_a_reason_and_frees_the_lock(app, source):
    """The heartbeat runs on its own thread: a read that hangs cannot keep the lock alive forever."""
    from jobs import ingest as ingest_module
    from webapp import create_app

    settings = dict(app.extensions["settings"].__dict__, ingest_stall_seconds=1.0)
    stalling = create_app(settings)
    release = threading.Event()
    real_open = ingest_module.open_source

    def open_with_a_hanging_read(spec, *args):
        source_obj = real_open(spec, *args)
        real = source_obj.open

        class Hanging:
            def __init__(self, stream):
                self.stream = stream

            def read(self, size=-1):
                release.wait(30)  # a read that never returns, as on a dead NFS mount or a stalled peer
                return self.stream.read(size)

            def close(self):
                self.stream.close()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

        source_obj.open = lambda path, *listed: Hanging(real(path, *listed)) if path == "3/clicks.csv" else real(path, *listed)
        return source_obj

    ingest_module.open_source = open_with_a_hanging_read
    result = {}
    try:
        with stalling.app_context():
            thread = threading.Thread(target=lambda: result.setdefault("id", _run_in_context(stalling, source)))
            thread.start()
            run = wait_for(lambda: IngestRun.select().where(IngestRun.status == IngestRun.FAILED).first(), timeout=30)
            assert "no progress" in run.error and "3/clicks.csv" in run.error
            assert runtime.lock_holder(runtime.context()) is None  # the next run may start now
    finally:
        release.set()
        thread.join(60)
        ingest_module.open_source = real_open
    with app.app_context():
        assert refreshed(run.id).status == IngestRun.FAILED  # the thread that woke up did not overwrite it


def _run_in_context(app, source):
    with app.app_context():
        return run_ingest(str(source), trigger="cli")


def test_run_whose_rights_are_revoked_on_postgresql_frees_the_lock_and_its_end_is_recorded_later(
    app, source, worker_env, settings_overrides
):
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    url = settings_overrides["database_url"]
    if not url.startswith("postgresql"):
        pytest.skip("revoking rights is PostgreSQL's case; SQLite's is the locked-database test")
    with app.app_context():
        run_ingest(str(source), trigger="cli")
        before = served(app)
        run = request_ingest(str(source), trigger="manual")
    role = f"bs_worker_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN')
        cursor.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        cursor.execute(f'REVOKE UPDATE ON ingestrun FROM "{role}"')  # the worker may not write a run's state
    parts = urlsplit(url)
    worker_url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
    try:
        worker = start_worker(dict(worker_env, DATABASE_URL=worker_url), settings_overrides["queue_name"])
        output, _ = worker.communicate(timeout=120)
        assert lock_holder(app) is None, output
        with app.app_context():
            assert refreshed(run.id).status == IngestRun.QUEUED  # the database never heard of its end...
            assert request_ingest(str(source), trigger="manual").status == IngestRun.QUEUED  # ...the next starts at once
            ended = refreshed(run.id)
            assert ended.status == IngestRun.FAILED and "permission denied" in ended.error
            assert "recorded late" in ended.error and "abandoned" not in ended.error
        assert served(app) == before
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
            cursor.execute(f'DROP OWNED BY "{role}"')
            cursor.execute(f'DROP ROLE "{role}"')
        admin.close()
