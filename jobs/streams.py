"""Binary streams as ingest reads them: cut to a length, hashed and counted on the way to a parser."""

import hashlib

from jobs.sources import CHUNK


class Limited:
    """The first `limit` bytes of a binary stream."""

    def __init__(self, stream, limit):
        self.stream, self.left = stream, limit

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.stream.read(size) if size else b""
        self.left -= len(data)
        return data

    def close(self):
        self.stream.close()


class HashingLines:
    """Byte lines of a stream, read in chunks that are hashed and counted on the way to the parser."""

    def __init__(self, stream, tracker):
        self.stream, self.tracker = stream, tracker
        self.digest = hashlib.sha256()

    def __iter__(self):
        update, advance, read = self.digest.update, self.tracker.advance, self.stream.read
        pending = b""
        while chunk := read(CHUNK):
            update(chunk)
            advance(len(chunk))
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            yield from lines
        if pending:
            yield pending

    def drain(self):
        """Hash whatever the parser left unread, so the digest covers the whole file."""
        for _ in self:
            pass

    def hexdigest(self):
        return self.digest.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()
