"""Whether the dashboard's figures are as fresh as the schedules promise: the last successful data load, and the
live events' export. Said in the dashboard's layout, on every page, in a manager's words."""

from datetime import datetime, timedelta, timezone

from crontab import CronTab
from flask import current_app
from peewee import fn
from redis.exceptions import RedisError

from live.events import STREAM, stream_health
from models import IngestRun
from webapp.clock import utc_now

GRACE = timedelta(minutes=10)  # a scheduled run starts within seconds of its time, and a load takes minutes


def load_due_since(last_started, cron: str, now: datetime, grace=GRACE):
    """The scheduled time a load was due by and has not started since (UTC), or None when the last one is recent.

    `last_started` is naive UTC (as the database keeps it) or None; `now` is aware."""
    checked = now - grace
    due = checked + timedelta(seconds=CronTab(cron).previous(now=checked, default_utc=True))
    if last_started is not None and last_started.replace(tzinfo=timezone.utc) >= due:
        return None
    return due


def export_due_since(oldest: datetime, cron: str, now: datetime, grace=GRACE):
    """The scheduled export that should have counted an event of `oldest` (UTC, aware), when even its grace is past;
    else None."""
    due = oldest + timedelta(seconds=CronTab(cron).next(now=oldest, default_utc=True))
    return due if now - grace > due else None


def staleness() -> list:
    """What is late, as sentences for the layout's notice (empty when everything is on time)."""
    settings, now, said = current_app.extensions["settings"], utc_now(), []
    if settings.ingest_source:  # without a source, nothing is scheduled to load
        last = (IngestRun.select(fn.MAX(IngestRun.started_at))
                .where(IngestRun.status.in_([IngestRun.SUCCEEDED, IngestRun.SUCCEEDED_WITH_REJECTS])).scalar())
        due = load_due_since(last, settings.ingest_cron, now)
        if due is not None:
            since = f"started {_ago(now - last.replace(tzinfo=timezone.utc))} ago" if last else "has not run yet"
            said.append(f"The statistics may be out of date: the last successful data load {since}, and a "
                        f"scheduled load was due at {due:%H:%M} UTC on {due:%d %b}. Admins can see why on the Ingests page.")
    if settings.events_enabled:
        ctx = current_app.extensions["runtime"]
        try:
            stream = stream_health(ctx.redis, ctx.key(STREAM), now)
        except RedisError:
            stream = None  # the live panel and /healthz say Redis is away
        if stream and stream["length"]:
            age = timedelta(seconds=stream["oldest_seconds"])
            due = export_due_since(now - age, settings.export_cron, now)
            if due is not None:
                said.append(f"Live figures may be out of date: the oldest live event not yet counted is {_ago(age)} old, "
                            f"and an export was due at {due:%H:%M} UTC on {due:%d %b} to count it.")
    return said


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"
