"""The recurring jobs, registered with rq-scheduler under fixed ids."""

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


def scheduler_for(ctx):
    """An rq-scheduler Scheduler on the context's Redis and queue."""
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=ctx.settings.queue_name, connection=ctx.raw_redis)
