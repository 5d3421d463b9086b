"""Where ingest reads from: a directory or an S3 prefix, behind one small interface.

Both lay files out the same way: `<q>/impressions.csv`, `<q>/clicks.csv`,
`<q>/conversions.csv` for q = 1..4, and `images/image_<banner_id>.<ext>`.
"""

import hashlib
import os
import re
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path

from jobs.parsing import MAX_ID, quote

IMAGE_NAME = re.compile(r"image_([0-9]+)\.[A-Za-z0-9]+", re.ASCII)
CHUNK = 1 << 16


class SourceError(Exception):
    """The source as a whole cannot be read (unreachable, access denied, no such bucket)."""


class FileRefused(Exception):
    """One file of the source may not be read: not a regular file, outside the source, unreadable.

    The message names the file and the reason, never its content.
    """


class FileChanged(FileRefused):
    """The file read is not the version listed at the start of the run: it was written to meanwhile."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What a source tells about one file without reading it."""

    path: str  # relative to the source root, with '/'
    size: int
    etag: str | None = None
    mtime_ns: int | None = None  # a directory's file: with the size, what tells a rewritten file
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
    """The banner id in `images/image_<id>.<ext>`, or None for any other name (or an id that is
    not a positive 64-bit integer)."""
    match = IMAGE_NAME.fullmatch(path.rsplit("/", 1)[-1])
    if not match or len(match.group(1).lstrip("0")) > len(str(MAX_ID)):
        return None
    value = int(match.group(1))
    return value if 0 < value <= MAX_ID else None


class DirectorySource:
    """A folder. Only regular files whose real path lies inside the folder are read: a symlink out of it,
    a FIFO, a device or a directory in a file's place is refused (FileRefused), never opened for reading."""

    def __init__(self, root):
        self.root = Path(root)
        self.description = str(self.root)
        try:
            is_dir = self.root.is_dir()
        except OSError as exc:  # a name too long, a loop of symlinks
            raise SourceError(f"source directory {quote(str(self.root))} does not exist ({exc.strerror})") from None
        if not is_dir:
            raise SourceError(f"source directory {quote(str(self.root))} does not exist")
        self._real_root = os.path.realpath(self.root)

    def _inside(self, path: str) -> str:
        """The real path of `path`; FileRefused when it resolves outside the source."""
        real = os.path.realpath(self.root / path)
        if os.path.commonpath([real, self._real_root]) != self._real_root:
            raise FileRefused(f"{path} resolves to a file outside the source; it was not read")
        return real

    def stat(self, path: str):
        """FileInfo of `path`, or None when there is no such file; FileRefused when it may not be read."""
        if not os.path.lexists(self.root / path):
            return None
        real = self._inside(path)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            return None  # a dangling symlink
        except OSError as exc:
            raise FileRefused(f"{path} cannot be read: {exc.strerror}") from None
        if not stat_module.S_ISREG(st.st_mode):
            raise FileRefused(f"{path} is not a regular file ({_kind(st.st_mode)}); it was not read")
        return FileInfo(path, st.st_size, mtime_ns=st.st_mtime_ns)

    def open(self, path: str, listed: FileInfo | None = None):
        """A binary stream of the file's bytes; FileRefused unless it is a regular file inside the source.

        Given the FileInfo `listed` at the start of the run, the stream raises FileChanged when the file
        is no longer that version, on opening and again at its end (see AsListed).
        """
        real = self._inside(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise FileRefused(f"{path} cannot be read: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            raise FileRefused(f"{path} is not a regular file ({_kind(st.st_mode)}); it was not read")
        os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
        if listed is None or listed.limit is not None:  # a live batch grows past what its manifest vouches for
            return stream
        try:
            return AsListed(stream, listed)
        except FileChanged:
            stream.close()
            raise

    def read_bytes(self, path: str):
        """The file's bytes, or None when there is no such file."""
        if not os.path.lexists(self.root / path):
            return None
        with self.open(path) as stream:
            return stream.read()

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
        """Every entry of images/, whatever its name or kind: ingest checks each and reports the bad ones."""
        folder = self.root / "images"
        if not folder.is_dir():
            return []
        found = []
        # One small FileInfo per entry as it is met, not every DirEntry at once (100,000 images: 100 MB).
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    size = entry.stat().st_size if entry.is_file() else 0
                except OSError:
                    size = 0
                found.append(FileInfo(f"images/{entry.name}", size))
        found.sort(key=lambda info: info.path)
        return found


class AsListed:
    """A directory file's stream that raises FileChanged unless the file is still the version listed:
    checked on opening and when the read meets the end (the bytes read must be the size listed, and
    the file's size and modification time still those listed)."""

    def __init__(self, stream, listed: FileInfo):
        self.stream, self.listed, self.count = stream, listed, 0
        self._check(at_end=False)

    def read(self, size=-1):
        data = self.stream.read(size)
        self.count += len(data)
        if not data and size != 0:
            self._check(at_end=True)
        return data

    def _check(self, at_end):
        listed, st = self.listed, os.fstat(self.stream.fileno())
        modified = listed.mtime_ns is not None and st.st_mtime_ns != listed.mtime_ns
        if st.st_size == listed.size and not modified and (not at_end or self.count == listed.size):
            return
        said = [f"listed at {listed.size:,} bytes, now {st.st_size:,}"]
        if modified:
            said.append("modified since")
        if at_end:
            said.append(f"{self.count:,} bytes read")
        raise FileChanged(f"{listed.path} changed while reading ({', '.join(said)})")

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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

    def open(self, path: str, listed: FileInfo | None = None):
        """The object's body; given the FileInfo `listed` at the start of the run, only that version of it
        (If-Match its ETag), else FileChanged."""
        from botocore.exceptions import ClientError

        version = {"IfMatch": f'"{listed.etag}"'} if listed is not None and listed.etag and listed.limit is None else {}
        try:
            return self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(path), **version)["Body"]
        except SourceError as exc:
            cause = exc.__cause__
            error = cause.response.get("Error", {}) if isinstance(cause, ClientError) else {}
            if version and error.get("Code") in ("PreconditionFailed", "412", "NoSuchKey"):
                now = "deleted" if error.get("Code") == "NoSuchKey" else "a new version"
                raise FileChanged(f"{path} changed while reading: the object listed with ETag {listed.etag} "
                                  f"is {now} now") from None
            raise

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
                if name and "/" not in name:
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


def _kind(mode) -> str:
    for test, name in ((stat_module.S_ISDIR, "a directory"), (stat_module.S_ISFIFO, "a FIFO"),
                       (stat_module.S_ISSOCK, "a socket"), (stat_module.S_ISCHR, "a device"), (stat_module.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a file"


def sha256_of(stream) -> str:
    """The hex sha256 of everything left in a binary stream."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
