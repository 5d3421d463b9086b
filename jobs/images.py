"""Banner images: tell their real type from their bytes, publish them without torn reads, load a source's."""

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

from jobs import runtime
from jobs.sources import image_banner_id
from jobs.store import is_loaded, remember_loaded
from models import Banner, IngestFile, bump_data_version, db

log = logging.getLogger("bannerservice.ingest")

# Magic bytes -> (extension, content type). The file name's extension is not trusted.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ("png", "image/png")),
    (b"\xff\xd8\xff", ("jpg", "image/jpeg")),
    (b"GIF87a", ("gif", "image/gif")),
    (b"GIF89a", ("gif", "image/gif")),
)


class NotAnImage(ValueError):
    """The bytes are not an image we can serve."""


def sniff_image(data: bytes):
    """(extension, content type) of image bytes; NotAnImage when they are none we serve."""
    kind = next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = ("webp", "image/webp")
    if kind is None:
        raise NotAnImage("not a PNG, JPEG, GIF or WebP image")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:
        raise NotAnImage(f"damaged {kind[0]} image: {exc}") from None
    return kind


def publish_file(folder, name: str, data: bytes) -> Path:
    """Write `data` to folder/name via a temporary file and a rename, so readers see all or nothing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / name


def ingest_images(ctx, run, source, images, tracker, outcome):
    record = IngestFile(run=run, quarter=None, name="images/", rows_read=len(images))
    unchanged, samples = 0, []
    tracker.stage(f"images: {len(images)} files")
    for info in images:
        banner_id = image_banner_id(info.path)
        try:
            if info.etag and is_loaded(info, None):
                unchanged += 1
                continue
            with source.open(info.path) as stream:
                data = stream.read()
            digest = hashlib.sha256(data).hexdigest()
            if is_loaded(info, digest):
                unchanged += 1
                continue
            ext, content_type = sniff_image(data)
            name = f"{banner_id}.{ext}"
            publish_file(ctx.settings.image_dir, name, data)
            with db.atomic():
                Banner.insert(id=banner_id, image_name=name, content_type=content_type, image_sha256=digest).on_conflict(
                    conflict_target=[Banner.id],
                    update={Banner.image_name: name, Banner.content_type: content_type, Banner.image_sha256: digest},
                ).execute()
                remember_loaded(info, digest)
            record.loaded += 1
        except NotAnImage as exc:
            record.rejected += 1
            if len(samples) < 20:
                samples.append([info.path, str(exc)])
        finally:
            tracker.advance(info.size)
    record.unchanged = unchanged == len(images)
    record.duplicates = 0
    record.samples = json.dumps(samples)
    record.save()
    if record.loaded:
        with db.atomic():
            version = bump_data_version()
        runtime.publish_data_version(ctx, version)
    outcome.had_rejects |= record.rejected > 0
    log.info("run=%s images read=%s copied=%s unchanged=%s rejected=%s",
             run.id, len(images), record.loaded, unchanged, record.rejected)
