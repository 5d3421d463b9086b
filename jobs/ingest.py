"""The ingest job: fetch a source, parse it, and replace each quarter's data atomically.

`run_ingest` is the RQ job; the CLI runs the same function in the foreground.
"""

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from peewee import PostgresqlDatabase, chunked

from jobs import runtime
from jobs.images import NotAnImage, publish_file, sniff_image
from jobs.parsing import FileRejected, parse_clicks, parse_conversions, parse_impressions
from jobs.quarters import build_quarter, campaign_totals
from jobs.sources import CHUNK, FileInfo, SourceError, image_banner_id, open_source, sha256_of
from models import (
    Banner,
    BannerStat,
    CampaignStat,
    Click,
    Conversion,
    ImpressionCount,
    IngestFile,
    IngestRun,
    LoadedFile,
    Meta,
    Plan,
    active_run,
    bump_data_version,
    get_data_version,
    db,
    utcnow,
)

log = logging.getLogger("bannerservice.ingest")

QUARTERS = (1, 2, 3, 4)
CSV_NAMES = ("impressions.csv", "clicks.csv", "conversions.csv")
BATCH = 5000


class LockLost(Exception):
    """The run's lock expired and another run took it: this one must stop writing."""


class IngestBusy(Exception):
    """Another ingest is queued or running."""

    def __init__(self, run):
        self.run = run
        what = f"run #{run.id} is {run.status}" if run else "another ingest holds the lock"
        super().__init__(f"an ingest is already in progress: {what}")


def run_ingest(source=None, trigger="schedule", user=None, run_id=None, on_progress=None, live_hours=None):
    """Load `source` (a directory or s3://bucket/prefix; default INGEST_SOURCE) into the database.

    Called by an RQ worker with the `run_id` that `request_ingest` created and locked, or
    directly (CLI, schedule) without one: then it takes the lock itself and raises
    IngestBusy when another run holds it. Returns the finished IngestRun's id.
    `on_progress(done, total, stage)` is for a foreground caller's progress bar.
    `live_hours` adds the exported live batches of that many past hours (default LIVE_HOURS).
    """
    ctx = runtime.context()
    settings = ctx.settings
    source = source or settings.ingest_source
    live_hours = settings.live_hours if live_hours is None else live_hours
    if run_id is None:
        run = _start_locked_run(ctx, source, trigger, user)
    else:
        run = IngestRun.get_by_id(run_id)
        if not runtime.hold_lock(ctx, run.id):
            # It waited in the queue past the lock's expiry and another run has the lock now.
            run.status, run.finished_at = IngestRun.ABANDONED, utcnow()
            run.error = "another ingest took the lock while this run waited in the queue; nothing was loaded"
            run.save()
            log.warning("run=%s abandoned before it started: lock held by %s", run.id, runtime.lock_holder(ctx))
            return run.id
    run.status, run.started_at, run.stage = IngestRun.RUNNING, utcnow(), "starting"
    run.save()
    tracker = _Progress(ctx, run, on_progress)
    log.info("run=%s start source=%s trigger=%s user=%s", run.id, source, trigger, user)
    try:
        outcome = _ingest(ctx, run, source, tracker, live_hours)
        run.status = outcome.status
        run.error = outcome.error
    except Exception as exc:  # the record must say what happened, whatever happened
        log.exception("run=%s failed", run.id)
        run.status, run.error = IngestRun.FAILED, _describe_error(exc)
    finally:
        run.finished_at = utcnow()
        run.progress, run.stage = 1.0, "done"
        run.save()
        runtime.release_lock(ctx, run.id)
        _publish_version(ctx)  # again, in case a publish after a quarter was lost
    log.info("run=%s end status=%s error=%s", run.id, run.status, run.error)
    return run.id


def request_ingest(source=None, trigger="manual", user=None, live_hours=None):
    """Queue an ingest for a worker unless one is queued or running; returns the new IngestRun.

    Raises IngestBusy (with the active run) otherwise, so a second request never queues twice.
    """
    ctx = runtime.context()
    source = source or ctx.settings.ingest_source
    run = _start_locked_run(ctx, source, trigger, user, status=IngestRun.QUEUED)
    try:
        job = ctx.queue().enqueue(
            run_ingest, source, trigger, user, run.id, None, live_hours,
            job_id=_job_id(ctx, run), job_timeout=3600, result_ttl=86400, failure_ttl=7 * 86400,
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


def _job_id(ctx, run) -> str:
    """The RQ job id of a run; rq's keys carry no deployment prefix, so the queue name goes in."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{ctx.settings.queue_name}-ingest-{run.id}")


def scheduled_ingest():
    """What rq-scheduler runs: an ingest of INGEST_SOURCE, skipped (and logged) while another is active."""
    try:
        return run_ingest(trigger="schedule")
    except IngestBusy as exc:
        log.info("scheduled ingest skipped: %s", exc)
        return None


def reap_abandoned_runs(ctx=None) -> int:
    """Mark queued/running runs whose lock has expired (their worker died) as abandoned."""
    ctx = ctx or runtime.context()
    holder = runtime.lock_holder(ctx)
    stale = IngestRun.select().where(IngestRun.status.in_([IngestRun.QUEUED, IngestRun.RUNNING]))
    count = 0
    for run in stale:
        if holder is None or (holder.isdigit() and int(holder) != run.id):
            run.status = IngestRun.ABANDONED
            run.error = "the worker stopped before the run finished (its lock expired); nothing of the unfinished quarter was applied"
            run.finished_at = run.finished_at or utcnow()
            run.save()
            log.warning("run=%s abandoned", run.id)
            count += 1
    return count


def _start_locked_run(ctx, source, trigger, user, status=IngestRun.RUNNING):
    # Before taking the lock: afterwards it says "pending", and runs whose worker died would look alive.
    reap_abandoned_runs(ctx)
    if not runtime.acquire_lock(ctx):
        raise IngestBusy(active_run())
    try:
        run = IngestRun.create(trigger=trigger, user=user, source=source or "", status=status)
    except Exception:
        runtime.release_lock(ctx, None)
        raise
    runtime.hold_lock(ctx, run.id)
    return run


@dataclass
class _Outcome:
    status: str = IngestRun.SUCCEEDED
    errors: list = field(default_factory=list)
    had_rejects: bool = False

    @property
    def error(self):
        return "; ".join(self.errors) or None

    def fail(self, message):
        self.errors.append(message)
        self.status = IngestRun.FAILED

    def finish(self):
        if self.status != IngestRun.FAILED and self.had_rejects:
            self.status = IngestRun.SUCCEEDED_WITH_REJECTS
        return self


def _ingest(ctx, run, source_spec, tracker, live_hours=0) -> _Outcome:
    outcome = _Outcome()
    if not source_spec:
        outcome.fail("no source: pass one or set INGEST_SOURCE")
        return outcome
    settings = ctx.settings
    source = open_source(source_spec, settings.s3_endpoint_url, settings.s3_max_attempts)
    infos = {q: {name: source.stat(f"{q}/{name}") for name in CSV_NAMES} for q in QUARTERS}
    live = {}
    if live_hours:
        live_source = open_source(settings.live_root, settings.s3_endpoint_url, settings.s3_max_attempts) if settings.live_root else source
        live = _live_files(live_source, live_hours, datetime.now(timezone.utc))
    images = source.list_images()
    tracker.total = (
        sum(i.size for files in infos.values() for i in files.values() if i)
        + sum(info.size for files in live.values() for _, info in files)
        + sum(i.size for i in images)
    )
    for quarter in QUARTERS:
        _ingest_quarter(ctx, run, source, quarter, infos[quarter], live.get(quarter, []), tracker, outcome)
    _ingest_images(ctx, run, source, images, tracker, outcome)
    return outcome.finish()


def _live_files(live_source, hours, now) -> dict:
    """{quarter: [(source, FileInfo)]} of the exported live batches of the last `hours` hours.

    Each file counts only up to the length its folder's manifest vouches for (see jobs/export.py);
    the manifest's last entry and that length stand in for an ETag.
    """
    found = {}
    for back in range(hours):
        moment = now - timedelta(hours=back)
        folder = f"live/{moment:%Y-%m-%d}/{moment:%H}"
        for entry in live_source.list_dir(folder):
            if entry not in ("1", "2", "3", "4"):
                continue
            raw = live_source.read_bytes(f"{folder}/{entry}/_manifest.json")
            if not raw:
                continue  # no manifest: nothing in this folder was committed yet
            manifest = json.loads(raw)
            for name in CSV_NAMES:
                size = manifest["sizes"].get(name)
                if size is not None:
                    info = FileInfo(f"{folder}/{entry}/{name}", size, f"{manifest['last_entry']}:{size}", limit=size)
                    found.setdefault(int(entry), []).append((live_source, info))
    return found


@dataclass
class _Part:
    """One file that goes into a quarter: the historical file of its kind, or a live batch."""

    source: object
    info: object
    kind: str  # impressions.csv | clicks.csv | conversions.csv
    record: IngestFile


def _ingest_quarter(ctx, run, source, quarter, infos, live_files, tracker, outcome):
    records = {name: _file_record(run, quarter, name, info) for name, info in infos.items()}
    missing = [name for name, info in infos.items() if info is None]
    if missing:
        for name in missing:
            records[name].error = "file is missing"
        _save_records(records.values())
        outcome.fail(f"quarter {quarter}: {', '.join(missing)} missing; previous data kept")
        return
    parts = [_Part(source, infos[name], name, records[name]) for name in CSV_NAMES] + [
        _Part(live_source, info, info.path.rsplit("/", 1)[-1], _file_record(run, quarter, info.path, info))
        for live_source, info in live_files
    ]
    all_records = [part.record for part in parts]
    live_paths = sorted(info.path for _, info in live_files)
    tracker.stage(f"quarter {quarter}: checking")
    hashes = [_content_hash(part.source, part.info) for part in parts]
    if _live_set(quarter) == live_paths and all(_is_loaded(part.info, h) for part, h in zip(parts, hashes)):
        for part, digest in zip(parts, hashes):
            part.record.unchanged, part.record.sha256 = True, digest or _loaded_hash(part.info)
        _save_records(all_records)
        tracker.advance(sum(part.info.size for part in parts))
        log.info("run=%s quarter=%s unchanged", run.id, quarter)
        return
    try:
        parsed = _parse_quarter(quarter, parts, tracker)
    except FileRejected as exc:
        for record in all_records:
            if record.sha256 is None and record.error is None:
                record.error = "not read: the quarter was rejected"
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
    emptied = _emptied_files(quarter, parsed)
    if emptied:
        for name in emptied:
            records[name].error = "no data rows where the loaded data has some; looks truncated"
        _save_records(all_records)
        outcome.fail(f"quarter {quarter}: {', '.join(emptied)} has no data rows; previous data kept")
        return
    data = build_quarter(quarter, parsed["impressions"], parsed["clicks"], parsed["conversions"])
    tracker.stage(f"quarter {quarter}: storing")
    try:
        with db.atomic():
            _store_quarter(quarter, parsed, data)
            for part in parts:
                _remember_loaded(part.info, part.record.sha256)
            # insert .. on conflict, not REPLACE: PostgreSQL has no REPLACE.
            Meta.insert(key=f"live_files:{quarter}", value=json.dumps(live_paths)).on_conflict(
                conflict_target=[Meta.key], update={Meta.value: json.dumps(live_paths)}
            ).execute()
            _save_records(all_records)
            version = bump_data_version()
    except Exception as exc:
        outcome.fail(f"quarter {quarter}: could not store: {_describe_error(exc)}; previous data kept")
        log.exception("run=%s quarter=%s store failed", run.id, quarter)
        _save_records(all_records)
        return
    _publish_version(ctx, version)
    outcome.had_rejects |= any(r.rejected for r in all_records)
    log.info(
        "run=%s quarter=%s loaded campaigns=%s data_version=%s live_files=%s %s",
        run.id, quarter, len(data.plans), version, len(live_paths),
        " ".join(f"{r.name}:read={r.rows_read},loaded={r.loaded},rejected={r.rejected}" for r in records.values()),
    )


def _live_set(quarter) -> list:
    """The live batch files the served data of `quarter` was built with."""
    row = Meta.get_or_none(Meta.key == f"live_files:{quarter}")
    return json.loads(row.value) if row else []


def _parse_quarter(quarter, parts, tracker):
    """Parse the quarter's files, each kind's historical file first, then its live batches."""
    parsed = {"impressions": Counter(), "clicks": {}, "conversions": {}}
    parsers = {
        "impressions.csv": lambda lines: parse_impressions(lines, parsed["impressions"]),
        "clicks.csv": lambda lines: parse_clicks(lines, parsed["clicks"]),
        "conversions.csv": lambda lines: parse_conversions(lines, parsed["clicks"], parsed["conversions"]),
    }
    for kind in CSV_NAMES:
        for part in parts:
            if part.kind == kind:
                _parse_file(part.source, quarter, part.info, part.record, parsers[kind], tracker)
    return parsed


def _emptied_files(quarter, parsed) -> list:
    """Files of the quarter that came without rows although the served data has rows of that kind.

    A header-only export is far more often a broken one than a real empty hour: refuse to let it
    wipe a quarter that is being served.
    """
    current = {"impressions.csv": ImpressionCount, "clicks.csv": Click, "conversions.csv": Conversion}
    return [
        name for name, model in current.items()
        if not parsed[name.split(".")[0]] and model.select().where(model.quarter == quarter).exists()
    ]


def _parse_file(source, quarter, info, record, parse, tracker):
    tracker.stage(f"quarter {quarter}: reading {info.path}")
    stream = source.open(info.path)
    hashing = _HashingLines(stream if info.limit is None else _Limited(stream, info.limit), tracker)
    try:
        with hashing:
            _, report = parse(hashing)
            hashing.drain()
    except FileRejected as exc:
        record.error = str(exc)
        raise
    record.sha256 = hashing.hexdigest()
    for attr in ("rows_read", "loaded", "duplicates", "conflicts", "rejected", "orphans"):
        setattr(record, attr, getattr(report, attr))
    record.samples = json.dumps(
        [[line, reason] for line, reason in report.rejects]
        + [[line, reason] for line, reason in report.conflict_samples]
    )


def _store_quarter(quarter, parsed, data):
    for model in (ImpressionCount, Click, Conversion, BannerStat, Plan, CampaignStat):
        model.delete().where(model.quarter == quarter).execute()
    _insert(ImpressionCount, ("quarter", "campaign_id", "banner_id", "impressions"),
            ((quarter, c, b, n) for (c, b), n in parsed["impressions"].items()))
    _insert(Click, ("quarter", "click_id", "banner_id", "campaign_id"),
            ((quarter, k, b, c) for k, (b, c) in parsed["clicks"].items()))
    _insert(Conversion, ("quarter", "conversion_id", "click_id", "revenue"),
            ((quarter, k, click, str(rev)) for k, (click, rev) in parsed["conversions"].items()))
    _insert(BannerStat, ("quarter", "campaign_id", "banner_id", "impressions", "clicks", "conversions", "revenue"),
            ((quarter, c, b, i, k, n, float(r)) for (c, b), (i, k, n, r) in data.banner_stats.items()))
    _insert(Plan, ("quarter", "campaign_id", "x", "scenario", "banner_ids", "random_fill"),
            ((quarter, c, p.x, p.scenario, ",".join(map(str, p.banner_ids)), p.random_fill)
             for c, p in data.plans.items()))
    totals = campaign_totals(data)
    _insert(CampaignStat, ("quarter", "campaign_id", "impressions", "clicks", "conversions", "revenue", "x", "scenario", "banners"),
            ((quarter, c, i, k, n, float(r), data.plans[c].x, data.plans[c].scenario, len(data.plans[c].banner_ids))
             for c, (i, k, n, r) in totals.items()))


def _insert(model, names, rows):
    """Bulk-insert plain tuples: executemany on SQLite, execute_values on PostgreSQL.

    peewee's insert_many builds SQL per row in Python, which took most of an ingest's time.
    """
    columns = ", ".join(_quoted(model._meta.fields[name].column_name) for name in names)
    head = f"INSERT INTO {_quoted(model._meta.table_name)} ({columns}) VALUES "
    cursor = db.cursor()
    if isinstance(db.obj, PostgresqlDatabase):
        from psycopg2.extras import execute_values

        for batch in chunked(rows, BATCH):
            execute_values(cursor, head + "%s", batch, page_size=BATCH)
    else:
        sql = head + "(" + ", ".join([db.param] * len(names)) + ")"
        for batch in chunked(rows, BATCH):
            cursor.executemany(sql, batch)


def _quoted(name):
    return '"' + name.replace('"', '""') + '"'


def _ingest_images(ctx, run, source, images, tracker, outcome):
    record = IngestFile(run=run, quarter=None, name="images/", rows_read=len(images))
    unchanged, samples = 0, []
    tracker.stage(f"images: {len(images)} files")
    for info in images:
        banner_id = image_banner_id(info.path)
        try:
            if info.etag and _is_loaded(info, None):
                unchanged += 1
                continue
            with source.open(info.path) as stream:
                data = stream.read()
            digest = _sha256_bytes(data)
            if _is_loaded(info, digest):
                unchanged += 1
                continue
            ext, content_type = sniff_image(data)
            name = f"{banner_id}.{ext}"
            publish_file(ctx.settings.image_dir, name, data)
            with db.atomic():
                Banner.insert(id=banner_id, image_name=name, content_type=content_type, image_sha256=digest).on_conflict(
                    conflict_target=[Banner.id],
                    update={Banner.image_name: name, Banner.content_type: content_type, Banner.image_sha256: digest},
                ).execute()
                _remember_loaded(info, digest)
            record.loaded += 1
        except NotAnImage as exc:
            record.rejected += 1
            if len(samples) < 20:
                samples.append([info.path, str(exc)])
        finally:
            tracker.advance(info.size)
    record.unchanged = unchanged == len(images)
    record.duplicates = 0
    record.samples = json.dumps(samples)
    record.save()
    if record.loaded:
        with db.atomic():
            version = bump_data_version()
        _publish_version(ctx, version)
    outcome.had_rejects |= record.rejected > 0
    log.info("run=%s images read=%s copied=%s unchanged=%s rejected=%s",
             run.id, len(images), record.loaded, unchanged, record.rejected)


def _file_record(run, quarter, name, info):
    return IngestFile(
        run=run, quarter=quarter, name=name,
        size=info.size if info else None, etag=info.etag if info else None,
    )


def _save_records(records):
    for record in records:
        record.save()


def _content_hash(source, info):
    """The sha256 of a file whose source gives no ETag (a directory); None when the ETag will do."""
    if info.etag:
        return None
    with source.open(info.path) as stream:
        return sha256_of(stream)


def _is_loaded(info, sha256) -> bool:
    loaded = LoadedFile.get_or_none(LoadedFile.path == info.path)
    if loaded is None:
        return False
    if info.etag:
        return loaded.etag == info.etag and loaded.size == info.size
    return loaded.sha256 == sha256


def _loaded_hash(info):
    loaded = LoadedFile.get_or_none(LoadedFile.path == info.path)
    return loaded.sha256 if loaded else None


def _remember_loaded(info, sha256):
    LoadedFile.insert(path=info.path, sha256=sha256, etag=info.etag, size=info.size, loaded_at=utcnow()).on_conflict(
        conflict_target=[LoadedFile.path],
        update={LoadedFile.sha256: sha256, LoadedFile.etag: info.etag, LoadedFile.size: info.size, LoadedFile.loaded_at: utcnow()},
    ).execute()


def _sha256_bytes(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _publish_version(ctx, version=None):
    """Tell the web processes the data version; a Redis failure here must not fail the load itself."""
    try:
        runtime.publish_data_version(ctx, version if version is not None else get_data_version())
    except Exception:
        log.warning("could not publish the data version to Redis; web processes will see it later", exc_info=True)


def _describe_error(exc) -> str:
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"


class _Limited:
    """The first `limit` bytes of a binary stream."""

    def __init__(self, stream, limit):
        self.stream, self.left = stream, limit

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data

    def close(self):
        self.stream.close()


class _HashingLines:
    """Byte lines of a stream, read in chunks that are hashed and counted on the way to the parser."""

    def __init__(self, stream, tracker):
        import hashlib

        self.stream, self.tracker = stream, tracker
        self.digest = hashlib.sha256()

    def __iter__(self):
        update, advance, read = self.digest.update, self.tracker.advance, self.stream.read
        pending = b""
        while chunk := read(CHUNK):
            update(chunk)
            advance(len(chunk))
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            yield from lines
        if pending:
            yield pending

    def drain(self):
        """Hash whatever the parser left unread, so the digest covers the whole file."""
        for _ in self:
            pass

    def hexdigest(self):
        return self.digest.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()


class _Progress:
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
