"""Binary streams as ingest reads them: cut to a length, hashed and counted on the way to a parser."""

import hashlib

from jobs.parsing import MAX_LINE
from jobs.sources import CHUNK

_KEEP = MAX_LINE + 1  # of an over-long line, enough for the parser to see that it is too long


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
    """Byte lines of a stream, read in chunks that are hashed and counted on the way to the parser.

    Lines come without their newline. A line longer than MAX_LINE comes cut to MAX_LINE + 1 bytes:
    the parser rejects it, and a line of any length costs time linear in its size and bounded memory.
    """

    def __init__(self, stream, tracker):
        self.stream, self.tracker = stream, tracker
        self.digest = hashlib.sha256()

    def __iter__(self):
        update, advance, read = self.digest.update, self.tracker.advance, self.stream.read
        pending, size = [], 0  # the unfinished line's pieces (at most _KEEP bytes of it)
        while chunk := read(CHUNK):
            update(chunk)
            advance(len(chunk))
            lines = chunk.split(b"\n")
            tail = lines.pop()
            if pending and lines:
                lines[0] = b"".join(pending + [lines[0][: _KEEP - size]])
                pending, size = [], 0
            yield from lines
            if size < _KEEP and tail:
                pending.append(tail[: _KEEP - size])
                size += len(pending[-1])
        if pending:
            yield b"".join(pending)

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
