"""The database: a deferred peewee handle, the models, and the queries named after what they fetch."""

import functools
import json
import operator
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
)
from playhouse.db_url import connect

from jobs.parsing import MAX_ID

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


def latest_runs(limit=50):
    return IngestRun.select().order_by(IngestRun.id.desc()).limit(limit)


def active_run():
    """The queued or running ingest, if there is one."""
    return (
        IngestRun.select()
        .where(IngestRun.status.in_([IngestRun.QUEUED, IngestRun.RUNNING]))
        .order_by(IngestRun.id.desc())
        .first()
    )



# --- Dashboard queries -------------------------------------------------------------------

from peewee import Case, Cast, fn  # noqa: E402  (kept with the dashboard queries they serve)


def _ratio(numerator, denominator):
    """SQL for numerator/denominator that is NULL, not an error, when the denominator is 0."""
    # A double, not the exact NUMERIC that PostgreSQL makes of `clicks * 1.0`: sorting 40,000 rows by a
    # NUMERIC quotient took PostgreSQL 1.8 times as long (docs/performance.md, Dashboard growth).
    return Case(None, [(denominator == 0, None)], Cast(numerator, "DOUBLE PRECISION") / denominator)


# The stats table's sortable columns: name in the URL -> SQL expression.
CAMPAIGN_STAT_COLUMNS = {
    "campaign": CampaignStat.campaign_id,
    "quarter": CampaignStat.quarter,
    "impressions": CampaignStat.impressions,
    "clicks": CampaignStat.clicks,
    "conversions": CampaignStat.conversions,
    "revenue": CampaignStat.revenue,
    "ctr": _ratio(CampaignStat.clicks, CampaignStat.impressions),
    "cvr": _ratio(CampaignStat.conversions, CampaignStat.clicks),
    "epc": _ratio(CampaignStat.revenue, CampaignStat.clicks),
    "rpm": _ratio(CampaignStat.revenue * 1000, CampaignStat.impressions),
    "x": CampaignStat.x,
    "scenario": CampaignStat.scenario,
    "banners": CampaignStat.banners,
}


def campaign_stats(quarter=None, campaign_prefix=None, sort="campaign", descending=False):
    """CampaignStat rows filtered by quarter and campaign id prefix, sorted by a CAMPAIGN_STAT_COLUMNS name."""
    query = CampaignStat.select()
    if quarter is not None:
        query = query.where(CampaignStat.quarter == quarter)
    if campaign_prefix is not None:
        query = query.where(_id_with_prefix(CampaignStat.campaign_id, campaign_prefix))
    column = CAMPAIGN_STAT_COLUMNS[sort]
    order = column.desc(nulls="LAST") if descending else column.asc(nulls="LAST")
    # Ties fall back to (campaign, quarter) so pages never shuffle rows between requests.
    return query.order_by(order, CampaignStat.campaign_id, CampaignStat.quarter)


def id_prefix_ranges(prefix: int, max_id=MAX_ID) -> list[tuple[int, int]]:
    """The id ranges whose decimal digits start with those of `prefix`: 1 -> 1, 10-19, 100-199, ...; none below 1."""
    ranges, scale = [], 1
    while 0 < prefix * scale <= max_id:
        ranges.append((prefix * scale, min((prefix + 1) * scale - 1, max_id)))
        scale *= 10
    return ranges


def _id_with_prefix(column, prefix: int):
    # Ranges instead of CAST(id AS TEXT) LIKE '1%': the same rows, and an index on the id still serves them.
    terms = [(column == low) if low == high else column.between(low, high) for low, high in id_prefix_ranges(prefix)]
    return functools.reduce(operator.or_, terms) if terms else column.in_([])  # no range, no row


def campaign_stat_totals(query) -> dict:
    """Sums of impressions, clicks, conversions and revenue over a campaign_stats() query, and its row count."""
    inner = query.order_by().alias("view")
    row = (
        CampaignStat.select(
            fn.COUNT(inner.c.id), fn.SUM(inner.c.impressions), fn.SUM(inner.c.clicks),
            fn.SUM(inner.c.conversions), fn.SUM(inner.c.revenue),
        )
        .from_(inner)
        .tuples()
        .get()
    )
    rows, impressions, clicks, conversions, revenue = row
    return {
        "rows": rows or 0, "impressions": int(impressions or 0), "clicks": int(clicks or 0),
        "conversions": int(conversions or 0), "revenue": float(revenue or 0),
    }


def quarter_totals() -> list[dict]:
    """Per quarter: campaigns, impressions, clicks, conversions and revenue, from CampaignStat."""
    rows = (
        CampaignStat.select(
            CampaignStat.quarter, fn.COUNT(CampaignStat.id), fn.SUM(CampaignStat.impressions),
            fn.SUM(CampaignStat.clicks), fn.SUM(CampaignStat.conversions), fn.SUM(CampaignStat.revenue),
        )
        .group_by(CampaignStat.quarter)
        .order_by(CampaignStat.quarter)
        .tuples()
    )
    return [
        {"quarter": q, "campaigns": n, "impressions": int(i or 0), "clicks": int(c or 0),
         "conversions": int(v or 0), "revenue": float(r or 0)}
        for q, n, i, c, v, r in rows
    ]


def revenue_by_quarter(campaign_ids) -> dict:
    """{campaign_id: [revenue in Q1, Q2, Q3, Q4]} for the given campaigns (0.0 where there is no row)."""
    result = {cid: [0.0, 0.0, 0.0, 0.0] for cid in campaign_ids}
    if not result:
        return result
    query = CampaignStat.select(CampaignStat.campaign_id, CampaignStat.quarter, CampaignStat.revenue).where(
        CampaignStat.campaign_id.in_(list(result))
    )
    for row in query:
        if 1 <= row.quarter <= 4:
            result[row.campaign_id][row.quarter - 1] = row.revenue
    return result


def hour_averages(campaign_ids) -> dict:
    """{campaign_id: (revenue per slot of the hour, CTR of the whole hour)}; a slot without a row earned 0."""
    result = {}
    ids = list(set(campaign_ids))
    if not ids:
        return result
    query = (
        CampaignStat.select(CampaignStat.campaign_id, fn.SUM(CampaignStat.revenue),
                            fn.SUM(CampaignStat.clicks), fn.SUM(CampaignStat.impressions))
        .where(CampaignStat.campaign_id.in_(ids))
        .group_by(CampaignStat.campaign_id)
        .tuples()
    )
    for campaign_id, revenue, clicks, impressions in query:
        result[campaign_id] = (float(revenue or 0) / 4, (clicks or 0) / impressions if impressions else None)
    return result


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
            at = _naive(at)
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
        [LiveMark.at.db_value(at), LiveHour.hour.db_value(at), LiveHour.hour.db_value(_naive(following)),
         LiveMark.at.db_value(_naive(following))])
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


def live_totals_before(at, campaign_prefix=None) -> dict:
    """{campaign_id: [impressions, clicks, conversions, revenue]} of the live events before `at`."""
    mark = LiveMark.select(fn.MIN(LiveMark.at)).where(LiveMark.at >= at).scalar()
    if mark is None:
        return {}
    mark = _naive(mark)
    p, names = db.obj.param, LIVE_COUNTS[:4]
    prefix_sql, prefix_args = _prefix_sql(campaign_prefix)
    columns = ", ".join(f'"{c}"' for c in names)
    rows = db.execute_sql(f'SELECT "campaign_id", {columns} FROM "livemark" WHERE "at" = {p}{prefix_sql}',
                          [LiveMark.at.db_value(mark), *prefix_args]).fetchall()
    totals = {cid: [i, k, v, r] for cid, i, k, v, r in rows}
    if mark > at:  # no mark at `at`: take off the hours between it and the next one
        sums = ", ".join(f'SUM("{c}")' for c in names)
        later = db.execute_sql(
            f'SELECT "campaign_id", {sums} FROM "livehour" WHERE "hour" >= {p} AND "hour" < {p}{prefix_sql} GROUP BY "campaign_id"',
            [LiveHour.hour.db_value(at), LiveHour.hour.db_value(mark), *prefix_args]).fetchall()
        for cid, *values in later:
            total = totals[cid]
            for index, value in enumerate(values):
                total[index] -= value or 0
    return totals


def _change_sql(now, before) -> str:
    return f"CASE WHEN {before} = 0 OR {before} IS NULL THEN NULL ELSE ({now} - {before}) / {before} END"


_CTR_SQL = "CAST(clicks AS DOUBLE PRECISION) / NULLIF(impressions, 0)"
# The stats table's live view: its sortable columns, as SQL over a campaign's period and the one before (p_*).
LIVE_PERIOD_COLUMNS = {
    "campaign": "campaign_id",
    "revenue": "revenue",
    "impressions": "impressions",
    "clicks": "clicks",
    "conversions": "conversions",
    "ctr": _CTR_SQL,
    "cvr": "CAST(conversions AS DOUBLE PRECISION) / NULLIF(clicks, 0)",
    "epc": "revenue / NULLIF(clicks, 0)",
    "rpm": "revenue * 1000 / NULLIF(impressions, 0)",
    "revenue_change": _change_sql("revenue", "p_revenue"),
    "ctr_change": _change_sql(_CTR_SQL, "CAST(p_clicks AS DOUBLE PRECISION) / NULLIF(p_impressions, 0)"),
}
PERIOD_COUNTS = ("impressions", "clicks", "conversions", "revenue")


def live_period_rows(bounds, campaign_prefix=None, sort="campaign", descending=False, limit=None, offset=0):
    """Every campaign's live counts between the marks of `bounds` (end, start, previous end, previous start), sorted by
    a LIVE_PERIOD_COLUMNS name and cut to a page, with the count and sums of all of them:
    ([(campaign_id, 4 counts, 4 previous counts)], [rows, 4 sums, 4 previous sums]).
    None when a bound has no mark of its own (the caller sums from the nearest marks instead)."""
    marks = [_mark_at(at) for at in bounds]
    if None in marks:
        return None
    if marks[0] is False:
        return [], [0] * 9  # no live event at all
    p = db.obj.param
    # Most periods start where the one before ends: one join fewer (a look-up per campaign).
    joins = ["s", "ps"] if marks[1] == marks[2] else ["s", "pe", "ps"]
    pe = "s" if marks[1] == marks[2] else "pe"
    counts = ", ".join(f'{_money(f"e.{c} - COALESCE(s.{c}, 0)", c)} AS {c}' for c in PERIOD_COUNTS)
    before = ", ".join(f'{_money(f"COALESCE({pe}.{c}, 0) - COALESCE(ps.{c}, 0)", c)} AS p_{c}' for c in PERIOD_COUNTS)
    joined = " ".join(f"LEFT JOIN livemark AS {a} ON {a}.at = {p} AND {a}.campaign_id = e.campaign_id" for a in joins)
    prefix_sql, prefix_args = _prefix_sql(campaign_prefix, "e.campaign_id")
    sums = ", ".join(f"SUM({c})" for c in PERIOD_COUNTS + tuple(f"p_{c}" for c in PERIOD_COUNTS))
    direction = "DESC" if descending else "ASC"
    order = f"{LIVE_PERIOD_COLUMNS[sort]} {direction} NULLS LAST, campaign_id" if sort != "campaign" else f"campaign_id {direction}"
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    # Materialized: each campaign's differences computed once, then sorted and summed (not once per use).
    sql = (f"WITH v AS MATERIALIZED (SELECT e.campaign_id AS campaign_id, {counts}, {before} FROM livemark AS e {joined} "
           f"WHERE e.at = {p}{prefix_sql}), t AS (SELECT COUNT(*) AS n, {sums} FROM v) "
           f"SELECT campaign_id, {', '.join(PERIOD_COUNTS)}, {', '.join('p_' + c for c in PERIOD_COUNTS)}, t.* "
           f"FROM v CROSS JOIN t ORDER BY {order}{page}")
    joined_marks = [marks[1], marks[3]] if pe == "s" else marks[1:]
    found = db.execute_sql(sql, [LiveMark.at.db_value(m) for m in joined_marks] + [LiveMark.at.db_value(marks[0])]
                           + prefix_args).fetchall()
    if not found:
        if offset:  # past the last page: the totals from the first
            return [], live_period_rows(bounds, campaign_prefix, sort, descending, 1, 0)[1]
        return [], [0] * 9
    rows = [(r[0], r[1:5], r[5:9]) for r in found]
    # PostgreSQL sums integers as NUMERIC: back to int and float.
    return rows, [float(v or 0) if i in (4, 8) else int(v or 0) for i, v in enumerate(found[0][9:])]


def _money(sql, column) -> str:
    # A difference of running sums carries float dust (2.9999999999): rounded to a millionth, as the screen reads
    # it, so it sorts as it reads (in doubles: PostgreSQL rounds to digits in NUMERIC only, which costs more).
    return f"ROUND(({sql}) * 1000000) / 1000000" if column == "revenue" else sql


def _mark_at(at):
    """The `at` of the mark that holds the totals before `at`: its own, or a later one with no live hour between;
    None when there is none; False when there is no mark at all."""
    mark = LiveMark.select(fn.MIN(LiveMark.at)).where(LiveMark.at >= at).scalar()
    if mark is None:
        return False if not LiveMark.select().exists() else None
    mark = _naive(mark)
    if mark > at:
        # MIN, not EXISTS over a range: the hour index answers it at once, however fresh the planner's statistics.
        hour = LiveHour.select(fn.MIN(LiveHour.hour)).where(LiveHour.hour >= at).scalar()
        if hour is not None and _naive(hour) < mark:
            return None
    return mark


def _prefix_sql(campaign_prefix, column='"campaign_id"'):
    """SQL (and its arguments) keeping the campaigns whose id starts with `campaign_prefix`; none when it is None."""
    if campaign_prefix is None:
        return "", []
    ranges = id_prefix_ranges(campaign_prefix)
    if not ranges:
        return " AND 1 = 0", []
    p = db.obj.param
    terms = " OR ".join(f"{column} BETWEEN {p} AND {p}" for _ in ranges)
    return f" AND ({terms})", [bound for pair in ranges for bound in pair]


def live_hours(since, until, campaign_id=None) -> dict:
    """{hour: (impressions, clicks, conversions, revenue)} in [since, until) of all campaigns or of one."""
    if campaign_id is None:
        query = LiveSiteHour.select(LiveSiteHour.hour, LiveSiteHour.impressions, LiveSiteHour.clicks,
                                    LiveSiteHour.conversions, LiveSiteHour.revenue).where(
            (LiveSiteHour.hour >= since) & (LiveSiteHour.hour < until))
    else:
        query = LiveHour.select(LiveHour.hour, LiveHour.impressions, LiveHour.clicks, LiveHour.conversions,
                                LiveHour.revenue).where(
            (LiveHour.campaign_id == campaign_id) & (LiveHour.hour >= since) & (LiveHour.hour < until))
    return {_naive(h): (int(i or 0), int(k or 0), int(v or 0), float(r or 0)) for h, i, k, v, r in query.tuples()}


def live_viewability(since, until, campaign_id=None) -> dict:
    """{hour: (impressions, measured, viewable)} in [since, until) of all campaigns or of one. The viewable rate is
    viewable / measured: only the impressions the JS tag rendered could be watched (the page and iframe's cannot)."""
    model = LiveSiteHour if campaign_id is None else LiveHour
    where = (model.hour >= since) & (model.hour < until)
    if campaign_id is not None:
        where &= LiveHour.campaign_id == campaign_id
    query = model.select(model.hour, model.impressions, model.measured, model.viewable).where(where)
    return {_naive(h): (int(i or 0), int(m or 0), int(w or 0)) for h, i, m, w in query.tuples()}


def viewable_rate(measured, viewable):
    """The share of measured impressions that became viewable; None when none was measured."""
    return viewable / measured if measured else None


def _naive(value):
    # SQLite hands grouped DATETIME values back as text.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def has_live_hours(campaign_id=None) -> bool:
    """Whether the export job has rolled up any live event (of the campaign)."""
    if campaign_id is None:
        return LiveSiteHour.select().exists()
    return LiveHour.select().where(LiveHour.campaign_id == campaign_id).exists()


def plans_of_campaign(campaign_id) -> dict:
    """{quarter: Plan} of one campaign."""
    return {p.quarter: p for p in Plan.select().where(Plan.campaign_id == campaign_id)}


def banner_stats_of_campaign(campaign_id) -> dict:
    """{(quarter, banner_id): BannerStat} of one campaign."""
    query = BannerStat.select().where(BannerStat.campaign_id == campaign_id)
    return {(s.quarter, s.banner_id): s for s in query}


def banners_by_id(banner_ids) -> dict:
    """{banner_id: Banner} for the ids that have a Banner row."""
    ids = list(set(banner_ids))
    return {b.id: b for b in Banner.select().where(Banner.id.in_(ids))} if ids else {}


def files_of_runs(run_ids) -> dict:
    """{run_id: [IngestFile, ...]} in quarter then name order, images last."""
    result = {rid: [] for rid in run_ids}
    if not result:
        return result
    query = (
        IngestFile.select()
        .where(IngestFile.run.in_(list(result)))
        .order_by(IngestFile.quarter.asc(nulls="LAST"), IngestFile.id)
    )
    for f in query:
        result[f.run_id].append(f)
    return result


def last_loaded_at():
    """When a source file was last loaded into the served data (None before the first load)."""
    return LoadedFile.select(fn.MAX(LoadedFile.loaded_at)).scalar()


def served_source():
    """The source of the newest run that succeeded: where the data served now was loaded from (None before any)."""
    run = (
        IngestRun.select(IngestRun.source)
        .where(IngestRun.status.in_([IngestRun.SUCCEEDED, IngestRun.SUCCEEDED_WITH_REJECTS]))
        .order_by(IngestRun.id.desc())
        .first()
    )
    return run.source if run else None


def last_run():
    """The newest IngestRun, or None."""
    return IngestRun.select().order_by(IngestRun.id.desc()).first()


def files_behind_served_data(quarters=(1, 2, 3, 4), names=("impressions.csv", "clicks.csv", "conversions.csv")) -> dict:
    """{quarter: [IngestFile, ...]} of the run whose load built each quarter's served data.

    That run is the newest one that read (not "unchanged") exactly the quarter's files now recorded
    as loaded, historical and live, with the hashes LoadedFile holds: a run that found all of them
    loaded would have called them unchanged, and a failed store leaves LoadedFile as it was.
    Quarters never loaded are left out.
    """
    loaded = {f.path: f.sha256 for f in LoadedFile.select()}
    result = {}
    for quarter in quarters:
        live = Meta.get_or_none(Meta.key == f"live_files:{quarter}")  # written by ingest with each load
        wanted = {name: loaded.get(f"{quarter}/{name}") for name in names}
        wanted.update({path: loaded.get(path) for path in (json.loads(live.value) if live else [])})
        if None in wanted.values():
            continue
        candidates = IngestFile.select().where(
            (IngestFile.quarter == quarter) & (IngestFile.unchanged == False)  # noqa: E712
        ).order_by(IngestFile.run.desc(), IngestFile.id)
        by_run = {}
        for f in candidates:
            by_run.setdefault(f.run_id, []).append(f)
        for files in by_run.values():  # newest run first
            if len(files) == len(wanted) and {f.name: f.sha256 for f in files} == wanted:
                result[quarter] = files
                break
    return result


def user_by_name(username):
    """The User called `username`, or None."""
    return User.get_or_none(User.username == username)


def has_admin() -> bool:
    """Whether any user has the admin role."""
    return User.select().where(User.role == "admin").exists()
