"""How far a run is: bytes done of bytes to do, kept on the run record and the RQ job's meta."""

import logging
import time
from contextlib import contextmanager

from models import IngestRun

log = logging.getLogger("bannerservice.ingest")


class Progress:
    """Bytes done of bytes to do, written to the run record and the RQ job's meta a few times a second.

    Each report of progress also tells the run's heartbeat that the work is alive, and raises the
    heartbeat's problem (a lost lock, a stall) so the work stops before it writes anything more.
    """

    INTERVAL = 0.5

    def __init__(self, run, callback, heartbeat):
        self.run, self.callback, self.heartbeat = run, callback, heartbeat
        self.total, self.done, self._text, self._last = 0, 0, "", 0.0
        from rq import get_current_job

        self.job = get_current_job()

    def stage(self, text):
        self._text = text
        self._flush(force=True)

    def advance(self, amount):
        self.done += amount
        self.heartbeat.progress()
        if self.callback:
            self.callback(self.done, self.total, self._text)
        if time.monotonic() - self._last >= self.INTERVAL:
            self._flush()

    @contextmanager
    def reading(self, path):
        """While inside, a read of `path` that makes no progress for INGEST_STALL_SECONDS ends the run."""
        self.heartbeat.start_reading(path)
        try:
            yield
        finally:
            self.heartbeat.stop_reading()

    def _flush(self, force=False):
        if self.heartbeat.problem is not None:
            raise self.heartbeat.problem
        self._last = time.monotonic()
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        try:  # progress is for people watching; a database that refuses it must not stop the load
            IngestRun.update(progress=fraction, stage=self._text).where(IngestRun.id == self.run.id).execute()
            if self.job is not None:
                self.job.meta["progress"] = {"fraction": fraction, "stage": self._text}
                self.job.save_meta()
        except Exception as exc:
            log.warning("run=%s could not record progress: %s", self.run.id, exc)
        if self.callback and force:
            self.callback(self.done, self.total, self._text)
