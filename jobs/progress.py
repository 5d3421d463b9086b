"""How far a run is: bytes done of bytes to do, kept on the run record, the RQ job's meta and the lock."""

import time

from jobs import runtime
from models import IngestRun


class LockLost(Exception):
    """The run's lock expired and another run took it: this one must stop writing."""


class Progress:
    """Bytes done of bytes to do, written to the run record and the RQ job's meta a few times a second."""

    INTERVAL = 0.5

    def __init__(self, ctx, run, callback):
        self.ctx, self.run, self.callback = ctx, run, callback
        self.total, self.done, self._text, self._last = 0, 0, "", 0.0
        from rq import get_current_job

        self.job = get_current_job()

    def stage(self, text):
        self._text = text
        self._flush(force=True)

    def advance(self, amount):
        self.done += amount
        if self.callback:
            self.callback(self.done, self.total, self._text)
        if time.monotonic() - self._last >= self.INTERVAL:
            self._flush()

    def _flush(self, force=False):
        self._last = time.monotonic()
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        IngestRun.update(progress=fraction, stage=self._text).where(IngestRun.id == self.run.id).execute()
        if not runtime.hold_lock(self.ctx, self.run.id):  # the heartbeat: a live run keeps its lock
            raise LockLost(f"run {self.run.id} lost the ingest lock to {runtime.lock_holder(self.ctx)}; it stopped")
        if self.job is not None:
            self.job.meta["progress"] = {"fraction": fraction, "stage": self._text}
            self.job.save_meta()
        if self.callback and force:
            self.callback(self.done, self.total, self._text)
