"""Banner images: tell their real type from their bytes, and publish them without torn reads."""

import io
import os
import tempfile
from pathlib import Path

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
