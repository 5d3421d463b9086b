"""Where ingest reads from: a directory or an S3 prefix, behind one small interface.

Both lay files out the same way: `<q>/impressions.csv`, `<q>/clicks.csv`,
`<q>/conversions.csv` for q = 1..4, and `images/image_<banner_id>.<ext>`.
"""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_NAME = re.compile(r"image_(\d+)\.[A-Za-z0-9]+")
CHUNK = 1 << 16


class SourceError(Exception):
    """The source as a whole cannot be read (unreachable, access denied, no such bucket)."""


@dataclass(frozen=True)
class FileInfo:
    """What a source tells about one file without reading it."""

    path: str  # relative to the source root, with '/'
    size: int
    etag: str | None = None
    # Read no more than this many bytes: a live batch file holds only what its manifest vouches for.
    limit: int | None = None


def open_source(spec: str, s3_endpoint_url: str = "", s3_max_attempts: int = 5):
    """A DirectorySource for a path, an S3Source for s3://bucket/prefix."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[len("s3://"):].partition("/")
        if not bucket:
            raise SourceError(f"{spec!r} names no bucket")
        return S3Source(bucket, prefix.strip("/"), s3_endpoint_url, s3_max_attempts)
    return DirectorySource(spec)


def open_sink(spec: str, s3_endpoint_url: str = "", s3_max_attempts: int = 5):
    """A source that is also written to (the live export's target); a missing directory is created."""
    if not spec.startswith("s3://"):
        Path(spec).mkdir(parents=True, exist_ok=True)
    return open_source(spec, s3_endpoint_url, s3_max_attempts)


def image_banner_id(path: str):
    """The banner id in `images/image_<id>.<ext>`, or None for any other name."""
    match = IMAGE_NAME.fullmatch(path.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


class DirectorySource:
    def __init__(self, root):
        self.root = Path(root)
        self.description = str(self.root)
        if not self.root.is_dir():
            raise SourceError(f"source directory {self.root} does not exist")

    def stat(self, path: str):
        """FileInfo of `path`, or None when there is no such file."""
        try:
            st = (self.root / path).stat()
        except FileNotFoundError:
            return None
        return FileInfo(path, st.st_size)

    def open(self, path: str):
        """A binary stream of the file's bytes."""
        return open(self.root / path, "rb")

    def read_bytes(self, path: str):
        """The file's bytes, or None when there is no such file."""
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace the file whole: a temporary file and a rename, so readers see all or nothing."""
        from jobs.images import publish_file

        target = self.root / path
        publish_file(target.parent, target.name, data)

    def append_bytes(self, path: str, data: bytes, keep: int) -> None:
        """Cut the file to its first `keep` bytes, then append `data` (cost: the new bytes only)."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "r+b" if target.exists() else "w+b") as out:
            out.truncate(keep)
            out.seek(keep)
            out.write(data)

    def list_dir(self, path: str) -> list[str]:
        """Names directly under `path` (files and folders), sorted; [] when it does not exist."""
        folder = self.root / path
        return sorted(os.listdir(folder)) if folder.is_dir() else []

    def list_images(self) -> list:
        folder = self.root / "images"
        if not folder.is_dir():
            return []
        return [
            FileInfo(f"images/{entry.name}", entry.stat().st_size)
            for entry in sorted(os.scandir(folder), key=lambda e: e.name)
            if entry.is_file() and image_banner_id(entry.name) is not None
        ]


class S3Source:
    def __init__(self, bucket, prefix, endpoint_url="", max_attempts=5):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.description = f"s3://{bucket}/{prefix}".rstrip("/")
        config = Config(
            # Path-style and checksums only when required: what MinIO and other S3-compatible servers accept.
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=5,
            read_timeout=30,
        )
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    def _key(self, path):
        return f"{self.prefix}/{path}" if self.prefix else path

    def stat(self, path: str):
        from botocore.exceptions import ClientError

        try:
            head = self._call(self.client.head_object, Bucket=self.bucket, Key=self._key(path))
        except ClientError:  # only a 404 gets here: see _call
            self._call(self.client.head_bucket, Bucket=self.bucket)  # a missing bucket is the source's failure
            return None
        return FileInfo(path, head["ContentLength"], head["ETag"].strip('"'))

    def open(self, path: str):
        return self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(path))["Body"]

    def read_bytes(self, path: str):
        from botocore.exceptions import ClientError

        try:
            body = self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(path))["Body"]
        except SourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "NoSuchKey":
                return None
            raise
        with body:
            return body.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(path), Body=data)

    def append_bytes(self, path: str, data: bytes, keep: int) -> None:
        """S3 has no append: the object is written again, its first `keep` bytes and `data`."""
        self.write_bytes(path, (self.read_bytes(path) or b"")[:keep] + data)

    def list_dir(self, path: str) -> list[str]:
        prefix = self._key(path.rstrip("/") + "/")
        names = set()
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        for page in self._call(list, pages):
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
        return sorted(names)

    def list_images(self) -> list:
        prefix = self._key("images/")
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in self._call(list, pages):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if "/" not in name and image_banner_id(name) is not None:
                    found.append(FileInfo(f"images/{name}", obj["Size"], obj["ETag"].strip('"')))
        return sorted(found, key=lambda info: info.path)

    def _call(self, method, *args, **kwargs):
        """Call boto3, turning its failures into SourceErrors; a HeadObject 404 is passed through."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(*args, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or (status == 404 and exc.operation_name in ("HeadBucket", "ListObjectsV2")):
                raise SourceError(f"bucket {self.bucket!r} does not exist") from exc
            if status == 404 and exc.operation_name == "HeadObject":
                raise
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise SourceError(f"access denied to {self.description} ({code or status})") from exc
            raise SourceError(f"S3 error on {self.description}: {code or status} {error.get('Message', '')}".strip()) from exc
        except BotoCoreError as exc:
            raise SourceError(f"S3 unreachable for {self.description}: {exc}") from exc


def sha256_of(stream) -> str:
    """The hex sha256 of everything left in a binary stream."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
