"""The ingest job: fetch a source, parse it, and replace each quarter's data atomically.

`run_ingest` is the RQ job; the CLI runs the same function in the foreground.
"""

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from jobs import runtime
from live.export import live_batches
from jobs.images import ingest_images
from jobs.parsing import FileRejected, quote, parse_clicks, parse_conversions, parse_impressions
from jobs.quarters import build_quarter
from jobs.sources import FileInfo, FileRefused, SourceError, open_source, sha256_of
from jobs.store import (
    emptied_files, is_loaded, live_set, loaded_hash, remember_live_set, remember_loaded, store_quarter,
)
from jobs.progress import Progress
from jobs.runs import Heartbeat, LockLost, RunEnd, cut, reap_abandoned_runs
from jobs.streams import HashingLines, Limited
from models import IngestFile, IngestRun, active_run, bump_data_version, db, unbounded_database_waits, utcnow

log = logging.getLogger("bannerservice.ingest")

QUARTERS = (1, 2, 3, 4)
CSV_NAMES = ("impressions.csv", "clicks.csv", "conversions.csv")


class IngestBusy(Exception):
    """Another ingest is queued or running."""

    def __init__(self, run):
        self.run = run
        self.what = f"run #{run.id} is {run.status}" if run else "another ingest holds the lock"
        super().__init__(f"an ingest is already in progress: {self.what}")


def run_ingest(source=None, trigger="schedule", user=None, run_id=None, on_progress=None, live_hours=None,
               accept_rejects=False):
    """Load `source` (a directory or s3://bucket/prefix; default INGEST_SOURCE) into the database.

    Called by an RQ worker with the `run_id` that `request_ingest` created and locked, or
    directly (CLI, schedule) without one: then it takes the lock itself and raises
    IngestBusy when another run holds it. Returns the finished IngestRun's id.
    `on_progress(done, total, stage)` is for a foreground caller's progress bar.
    `live_hours` adds the exported live batches of that many past hours (default LIVE_HOURS).
    `accept_rejects` loads quarters whose files reject more rows than INGEST_REJECT_LIMIT_PERCENT.
    """
    ctx = runtime.context()
    settings = ctx.settings
    source = source or settings.ingest_source
    live_hours = settings.live_hours if live_hours is None else live_hours
    if run_id is None:
        run = _start_locked_run(ctx, source, trigger, user, accept_rejects=accept_rejects)
    else:
        run = IngestRun.get_by_id(run_id)
        if run.status != IngestRun.QUEUED:
            log.warning("run=%s is %s, not queued: not run again", run.id, run.status)
            return run.id
        if not runtime.hold_lock(ctx, run.id):
            holder = runtime.lock_holder(ctx)
            RunEnd(ctx, run)(IngestRun.FAILED, f"another ingest (run {holder}) took the lock while this run waited "
                                               "in the queue; nothing was loaded")
            return run.id
    end = RunEnd(ctx, run)
    status, error = IngestRun.FAILED, "the run stopped before it finished"
    try:
        with Heartbeat(ctx, run.id, on_stall=lambda exc: end(IngestRun.FAILED, str(exc))) as heartbeat:
            run.status, run.started_at, run.stage = IngestRun.RUNNING, utcnow(), "starting"
            run.save()
            log.info("run=%s start source=%s trigger=%s user=%s", run.id, quote(source), trigger, user)
            tracker = Progress(run, on_progress, heartbeat)
            with unbounded_database_waits():  # a quarter's statements may take longer than a request's deadline
                outcome = _ingest(ctx, run, source, tracker, live_hours, run.accept_rejects)
            status, error = outcome.status, outcome.error
    except Exception as exc:  # the record must say what happened, whatever happened
        log.error("run=%s failed: %s", run.id, quote(_describe_error(exc), 500), exc_info=not isinstance(exc, SourceError))
        status, error = IngestRun.FAILED, _describe_error(exc)
    finally:
        end(status, error)  # also on a job timeout, SystemExit or KeyboardInterrupt
        runtime.publish_data_version(ctx)  # again, in case a publish after a quarter was lost
    return run.id


def request_ingest(source=None, trigger="manual", user=None, live_hours=None, accept_rejects=False):
    """Queue an ingest for a worker unless one is queued or running; returns the new IngestRun.

    Raises IngestBusy (with the active run) otherwise, so a second request never queues twice.
    """
    ctx = runtime.context()
    source = source or ctx.settings.ingest_source
    run = _start_locked_run(ctx, source, trigger, user, status=IngestRun.QUEUED, accept_rejects=accept_rejects)
    try:
        job = ctx.queue().enqueue(
            run_ingest, source, trigger, user, run.id, None, live_hours,
            job_id=runtime.rq_id(ctx.settings, f"ingest-{run.id}"), job_timeout=3600, result_ttl=86400, failure_ttl=7 * 86400,
        )
    except Exception as exc:
        run.status, run.error, run.finished_at = IngestRun.FAILED, f"could not queue: {exc}", utcnow()
        run.save()
        runtime.release_lock(ctx, run.id)
        raise
    run.job_id = job.id
    run.save()
    log.info("run=%s queued source=%s trigger=%s user=%s", run.id, source, trigger, user)
    return run


def scheduled_ingest():
    """What rq-scheduler runs: an ingest of INGEST_SOURCE, skipped (and logged) while another is active."""
    try:
        return run_ingest(trigger="schedule")
    except IngestBusy as exc:
        log.info("scheduled ingest skipped: %s", exc)
        return None


def _start_locked_run(ctx, source, trigger, user, status=IngestRun.RUNNING, accept_rejects=False):
    # Before taking the lock: afterwards it says "pending", and runs whose worker died would look alive.
    reap_abandoned_runs(ctx)
    if not runtime.acquire_lock(ctx):
        raise IngestBusy(active_run())
    try:
        run = IngestRun.create(trigger=trigger, user=user, source=source or "", status=status, accept_rejects=accept_rejects)
    except Exception:
        runtime.release_lock(ctx, None)
        raise
    runtime.hold_lock(ctx, run.id)
    return run


@dataclass
class _Outcome:
    status: str = IngestRun.SUCCEEDED
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # said in the history without failing the run
    had_rejects: bool = False

    @property
    def error(self):
        return "; ".join(self.errors + self.notes) or None

    def fail(self, message):
        self.errors.append(message)
        self.status = IngestRun.FAILED

    def finish(self):
        if self.status != IngestRun.FAILED and self.had_rejects:
            self.status = IngestRun.SUCCEEDED_WITH_REJECTS
        return self


def _ingest(ctx, run, source_spec, tracker, live_hours=0, accept_rejects=False) -> _Outcome:
    outcome = _Outcome()
    if not source_spec:
        outcome.fail("no source: pass one or set INGEST_SOURCE")
        return outcome
    settings = ctx.settings
    source = open_source(source_spec, settings.s3_endpoint_url, settings.s3_max_attempts)
    infos = {q: {name: _stat(source, f"{q}/{name}") for name in CSV_NAMES} for q in QUARTERS}
    live = {}
    if live_hours:
        live_source = open_source(settings.live_root, settings.s3_endpoint_url, settings.s3_max_attempts) if settings.live_root else source
        live = live_batches(live_source, live_hours, datetime.now(timezone.utc))
    images = source.list_images()
    tracker.total = (
        sum(i.size for files in infos.values() for i in files.values() if isinstance(i, FileInfo))
        + sum(info.size for files in live.values() for _, info in files)
        + sum(i.size for i in images)
    )
    limits = (settings.ingest_reject_limit_percent, accept_rejects)
    for quarter in QUARTERS:
        _ingest_quarter(ctx, run, source, quarter, infos[quarter], live.get(quarter, []), tracker, outcome, limits)
    ingest_images(ctx, run, source, images, tracker, outcome)
    return outcome.finish()


@dataclass
class _Part:
    """One file that goes into a quarter: the historical file of its kind, or a live batch."""

    source: object
    info: object
    kind: str  # impressions.csv | clicks.csv | conversions.csv
    record: IngestFile


def _stat(source, path):
    """The file's FileInfo, None when it is missing, or the FileRefused that says why it may not be read."""
    try:
        return source.stat(path)
    except FileRefused as exc:
        return exc


def _ingest_quarter(ctx, run, source, quarter, infos, live_files, tracker, outcome, limits):
    records = {name: _file_record(run, quarter, name, info) for name, info in infos.items()}
    missing = [name for name, info in infos.items() if info is None]
    refused = {name: info for name, info in infos.items() if isinstance(info, FileRefused)}
    if missing or refused:
        for name in missing:
            records[name].error = "file is missing"
        for name, exc in refused.items():
            records[name].error = str(exc)
        _save_records(records.values())
        said = [f"{', '.join(missing)} missing"] if missing else []
        outcome.fail(f"quarter {quarter}: {'; '.join(said + [str(exc) for exc in refused.values()])}; previous data kept")
        return
    parts = [_Part(source, infos[name], name, records[name]) for name in CSV_NAMES] + [
        _Part(live_source, info, info.path.rsplit("/", 1)[-1], _file_record(run, quarter, info.path, info))
        for live_source, info in live_files
    ]
    all_records = [part.record for part in parts]
    live_paths = sorted(info.path for _, info in live_files)
    tracker.stage(f"quarter {quarter}: checking")
    hashes = []
    for part in parts:
        try:
            hashes.append(_content_hash(part.source, part.info, tracker))
        except FileRefused as exc:
            part.record.error = str(exc)
            _save_records(all_records)
            outcome.fail(f"quarter {quarter}: {exc}; previous data kept")
            return
    if live_set(quarter) == live_paths and all(is_loaded(part.info, h) for part, h in zip(parts, hashes)):
        for part, digest in zip(parts, hashes):
            part.record.unchanged, part.record.sha256 = True, digest or loaded_hash(part.info)
        _save_records(all_records)
        tracker.advance(sum(part.info.size for part in parts))
        log.info("run=%s quarter=%s unchanged", run.id, quarter)
        return
    try:
        parsed = _parse_quarter(quarter, parts, tracker)
    except (FileRejected, FileRefused) as exc:
        for record in all_records:
            if record.sha256 is None and record.error is None:
                record.error = "not read: another file of this slot of the hour was refused"
        _save_records(all_records)
        outcome.fail(f"quarter {quarter}: {exc}; previous data kept")
        log.warning("run=%s quarter=%s rejected: %s", run.id, quarter, exc)
        return
    except (SourceError, LockLost):
        raise
    except Exception as exc:
        _save_records(all_records)
        outcome.fail(f"quarter {quarter}: {_describe_error(exc)}; previous data kept")
        log.exception("run=%s quarter=%s failed", run.id, quarter)
        return
    emptied = emptied_files(quarter, parsed)
    if emptied:
        for name in emptied:
            records[name].error = "no data rows where the loaded data has some; looks truncated"
        _save_records(all_records)
        outcome.fail(f"quarter {quarter}: {', '.join(emptied)} has no data rows; previous data kept")
        return
    reject_limit, accept_rejects = limits
    over = [(part, share) for part in parts if (share := _rejected_share(part.record)) > reject_limit]
    if over and not accept_rejects:
        for part, share in over:
            part.record.error = f"over the reject limit: {share:.1f}% of its rows rejected (limit {reject_limit:g}%)"
        _save_records(all_records)
        outcome.fail(f"quarter {quarter}: " + ", ".join(
            f"{part.info.path} has {share:.1f}% of its rows rejected ({part.record.rejected} of {part.record.rows_read}; "
            f"limit {reject_limit:g}%)" for part, share in over
        ) + "; previous data kept (load it anyway with --accept-rejects)")
        log.warning("run=%s quarter=%s over the reject limit", run.id, quarter)
        return
    # Popped: the impression counts are in `data` now, and their columns can go before the store.
    data = build_quarter(quarter, parsed.pop("impressions"), parsed["clicks"], parsed["conversions"])
    tracker.stage(f"quarter {quarter}: storing")
    try:
        with db.atomic():
            store_quarter(quarter, parsed, data)
            for part in parts:
                remember_loaded(part.info, part.record.sha256)
            remember_live_set(quarter, live_paths)
            _save_records(all_records)
            version = bump_data_version()
            # The commit point: the quarter is applied only while this run still holds the lock.
            if not runtime.hold_lock(ctx, run.id):
                raise LockLost(f"run {run.id} lost the ingest lock to {runtime.lock_holder(ctx)}; it stopped")
    except LockLost:
        raise
    except Exception as exc:
        outcome.fail(f"quarter {quarter}: could not store: {_describe_error(exc)}; previous data kept")
        log.exception("run=%s quarter=%s store failed", run.id, quarter)
        _save_records(all_records)
        return
    runtime.publish_data_version(ctx, version)
    outcome.had_rejects |= any(r.rejected for r in all_records)
    if over:
        outcome.notes.append(f"quarter {quarter}: rejects accepted: " + ", ".join(
            f"{part.info.path} {share:.1f}% of its rows rejected" for part, share in over))
    log.info(
        "run=%s quarter=%s loaded campaigns=%s data_version=%s live_files=%s %s",
        run.id, quarter, data.campaign_count, version, len(live_paths),
        " ".join(f"{r.name}:read={r.rows_read},loaded={r.loaded},rejected={r.rejected}" for r in records.values()),
    )


def _parse_quarter(quarter, parts, tracker):
    """Parse the quarter's files, each kind's historical file first, then its live batches (earlier rows win)."""
    parsed = {"impressions": None, "clicks": None, "conversions": None}

    def into(key, parse):
        def run(lines):
            parsed[key], report = parse(lines)
            return parsed[key], report
        return run

    parsers = {
        "impressions.csv": into("impressions", lambda lines: parse_impressions(lines, parsed["impressions"])),
        "clicks.csv": into("clicks", lambda lines: parse_clicks(lines, parsed["clicks"])),
        "conversions.csv": into("conversions", lambda lines: parse_conversions(lines, parsed["clicks"], parsed["conversions"])),
    }
    for kind in CSV_NAMES:
        for part in parts:
            if part.kind == kind:
                _parse_file(part.source, quarter, part.info, part.record, parsers[kind], tracker)
    return parsed


def _parse_file(source, quarter, info, record, parse, tracker):
    tracker.stage(f"quarter {quarter}: reading {info.path}")
    try:
        with tracker.reading(info.path):
            stream = source.open(info.path, info)  # FileChanged unless it is the version listed
            hashing = HashingLines(stream if info.limit is None else Limited(stream, info.limit), tracker)
            with hashing:
                _, report = parse(hashing)
                hashing.drain()
    except (FileRejected, FileRefused) as exc:
        record.error = str(exc)
        raise
    record.sha256 = hashing.hexdigest()
    for attr in ("rows_read", "loaded", "duplicates", "conflicts", "rejected", "orphans"):
        setattr(record, attr, getattr(report, attr))
    record.samples = json.dumps(
        [[line, reason] for line, reason in report.rejects]
        + [[line, reason] for line, reason in report.conflict_samples]
    )


def _rejected_share(record) -> float:
    return 100.0 * record.rejected / record.rows_read if record.rows_read else 0.0


def _file_record(run, quarter, name, info):
    info = info if isinstance(info, FileInfo) else None
    return IngestFile(
        run=run, quarter=quarter, name=name,
        size=info.size if info else None, etag=info.etag if info else None,
    )


def _save_records(records):
    for record in records:
        record.save()


def _content_hash(source, info, tracker):
    """The sha256 of a file whose source gives no ETag (a directory); None when the ETag will do."""
    if info.etag:
        return None
    with tracker.reading(info.path), source.open(info.path, info) as stream:
        return sha256_of(stream)


def _describe_error(exc) -> str:
    return cut(str(exc) if isinstance(exc, (SourceError, LockLost)) else f"{type(exc).__name__}: {exc}")


