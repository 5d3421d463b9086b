"""The published image folder (IMAGE_DIR) after an ingest: repaired when a file is gone, never left half written."""

import io
import os
import random
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from conftest import write_source
from jobs.ingest import run_ingest
from models import Banner, IngestFile, IngestRun
from test_ingest import GOOD, png_bytes


def noise_png(seed, side=64):
    """A PNG that does not compress: about 3 bytes a pixel."""
    pixels = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, format="PNG")
    return out.getvalue()


def ingest(app, source):
    with app.app_context():
        return IngestRun.get_by_id(run_ingest(str(source), trigger="cli"))


def images_record(app, run):
    with app.app_context():
        return IngestFile.get(run=run, quarter=None, name="images/")


def test_ingest_unchanged_source_puts_back_an_image_missing_from_the_published_folder(app, tmp_path):
    images = {"image_10.png": png_bytes(), "image_11.png": png_bytes((200, 10, 10))}
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images=images)
    assert ingest(app, source).status == IngestRun.SUCCEEDED
    with app.app_context():
        from jobs import runtime

        published = Path(runtime.context().settings.image_dir)
        assert Banner.get_by_id(10).image_name == "10.png"
    (published / "10.png").unlink()
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED, run.error
    assert (published / "10.png").read_bytes() == images["image_10.png"]
    record = images_record(app, run)
    assert record.loaded == 1 and not record.unchanged  # 11.png was there: not written again
    # With every file in place, the next run is "unchanged" again.
    assert images_record(app, ingest(app, source)).unchanged


@pytest.fixture
def full_image_dir(settings_overrides):
    """IMAGE_DIR on a 200 KB tmpfs, filled up but for about 30 KB."""
    folder = Path(settings_overrides["image_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")
    try:
        stats = os.statvfs(folder)
        filler = folder / "filler"
        filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 30_000))
        yield folder, filler
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_ingest_image_dir_on_a_full_disk_fails_the_run_and_leaves_no_partial_files(full_image_dir, app, tmp_path):
    folder, filler = full_image_dir
    images = {f"image_{i}.png": noise_png(i) for i in range(1, 7)}  # 6 x ~12 KB into ~30 KB
    assert all(len(data) > 10_000 for data in images.values())
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images=images)
    run = ingest(app, source)
    assert run.status == IngestRun.FAILED
    assert "disk full" in run.error
    assert "disk full" in images_record(app, run).error
    with app.app_context():
        recorded = {b.image_name for b in Banner.select() if b.image_name}
    left = {p.name for p in folder.iterdir()} - {filler.name}
    assert left <= recorded, f"files the database does not record: {sorted(left - recorded)}"
    for name in left:
        assert (folder / name).read_bytes() == images[f"image_{name.split('.')[0]}.png"]
    # Space again: the next run publishes every image.
    filler.unlink()
    again = ingest(app, source)
    assert again.status == IngestRun.SUCCEEDED, again.error
    assert {p.name for p in folder.iterdir()} == {f"{i}.png" for i in range(1, 7)}


def jpeg_bytes():
    out = io.BytesIO()
    Image.new("RGB", (30, 25), (1, 2, 3)).save(out, format="JPEG")
    return out.getvalue()


def test_ingest_image_whose_type_changes_leaves_only_the_file_the_database_names(app, tmp_path):
    """A JPEG named `.png` is published as `.jpg`: the `.png` published for the banner before goes, so that
    the folder and Banner.image_name agree."""
    source = write_source(tmp_path / "src", {q: dict(GOOD) for q in (1, 2, 3, 4)}, images={"image_10.png": png_bytes()})
    assert ingest(app, source).status == IngestRun.SUCCEEDED
    with app.app_context():
        from jobs import runtime

        published = Path(runtime.context().settings.image_dir)
    assert sorted(p.name for p in published.iterdir()) == ["10.png"]
    (source / "images" / "image_10.png").write_bytes(jpeg_bytes())
    run = ingest(app, source)
    assert run.status == IngestRun.SUCCEEDED, run.error
    with app.app_context():
        banner = Banner.get_by_id(10)
        assert (banner.image_name, banner.content_type) == ("10.jpg", "image/jpeg")
    assert sorted(p.name for p in published.iterdir()) == ["10.jpg"]
    assert (published / "10.jpg").read_bytes() == jpeg_bytes()
