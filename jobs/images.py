"""Banner images: tell their real type from their bytes, publish them without torn reads, load a source's."""

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

from jobs import runtime
from jobs.parsing import quote
from jobs.sources import IMAGE_NAME, FileRefused, image_banner_id
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


def sniff_image(data: bytes, max_pixels: int | None = None):
    """(extension, content type) of image bytes; NotAnImage when they are none we serve (or have
    more than `max_pixels` pixels)."""
    kind = next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = ("webp", "image/webp")
    if kind is None:
        raise NotAnImage("not a PNG, JPEG, GIF or WebP image")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if max_pixels is not None and width * height > max_pixels:
                raise NotAnImage(f"{width}x{height} is {width * height:,} pixels, more than {max_pixels:,}")
            image.verify()
    except NotAnImage:
        raise
    except Exception as exc:
        raise NotAnImage(f"damaged {kind[0]} image: {quote(str(exc))}") from None
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
    """Check every entry of the source's images/ and publish the good ones; one bad image stops no other."""
    settings = ctx.settings
    record = IngestFile(run=run, quarter=None, name="images/", rows_read=len(images))
    unchanged, samples = 0, []
    tracker.stage(f"images: {len(images)} files")
    for info in images:
        try:
            if _publish_image(settings, source, info, tracker):
                record.loaded += 1
            else:
                unchanged += 1
        except (NotAnImage, FileRefused) as exc:
            record.rejected += 1
            if len(samples) < 20:
                samples.append([info.path, str(exc)])
        except Exception as exc:  # a database or disk failure on one image: the others still load
            log.exception("run=%s image %s failed", run.id, info.path)
            record.rejected += 1
            if len(samples) < 20:
                samples.append([info.path, f"could not be published: {type(exc).__name__}: {quote(str(exc))}"])
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


def _publish_image(settings, source, info, tracker) -> bool:
    """Publish one image once it passed every check; False when it is already published as it is."""
    name = info.path.rsplit("/", 1)[-1]
    banner_id = image_banner_id(name)
    if banner_id is None:
        match = IMAGE_NAME.fullmatch(name)
        why = f"banner id {quote(match.group(1), 30)} is 0 or beyond 64 bits" if match else "name is not image_<banner id>.<ext>"
        raise NotAnImage(why)
    if info.size > settings.image_max_bytes:
        raise NotAnImage(f"{info.size:,} bytes is larger than {settings.image_max_bytes:,}")
    if info.etag and is_loaded(info, None):
        return False
    with tracker.reading(info.path), source.open(info.path) as stream:
        data = stream.read(settings.image_max_bytes + 1)
    if len(data) > settings.image_max_bytes:
        raise NotAnImage(f"larger than {settings.image_max_bytes:,} bytes")
    digest = hashlib.sha256(data).hexdigest()
    if is_loaded(info, digest):
        return False
    ext, content_type = sniff_image(data, settings.image_max_pixels)
    published = f"{banner_id}.{ext}"
    with db.atomic():  # the file is published last: a failed insert leaves nothing behind
        Banner.insert(id=banner_id, image_name=published, content_type=content_type, image_sha256=digest).on_conflict(
            conflict_target=[Banner.id],
            update={Banner.image_name: published, Banner.content_type: content_type, Banner.image_sha256: digest},
        ).execute()
        remember_loaded(info, digest)
        publish_file(settings.image_dir, published, data)
    return True
