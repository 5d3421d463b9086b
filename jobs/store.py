"""The database side of a load: replace a quarter's rows, and remember which file versions it was built from."""

import csv
import io
import json
from itertools import repeat

from peewee import PostgresqlDatabase, chunked

from jobs.columns import money_text
from models import (
    BannerStat, CampaignStat, Click, Conversion, ImpressionCount, LoadedFile, Meta, Plan, db, unbounded_database_waits, utcnow,
)

BATCH = 5000


def store_quarter(quarter, parsed, data):
    """Replace the quarter's rows with `parsed` (the parsers' columns) and `data` (build_quarter's), streamed in batches."""
    for model in (ImpressionCount, Click, Conversion, BannerStat, Plan, CampaignStat):
        model.delete().where(model.quarter == quarter).execute()
    clicks = parsed["clicks"]
    # The impression counts are the quarter's rows with impressions: the parsed ones may be freed by now.
    insert(ImpressionCount, ("quarter", "campaign_id", "banner_id", "impressions"),
           ((quarter, c, b, i) for c, b, i, *_ in data.stat_rows() if i))
    insert(Click, ("quarter", "click_id", "banner_id", "campaign_id"),
           rows_of(quarter, clicks.ids, clicks.banners, clicks.campaigns))
    insert(Conversion, ("quarter", "conversion_id", "click_id", "revenue"),
           ((q, k, click, money_text(units, nanos)) for q, k, click, units, nanos in rows_of(quarter, *parsed["conversions"].kept())))
    insert(BannerStat, ("quarter", "campaign_id", "banner_id", "impressions", "clicks", "conversions", "revenue"),
           ((quarter, *row) for row in data.stat_rows()))
    for batch in chunked(data.campaign_plans(), BATCH):
        insert(Plan, ("quarter", "campaign_id", "x", "scenario", "banner_ids", "random_fill"),
               ((quarter, c, p.x, p.scenario, ",".join(map(str, p.banner_ids)), p.random_fill) for c, p, _ in batch))
        insert(CampaignStat, ("quarter", "campaign_id", "impressions", "clicks", "conversions", "revenue", "x", "scenario", "banners"),
               ((quarter, c, i, k, n, float(r), p.x, p.scenario, len(p.banner_ids)) for c, p, (i, k, n, r) in batch))


def rows_of(quarter, *columns):
    """Tuples (quarter, *one value of each column) of plain Python values, a batch of columns at a time."""
    for start in range(0, len(columns[0]), BATCH):
        yield from zip(repeat(quarter), *(column[start:start + BATCH].tolist() for column in columns))


# PostgreSQL's bulk path: "copy" (COPY ... FROM STDIN) or "values" (execute_values); the benchmark compares them.
POSTGRES_BULK = "copy"


def insert(model, names, rows):
    """Bulk-insert plain tuples: executemany on SQLite, COPY on PostgreSQL.

    peewee's insert_many builds SQL per row in Python, which took most of an ingest's time.
    """
    columns = ", ".join(quoted(model._meta.fields[name].column_name) for name in names)
    table = quoted(model._meta.table_name)
    cursor = db.cursor()
    if isinstance(db.obj, PostgresqlDatabase):
        if POSTGRES_BULK == "copy":
            with unbounded_database_waits():  # psycopg2 refuses COPY under a wait callback
                cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", RowsAsCsv(rows), size=1 << 16)
            return
        from psycopg2.extras import execute_values

        for batch in chunked(rows, BATCH):
            execute_values(cursor, f"INSERT INTO {table} ({columns}) VALUES %s", batch, page_size=BATCH)
    else:
        sql = f"INSERT INTO {table} ({columns}) VALUES (" + ", ".join([db.param] * len(names)) + ")"
        for batch in chunked(rows, BATCH):
            cursor.executemany(sql, batch)


class RowsAsCsv:
    """Rows as a file of CSV for COPY to read: made a batch at a time as it reads, never whole.

    Strings are always quoted, so an empty string stays one (an unquoted empty field would be NULL);
    the columns insert() fills are all NOT NULL, so rows hold no None.
    """

    def __init__(self, rows):
        self._batches = iter(chunked(rows, BATCH))
        self._out = io.StringIO()
        self._writer = csv.writer(self._out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        self._buffer, self._at = b"", 0

    def read(self, size=-1) -> bytes:
        while size < 0 or len(self._buffer) - self._at < size:
            batch = next(self._batches, None)
            if batch is None:
                break
            self._out.seek(0)
            self._out.truncate()
            self._writer.writerows(batch)
            self._buffer, self._at = self._buffer[self._at:] + self._out.getvalue().encode(), 0
        end = len(self._buffer) if size < 0 else self._at + size
        data, self._at = self._buffer[self._at:end], min(end, len(self._buffer))
        return data


def quoted(name):
    return '"' + name.replace('"', '""') + '"'


def emptied_files(quarter, parsed) -> list:
    """Files of the quarter that came without rows although the served data has rows of that kind.

    A header-only export is far more often a broken one than a real empty hour: refuse to let it
    wipe a quarter that is being served.
    """
    current = {"impressions.csv": ImpressionCount, "clicks.csv": Click, "conversions.csv": Conversion}
    return [
        name for name, model in current.items()
        if not parsed[name.split(".")[0]] and model.select().where(model.quarter == quarter).exists()
    ]


def is_loaded(info, sha256) -> bool:
    return matches_loaded(LoadedFile.get_or_none(LoadedFile.path == info.path), info, sha256)


def matches_loaded(loaded, info, sha256) -> bool:
    """Whether the file `info` (with content hash `sha256`) is the version `loaded` (a LoadedFile or None) recorded."""
    if loaded is None:
        return False
    if info.etag:
        return loaded.etag == info.etag and loaded.size == info.size
    return loaded.sha256 == sha256


def loaded_files(paths) -> dict:
    """{path: LoadedFile} of those of `paths` that were loaded before (one query)."""
    return {row.path: row for row in LoadedFile.select().where(LoadedFile.path.in_(list(paths)))}


def loaded_hash(info):
    loaded = LoadedFile.get_or_none(LoadedFile.path == info.path)
    return loaded.sha256 if loaded else None


def remember_loaded(info, sha256):
    remember_loaded_many([(info, sha256)])


def remember_loaded_many(files):
    """Record (FileInfo, sha256) pairs as the loaded versions of their paths (one statement; paths distinct)."""
    from peewee import EXCLUDED

    now = utcnow()
    rows = [{"path": info.path, "sha256": sha256, "etag": info.etag, "size": info.size, "loaded_at": now} for info, sha256 in files]
    LoadedFile.insert_many(rows).on_conflict(
        conflict_target=[LoadedFile.path],
        update={LoadedFile.sha256: EXCLUDED.sha256, LoadedFile.etag: EXCLUDED.etag, LoadedFile.size: EXCLUDED.size,
                LoadedFile.loaded_at: EXCLUDED.loaded_at},
    ).execute()


def live_set(quarter) -> list:
    """The live batch files the served data of `quarter` was built with."""
    row = Meta.get_or_none(Meta.key == f"live_files:{quarter}")
    return json.loads(row.value) if row else []


def remember_live_set(quarter, paths) -> None:
    """Record the live batch files the quarter's data is now built with."""
    value = json.dumps(paths)
    Meta.insert(key=f"live_files:{quarter}", value=value).on_conflict(
        conflict_target=[Meta.key], update={Meta.value: value}
    ).execute()
