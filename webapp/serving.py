"""The per-process plan cache: every plan in memory, reloaded when the data version moves."""

import logging
import threading
import time
from dataclasses import dataclass, field

from models import db, get_data_version, load_serving_plans

log = logging.getLogger("bannerservice.serving")


@dataclass(frozen=True)
class Snapshot:
    """One data version's plans: {(quarter, campaign_id): ((banner_id, image_name), ...)}."""

    version: int
    plans: dict = field(default_factory=dict)
    campaigns: frozenset = frozenset()
    # Rendered slot pages by (quarter, campaign_id, banner_id), filled as visitors ask; a new
    # snapshot starts empty, so a page never outlives the data it shows.
    pages: dict = field(default_factory=dict)


class PlanCache:
    """Plans held by a web process; a request reads a snapshot and never queries the database.

    The data version is checked in Redis at most every `refresh_seconds`; when it moved,
    one thread reloads while the others keep serving the previous snapshot.
    """

    DATABASE_CHECK_SECONDS = 60.0

    def __init__(self, redis, version_key, refresh_seconds=1.0, clock=time.monotonic):
        self.redis, self.version_key = redis, version_key
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self._snapshot = Snapshot(version=-1)
        self._checked_at = float("-inf")
        self._reload_lock = threading.Lock()
        self._database_checked_at = float("-inf")

    def snapshot(self) -> Snapshot:
        if self.clock() - self._checked_at >= self.refresh_seconds:
            # Until the first load, wait for it; after that, never wait for a reload.
            if self._reload_lock.acquire(blocking=self._snapshot.version < 0):
                try:
                    self._refresh()
                finally:
                    self._reload_lock.release()
        return self._snapshot

    def invalidate(self):
        """Check the version on the next request (the CLI and tests call this after a load)."""
        self._checked_at = float("-inf")

    def _refresh(self):
        try:
            version = self._published_version()
            if version != self._snapshot.version:
                self._snapshot = self._load()
                log.info("plans reloaded: data version %s, %s plans", self._snapshot.version, len(self._snapshot.plans))
        except Exception:
            if self._snapshot.version < 0:
                raise  # nothing to serve yet: the request fails and the next one tries again
            # Keep serving the plans we have; try again after the refresh interval, not on every request.
            log.exception("plans could not be reloaded; serving data version %s still", self._snapshot.version)
        self._checked_at = self.clock()

    def _published_version(self):
        now = self.clock()
        if now - self._database_checked_at >= self.DATABASE_CHECK_SECONDS:
            # Once a minute, the database itself: a version whose publish to Redis was lost still arrives.
            self._database_checked_at = now
            return get_data_version()
        try:
            value = self.redis.get(self.version_key)
        except Exception:  # Redis down: ask the database, once per refresh interval
            log.warning("cannot read the data version from Redis; reading it from the database", exc_info=True)
            return get_data_version()
        return int(value) if value is not None else None

    def _load(self) -> Snapshot:
        with db.atomic():
            version = get_data_version()
            plans = load_serving_plans()
        try:
            # Redis lost the key (restart, flush): publish the database's version again.
            self.redis.set(self.version_key, version, nx=True)
        except Exception:
            log.warning("cannot publish the data version to Redis", exc_info=True)
        campaigns = frozenset(campaign for _, campaign in plans)
        return Snapshot(version, plans, campaigns)
