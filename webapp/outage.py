"""Serving through outages: which errors mean a store is away, a breaker per store, degraded counters."""

import logging
import threading
import time

import peewee
import redis as redis_lib

log = logging.getLogger("bannerservice.outage")

# A Redis at maxmemory under noeviction refuses every write (OOM) but still answers reads: for a
# request that has to write, it is away until an export (XACK + XTRIM) or a person frees memory.
REDIS_ERRORS = (redis_lib.ConnectionError, redis_lib.TimeoutError, redis_lib.BusyLoadingError,
                redis_lib.exceptions.OutOfMemoryError)
DATABASE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)
RETRY_AFTER_SECONDS = 10


def is_full(exc) -> bool:
    """True when `exc` is a Redis refusing writes for want of memory (maxmemory under noeviction)."""
    return isinstance(exc, redis_lib.exceptions.OutOfMemoryError)


def outage_of(exc) -> str:
    """How a store's failure reads after its name: "is full (out of memory)" or "is unavailable"."""
    return "is full (out of memory)" if is_full(exc) else "is unavailable"


class StoreFailed(Exception):
    """A store failed where the request cannot go on without it; carries that store's breaker, so the
    503 and the log name the right one when sessions and events have a Redis each."""

    def __init__(self, breaker, cause):
        super().__init__(f"{breaker.name} {outage_of(cause)}: {type(cause).__name__}: {cause}")
        self.breaker, self.cause = breaker, cause


class Breaker:
    """Remembers that a store failed, so requests skip it for `retry_seconds` instead of each
    waiting for a timeout (a frozen Redis); logs the outage at most once every `log_every` seconds."""

    def __init__(self, name, retry_seconds=1.0, log_every=10.0, clock=time.monotonic):
        self.name, self.retry_seconds, self.log_every, self.clock = name, retry_seconds, log_every, clock
        self._until = float("-inf")
        self._logged_at = float("-inf")
        self.is_full = False  # the last failure was a full Redis: it refuses writes but still answers reads
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        """True while the store failed recently: use the degraded path without asking it."""
        return self.clock() < self._until

    def record(self, exc) -> None:
        """The store just failed with `exc`."""
        now = self.clock()
        with self._lock:
            self._until = now + self.retry_seconds
            self.is_full = is_full(exc)
            if now - self._logged_at < self.log_every:
                return
            self._logged_at = now
        log.warning("%s %s, serving degraded: %s: %s", self.name, outage_of(exc), type(exc).__name__, exc)


class DegradedCounts:
    """Per-process counts of views served without Redis and clicks that could not be kept."""

    NAMES = ("views", "clicks_dropped", "clicks_without_database")

    def __init__(self):
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._lock = threading.Lock()

    def add(self, name, n=1) -> None:
        with self._lock:
            self._counts[name] += n

    def as_dict(self) -> dict:
        with self._lock:
            return dict(self._counts)
