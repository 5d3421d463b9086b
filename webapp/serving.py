"""The per-process plan cache: every plan in memory, reloaded off the request path when the data version moves."""

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field

from models import db, get_data_version, load_serving_plans

log = logging.getLogger("bannerservice.serving")

# Rendered slot pages a process keeps per data version (~1 KB each): at 10,000 campaigns
# the pages of every (quarter, campaign, banner) would take hundreds of MB per process.
PAGES_MAX = 20_000


class BoundedPages(dict):
    """A dict that forgets its oldest entries past `limit` (the rendered pages of a snapshot)."""

    def __init__(self, limit=PAGES_MAX):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value):
        while len(self) >= self.limit:
            try:
                self.pop(next(iter(self)), None)
            except (RuntimeError, StopIteration):  # another thread changed it meanwhile: try again
                continue
        super().__setitem__(key, value)


@dataclass(frozen=True)
class Snapshot:
    """One data version's plans: {(quarter, campaign_id): ((banner_id, image_name), ...)}."""

    version: int
    plans: dict = field(default_factory=dict)
    campaigns: frozenset = frozenset()
    landings: dict = field(default_factory=dict)  # {banner_id: landing_url} of banners that have one
    # Rendered slot pages by (quarter, campaign_id, banner_id), filled as visitors ask; a new
    # snapshot starts empty, so a page never outlives the data it shows.
    pages: dict = field(default_factory=BoundedPages)


_caches = weakref.WeakSet()  # every PlanCache of the process, for os.register_at_fork below


class PlanCache:
    """Plans held by a web process; a request reads a snapshot and never queries the database.

    The first request waits for the first load. After that a request only notes, at most every
    `refresh_seconds`, that the data version is due for a check: a reloader thread of the
    process checks it in Redis and, when it moved, loads the new plans and swaps the snapshot
    in one assignment. No request ever waits for a reload.
    """

    DATABASE_CHECK_SECONDS = 60.0

    def __init__(self, redis, version_key, refresh_seconds=1.0, clock=time.monotonic):
        self.redis, self.version_key = redis, version_key
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self._snapshot = Snapshot(version=-1)
        self._checked_at = float("-inf")
        self._database_checked_at = float("-inf")
        self._after_fork()
        _caches.add(self)

    def _after_fork(self):
        """Locks of this process's own (in a forked child, the parent's reloader may have held them), no reloader yet."""
        self._reload_lock, self._wanted = threading.Lock(), threading.Condition()
        self._requested = self._done = 0
        self._reloader, self._reloader_pid = None, None

    def snapshot(self) -> Snapshot:
        if not self._snapshot.plans:
            # Until plans are loaded (a process started before the first ingest has none), requests
            # wait for the check and load: there is nothing else to serve.
            with self._reload_lock:
                if not self._snapshot.plans:
                    self._refresh(first=self._snapshot.version < 0)
        elif self.clock() - self._checked_at >= self.refresh_seconds:
            self._checked_at = self.clock()  # the first request past the interval asks; the others go on
            self._wake_reloader()
        return self._snapshot

    def preload(self) -> bool:
        """Load the plans outside any request (a server's master, before it forks its workers);
        False, logged, when the database does not let us."""
        try:
            # In this thread, under the lock: a reloader thread started here could hold the lock at a fork.
            with self._reload_lock:
                self._refresh(first=not self._snapshot.plans)
            return True
        except Exception:
            log.warning("plans could not be loaded before the workers start; each will load them itself", exc_info=True)
            return False
        finally:
            if not db.is_closed():
                db.close()  # forked workers must not share this connection

    def invalidate(self):
        """Check the version on the next request (the CLI and tests call this after a load)."""
        self._checked_at = float("-inf")

    def settle(self, timeout=10.0) -> bool:
        """Wait until the checks asked for so far are done (tests and benchmarks; never a request)."""
        with self._wanted:
            return self._wanted.wait_for(lambda: self._done >= self._requested, timeout)

    def _wake_reloader(self):
        if self._reloader_pid != os.getpid() or not self._reloader.is_alive():
            with self._reload_lock:
                # A forked worker inherits no threads: each process starts its own reloader.
                if self._reloader_pid != os.getpid() or not self._reloader.is_alive():
                    self._reloader = threading.Thread(target=self._reload_forever, name="plan-reloader", daemon=True)
                    self._reloader_pid = os.getpid()
                    self._reloader.start()
        with self._wanted:
            self._requested += 1
            self._wanted.notify_all()

    def _reload_forever(self):
        while True:
            with self._wanted:
                self._wanted.wait_for(lambda: self._done < self._requested)
                asked = self._requested
            try:
                with self._reload_lock:
                    self._refresh()
            except Exception:  # the thread must outlive any error; _refresh logs its own
                log.exception("plan reloader: unexpected error")
            finally:
                if not db.is_closed():
                    db.close()  # the reloader's own connection; the next check opens one if it needs it
                with self._wanted:
                    self._done = asked
                    self._wanted.notify_all()

    def _refresh(self, first=False):
        try:
            version = self._published_version()
            if version != self._snapshot.version:
                started = time.perf_counter()
                self._snapshot = self._load()
                log.info("plans reloaded: data version %s, %s plans in %.0f ms", self._snapshot.version,
                         len(self._snapshot.plans), (time.perf_counter() - started) * 1000)
        except Exception:
            if first:
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
        return Snapshot(version, plans, campaigns, landings=plans.landings)


def _after_fork_in_child():
    for cache in list(_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
