"""Ingest from S3 over HTTP on loopback (moto's server mode), through the production boto3 code path."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from conftest import write_source
from jobs.ingest import run_ingest
from models import IngestFile, IngestRun, LoadedFile, Plan
from test_ingest import GOOD, png_bytes


@pytest.fixture(scope="session", autouse=True)
def fake_credentials():
    """boto3's standard chain finds these; moto accepts any key unless told to check."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def upload_tree(endpoint, bucket, prefix, root):
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    for path in Path(root).rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")
    return client


@pytest.fixture
def s3_app(app, s3_endpoint):
    from jobs import runtime

    settings = runtime.context().settings
    from dataclasses import replace

    runtime.context(replace(settings, s3_endpoint_url=s3_endpoint))
    return app


@pytest.fixture
def bucket(s3_endpoint, tmp_path, redis_prefix):
    name = "bs-" + redis_prefix.split(":")[1]
    source = write_source(tmp_path / "s3src", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images={"image_10.png": png_bytes()})
    client = upload_tree(s3_endpoint, name, "feed", source)
    return name, client


def plans():
    return {(p.quarter, p.campaign_id): p.banner_ids for p in Plan.select()}


def ingest(app, source):
    with app.app_context():
        return IngestRun.get_by_id(run_ingest(source, trigger="cli"))


def test_ingest_from_s3_loads_the_same_plans_as_from_a_directory(s3_app, bucket, tmp_path):
    name, _ = bucket
    run = ingest(s3_app, f"s3://{name}/feed")
    assert run.status == IngestRun.SUCCEEDED, run.error
    with s3_app.app_context():
        from_s3 = plans()
        record = IngestFile.get(run=run, quarter=1, name="clicks.csv")
        assert record.etag and record.sha256 and record.loaded == 4
        assert LoadedFile.get_by_id("images/image_10.png").etag
    directory = write_source(tmp_path / "dir", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    (directory / "1" / "clicks.csv").write_text("click_id,banner_id,campaign_id\n1,13,1\n")
    ingest(s3_app, str(directory))
    ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        assert plans() == from_s3


def test_ingest_from_s3_twice_reports_every_file_unchanged_by_etag(s3_app, bucket):
    name, _ = bucket
    first = ingest(s3_app, f"s3://{name}/feed")
    run = ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        records = list(IngestFile.select().where(IngestFile.run == run))
        assert run.status == IngestRun.SUCCEEDED and len(records) == 13
        assert all(r.unchanged for r in records)
        # An unchanged object is not read again; its record carries the hash it was loaded with.
        loaded = {(r.quarter, r.name): r.sha256 for r in IngestFile.select().where(IngestFile.run == first) if r.quarter}
        again = {(r.quarter, r.name): r.sha256 for r in records if r.quarter}
        assert again == loaded and len(loaded) == 12 and all(loaded.values())


def test_ingest_from_s3_changed_object_reloads_its_quarter(s3_app, bucket):
    name, client = bucket
    ingest(s3_app, f"s3://{name}/feed")
    client.put_object(Bucket=name, Key="feed/3/clicks.csv", Body=b"click_id,banner_id,campaign_id\n1,14,1\n4,20,2\n")
    run = ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        assert not IngestFile.get(run=run, quarter=3, name="clicks.csv").unchanged
        assert IngestFile.get(run=run, quarter=2, name="clicks.csv").unchanged
        assert Plan.get(quarter=3, campaign_id=1).banner_ids.startswith("14,")


def test_ingest_from_s3_object_changed_to_the_same_size_reloads_its_quarter(s3_app, bucket):
    name, client = bucket
    ingest(s3_app, f"s3://{name}/feed")
    body = "click_id,banner_id,campaign_id\n" + GOOD["clicks"].replace("1,10,1", "1,15,1")  # same length, new ETag
    client.put_object(Bucket=name, Key="feed/3/clicks.csv", Body=body.encode())
    run = ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        assert not IngestFile.get(run=run, quarter=3, name="clicks.csv").unchanged
        assert Plan.get(quarter=3, campaign_id=1).banner_ids.split(",")[:2] == ["15", "11"]


def test_ingest_from_s3_missing_object_fails_its_quarter_only(s3_app, bucket):
    name, client = bucket
    ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        before = plans()
    client.delete_object(Bucket=name, Key="feed/2/conversions.csv")
    run = ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        assert run.status == IngestRun.FAILED and "quarter 2" in run.error
        assert IngestFile.get(run=run, quarter=2, name="conversions.csv").error == "file is missing"
        assert plans() == before


def test_ingest_from_s3_bucket_missing_fails_clearly_and_keeps_data(s3_app, bucket):
    name, _ = bucket
    ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        before = plans()
    run = ingest(s3_app, "s3://no-such-bucket-here/feed")
    assert run.status == IngestRun.FAILED and "does not exist" in run.error
    with s3_app.app_context():
        assert plans() == before


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ingest_from_s3_unreachable_is_retried_then_failed(app, bucket, tmp_path):
    """An endpoint that hangs up on every connection: boto3 retries (with backoff), then the run fails
    and the served plans stay as they were."""
    import threading
    from dataclasses import replace

    from jobs import runtime

    ingest(app, str(write_source(tmp_path / "good", {q: dict(GOOD) for q in (1, 2, 3, 4)})))
    with app.app_context():
        before = plans()
    assert len(before) == 8
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    attempts = []

    def hang_up():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            attempts.append(time.monotonic())
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    port = listener.getsockname()[1]
    runtime.context(replace(runtime.context().settings, s3_endpoint_url=f"http://127.0.0.1:{port}", s3_max_attempts=3))
    try:
        run = ingest(app, "s3://anything/feed")
    finally:
        listener.close()
    assert run.status == IngestRun.FAILED and "unreachable" in run.error and run.finished_at
    assert 3 <= len(attempts) <= 6  # max_attempts=3 (urllib3 may reopen a dropped connection once)
    with app.app_context():
        assert plans() == before


@pytest.fixture(scope="module")
def checking_s3_endpoint(tmp_path_factory):
    """A moto server that checks credentials, in a process of its own (the setting is read at import)."""
    port = _free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_ingest_from_s3_access_denied_fails_clearly_and_keeps_data(app, checking_s3_endpoint, tmp_path):
    from dataclasses import replace

    from jobs import runtime

    source = write_source(tmp_path / "good", {q: dict(GOOD) for q in (1, 2, 3, 4)})
    ingest(app, str(source))
    with app.app_context():
        before = plans()
    runtime.context(replace(runtime.context().settings, s3_endpoint_url=checking_s3_endpoint))
    run = ingest(app, "s3://private-bucket/feed")
    assert run.status == IngestRun.FAILED and "access denied" in run.error
    with app.app_context():
        assert plans() == before


def test_export_to_s3_and_ingest_with_live_from_s3(s3_app, bucket):
    from dataclasses import replace
    from datetime import datetime, timezone

    from jobs import runtime
    from live.events import impression_event, queue_event
    from live.export import export_events
    from models import CampaignStat

    name, client = bucket
    runtime.context(replace(runtime.context().settings, live_root=f"s3://{name}/feed"))
    ingest(s3_app, f"s3://{name}/feed")
    with s3_app.app_context():
        base = CampaignStat.get(quarter=2, campaign_id=1).impressions
    now = datetime.now(timezone.utc).replace(minute=20)
    ctx = runtime.context()
    for batch in range(2):  # the second export appends to the object the first one wrote
        pipe = ctx.redis.pipeline()
        for i in range(3):
            queue_event(pipe, ctx, impression_event(now, 2, 1, 12, "v", 1, f"{batch}-{i}"))
        pipe.execute()
        with s3_app.app_context():
            export_events()
    key = f"feed/live/{now:%Y-%m-%d}/{now:%H}/2/impressions.csv"
    assert client.get_object(Bucket=name, Key=key)["Body"].read().decode().splitlines() == ["banner_id,campaign_id"] + ["12,1"] * 6
    from jobs.ingest import run_ingest

    with s3_app.app_context():
        run = IngestRun.get_by_id(run_ingest(f"s3://{name}/feed", trigger="cli", live_hours=1))
        assert run.status == IngestRun.SUCCEEDED, run.error
        assert CampaignStat.get(quarter=2, campaign_id=1).impressions == base + 6
        # Again with nothing new: the quarter was built from these very live files, so nothing is read.
        again = IngestRun.get_by_id(run_ingest(f"s3://{name}/feed", trigger="cli", live_hours=1))
        assert all(f.unchanged for f in IngestFile.select().where(IngestFile.run == again, IngestFile.quarter == 2))
        assert CampaignStat.get(quarter=2, campaign_id=1).impressions == base + 6


def test_ingest_from_s3_object_overwritten_between_list_and_get_keeps_its_quarter(s3_app, bucket):
    name, client = bucket
    key = "feed/4/impressions.csv"
    assert ingest(s3_app, f"s3://{name}/feed").status == IngestRun.SUCCEEDED
    with s3_app.app_context():
        before = Plan.get(quarter=4, campaign_id=1).banner_ids
    client.put_object(Bucket=name, Key=key, Body=b"banner_id,campaign_id\n13,1\n13,1\n13,1\n")
    newer = b"banner_id,campaign_id\n14,1\n"
    put = []

    def on_progress(_done, _total, stage):
        # The object was listed (HeadObject) at the start; it is fetched right after this stage.
        if stage == "quarter 4: reading 4/impressions.csv" and not put:
            put.append(client.put_object(Bucket=name, Key=key, Body=newer)["ETag"])

    with s3_app.app_context():
        run = IngestRun.get_by_id(run_ingest(f"s3://{name}/feed", trigger="cli", on_progress=on_progress))
        assert put and run.status == IngestRun.FAILED
        assert "quarter 4: " in run.error and "changed while reading" in run.error
        record = IngestFile.get(run=run, quarter=4, name="impressions.csv")
        assert "changed while reading" in record.error and record.etag != put[0].strip('"')
        assert Plan.get(quarter=4, campaign_id=1).banner_ids == before
        assert IngestFile.get(run=run, quarter=3, name="impressions.csv").unchanged
    again = ingest(s3_app, f"s3://{name}/feed")
    assert again.status == IngestRun.SUCCEEDED, again.error
    with s3_app.app_context():
        assert IngestFile.get(run=again, quarter=4, name="impressions.csv").etag == put[0].strip('"')


def test_ingest_from_s3_unchanged_object_puts_back_its_missing_published_image(s3_app, bucket):
    from jobs import runtime

    name, _ = bucket
    assert ingest(s3_app, f"s3://{name}/feed").status == IngestRun.SUCCEEDED
    with s3_app.app_context():
        published = Path(runtime.context().settings.image_dir) / "10.png"
    original = published.read_bytes()
    published.unlink()
    run = ingest(s3_app, f"s3://{name}/feed")
    assert run.status == IngestRun.SUCCEEDED, run.error
    assert published.read_bytes() == original
    with s3_app.app_context():
        assert IngestFile.get(run=run, quarter=None, name="images/").loaded == 1
