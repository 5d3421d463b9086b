"""What a job needs around it: settings, the database, Redis, the queue, and the ingest lock."""

import logging
import re
from dataclasses import dataclass
from functools import cached_property

import redis as redis_lib

from config import Settings, load_settings
from jobs.logs import configure_logging
from models import db, get_data_version, init_db, limit_database_waits

log = logging.getLogger("bannerservice.runtime")


@dataclass
class Context:
    settings: Settings

    @cached_property
    def redis(self):
        return redis_client(self.settings.redis_url, decode_responses=True)

    @cached_property
    def raw_redis(self):
        """A connection without decoding, as RQ requires."""
        return redis_client(self.settings.redis_url)

    def key(self, name: str) -> str:
        return self.settings.redis_prefix + name

    def queue(self):
        from rq import Queue

        return Queue(self.settings.queue_name, connection=self.raw_redis)


_context = None


def redis_client(url, socket_timeout=5, retries=1, **kwargs):
    """A Redis client that gives up within about two seconds when the server is gone.

    redis-py's default retries with backoff would hold a request for several seconds.
    """
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis_lib.Redis.from_url(
        url, socket_connect_timeout=min(1, socket_timeout), socket_timeout=socket_timeout, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries), **kwargs,
    )


def context(settings: Settings | None = None) -> Context:
    """The process's context; the first call (or one with new settings) binds the database and logging."""
    global _context
    if settings is not None or _context is None:
        settings = settings or load_settings()
        timeouts = settings.database_connect_timeout, settings.database_query_timeout
        if _context is None or _context.settings.database_url != settings.database_url or not _db_bound():
            init_db(settings.database_url, *timeouts)
        elif settings.database_url.startswith("postgres"):
            limit_database_waits(*timeouts)
        _context = Context(settings)
        configure_logging(settings)
    return _context


def _db_bound() -> bool:
    return db.obj is not None


def acquire_lock(ctx: Context) -> bool:
    """Take the ingest lock for a run about to be created; False when another holds it."""
    return bool(ctx.redis.set(ctx.key("ingest:lock"), "pending", nx=True, ex=ctx.settings.ingest_lock_seconds))


# Take over a pending or own lock, or a free one; never another run's.
_HOLD = """
local holder = redis.call('get', KEYS[1])
if holder == false or holder == ARGV[1] or holder == 'pending' then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def hold_lock(ctx: Context, run_id: int) -> bool:
    """Name `run_id` as the lock's holder and push its expiry out: the run's heartbeat."""
    return bool(ctx.redis.eval(_HOLD, 1, ctx.key("ingest:lock"), str(run_id), ctx.settings.ingest_lock_seconds))


_RELEASE_IF_HELD = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def release_if_held(redis, key: str, holder: str) -> bool:
    """Delete the lock `key` only while `holder` is its value (atomically): never someone else's."""
    return bool(redis.eval(_RELEASE_IF_HELD, 1, key, holder))


def release_lock(ctx: Context, run_id) -> None:
    """Drop the lock if `run_id` (or a pending request, for None) still holds it."""
    release_if_held(ctx.redis, ctx.key("ingest:lock"), "pending" if run_id is None else str(run_id))


def rq_id(settings: Settings, what: str) -> str:
    """An RQ or rq-scheduler id for `what` in this deployment: rq's keys carry no prefix of ours,
    so the queue name goes in, reduced to the characters RQ allows."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{settings.queue_name}-{what}")


def lock_holder(ctx: Context):
    """The lock's value: a run id, "pending", or None when nobody holds it."""
    return ctx.redis.get(ctx.key("ingest:lock"))


def publish_data_version(ctx: Context, version=None) -> None:
    """Tell every web process that plans changed (they poll this key at most once a second).

    Without `version`, the database's. A Redis failure is logged, not raised: the load it follows
    stands, and web processes also read the database's version once a minute.
    """
    try:
        ctx.redis.set(ctx.key("data_version"), str(version if version is not None else get_data_version()))
    except Exception:
        log.warning("could not publish the data version to Redis; web processes will see it later", exc_info=True)
