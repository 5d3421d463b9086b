"""An ingest run's life around its work: the heartbeat thread, an end that is always recorded, and reaping
runs whose worker really stopped."""

import json
import logging
import threading
import time

from jobs import runtime
from jobs.parsing import quote
from models import IngestRun, db, utcnow

log = logging.getLogger("bannerservice.ingest")

MAX_ERROR = 2000  # characters of a run's error text kept in the history
END_ATTEMPTS = 3
# RQ job states: still waiting for a worker, and over without the run having said so.
_WAITING = {"queued", "deferred", "scheduled"}
_DEAD = {"failed", "stopped", "canceled", "finished"}


class LockLost(Exception):
    """The run's lock expired and another run took it: this one must stop writing."""


class Stalled(LockLost):
    """A read made no progress for INGEST_STALL_SECONDS: the run was ended and its lock freed."""


class Heartbeat:
    """Keeps the run's lock alive from a thread of its own, and ends the run when a read stops making progress.

    The work itself never renews the lock, so a read that hangs cannot hold it forever; the work learns of a
    lost lock or a stall from `problem` the next time it reports progress.
    """

    def __init__(self, ctx, run_id, on_stall):
        self.ctx, self.run_id, self.on_stall = ctx, run_id, on_stall
        settings = ctx.settings
        self.interval = max(0.2, min(5.0, settings.ingest_lock_seconds / 4))
        self.stall_seconds = settings.ingest_stall_seconds
        self.last_progress = time.monotonic()
        self.reading = None  # the path being read, or None
        self.problem = None  # a LockLost for the work to raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"ingest-heartbeat-{run_id}", daemon=True)

    def progress(self):
        self.last_progress = time.monotonic()

    def start_reading(self, path):
        self.reading, self.last_progress = path, time.monotonic()

    def stop_reading(self):
        self.reading = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _beat(self):
        try:
            while not self._stop.wait(self.interval):
                if self.reading and time.monotonic() - self.last_progress > self.stall_seconds:
                    self.problem = Stalled(
                        f"no progress reading {self.reading} for {self.stall_seconds:g} s; the run was stopped"
                    )
                    self.on_stall(self.problem)
                    return
                try:
                    held = runtime.hold_lock(self.ctx, self.run_id)
                except Exception:
                    log.warning("run=%s heartbeat could not reach Redis; trying again", self.run_id, exc_info=True)
                    continue
                if not held:
                    self.problem = LockLost(
                        f"run {self.run_id} lost the ingest lock to {runtime.lock_holder(self.ctx)}; it stopped"
                    )
                    return
        finally:
            if not db.is_closed():
                db.close()  # this thread's own connection


class RunEnd:
    """Records how a run ended, once, whoever calls first (the work, or the heartbeat on a stall).

    The end goes to Redis first, so a database that refuses the write loses nothing: the reaper copies
    it into the history later. The lock is freed whatever the database says.
    """

    def __init__(self, ctx, run):
        self.ctx, self.run = ctx, run
        self._lock = threading.Lock()
        self.done = False

    def __call__(self, status, error) -> bool:
        with self._lock:
            if self.done:
                return False
            self.done = True
        error = cut(error)
        finished = utcnow()
        _remember_end(self.ctx, self.run.id, status, error, finished)
        saved = _save_end(self.run.id, status, error, finished)
        try:
            runtime.release_lock(self.ctx, self.run.id)
        except Exception:
            log.warning("run=%s could not release the lock; it expires by itself", self.run.id, exc_info=True)
        if saved:
            _forget_end(self.ctx, self.run.id)
        self.run.status, self.run.error, self.run.finished_at = status, error, finished
        log.info("run=%s end status=%s error=%s", self.run.id, status, quote(error or "", 500))
        return True


def cut(text, limit: int = MAX_ERROR):
    """`text` cut to `limit` characters, saying so."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 40] + f"... ({len(text) - limit + 40:,} characters more)"


def _save_end(run_id, status, error, finished) -> bool:
    for attempt in range(END_ATTEMPTS):
        try:
            IngestRun.update(status=status, error=error, finished_at=finished, progress=1.0, stage="done").where(
                IngestRun.id == run_id
            ).execute()
            return True
        except Exception:
            log.warning("run=%s could not record its end (attempt %s of %s)", run_id, attempt + 1, END_ATTEMPTS, exc_info=True)
            try:
                db.close()  # a fresh connection for the next attempt
            except Exception:
                pass
            time.sleep(0.2 * 2**attempt)
    return False


def _end_key(ctx, run_id):
    return ctx.key(f"ingest:end:{run_id}")


def _remember_end(ctx, run_id, status, error, finished):
    try:
        value = json.dumps({"status": status, "error": error, "finished_at": finished.isoformat()})
        ctx.redis.set(_end_key(ctx, run_id), value, ex=30 * 86400)
    except Exception:
        log.warning("run=%s could not note its end in Redis", run_id, exc_info=True)


def _forget_end(ctx, run_id):
    try:
        ctx.redis.delete(_end_key(ctx, run_id))
    except Exception:
        pass


def _recorded_end(ctx, run_id):
    raw = ctx.redis.get(_end_key(ctx, run_id))
    return json.loads(raw) if raw else None


def _job_status(ctx, run):
    """The RQ job's status, or None when there is no job (a CLI run) or Redis no longer has it."""
    if not run.job_id:
        return None
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        return str(Job.fetch(run.job_id, connection=ctx.raw_redis).get_status(refresh=True).value)
    except NoSuchJobError:
        return None


def _seconds_since(moment) -> float:
    return (utcnow() - moment).total_seconds() if moment else float("inf")


def reap_abandoned_runs(ctx=None) -> int:
    """Settle the queued and running runs that are over: write down an end the database refused at the time,
    and mark runs whose worker really stopped as abandoned (freeing their lock). A run still waiting in the
    queue is left alone, and keeps its place in the lock. Returns how many runs were settled."""
    from datetime import datetime

    ctx = ctx or runtime.context()
    settled = 0
    for run in IngestRun.select().where(IngestRun.status.in_([IngestRun.QUEUED, IngestRun.RUNNING])):
        end = _recorded_end(ctx, run.id)
        if end:
            error = (end["error"] + " " if end["error"] else "") + "(recorded late: the database refused the run's final write)"
            IngestRun.update(
                status=end["status"], error=cut(error), finished_at=datetime.fromisoformat(end["finished_at"]),
                progress=1.0, stage="done",
            ).where(IngestRun.id == run.id).execute()
            _forget_end(ctx, run.id)
            log.warning("run=%s end recorded late: %s", run.id, end["status"])
            settled += 1
            continue
        if run.status == IngestRun.QUEUED and not run.job_id and _seconds_since(run.queued_at) < ctx.settings.ingest_lock_seconds:
            continue  # a request is queueing it right now
        job = _job_status(ctx, run)
        holder = runtime.lock_holder(ctx)  # read after the job: a run that starts meanwhile holds it by now
        if holder == "pending":
            continue  # a request is creating its run right now
        if holder == str(run.id) and job not in _DEAD:
            continue  # alive: it holds the lock
        if run.status == IngestRun.QUEUED and job in _WAITING:
            if holder is None:
                runtime.hold_lock(ctx, run.id)  # its lock expired while it waited: it is still next
            continue
        if run.status == IngestRun.QUEUED:
            reason = f"its job left the queue without running (RQ: {job or 'the job is gone'}); nothing was loaded"
        elif job in _DEAD:
            reason = (f"the worker process died while running (RQ: job {job}); "
                      "nothing of the slot of the hour being loaded was applied")
        else:
            reason = (f"the worker stopped: no heartbeat for {ctx.settings.ingest_lock_seconds} s (its lock expired); "
                      "nothing of the slot of the hour being loaded was applied")
        IngestRun.update(status=IngestRun.ABANDONED, error=reason, finished_at=run.finished_at or utcnow()).where(
            IngestRun.id == run.id
        ).execute()
        runtime.release_lock(ctx, run.id)
        log.warning("run=%s abandoned: %s", run.id, reason)
        settled += 1
    return settled
