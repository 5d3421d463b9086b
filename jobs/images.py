"""Banner images: tell their real type from their bytes, publish them without torn reads, load a source's."""

import errno
import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobs import runtime
from jobs.parsing import quote
from jobs.sources import IMAGE_NAME, FileInfo, FileRefused, image_banner_id
from jobs.store import loaded_files, matches_loaded, remember_loaded_many
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


class DiskFull(Exception):
    """The published folder has no space left: no other image can be written either."""


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
            # From the headers: nothing is decoded yet. Pillow's size of a GIF is its first frame's.
            width, height = gif_extent(data) if kind[0] == "gif" else image.size
            if max_pixels is not None and width * height > max_pixels:
                raise NotAnImage(f"{width}x{height} is {width * height:,} pixels, more than {max_pixels:,}")
            image.verify()
    except NotAnImage:
        raise
    except Exception as exc:
        raise NotAnImage(f"damaged {kind[0]} image: {quote(str(exc))}") from None
    return kind


def shown_path(path: str) -> str:
    """An image's path as it may be printed: as it is when plain, quoted and escaped when it holds a
    control or line-breaking character (a name is the source's to choose: "a.png\\nIngest run #9: ...")."""
    return path if path.isprintable() else quote(path)


def _one_line(text: str) -> str:
    """`text` with its control and line-breaking characters escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def gif_extent(data: bytes) -> tuple[int, int]:
    """The width and height a GIF is drawn on: its logical screen, grown to reach every frame's right and
    bottom edge (a later frame may be far larger than the first). NotAnImage when its blocks are broken."""
    if len(data) < 13:
        raise NotAnImage("damaged gif image: shorter than its header")
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    at = 13 + _color_table_size(data[10])
    while at < len(data) and data[at] != 0x3B:  # the trailer
        if data[at] == 0x21:  # an extension: its label, then sub-blocks
            at = _after_sub_blocks(data, at + 2)
        elif data[at] == 0x2C and at + 10 <= len(data):  # an image descriptor: left, top, width, height, flags
            left, top, frame_width, frame_height = (int.from_bytes(data[at + i:at + i + 2], "little") for i in (1, 3, 5, 7))
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            at = _after_sub_blocks(data, at + 10 + _color_table_size(data[at + 9]) + 1)  # +1: the LZW code size
        else:
            raise NotAnImage(f"damaged gif image: unknown block 0x{data[at]:02x} at byte {at:,}")
    return width, height


def _color_table_size(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _after_sub_blocks(data: bytes, at: int) -> int:
    """The offset after the sub-blocks starting at `at` (each a length byte and that many bytes; 0 ends them)."""
    while at < len(data):
        size = data[at]
        at += 1 + size
        if size == 0:
            break
    return at


def publish_file(folder, name: str, data: bytes) -> Path:
    """Write `data` to folder/name via a temporary file and a rename, so readers see all or nothing."""
    tmp = stage_file(folder, name, data)
    try:
        os.replace(tmp, Path(folder) / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Path(folder) / name


def stage_file(folder, name: str, data: bytes) -> Path:
    """A hidden temporary file in `folder` holding `data`, to be renamed to `name`; nothing is left if the write fails."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


# Images are checked one by one but written a batch at a time (one query to ask which are loaded, one
# transaction to record them): 100,000 images one statement at a time took 107 s of a 220 s load.
IMAGE_BATCH = 500
IMAGE_BATCH_BYTES = 16 << 20  # the batch's image bytes are held until it is written


@dataclass
class _Checked:
    """An image that passed every check, waiting for its batch to be written."""

    info: FileInfo
    banner_id: int
    name: str  # as published: <banner id>.<real extension>
    content_type: str
    sha256: str
    data: bytes


def ingest_images(ctx, run, source, images, tracker, outcome):
    """Check every entry of the source's images/ and publish the good ones; one bad image stops no other,
    a full disk stops them all and fails the run."""
    settings = ctx.settings
    record = IngestFile(run=run, quarter=None, name="images/", rows_read=len(images))
    unchanged, samples = 0, []
    tracker.stage(f"images: {len(images)} files")

    def reject(info, reason):
        record.rejected += 1
        if len(samples) < 20:
            samples.append([shown_path(info.path), _one_line(reason)])

    try:
        unchanged = _publish_images(settings, run, source, images, tracker, record, reject)
    except DiskFull as exc:
        record.error = str(exc)
        outcome.fail(f"images: {exc}")
        log.error("run=%s images: %s", run.id, exc)
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


def _publish_images(settings, run, source, images, tracker, record, reject) -> int:
    """Check and publish `images` a batch at a time, counting into `record`; returns how many were unchanged.

    Raises DiskFull at the first write that finds no space: every other image would fail the same way.
    """
    unchanged = 0
    for start in range(0, len(images), IMAGE_BATCH):
        infos = images[start:start + IMAGE_BATCH]
        known = loaded_files(info.path for info in infos)
        in_place = _published(settings.image_dir, (image_banner_id(info.path) for info in infos))
        batch, banner_ids, held = [], set(), 0
        for info in infos:
            try:
                checked = _check_image(settings, source, info, tracker, known.get(info.path), in_place)
                if checked is None:
                    unchanged += 1
                    continue
                if checked.banner_id in banner_ids or held + len(checked.data) > IMAGE_BATCH_BYTES:
                    record.loaded += _write_batch(settings, batch, run, reject)  # a banner's files are written in path order
                    batch, banner_ids, held = [], set(), 0
                batch.append(checked)
                banner_ids.add(checked.banner_id)
                held += len(checked.data)
            except DiskFull:
                raise
            except (NotAnImage, FileRefused) as exc:
                reject(info, str(exc))
            except Exception as exc:  # a failure reading one image: the others still load
                log.exception("run=%s image %s failed", run.id, shown_path(info.path))
                reject(info, f"could not be read: {type(exc).__name__}: {quote(str(exc))}")
            finally:
                tracker.advance(info.size)
        record.loaded += _write_batch(settings, batch, run, reject)
    return unchanged


def _published(image_dir, banner_ids) -> set:
    """Those of `banner_ids` whose image, as the database names it, is in the published folder."""
    ids = [banner_id for banner_id in banner_ids if banner_id is not None]
    rows = Banner.select(Banner.id, Banner.image_name).where(Banner.id.in_(ids), Banner.image_name.is_null(False))
    return {row.id for row in rows if os.path.isfile(os.path.join(image_dir, row.image_name))}


def _check_image(settings, source, info, tracker, loaded, in_place):
    """The image, read and checked (a _Checked); None when `loaded` (its LoadedFile) says it is published as it
    is and its banner's file is `in_place` (a file gone from the published folder is written again)."""
    name = info.path.rsplit("/", 1)[-1]
    banner_id = image_banner_id(name)
    if banner_id is None:
        match = IMAGE_NAME.fullmatch(name)
        why = f"banner id {quote(match.group(1), 30)} is 0 or beyond 64 bits" if match else "name is not image_<banner id>.<ext>"
        raise NotAnImage(why)
    if info.size > settings.image_max_bytes:
        raise NotAnImage(f"{info.size:,} bytes is larger than {settings.image_max_bytes:,}")
    if info.etag and matches_loaded(loaded, info, None) and banner_id in in_place:
        return None
    with tracker.reading(info.path), source.open(info.path) as stream:
        data = stream.read(settings.image_max_bytes + 1)
    if len(data) > settings.image_max_bytes:
        raise NotAnImage(f"larger than {settings.image_max_bytes:,} bytes")
    digest = hashlib.sha256(data).hexdigest()
    if matches_loaded(loaded, info, digest) and banner_id in in_place:
        return None
    ext, content_type = sniff_image(data, settings.image_max_pixels)
    return _Checked(info, banner_id, f"{banner_id}.{ext}", content_type, digest, data)


def _write_batch(settings, batch, run, reject) -> int:
    """Record and publish `batch` in one transaction; if that fails, one image at a time, so that a failure
    costs only its own image (rejected with the reason). Returns how many were published."""
    if not batch:
        return 0
    try:
        _record_and_publish(settings, batch)
        return len(batch)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"disk full: no space left to publish images in {settings.image_dir} "
                           f"({exc.strerror}); the images not yet published stay as they were") from exc
        if len(batch) > 1:
            return sum(_write_batch(settings, [checked], run, reject) for checked in batch)
        log.exception("run=%s image %s failed", run.id, shown_path(batch[0].info.path))
        reject(batch[0].info, f"could not be published: {type(exc).__name__}: {quote(str(exc))}")
        return 0


def _record_and_publish(settings, batch):
    """Banner rows and LoadedFile rows of `batch`, then its files, in one transaction. Every file is
    written aside first and renamed into place last, so a failed write or insert leaves nothing behind
    (a full disk fails a write, never a rename). Banner ids in `batch` are distinct.

    A banner's file of another name (its image was a PNG, now a JPEG) is removed once the batch is
    recorded: the folder holds the file the database names, not one beside it.
    """
    folder = Path(settings.image_dir)
    before = dict(Banner.select(Banner.id, Banner.image_name).where(Banner.id.in_([c.banner_id for c in batch])).tuples())
    staged = []
    try:
        for checked in batch:
            staged.append((stage_file(folder, checked.name, checked.data), checked.name))
        _record_and_rename(batch, staged, folder)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for checked in batch:
        old = before.get(checked.banner_id)
        if old and old != checked.name and os.path.basename(old) == old:
            (folder / old).unlink(missing_ok=True)


def _record_and_rename(batch, staged, folder):
    """Record `batch` and rename its staged files into place, in one transaction; `staged` keeps those not renamed."""
    from peewee import EXCLUDED

    with db.atomic():
        Banner.insert_many([{"id": c.banner_id, "image_name": c.name, "content_type": c.content_type, "image_sha256": c.sha256}
                            for c in batch]).on_conflict(
            conflict_target=[Banner.id],
            update={Banner.image_name: EXCLUDED.image_name, Banner.content_type: EXCLUDED.content_type,
                    Banner.image_sha256: EXCLUDED.image_sha256},
        ).execute()
        remember_loaded_many([(c.info, c.sha256) for c in batch])
        while staged:
            tmp, name = staged[0]
            os.replace(tmp, folder / name)
            staged.pop(0)
