"""Remove what scripts/run.sh put in Redis: its schedules, its queue and its jobs, and (--keys) every key under its REDIS_PREFIX.

Run by run.sh when it exits, after its scheduler has stopped (a running one would register the schedules again).
Reads the same environment as the app (REDIS_URL, REDIS_PREFIX, QUEUE_NAME).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.runtime import context  # noqa: E402
from jobs.schedule import schedule_id, scheduler_for  # noqa: E402

QUICKSTART_PREFIX = "bannerservice-quickstart-"


def remove_schedules(ctx) -> list[str]:
    """Cancel this deployment's scheduled ingest and export and delete their jobs; the ids removed."""
    from rq.job import Job

    scheduler, removed = scheduler_for(ctx), []
    for what in ("ingest", "export"):
        job_id = schedule_id(ctx.settings, what)
        if job_id in scheduler:
            scheduler.cancel(job_id)
            removed.append(job_id)
        Job(job_id, connection=ctx.raw_redis).delete(remove_from_queue=False)
    return removed


def remove_queue(ctx) -> None:
    """Delete the queue, its registries and every job in them."""
    queue = ctx.queue()
    for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.started_job_registry,
                     queue.deferred_job_registry, queue.scheduled_job_registry, queue.canceled_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
        ctx.raw_redis.delete(registry.key)
    queue.delete(delete_jobs=True)


def remove_keys(ctx) -> int:
    """Delete every key under the prefix; how many."""
    count = 0
    for key in ctx.raw_redis.scan_iter(match=ctx.settings.redis_prefix.replace("*", r"\*") + "*", count=1000):
        count += ctx.raw_redis.delete(key)
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", action="store_true", help=f"also delete the keys under REDIS_PREFIX (only a {QUICKSTART_PREFIX}* one)")
    args = parser.parse_args(argv)
    ctx = context()
    removed = remove_schedules(ctx)
    remove_queue(ctx)
    message = f"removed schedules {', '.join(removed) or '(none)'} and queue {ctx.settings.queue_name}"
    if args.keys:
        if not ctx.settings.redis_prefix.startswith(QUICKSTART_PREFIX):
            print(f"{message}; kept the keys under {ctx.settings.redis_prefix!r}: not a quick start's prefix", file=sys.stderr)
            return 1
        message += f" and {remove_keys(ctx)} keys under {ctx.settings.redis_prefix}"
    print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
