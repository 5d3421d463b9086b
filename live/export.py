"""The export job: drain the event stream into CSV batches in the source layout, exactly once.

Batches land in `<live root>/live/<yyyy-mm-dd>/<hh>/<q>/{impressions,clicks,conversions,viewable}.csv`
(ingest reads the first three; viewable.csv lists the impressions that were in view, as impressions.csv does).
Each folder keeps a `_manifest.json` with the last stream entry it holds and the byte length of
each file at that point; readers (ingest) read each file only up to that length. A run that died
after writing but before acknowledging leaves its entries pending; the next run claims them, cuts
each file back to the manifest's length and appends again, so every event lands once.
"""

import json
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from jobs import runtime
from live.events import GROUP, STREAM, decode, trim_exported
from live.rollup import rollup_entries
from jobs.sources import FileInfo, open_sink
from models import ExportRun, utcnow

log = logging.getLogger("bannerservice.export")

HEADERS = {
    "impressions.csv": "banner_id,campaign_id\n",
    "clicks.csv": "click_id,banner_id,campaign_id\n",
    "conversions.csv": "conversion_id,click_id,revenue\n",
    "viewable.csv": "banner_id,campaign_id\n",
}
INGESTED = ("impressions.csv", "clicks.csv", "conversions.csv")
MANIFEST = "_manifest.json"
READ_COUNT = 10_000
LOCK_SECONDS = 120  # renewed per chunk; a killed export must not block the next for long


class ExportBusy(Exception):
    """Another export holds the lock."""


def export_events(time_budget=240.0, crash_after_write=False):
    """Write the stream's unexported events to CSV batches, then acknowledge them (RQ job).

    Works in chunks of READ_COUNT entries (write, acknowledge, renew the lock), first the
    entries a dead exporter left unacknowledged, then new ones, until the stream is drained
    or `time_budget` seconds have passed. Returns the ExportRun id. `crash_after_write`
    stops after the first write, before its acknowledgement, as a killed worker would; tests use it.
    """
    ctx = runtime.context()
    lock = _ExportLock(ctx)
    _reap_dead_exports()  # we hold the lock: an export still marked running has died
    run = ExportRun.create(status="running")
    written, total, started = set(), 0, time.monotonic()
    try:
        sink = open_sink(_live_root(ctx.settings), ctx.settings.s3_endpoint_url, ctx.settings.s3_max_attempts)
        stream = ctx.key(STREAM)
        _ensure_group(ctx.redis, stream)
        consumer = f"{socket.gethostname()}-{os.getpid()}"
        for entries in _chunks(ctx.redis, stream, consumer):
            written.update(write_batches(sink, entries))
            rollup_entries(entries, folder_of, entry_key)  # the dashboard's trends; idempotent per entry
            if crash_after_write:
                raise SystemExit("stopping before the acknowledgement, as asked")
            ctx.redis.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
            trim_exported(ctx.redis, stream)
            total += len(entries)
            lock.renew()
            if time.monotonic() - started > time_budget:
                break
        run.status = "succeeded"
        log.info("export=%s events=%s folders=%s", run.id, total, len(written))
    except BaseException as exc:
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("export=%s failed", run.id)
        raise
    finally:
        run.events, run.files, run.finished_at = total, json.dumps(sorted(written)), utcnow()
        run.save()
        lock.release()
    return run.id


# The export is what frees a Redis that is full (maxmemory under noeviction): reading, XACK, XTRIM,
# EXPIRE and DEL are allowed then, but SET and XGROUP CREATE are refused. The few bytes of the lock and
# the group are written by scripts flagged allow-oom (Redis 7), so a full Redis never blocks its own cure.
_TAKE_LOCK = "#!lua flags=allow-oom\nreturn redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])"
_CREATE_GROUP = """#!lua flags=allow-oom
local reply = redis.pcall('xgroup', 'create', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(reply) == 'table' and reply.err and not string.find(reply.err, 'BUSYGROUP') then return reply end
return 1
"""


class _ExportLock:
    """The one-exporter-at-a-time lock: a token of our own, renewed per chunk, released only if still ours."""

    _RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"

    def __init__(self, ctx):
        self.redis, self.key, self.token = ctx.redis, ctx.key("export:lock"), uuid.uuid4().hex
        if not self.redis.eval(_TAKE_LOCK, 1, self.key, self.token, LOCK_SECONDS):
            raise ExportBusy("an export is already running")

    def renew(self):
        if not self.redis.eval(self._RENEW, 1, self.key, self.token, LOCK_SECONDS):
            raise ExportBusy("this export lost its lock to another; it stopped before writing more")

    def release(self):
        runtime.release_if_held(self.redis, self.key, self.token)


def _reap_dead_exports():
    ExportRun.update(status="failed", error="the exporter stopped before it finished", finished_at=utcnow()).where(
        ExportRun.status == "running"
    ).execute()


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
    """Create the exporters' group (and the stream) unless it exists."""
    redis.eval(_CREATE_GROUP, 1, stream, GROUP)


def _chunks(redis, stream, consumer):
    """Lists of (entry id, fields): first what a dead exporter left unacknowledged, then new entries.

    The caller acknowledges each list before asking for the next.
    """
    cursor = "0-0"
    while True:  # we hold the lock, so every pending entry belongs to an exporter that is gone
        cursor, entries, *_ = redis.xautoclaim(stream, GROUP, consumer, min_idle_time=0, start_id=cursor, count=READ_COUNT)
        live = [(entry_id, decode(fields)) for entry_id, fields in entries if fields]  # trimmed entries come back empty
        if live:
            yield sorted(live, key=lambda e: entry_key(e[0]))
        if cursor in ("0-0", b"0-0"):
            break
    while True:
        reply = redis.xreadgroup(GROUP, consumer, {stream: ">"}, count=READ_COUNT)
        if not reply or not reply[0][1]:
            return
        yield [(entry_id, decode(fields)) for entry_id, fields in reply[0][1]]


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
    if kind == "viewable":
        return "viewable.csv", f"{event['b']},{event['c']}\n"
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
        data = "".join(rows.get(name, [])).encode()
        if name in sizes:
            if data:
                # Cut back to what the manifest vouches for: bytes past it are a dead run's unacknowledged rows.
                sink.append_bytes(f"{folder}/{name}", data, keep=sizes[name])
                sizes[name] += len(data)
        else:
            sink.write_bytes(f"{folder}/{name}", header.encode() + data)
            sizes[name] = len(header) + len(data)
    # The manifest is the commit point: readers take each file up to its size here, no further.
    manifest = {"last_entry": str(fresh[-1][0]), "sizes": sizes}
    sink.write_bytes(f"{folder}/{MANIFEST}", json.dumps(manifest).encode())


def live_batches(live_source, hours, now) -> dict:
    """{quarter: [(source, FileInfo)]} of the exported live batches of the last `hours` hours.

    Each file counts only up to the length its folder's manifest vouches for;
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
            for name in INGESTED:
                size = manifest["sizes"].get(name)
                if size is not None:
                    info = FileInfo(f"{folder}/{entry}/{name}", size, f"{manifest['last_entry']}:{size}", limit=size)
                    found.setdefault(int(entry), []).append((live_source, info))
    return found
