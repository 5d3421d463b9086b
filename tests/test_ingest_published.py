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

