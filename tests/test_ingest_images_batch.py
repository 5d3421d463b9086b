"""Images are loaded in batches: a fixed handful of statements per batch, and one image's failure costs only that image."""

from pathlib import Path

from conftest import write_source
from jobs.ingest import run_ingest
from models import Banner, IngestFile, IngestRun, LoadedFile
from test_ingest import GOOD, png_bytes

IMAGES = 1_200  # more than two batches


def _source(tmp_path, count=IMAGES):
    images = {f"image_{i}.png": png_bytes((i % 256, 7, 9)) for i in range(1, count + 1)}
    return write_source(tmp_path / "many", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images=images)


def _images_record(run_id):
    return IngestFile.get(IngestFile.run == run_id, IngestFile.name == "images/")


def test_loading_1200_images_runs_statements_per_batch_not_per_image(app, tmp_path, sql):
    source = _source(tmp_path)
    with app.app_context():
        sql.clear()
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED, run.error
        assert _images_record(run.id).loaded == IMAGES and Banner.select().count() == IMAGES
        assert LoadedFile.select().where(LoadedFile.path.startswith("images/")).count() == IMAGES
    image_statements = [q for q in sql if '"banner"' in q.lower() or ('"loadedfile"' in q.lower() and "images/" in str(q))]
    # Every image once asked about, written and remembered would be 3,600 statements.
    assert len(sql) < 400, f"{len(sql)} statements for {IMAGES} images ({len(image_statements)} about images)"


def test_reloading_unchanged_images_publishes_none_and_asks_per_batch(app, tmp_path, sql, settings_overrides):
    source = _source(tmp_path, 600)
    with app.app_context():
        run_ingest(str(source), trigger="cli")
        served = {p.name: p.stat().st_mtime_ns for p in Path(settings_overrides["image_dir"]).iterdir()}
        (source / "images" / "image_5.png").write_bytes(png_bytes((200, 200, 200)))
        sql.clear()
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        record = _images_record(run.id)
        assert (record.loaded, record.rejected) == (1, 0)
    after = {p.name: p.stat().st_mtime_ns for p in Path(settings_overrides["image_dir"]).iterdir()}
    assert [name for name in after if after[name] != served.get(name)] == ["5.png"]
    assert len(sql) < 100, len(sql)


def test_an_image_that_cannot_be_published_costs_only_itself_not_its_batch(app, tmp_path, settings_overrides):
    source = _source(tmp_path, 50)
    blocked = Path(settings_overrides["image_dir"]) / "7.png"
    blocked.mkdir(parents=True)  # a directory where the image must go: the rename onto it fails
    with app.app_context():
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED_WITH_REJECTS, run.error
        record = _images_record(run.id)
        assert (record.loaded, record.rejected) == (49, 1)
        [(path, reason)] = record.sample_list
        assert path == "images/image_7.png" and "could not be published" in reason
        assert Banner.get_or_none(Banner.id == 7) is None and Banner.get_by_id(8).image_name == "8.png"
        assert LoadedFile.get_or_none(LoadedFile.path == "images/image_7.png") is None
    served = {p.name for p in Path(settings_overrides["image_dir"]).iterdir() if p.is_file()}
    assert len(served) == 49 and "8.png" in served


def test_two_files_of_one_banner_in_a_batch_leave_the_later_one_served(app, tmp_path):
    import io

    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (30, 25)).save(jpeg, format="JPEG")
    source = write_source(tmp_path / "twice", {q: dict(GOOD) for q in (1, 2, 3, 4)},
                          images={"image_9.png": png_bytes(), "image_9.jpg": jpeg.getvalue(), "image_10.png": png_bytes()})
    with app.app_context():
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        assert run.status == IngestRun.SUCCEEDED, run.error
        # Sorted by path, image_9.png comes after image_9.jpg: it is the one the banner shows.
        assert Banner.get_by_id(9).image_name == "9.png"
        assert _images_record(run.id).loaded == 3


def test_a_batch_holds_no_more_image_bytes_than_its_bound(app, tmp_path, sql, monkeypatch):
    from jobs import images

    source = _source(tmp_path, 30)
    one_image = len(png_bytes((1, 7, 9)))
    monkeypatch.setattr(images, "IMAGE_BATCH_BYTES", 2 * one_image + 1)  # room for two images' bytes, not three
    with app.app_context():
        sql.clear()
        run = IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))
        assert _images_record(run.id).loaded == 30 and Banner.select().count() == 30
    banner_writes = [q for q in sql if q.lower().startswith('insert into "banner"')]
    assert len(banner_writes) == 15, len(banner_writes)
