"""The recurring jobs, registered with rq-scheduler under fixed ids, and the scheduler process that keeps them registered."""

import logging
import time

import redis as redis_lib

import warnings

from live.export import scheduled_export
from jobs.ingest import scheduled_ingest
from jobs.runtime import rq_id


def schedule_id(settings, what: str) -> str:
    """A fixed id per deployment (its queue name) and job: registering again replaces the entry,
    so restarts never stack up schedules, and deployments sharing a Redis keep their own."""
    return rq_id(settings, f"scheduled-{what}")


def register_schedules(scheduler, settings):
    """(Re)register the scheduled ingest, and the live export when events are on; returns the ingest's job."""
    scheduler.cancel(schedule_id(settings, "export"))
    if settings.events_enabled:
        _register(scheduler, settings, schedule_id(settings, "export"), settings.export_cron, scheduled_export,
                  f"export live events on cron {settings.export_cron!r}")
    scheduler.cancel(schedule_id(settings, "ingest"))
    return _register(scheduler, settings, schedule_id(settings, "ingest"), settings.ingest_cron, scheduled_ingest,
                     f"ingest {settings.ingest_source or '(INGEST_SOURCE)'} on cron {settings.ingest_cron!r}")


def _register(scheduler, settings, job_id, cron, func, description):
    # rq-scheduler asks the `crontab` package for the next time without its `default_utc` argument, and
    # crontab then warns (FutureWarning) on every registration; the times are right (`use_local_timezone=False`).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Version 0\.22\.0\+ of crontab", FutureWarning)
        return scheduler.cron(
            cron, func=func, id=job_id, queue_name=settings.queue_name, timeout=3600, result_ttl=86400,
            use_local_timezone=False, description=description,
        )


log = logging.getLogger("bannerservice.schedule")
CHECK_SECONDS = 60.0


def scheduler_for(ctx):
    """An rq-scheduler Scheduler on the context's Redis and queue."""
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=ctx.settings.queue_name, connection=ctx.raw_redis)


def run_scheduler(ctx, interval=10.0, check_seconds=CHECK_SECONDS):
    """Run rq-scheduler's loop, registering our schedules when it starts and whenever a check
    (every `check_seconds`) finds one missing: a Redis that restarted empty loses them all."""
    from rq_scheduler import Scheduler

    # This process is the scheduler: rq-scheduler reschedules every cron job through crontab's
    # next(), which warns each time (the times are right, see register_schedules).
    warnings.filterwarnings("ignore", r"Version 0\.22\.0\+ of crontab", FutureWarning)

    class KeepingScheduler(Scheduler):
        checked_at = float("-inf")

        def enqueue_jobs(self):
            if time.monotonic() - self.checked_at >= check_seconds:
                self.checked_at = time.monotonic()
                ensure_schedules(self, ctx.settings)
            return super().enqueue_jobs()

    while True:
        scheduler = KeepingScheduler(queue_name=ctx.settings.queue_name, connection=ctx.raw_redis, interval=interval)
        try:
            scheduler.run()
            return
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
            # Keep the process: when Redis is back, the new loop registers the schedules at once.
            log.warning("scheduler lost Redis (%s); trying again in %s s", exc, interval)
            time.sleep(interval)
        except redis_lib.exceptions.OutOfMemoryError as exc:
            # Redis is full (maxmemory, noeviction): nothing can be enqueued, not even the export that
            # would free it. The export needs no queue and runs while Redis is full, so run it here.
            log.warning("Redis is full (%s); running the live export in the scheduler to free it", exc)
            free_full_redis(ctx, scheduler)
            time.sleep(interval)


def free_full_redis(ctx, scheduler) -> None:
    """Export the live events (which acknowledges and trims them) and mark the stopped loop's scheduler dead,
    so the next loop may register itself again."""
    if ctx.settings.events_enabled:
        try:
            scheduled_export()
        except Exception:
            log.exception("the export in the scheduler failed; the next loop tries again")
    try:
        scheduler.register_death()
    except redis_lib.RedisError:
        pass  # its key expires by itself within the interval


def ensure_schedules(scheduler, settings) -> bool:
    """Register the schedules again when one of them is missing; True when it had to."""
    wanted = [schedule_id(settings, "ingest")] + ([schedule_id(settings, "export")] if settings.events_enabled else [])
    if all(job_id in scheduler for job_id in wanted):
        return False
    register_schedules(scheduler, settings)
    log.warning("schedules were missing in Redis (a restart or flush); registered them again: %s", ", ".join(wanted))
    return True
