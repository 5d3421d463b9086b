"""The recurring jobs, registered with rq-scheduler under fixed ids."""

from jobs.export import scheduled_export
from jobs.ingest import scheduled_ingest

# Fixed ids: registering again replaces the entry, so restarts never stack up schedules.
INGEST_SCHEDULE_ID = "bannerservice-scheduled-ingest"
EXPORT_SCHEDULE_ID = "bannerservice-scheduled-export"


def register_schedules(scheduler, settings):
    """(Re)register the scheduled ingest, and the live export when events are on; returns the ingest's job."""
    scheduler.cancel(EXPORT_SCHEDULE_ID)
    if settings.events_enabled:
        scheduler.cron(
            settings.export_cron,
            func=scheduled_export,
            id=EXPORT_SCHEDULE_ID,
            queue_name=settings.queue_name,
            timeout=600,
            result_ttl=3600,
            use_local_timezone=False,
            description=f"export live events on cron {settings.export_cron!r}",
        )
    scheduler.cancel(INGEST_SCHEDULE_ID)
    return scheduler.cron(
        settings.ingest_cron,
        func=scheduled_ingest,
        id=INGEST_SCHEDULE_ID,
        queue_name=settings.queue_name,
        timeout=3600,
        result_ttl=86400,
        use_local_timezone=False,
        description=f"ingest {settings.ingest_source or '(INGEST_SOURCE)'} on cron {settings.ingest_cron!r}",
    )


def scheduler_for(ctx):
    """An rq-scheduler Scheduler on the context's Redis and queue."""
    from rq_scheduler import Scheduler

    return Scheduler(queue_name=ctx.settings.queue_name, connection=ctx.raw_redis)
