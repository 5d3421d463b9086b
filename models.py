"""The database: a deferred peewee handle, the models, and what serving and the jobs read and write through them."""

import json
import select
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    PostgresqlDatabase,
    TextField,
    fn,
)
from playhouse.db_url import connect

db = DatabaseProxy()

# WAL lets visitors read while an ingest writes; busy_timeout makes writers queue, not fail.
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 10000, "foreign_keys": 1}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


SCHEMA_LOCK_ID = 0x62616E6E  # PostgreSQL advisory lock taken while the schema is checked and created ("bann")


def init_db(url: str, connect_timeout=None, query_timeout=None):
    """Point `db` at `url` (sqlite:///path or postgresql://...) and create missing tables.

    On PostgreSQL, `connect_timeout` and `query_timeout` (seconds) bound every wait for the server:
    past them a connect or a query raises OperationalError and its connection is closed.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kwargs = {}
    if url.startswith("sqlite"):
        # A `?timeout=SECONDS` in the URL sets how long a writer waits for the lock (default 10 s).
        timeout = parse_qs(urlsplit(url).query).get("timeout")
        kwargs["pragmas"] = dict(SQLITE_PRAGMAS, **({"busy_timeout": int(float(timeout[0]) * 1000)} if timeout else {}))
    elif url.startswith("postgres"):
        if connect_timeout:
            kwargs["connect_timeout"] = max(2, int(-(-connect_timeout // 1)))  # libpq: whole seconds, 2 at least
        limit_database_waits(connect_timeout, query_timeout)
    database = connect(url, **kwargs)
    db.initialize(database)
    # Unbounded: a migration (summing the live hours once) may take longer than a request may. A server
    # that hangs still fails the connect, after libpq's connect_timeout.
    with unbounded_database_waits(), db.connection_context(), _one_schema_change_at_a_time():
        # Only what is missing: a worker whose role may not create tables still starts on a set-up database.
        existing = set(db.get_tables())
        missing = [model for model in ALL_MODELS if model._meta.table_name not in existing]
        if missing:
            db.create_tables(missing, safe=True)
            if LiveSiteHour in missing and LiveHour not in missing:
                fill_live_site_hours()  # a database from before the site hours: sum what it has once
            if LiveMark in missing and LiveHour not in missing:
                fill_live_marks()  # likewise for the marks
        add_missing_columns(ALL_MODELS)
        add_missing_indexes(ALL_MODELS)
    return database


@contextmanager
def _one_schema_change_at_a_time():
    """On PostgreSQL, a transaction holding an advisory lock: every process of a first start checks and creates
    the schema at once, and CREATE TABLE IF NOT EXISTS is not safe against a concurrent one (a duplicate
    pg_type row). SQLite's writers already take turns."""
    if not isinstance(db.obj, PostgresqlDatabase):
        yield
        return
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        yield


# --- Deadlines on PostgreSQL --------------------------------------------------------------------
# A frozen server (SIGSTOP, a stuck disk, a partition) still accepts TCP connections and ACKs what
# we send: server-side statement_timeout, TCP keepalives and tcp_user_timeout never fire, and a
# blocking libpq call waits forever. A psycopg2 wait callback makes every connect and query wait
# in our own poll loop instead, which gives up at a deadline.

_deadlines = {"connect": None, "query": None}


def limit_database_waits(connect_timeout=None, query_timeout=None) -> None:
    """Bound every PostgreSQL connect and query of this process (seconds; None for no bound)."""
    from psycopg2.extensions import set_wait_callback

    _deadlines.update(connect=connect_timeout or None, query=query_timeout or None)
    set_wait_callback(_wait_with_deadline if (connect_timeout or query_timeout) else None)


@contextmanager
def unbounded_database_waits():
    """Queries inside wait as long as they take, and may use COPY (a job's long statements).

    The callback is process-wide: other threads' queries are unbounded meanwhile too. Jobs and
    start-up use this, not a process while it serves requests.
    """
    try:
        from psycopg2.extensions import get_wait_callback, set_wait_callback
    except ImportError:  # SQLite only
        yield
        return
    callback = get_wait_callback()
    set_wait_callback(None)
    try:
        yield
    finally:
        set_wait_callback(callback)


def _wait_with_deadline(conn):
    """psycopg2's wait callback: psycopg2.extras.wait_select with a deadline (psycopg2 closes the
    connection when this raises)."""
    from psycopg2 import OperationalError
    from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE, STATUS_SETUP

    what = "connect" if conn.status == STATUS_SETUP else "query"
    seconds = _deadlines[what]
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        state = conn.poll()
        if state == POLL_OK:
            return
        if state not in (POLL_READ, POLL_WRITE):
            raise OperationalError(f"unexpected poll state {state}")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise OperationalError(f"the database did not answer within {seconds:g} s ({what})")
        # poll(), not select(): select() fails on descriptors past 1024. A new one each time: libpq
        # may change sockets while it connects.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN if state == POLL_READ else select.POLLOUT)
        poller.poll(None if left is None else max(1, int(left * 1000) + 1))


def add_missing_columns(models) -> None:
    """Add the columns a model gained since its table was created (each has a default or is nullable)."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = None
    for model in models:
        table = model._meta.table_name
        present = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in present:
                migrator = migrator or SchemaMigrator.from_database(db.obj)
                migrate(migrator.add_column(table, field.column_name, field))


def add_missing_indexes(models) -> None:
    """Create the indexes a model gained since its table was created, and only those: PostgreSQL asks for the
    table's owner (and a lock on it) even for a CREATE INDEX IF NOT EXISTS of an index already there."""
    for model in models:
        present = {index.name for index in db.get_indexes(model._meta.table_name)}
        for index in model._meta.fields_to_index():
            if index._name not in present:
                db.execute(model._schema._create_index(index, safe=True))


class ExactDecimalField(TextField):
    """A decimal stored as text, so sums and ties stay exact on every engine."""

    def db_value(self, value):
        return None if value is None else str(value)

    def python_value(self, value):
        return None if value is None else Decimal(value)


class BaseModel(Model):
    class Meta:
        database = db


class Banner(BaseModel):
    """A banner and the image file ingest copied for it (None when it has none)."""

    id = BigIntegerField(primary_key=True)
    image_name = CharField(null=True)
    content_type = CharField(null=True)
    image_sha256 = CharField(null=True)
    landing_url = TextField(null=True)  # where a click goes; None: the default landing URL


class ImpressionCount(BaseModel):
    """Impressions of a banner in a campaign in a quarter (the rows repeat, so we count them)."""

    quarter = IntegerField()
    campaign_id = BigIntegerField()
    banner_id = BigIntegerField()
    impressions = IntegerField()

    class Meta:
        indexes = ((("quarter", "campaign_id", "banner_id"), True),)


class Click(BaseModel):
    quarter = IntegerField()
    click_id = BigIntegerField()
    banner_id = BigIntegerField()
    campaign_id = BigIntegerField()

    class Meta:
        indexes = ((("quarter", "click_id"), True),)


class Conversion(BaseModel):
    quarter = IntegerField()
    conversion_id = BigIntegerField()
    click_id = BigIntegerField()
    revenue = ExactDecimalField()

    class Meta:
        indexes = ((("quarter", "conversion_id"), True),)


class BannerStat(BaseModel):
    """Per (quarter, campaign, banner) totals, computed at ingest."""

    quarter = IntegerField()
    campaign_id = BigIntegerField()
    banner_id = BigIntegerField()
    impressions = IntegerField()
    clicks = IntegerField()
    conversions = IntegerField()
    revenue = DoubleField()

    class Meta:
        # The campaign page reads one campaign's rows: without its own index, that read scans every campaign's.
        indexes = ((("quarter", "campaign_id", "banner_id"), True), (("campaign_id",), False))


class Plan(BaseModel):
    """The banners a campaign serves in a quarter, in rank order (see selection.py)."""

    quarter = IntegerField()
    campaign_id = BigIntegerField()
    x = IntegerField()
    scenario = CharField()
    banner_ids = TextField()  # comma-separated, rank order
    random_fill = IntegerField(default=0)

    class Meta:
        indexes = ((("quarter", "campaign_id"), True),)

    @property
    def banner_id_list(self) -> list[int]:
        return [int(b) for b in self.banner_ids.split(",") if b]


class CampaignStat(BaseModel):
    """Per (quarter, campaign) totals for the dashboard, computed at ingest."""

    quarter = IntegerField()
    campaign_id = BigIntegerField()
    impressions = IntegerField()
    clicks = IntegerField()
    conversions = IntegerField()
    revenue = DoubleField()
    x = IntegerField()
    scenario = CharField()
    banners = IntegerField()  # banners in the plan

    class Meta:
        # (campaign_id, quarter): the stats table's default order, its campaign filter and the charts' lookups.
        indexes = ((("quarter", "campaign_id"), True), (("campaign_id", "quarter"), False))


class LoadedFile(BaseModel):
    """The version of each source file that the served data was built from."""

    path = CharField(primary_key=True)  # e.g. "1/clicks.csv" or "images/image_100.png"
    sha256 = CharField()
    etag = CharField(null=True)
    size = BigIntegerField()
    loaded_at = DateTimeField(default=utcnow)


class Meta(BaseModel):
    """Small named values, such as the data version."""

    key = CharField(primary_key=True)
    value = TextField()


class IngestRun(BaseModel):
    """One ingest, from the moment it was asked for to its end."""

    QUEUED, RUNNING, SUCCEEDED, SUCCEEDED_WITH_REJECTS, FAILED, ABANDONED = (
        "queued", "running", "succeeded", "succeeded with rejects", "failed", "abandoned",
    )

    id = AutoField()
    trigger = CharField()  # schedule | manual | cli
    user = CharField(null=True)
    source = TextField()
    status = CharField(default=QUEUED)
    queued_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    error = TextField(null=True)
    job_id = CharField(null=True)
    progress = DoubleField(default=0.0)  # 0..1, for the dashboard's progress bar
    stage = CharField(default="")  # what the run is doing now, in words
    # Asked to load quarters whose files are over the reject limit anyway (`ingest --accept-rejects`).
    accept_rejects = BooleanField(default=False)

    @property
    def is_active(self) -> bool:
        return self.status in (self.QUEUED, self.RUNNING)

    @property
    def duration_seconds(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class IngestFile(BaseModel):
    """What one run did with one file."""

    run = ForeignKeyField(IngestRun, backref="files", on_delete="CASCADE")
    quarter = IntegerField(null=True)  # None for images
    name = CharField()
    size = BigIntegerField(null=True)
    sha256 = CharField(null=True)
    etag = CharField(null=True)
    rows_read = IntegerField(default=0)
    loaded = IntegerField(default=0)
    duplicates = IntegerField(default=0)
    conflicts = IntegerField(default=0)
    rejected = IntegerField(default=0)
    orphans = IntegerField(default=0)
    unchanged = BooleanField(default=False)
    error = TextField(null=True)
    samples = TextField(default="[]")  # JSON: first rejects and conflicts, [line, reason]

    @property
    def sample_list(self) -> list:
        return json.loads(self.samples)


class ExportRun(BaseModel):
    """One drain of the live event stream into CSV batches."""

    id = AutoField()
    status = CharField(default="running")  # running | succeeded | failed
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)
    events = IntegerField(default=0)
    files = TextField(default="[]")  # JSON: the batch folders written
    error = TextField(null=True)

    @property
    def file_list(self) -> list:
        return json.loads(self.files)


class LiveHour(BaseModel):
    """Live events of one campaign in one clock hour (UTC), rolled up by the export job."""

    campaign_id = BigIntegerField()
    hour = DateTimeField()  # the hour's start, naive UTC
    impressions = IntegerField(default=0)
    clicks = IntegerField(default=0)
    conversions = IntegerField(default=0)
    revenue = DoubleField(default=0.0)
    # Impressions in view (half the banner for a second), of the `measured` ones: those the JS tag watched.
    viewable = IntegerField(default=0)
    measured = IntegerField(default=0)

    class Meta:
        indexes = ((("campaign_id", "hour"), True), (("hour",), False))


class LiveSiteHour(BaseModel):
    """Live events of all campaigns in one clock hour (UTC): the overview's trend reads these, not every campaign's hours."""

    hour = DateTimeField(primary_key=True)  # the hour's start, naive UTC
    impressions = IntegerField(default=0)
    clicks = IntegerField(default=0)
    conversions = IntegerField(default=0)
    revenue = DoubleField(default=0.0)
    viewable = IntegerField(default=0)
    measured = IntegerField(default=0)


class LiveMark(BaseModel):
    """Each campaign's live totals of the events before `at` (an hour's start); at RUNNING_TOTAL, of all of them.

    A period's figures per campaign are one mark minus another: two index ranges read, where summing
    LiveHour would read a row per campaign and hour (7.2 M for 30 days of 10,000 campaigns).
    """

    at = DateTimeField()
    campaign_id = BigIntegerField()
    impressions = BigIntegerField(default=0)
    clicks = BigIntegerField(default=0)
    conversions = BigIntegerField(default=0)
    revenue = DoubleField(default=0.0)
    viewable = BigIntegerField(default=0)
    measured = BigIntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("at", "campaign_id")


class ApiKey(BaseModel):
    """An advertiser's key for the conversions API; only its hash is stored."""

    advertiser = CharField()
    key_hash = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)
    revoked = BooleanField(default=False)


class User(BaseModel):
    username = CharField(unique=True)
    password_hash = CharField()
    role = CharField()  # admin | manager
    created_at = DateTimeField(default=utcnow)


ALL_MODELS = [
    Banner, ImpressionCount, Click, Conversion, BannerStat, Plan, CampaignStat,
    LoadedFile, Meta, IngestRun, IngestFile, ExportRun, LiveHour, LiveSiteHour, LiveMark, ApiKey, User,
]


def get_data_version() -> int:
    """The number of the data the plans were built from; it grows with every load that changed them."""
    row = Meta.get_or_none(Meta.key == "data_version")
    return int(row.value) if row else 0


def bump_data_version() -> int:
    """Increment the data version (inside the caller's transaction) and return it."""
    version = get_data_version() + 1
    Meta.insert(key="data_version", value=str(version)).on_conflict(
        conflict_target=[Meta.key], update={Meta.value: str(version)}
    ).execute()
    return version


def load_serving_plans() -> dict:
    """{(quarter, campaign_id): ((banner_id, image_name), ...)} for every plan, in rank order; its
    `landings` holds {banner_id: landing_url}, so a click needs no database."""
    images, landings = {}, {}
    banners = Banner.select(Banner.id, Banner.image_name, Banner.landing_url).where(
        Banner.image_name.is_null(False) | Banner.landing_url.is_null(False))
    for banner_id, image_name, landing_url in db.execute(banners):
        if image_name is not None:
            images[banner_id] = image_name
        if landing_url is not None:
            landings[banner_id] = landing_url
    plans = ServingPlans(images, landings)
    # The raw cursor, not model instances or peewee's tuples: at 10,000 campaigns this is 40,000 rows.
    for quarter, campaign_id, banner_ids in db.execute(Plan.select(Plan.quarter, Plan.campaign_id, Plan.banner_ids)):
        dict.__setitem__(plans, (quarter, campaign_id), banner_ids)
    return plans


class ServingPlans(dict):
    """Plans as stored ("b1,b2,..."), each turned into ((banner_id, image_name), ...) when first read.

    Loading 40,000 plans then costs one query and no parsing; a plan is parsed (a few µs) by the
    first request that asks for it. Read with [] or get(); items() and values() may give raw text.
    """

    def __init__(self, images, landings=None):
        super().__init__()
        self._images, self._pairs = images, {}
        self.landings = landings or {}

    def __getitem__(self, key):
        value = dict.__getitem__(self, key)
        if isinstance(value, str):
            value = tuple(self._pair(int(b)) for b in value.split(",") if b)
            dict.__setitem__(self, key, value)  # two threads may both parse it: same value, no harm
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def _pair(self, banner_id):
        pair = self._pairs.get(banner_id)
        if pair is None:  # one (id, image) tuple per banner, shared by every plan that shows it
            pair = self._pairs[banner_id] = (banner_id, self._images.get(banner_id))
        return pair


def active_run():
    """The queued or running ingest, if there is one."""
    return (
        IngestRun.select()
        .where(IngestRun.status.in_([IngestRun.QUEUED, IngestRun.RUNNING]))
        .order_by(IngestRun.id.desc())
        .first()
    )


LIVE_COUNTS = ("impressions", "clicks", "conversions", "revenue", "viewable", "measured")


def add_live_hours(counts, now=None) -> None:
    """Add {(campaign_id, hour): [impressions, clicks, conversions, revenue(, viewable, measured)]} to LiveHour,
    their sums per hour to LiveSiteHour and to the marks, and mark the hour of `now` (inside the caller's transaction)."""
    rows = []
    for (c, h), (i, k, v, r, *seen) in counts.items():
        viewable, measured = (seen + [0, 0])[:2]
        rows.append({"campaign_id": c, "hour": h, "impressions": i, "clicks": k, "conversions": v, "revenue": r,
                     "viewable": viewable, "measured": measured})
    site = {}
    for row in rows:
        total = site.setdefault(row["hour"], {"hour": row["hour"], **dict.fromkeys(LIVE_COUNTS, 0)})
        for name in LIVE_COUNTS:
            total[name] += row[name]
    _add_rows(LiveHour, [LiveHour.campaign_id, LiveHour.hour], rows)
    _add_rows(LiveSiteHour, [LiveSiteHour.hour], list(site.values()))
    _add_to_marks(rows)
    _mark((now or utcnow()).replace(tzinfo=None, minute=0, second=0, microsecond=0))


def _add_rows(model, key, rows, batch=500) -> None:
    """Insert `rows` (dicts of the same fields), or add their counts to the rows already there with the same `key`.

    The statement is written here, not by peewee's insert_many: at 10,000 campaigns an export chunk
    upserts 10,000 rows, and building them as peewee expressions cost more than the rest of the export.
    """
    if not rows:
        return
    fields = [model._meta.fields[name] for name in rows[0]]
    table = model._meta.table_name
    update = ", ".join(f'"{c}" = "{table}"."{c}" + EXCLUDED."{c}"' for c in LIVE_COUNTS)
    row_marks = "(" + ", ".join([db.obj.param] * len(fields)) + ")"
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    conflict = ", ".join(f'"{k.column_name}"' for k in key)
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        sql = (f'INSERT INTO "{table}" ({columns}) VALUES {", ".join([row_marks] * len(chunk))} '
               f"ON CONFLICT ({conflict}) DO UPDATE SET {update}")
        db.execute_sql(sql, [f.db_value(row[f.name]) for row in chunk for f in fields])


def fill_live_site_hours() -> None:
    """Set LiveSiteHour to the per-hour sums of LiveHour."""
    sums = LiveHour.select(LiveHour.hour, *(fn.SUM(getattr(LiveHour, name)) for name in LIVE_COUNTS)).group_by(LiveHour.hour)
    with db.atomic():
        LiveSiteHour.delete().execute()
        LiveSiteHour.insert_from(sums, [LiveSiteHour.hour, *(getattr(LiveSiteHour, name) for name in LIVE_COUNTS)]).execute()


RUNNING_TOTAL = datetime(9999, 12, 31)  # the LiveMark `at` of every event's totals
HOURLY_MARKS_KEPT = timedelta(hours=50)  # an hour's mark lives this long (midnights' for good): the presets' reach
MARK_DAYS_FILLED = 62  # midnights a first fill marks: the last 30 days and the 30 before them, with room


def _add_to_marks(rows) -> None:
    """Add LiveHour-shaped `rows` to the running totals, and to the marks after their hour when they come late."""
    at = min((row["hour"] for row in rows), default=None)
    while at is not None:
        at = LiveMark.select(fn.MIN(LiveMark.at)).where((LiveMark.at > at) & (LiveMark.at < RUNNING_TOTAL)).scalar()
        if at is not None:
            at = naive_datetime(at)
            _add_rows(LiveMark, [LiveMark.at, LiveMark.campaign_id], _sums_before(rows, at))
    _add_rows(LiveMark, [LiveMark.at, LiveMark.campaign_id], _sums_before(rows, RUNNING_TOTAL))


def _sums_before(rows, at) -> list:
    """LiveMark rows at `at`: the counts of `rows` of the hours before it, per campaign."""
    sums = {}
    for row in rows:
        if row["hour"] < at:
            total = sums.setdefault(row["campaign_id"], {"at": at, "campaign_id": row["campaign_id"],
                                                          **dict.fromkeys(LIVE_COUNTS, 0)})
            for name in LIVE_COUNTS:
                total[name] += row[name]
    return list(sums.values())


def _mark(at) -> None:
    """Make the mark at `at` if there is none: the next mark after it minus the live hours in between."""
    if at >= RUNNING_TOTAL or LiveMark.select().where(LiveMark.at == at).exists():
        return
    following = LiveMark.select(fn.MIN(LiveMark.at)).where(LiveMark.at > at).scalar()
    if following is None:
        return  # no live event yet
    p = db.obj.param
    columns = ", ".join(f'"{c}"' for c in LIVE_COUNTS)
    differences = ", ".join(f'n."{c}" - COALESCE(s."{c}", 0)' for c in LIVE_COUNTS)
    sums = ", ".join(f'SUM("{c}") AS "{c}"' for c in LIVE_COUNTS)
    db.execute_sql(
        f'INSERT INTO "livemark" ("at", "campaign_id", {columns}) '
        f'SELECT {p}, n."campaign_id", {differences} FROM "livemark" AS n LEFT JOIN '
        f'(SELECT "campaign_id", {sums} FROM "livehour" WHERE "hour" >= {p} AND "hour" < {p} GROUP BY "campaign_id") AS s '
        f'ON s."campaign_id" = n."campaign_id" WHERE n."at" = {p}',
        [LiveMark.at.db_value(at), LiveHour.hour.db_value(at), LiveHour.hour.db_value(naive_datetime(following)),
         LiveMark.at.db_value(naive_datetime(following))])
    # Hours' marks are for the presets of the last two days; a midnight's serves days and custom ranges.
    stale = at - HOURLY_MARKS_KEPT
    if stale.hour:
        LiveMark.delete().where(LiveMark.at == stale).execute()


def fill_live_marks(now=None) -> None:
    """Set the marks from LiveHour: the running totals, each hour's of the last two days and the midnights before."""
    now = (now or utcnow()).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    sums = LiveHour.select(RUNNING_TOTAL, LiveHour.campaign_id, *(fn.SUM(getattr(LiveHour, c)) for c in LIVE_COUNTS)
                           ).group_by(LiveHour.campaign_id)
    with db.atomic():
        LiveMark.delete().execute()
        LiveMark.insert_from(sums, [LiveMark.at, LiveMark.campaign_id, *(getattr(LiveMark, c) for c in LIVE_COUNTS)]).execute()
        hours = [now - timedelta(hours=back) for back in range(int(HOURLY_MARKS_KEPT / timedelta(hours=1)))]
        midnight = now.replace(hour=0)
        midnights = [midnight - timedelta(days=back) for back in range(MARK_DAYS_FILLED)]
        for at in sorted(set(hours + midnights), reverse=True):  # each from the one after it
            _mark(at)
    if isinstance(db.obj, PostgresqlDatabase):
        db.execute_sql("ANALYZE livemark")  # the planner's figures for the table just filled, before autovacuum's


def naive_datetime(value):
    """A DATETIME value as a datetime: SQLite hands grouped ones back as text."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def user_by_name(username):
    """The User called `username`, or None."""
    return User.get_or_none(User.username == username)


def has_admin() -> bool:
    """Whether any user has the admin role."""
    return User.select().where(User.role == "admin").exists()
