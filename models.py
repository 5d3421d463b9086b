"""The database: a deferred peewee handle, the models, and the queries named after what they fetch."""

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from peewee import (
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.db_url import connect

db = DatabaseProxy()

# WAL lets visitors read while an ingest writes; busy_timeout makes writers queue, not fail.
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal", "busy_timeout": 10000, "foreign_keys": 1}


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def init_db(url: str):
    """Point `db` at `url` (sqlite:///path or postgresql://...) and create missing tables."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"pragmas": SQLITE_PRAGMAS} if url.startswith("sqlite") else {}
    database = connect(url, **kwargs)
    db.initialize(database)
    with db.connection_context():
        db.create_tables(ALL_MODELS, safe=True)
    return database


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
        indexes = ((("quarter", "campaign_id", "banner_id"), True),)


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
        indexes = ((("quarter", "campaign_id"), True),)


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


class User(BaseModel):
    username = CharField(unique=True)
    password_hash = CharField()
    role = CharField()  # admin | manager
    created_at = DateTimeField(default=utcnow)


ALL_MODELS = [
    Banner, ImpressionCount, Click, Conversion, BannerStat, Plan, CampaignStat,
    LoadedFile, Meta, IngestRun, IngestFile, User,
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
    """{(quarter, campaign_id): ((banner_id, image_name), ...)} for every plan, in rank order."""
    images = {b.id: b.image_name for b in Banner.select(Banner.id, Banner.image_name)}
    return {
        (p.quarter, p.campaign_id): tuple((b, images.get(b)) for b in p.banner_id_list)
        for p in Plan.select(Plan.quarter, Plan.campaign_id, Plan.banner_ids)
    }


def known_campaign_ids() -> set[int]:
    """Every campaign that has a plan in some quarter."""
    return {row.campaign_id for row in Plan.select(Plan.campaign_id).distinct()}


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

