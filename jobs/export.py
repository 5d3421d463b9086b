"""The export job: drain the event stream into CSV batches in the source layout, exactly once.

Batches land in `<live root>/live/<yyyy-mm-dd>/<hh>/<q>/{impressions,clicks,conversions}.csv`.
Each folder keeps a `_manifest.json` with the last stream entry it holds and the byte length of
each file at that point. A run that died after writing but before acknowledging leaves its
entries pending; the next run claims them, cuts each file back to the manifest's length and
appends again, so every event lands once.
"""

import json
import logging
import os
import socket
from collections import defaultdict
from datetime import datetime, timezone

from jobs import runtime
from jobs.events import GROUP, STREAM
from jobs.sources import open_sink
from models import ExportRun, utcnow

log = logging.getLogger("bannerservice.export")

HEADERS = {
    "impressions.csv": "banner_id,campaign_id\n",
    "clicks.csv": "click_id,banner_id,campaign_id\n",
    "conversions.csv": "conversion_id,click_id,revenue\n",
}
MANIFEST = "_manifest.json"
READ_COUNT = 10_000
LOCK_SECONDS = 120  # an export takes seconds; a killed one must not block the next for long


class ExportBusy(Exception):
    """Another export holds the lock."""


def export_events(max_entries=500_000, crash_after_write=False):
    """Write the stream's unexported events to CSV batches, then acknowledge them (RQ job).

    Returns the ExportRun id. `crash_after_write` stops right before acknowledging, as a
    worker killed at that moment would; tests use it.
    """
    ctx = runtime.context()
    lock = ctx.key("export:lock")
    if not ctx.redis.set(lock, "1", nx=True, ex=LOCK_SECONDS):
        raise ExportBusy("an export is already running")
    run = ExportRun.create(status="running")
    try:
        sink = open_sink(_live_root(ctx.settings), ctx.settings.s3_endpoint_url, ctx.settings.s3_max_attempts)
        stream = ctx.key(STREAM)
        _ensure_group(ctx.redis, stream)
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        entries = _claim_abandoned(ctx.redis, stream, consumer) + _read_new(ctx.redis, stream, consumer, max_entries)
        written = write_batches(sink, entries)
        if crash_after_write:
            raise SystemExit("stopping before the acknowledgement, as asked")
        for start in range(0, len(entries), READ_COUNT):
            ctx.redis.xack(stream, GROUP, *[entry_id for entry_id, _ in entries[start:start + READ_COUNT]])
        run.status, run.events, run.files = "succeeded", len(entries), json.dumps(sorted(written))
        log.info("export=%s events=%s folders=%s", run.id, len(entries), len(written))
    except BaseException as exc:
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("export=%s failed", run.id)
        raise
    finally:
        run.finished_at = utcnow()
        run.save()
        ctx.redis.delete(lock)
    return run.id


def scheduled_export():
    """What rq-scheduler runs: an export, skipped (and logged) while another is running."""
    try:
        return export_events()
    except ExportBusy as exc:
        log.info("scheduled export skipped: %s", exc)
        return None


def _live_root(settings) -> str:
    root = settings.live_root or settings.ingest_source
    if not root:
        raise ValueError("no LIVE_ROOT or INGEST_SOURCE to export to")
    return root


def _ensure_group(redis, stream):
    try:
        redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except Exception as exc:  # BUSYGROUP: it exists already
        if "BUSYGROUP" not in str(exc):
            raise


def _claim_abandoned(redis, stream, consumer):
    """Entries delivered to an earlier exporter that never acknowledged them (we hold the lock, so it is gone)."""
    claimed, cursor = [], "0-0"
    while True:
        cursor, entries, *_ = redis.xautoclaim(stream, GROUP, consumer, min_idle_time=0, start_id=cursor, count=READ_COUNT)
        claimed += [(entry_id, fields) for entry_id, fields in entries if fields]
        if cursor in ("0-0", b"0-0"):
            return sorted(claimed, key=lambda e: entry_key(e[0]))


def _read_new(redis, stream, consumer, limit):
    entries = []
    while len(entries) < limit:
        reply = redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=min(READ_COUNT, limit - len(entries)))
        if not reply:
            break
        entries += reply[0][1]
    return entries


def entry_key(entry_id) -> tuple[int, int]:
    """A stream entry id as a sortable pair."""
    ms, _, seq = str(entry_id).partition("-")
    return int(ms), int(seq or 0)


def folder_of(event) -> str:
    when = datetime.fromtimestamp(float(event["ts"]), timezone.utc)
    return f"live/{when:%Y-%m-%d}/{when:%H}/{event['q']}"


def row_of(event):
    """(file name, CSV line) of an event."""
    kind = event["type"]
    if kind == "impression":
        return "impressions.csv", f"{event['b']},{event['c']}\n"
    if kind == "click":
        return "clicks.csv", f"{event['click']},{event['b']},{event['c']}\n"
    if kind == "conversion":
        return "conversions.csv", f"{event['conv']},{event['click']},{event['rev']}\n"
    raise ValueError(f"unknown event type {kind!r}")


def write_batches(sink, entries) -> list[str]:
    """Append `entries` (stream id, fields) to their folders; entries a folder already holds are skipped."""
    by_folder = defaultdict(list)
    for entry_id, event in entries:
        by_folder[folder_of(event)].append((entry_id, event))
    for folder, items in by_folder.items():
        _append_folder(sink, folder, sorted(items, key=lambda item: entry_key(item[0])))
    return list(by_folder)


def _append_folder(sink, folder, items):
    raw = sink.read_bytes(f"{folder}/{MANIFEST}")
    manifest = json.loads(raw) if raw else {"last_entry": "0-0", "sizes": {}}
    fresh = [(entry_id, event) for entry_id, event in items if entry_key(entry_id) > entry_key(manifest["last_entry"])]
    if not fresh:
        return
    rows = defaultdict(list)
    for _, event in fresh:
        name, line = row_of(event)
        rows[name].append(line)
    sizes = dict(manifest["sizes"])
    for name, header in HEADERS.items():
        if name not in rows and name in sizes:
            continue
        current = sink.read_bytes(f"{folder}/{name}") or b""
        # Cut back to what the manifest vouches for: bytes past it are a dead run's unacknowledged rows.
        kept = current[: sizes[name]] if name in sizes else header.encode()
        data = kept + "".join(rows.get(name, [])).encode()
        sink.write_bytes(f"{folder}/{name}", data)
        sizes[name] = len(data)
    manifest = {"last_entry": str(fresh[-1][0]), "sizes": sizes}
    sink.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest).encode())
