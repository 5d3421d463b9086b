"""Ingest through real RQ worker processes on the real Redis: queueing, scheduling, locking, crashes."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from conftest import REDIS_URL, ROOT, TEST_DATABASE_URL, write_source
from jobs import runtime
from jobs.ingest import IngestBusy, reap_abandoned_runs, request_ingest
from models import ImpressionCount, IngestRun, Plan
from test_ingest import GOOD

def start_worker(env, queue, burst=True):
    args = [os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "--url", REDIS_URL, "--path", str(ROOT), queue]
    if burst:
        args.insert(2, "--burst")
    return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout=60, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def kill_with_children(pid):
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if entry.isdigit() and stat.read().rsplit(")", 1)[1].split()[1] == str(pid):
                    children.append(entry)
        except OSError:
            continue
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass


def refreshed(run_id):
    return IngestRun.get_by_id(run_id)


def big_impressions(path, megabytes, campaign_banners):
    """An impressions file of about `megabytes` MB over the given (campaign, banner) pairs."""
    block = "".join(f"{b},{c}\n" for c, b in campaign_banners).encode() * 2000
    with open(path, "wb") as out:
        out.write(b"banner_id,campaign_id\n")
        while out.tell() < megabytes * 1024 * 1024:
            out.write(block)


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})


def test_worker_runs_a_queued_ingest_and_records_it(app, source, worker_env, settings_overrides):
    with app.app_context():
        run = request_ingest(str(source), trigger="manual", user="alice")
        assert run.status == IngestRun.QUEUED and run.job_id
    worker = start_worker(worker_env, settings_overrides["queue_name"])
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    with app.app_context():
        run = refreshed(run.id)
        assert run.status == IngestRun.SUCCEEDED, (run.error, output)
        assert (run.trigger, run.user, run.progress) == ("manual", "alice", 1.0)
        assert run.started_at >= run.queued_at and run.finished_at >= run.started_at
        assert Plan.select().count() == 8
        from rq.job import Job

        job = Job.fetch(run.job_id, connection=runtime.context().raw_redis)
        assert job.meta["progress"]["fraction"] == 1.0 or job.meta["progress"]["stage"]
        assert runtime.lock_holder(runtime.context()) is None


def test_worker_second_request_while_one_is_queued_is_refused(app, source):
    with app.app_context():
        first = request_ingest(str(source), trigger="manual")
        with pytest.raises(IngestBusy) as busy:
            request_ingest(str(source), trigger="manual")
        assert busy.value.run.id == first.id and "queued" in str(busy.value)
        assert IngestRun.select().count() == 1


def test_worker_two_concurrent_requests_queue_exactly_one(app, source, worker_env):
    """Two CLI processes asking at once: one is queued, the other told an ingest is in progress."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "flask", "--app", "webapp", "ingest", "--enqueue", str(source)],
                         env=worker_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(60), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    assert any("already in progress" in out for _, out in results)
    with app.app_context():
        assert IngestRun.select().count() == 1


def test_worker_threads_racing_for_the_lock_queue_exactly_one(app, source):
    outcomes = []

    def ask():
        with app.app_context():
            try:
                outcomes.append(request_ingest(str(source), trigger="manual").id)
            except IngestBusy:
                outcomes.append("busy")

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("busy") == 5


def test_worker_schedule_registration_is_idempotent_and_runs_the_ingest(app, source, worker_env, settings_overrides):
    from dataclasses import replace

    from rq_scheduler import Scheduler

    from jobs.schedule import register_schedules, schedule_id

    ctx = runtime.context()
    settings = replace(ctx.settings, ingest_source=str(source), ingest_cron="*/5 * * * *")
    scheduler = Scheduler(queue_name=settings.queue_name, connection=ctx.raw_redis)
    INGEST_SCHEDULE_ID, EXPORT_SCHEDULE_ID = schedule_id(settings, "ingest"), schedule_id(settings, "export")
    other = replace(settings, queue_name="another-deployment")
    try:
        for _ in range(3):
            register_schedules(scheduler, settings)
        register_schedules(scheduler, other)  # another deployment on the same Redis keeps its own
        assert schedule_id(other, "ingest") in scheduler
        jobs = [job for job in scheduler.get_jobs() if job.id == INGEST_SCHEDULE_ID]
        assert len(jobs) == 1 and jobs[0].meta["cron_string"] == "*/5 * * * *"
        assert sum(1 for job in scheduler.get_jobs() if job.func_name == "jobs.ingest.scheduled_ingest" and job.id == INGEST_SCHEDULE_ID) == 1
        scheduler.enqueue_job(jobs[0])  # what rqscheduler does when the time comes
        env = dict(worker_env, INGEST_SOURCE=str(source))
        worker = start_worker(env, settings.queue_name)
        output, _ = worker.communicate(timeout=120)
        with app.app_context():
            run = IngestRun.select().order_by(IngestRun.id.desc()).get()
            assert (run.trigger, run.status) == ("schedule", IngestRun.SUCCEEDED), output
        # The cron job is back in the schedule for its next time, still once.
        assert [job.id for job in scheduler.get_jobs()].count(INGEST_SCHEDULE_ID) == 1
        assert [job.id for job in scheduler.get_jobs()].count(EXPORT_SCHEDULE_ID) == 1
    finally:
        for job_id in (INGEST_SCHEDULE_ID, EXPORT_SCHEDULE_ID, schedule_id(other, "ingest"), schedule_id(other, "export")):
            scheduler.cancel(job_id)


def test_worker_killed_mid_quarter_leaves_no_partial_quarter_and_the_run_is_abandoned(app, tmp_path, worker_env, settings_overrides):
    old = write_source(tmp_path / "old", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    with app.app_context():
        from jobs.ingest import run_ingest

        run_ingest(str(old), trigger="cli")
        before = {(p.quarter, p.campaign_id): p.banner_ids for p in Plan.select()}
        q2_rows = ImpressionCount.select().where(ImpressionCount.quarter == 2).count()
    new = write_source(tmp_path / "new", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    big_impressions(new / "2" / "impressions.csv", 60, [(1, 30 + i) for i in range(40)])
    env = dict(worker_env, INGEST_LOCK_SECONDS="3")
    with app.app_context():
        run = request_ingest(str(new), trigger="manual")
    worker = start_worker(env, settings_overrides["queue_name"], burst=False)
    try:
        with app.app_context():
            wait_for(lambda: "quarter 2: reading" in (refreshed(run.id).stage or ""), timeout=120)
    finally:
        kill_with_children(worker.pid)  # the worker and its work horse (its own process group), mid-quarter
        worker.wait(10)
    with app.app_context():
        assert refreshed(run.id).status == IngestRun.RUNNING
        time.sleep(3.5)  # the lock's heartbeat has stopped; let it expire
        assert reap_abandoned_runs() == 1
        run = refreshed(run.id)
        assert run.status == IngestRun.ABANDONED and run.finished_at and "lock expired" in run.error
        after = {(p.quarter, p.campaign_id): p.banner_ids for p in Plan.select()}
        assert {k: v for k, v in after.items() if k[0] == 2} == {k: v for k, v in before.items() if k[0] == 2}
        assert ImpressionCount.select().where(ImpressionCount.quarter == 2).count() == q2_rows
        # A new ingest is possible again.
        assert request_ingest(str(old), trigger="manual").status == IngestRun.QUEUED


def test_worker_serving_under_ingest_gets_only_200s_from_the_old_or_the_new_set(app, tmp_path, worker_env, settings_overrides):
    old_q1 = "".join(f"{b},1\n" for b in (11, 12, 13, 14, 15))
    old = write_source(tmp_path / "old", {q: {"impressions": old_q1} for q in (1, 2, 3, 4)})
    with app.app_context():
        from jobs.ingest import run_ingest

        run_ingest(str(old), trigger="cli")
    new = write_source(tmp_path / "new", {q: {"impressions": old_q1} for q in (1, 2, 3, 4)})
    big_impressions(new / "1" / "impressions.csv", 25, [(1, b) for b in (21, 22, 23, 24, 25)])
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 5, tzinfo=timezone.utc)
    client = app.test_client()
    with app.app_context():
        run = request_ingest(str(new), trigger="manual")
    worker = start_worker(worker_env, settings_overrides["queue_name"])
    served, statuses = [], []
    while worker.poll() is None:
        response = client.get("/campaigns/1")
        statuses.append(response.status_code)
        match = re.search(r'data-banner-id="(\d+)"', response.get_data(as_text=True))
        if match:
            served.append(int(match.group(1)))
    for _ in range(10):
        response = client.get("/campaigns/1")
        statuses.append(response.status_code)
        served.append(int(re.search(r'data-banner-id="(\d+)"', response.get_data(as_text=True)).group(1)))
    with app.app_context():
        assert refreshed(run.id).status == IngestRun.SUCCEEDED
    assert set(statuses) == {200} and len(served) > 20
    old_set, new_set = {11, 12, 13, 14, 15}, {21, 22, 23, 24, 25}
    assert set(served) <= old_set | new_set
    switch = next(i for i, b in enumerate(served) if b in new_set)
    assert all(b in old_set for b in served[:switch]) and all(b in new_set for b in served[switch:])
    assert all(a != b for a, b in zip(served, served[1:]))


def test_worker_queued_run_whose_lock_was_taken_meanwhile_loads_nothing(app, source):
    with app.app_context():
        run = request_ingest(str(source), trigger="manual")
        ctx = runtime.context()
        ctx.redis.set(ctx.key("ingest:lock"), "999")  # the lock expired and run 999 took it
        from jobs.ingest import run_ingest

        run_ingest(str(source), trigger="manual", run_id=run.id)
        run = refreshed(run.id)
        # Not "abandoned": its worker did not stop; it was refused the lock.
        assert run.status == IngestRun.FAILED and "took the lock" in run.error
        assert Plan.select().count() == 0 and runtime.lock_holder(ctx) == "999"


def test_worker_run_that_loses_its_lock_mid_run_stops_and_applies_nothing_more(app, tmp_path):
    from jobs import ingest as ingest_module

    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    big_impressions(source / "2" / "impressions.csv", 20, [(1, 30 + i) for i in range(10)])
    ctx = runtime.context()
    stolen = threading.Event()

    def steal():
        with app.app_context():
            wait_for(lambda: any("quarter 2: reading" in (r.stage or "") for r in IngestRun.select()), timeout=60, interval=0.01)
        ctx.redis.set(ctx.key("ingest:lock"), "777")
        stolen.set()

    thief = threading.Thread(target=steal)
    thief.start()
    with app.app_context():
        run = refreshed(ingest_module.run_ingest(str(source), trigger="cli"))
        thief.join()
        assert stolen.is_set()
        assert run.status == IngestRun.FAILED and "lost the ingest lock" in run.error
        assert {p.quarter for p in Plan.select()} == {1}


def test_worker_new_run_marks_runs_of_dead_workers_abandoned_first(app, source):
    with app.app_context():
        dead = IngestRun.create(trigger="manual", source=str(source), status=IngestRun.RUNNING)
        from jobs.ingest import run_ingest

        run = refreshed(run_ingest(str(source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED
        assert refreshed(dead.id).status == IngestRun.ABANDONED


def _backend_waiting_on(connection, table):
    """The pid of a PostgreSQL backend waiting for a lock on `table`, and its query; None when none waits."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid, a.query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.relation = %s::regclass AND NOT l.granted",
            (table,),
        )
        return cursor.fetchone()


def _backend_alive(connection, pid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        return cursor.fetchone() is not None


def _quarter_rows(quarter):
    from models import BannerStat, CampaignStat, Click, Conversion

    return {
        model.__name__: sorted(tuple(v for k, v in row.items() if k != "id") for row in model.select().where(model.quarter == quarter).dicts())
        for model in (ImpressionCount, Click, Conversion, BannerStat, Plan, CampaignStat)
    }


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL (TEST_DATABASE_URL): only it lets a test hold one table's lock")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_worker_killed_inside_the_store_transaction_serves_the_old_quarter_whole(app, tmp_path, worker_env, settings_overrides, database_url):
    """The worker is stopped while it writes a quarter, after it has replaced most of the quarter's rows:
    the test holds CampaignStat, the last table the store writes, so the worker waits on it mid-transaction."""
    import psycopg2

    from jobs.ingest import run_ingest
    from models import get_data_version

    old = write_source(tmp_path / "old", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    with app.app_context():
        run_ingest(str(old), trigger="cli")
        before, version = _quarter_rows(2), get_data_version()
        old_set = sorted(map(int, Plan.get(quarter=2, campaign_id=1).banner_ids.split(",")))
    new = write_source(tmp_path / "new", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    (new / "2" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n1,15,1\n2,15,1\n4,20,2\n")
    big_impressions(new / "2" / "impressions.csv", 20, [(1, 30 + i) for i in range(10)])  # seconds to read
    holder = psycopg2.connect(database_url)
    watcher = psycopg2.connect(database_url)
    watcher.autocommit = True
    worker = None
    try:
        with app.app_context():
            run = request_ingest(str(new), trigger="manual")
        worker = start_worker(worker_env, settings_overrides["queue_name"], burst=False)
        # Once the worker reads quarter 2 (its start-up, which touches every table, is over), the test
        # takes CampaignStat: the store deletes and writes it last, after the other five tables.
        with app.app_context():
            wait_for(lambda: "quarter 2: reading" in (refreshed(run.id).stage or ""), timeout=120, interval=0.02)
        with holder.cursor() as cursor:
            cursor.execute('LOCK TABLE "campaignstat" IN ACCESS EXCLUSIVE MODE')  # held until rollback
        with app.app_context():
            assert refreshed(run.id).stage.startswith("quarter 2: reading")  # the lock came before the store
        pid, query = wait_for(lambda: _backend_waiting_on(watcher, "campaignstat"), timeout=120)
        assert query.startswith('DELETE FROM "campaignstat"'), query
        with app.app_context():
            assert refreshed(run.id).stage == "quarter 2: storing"
        kill_with_children(worker.pid)
        worker.wait(10)
        assert _backend_alive(watcher, pid)  # still waiting, its transaction open
    finally:
        if worker is not None and worker.poll() is None:
            kill_with_children(worker.pid)
        holder.rollback()  # the worker's backend gets the lock, finds its client gone and ends
        holder.close()
    wait_for(lambda: not _backend_alive(watcher, pid), timeout=30)
    watcher.close()
    with app.app_context():
        assert _quarter_rows(2) == before and get_data_version() == version
    app.extensions["plans"].invalidate()
    app.config["CLOCK"] = lambda: datetime(2026, 1, 1, 12, 20, tzinfo=timezone.utc)
    client = app.test_client()
    shown = [int(re.search(r'data-banner-id="(\d+)"', client.get("/campaigns/1").get_data(as_text=True)).group(1)) for _ in range(5)]
    assert sorted(shown) == old_set


def test_worker_schedule_registration_prints_no_future_warning(app, settings_overrides):
    import uuid
    import warnings
    from dataclasses import replace

    from rq_scheduler import Scheduler

    from jobs.schedule import register_schedules, schedule_id

    ctx = runtime.context()
    settings = replace(ctx.settings, queue_name=f"warn-{uuid.uuid4().hex[:8]}")
    scheduler = Scheduler(queue_name=settings.queue_name, connection=ctx.raw_redis)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            register_schedules(scheduler, settings)
    finally:
        for what in ("ingest", "export"):
            scheduler.cancel(schedule_id(settings, what))
    assert [str(w.message)[:60] for w in caught if issubclass(w.category, FutureWarning)] == []
