"""Logging: one line per record, client values cut and escaped, floods thinned, to stdout and optionally to a file."""

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Ours, and Flask's app.logger (it logs unhandled errors with the request's path).
LOGGER_NAMES = ("bannerservice", "webapp")
# Any one value in a message (a username, a path, an error's text) is cut to this many characters,
# the message to MAX_MESSAGE_CHARS, a traceback to MAX_TRACEBACK_CHARS: a record's size does not
# depend on what a client sends.
MAX_VALUE_CHARS = 200
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 16000
# Records of one message (logger and format string) a second per process; the rest are counted, and
# the next one written says how many were dropped. A client repeating a request that logs (a refused
# sign-in, a stale form, a forged click link) writes at most this many lines a second per process.
PER_SECOND = 10
# The jobs' loggers: their runs are started by the schedule or an admin, one at a time, never by a client's
# request, so their records are never thinned (a run's lines are its history).
UNTHINNED_LOGGERS = ("bannerservice.ingest", "bannerservice.export", "bannerservice.schedule")
# Every control character (C0, DEL, C1) and the Unicode line separators, shown as an escape: a value
# can never end the line and start a forged record of its own.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})
_KEEP_NEWLINES = {**_ESCAPES, ord("\n"): "\n"}


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and a marker saying how many were cut."""
    return text if len(text) <= limit else f"{text[:limit]}...[{len(text) - limit} more chars cut]"


def escape(text: str) -> str:
    """`text` on one line: control characters and line breaks shown as backslash escapes."""
    return text.translate(_ESCAPES)


class LineFormatter(logging.Formatter):
    """Formats a record as one line: its values cut, its control characters escaped.

    A traceback follows on lines indented by four spaces (escaped too, except its own line breaks),
    so a record always starts at the beginning of a line and nothing a client sent can start one.
    """

    def format(self, record):
        record.message = escape(cut(_message(record), MAX_MESSAGE_CHARS))
        if getattr(record, "dropped", 0):
            record.message += f" [{record.dropped} more of this message dropped in an earlier second]"
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extra = []
        if record.exc_info:
            extra.append(self.formatException(record.exc_info))
        elif record.exc_text:
            extra.append(record.exc_text)
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        if extra:
            text = "\n".join(extra)
            if len(text) > MAX_TRACEBACK_CHARS:
                half = MAX_TRACEBACK_CHARS // 2
                text = f"{text[:half]}\n...[{len(text) - 2 * half} chars cut]...\n{text[-half:]}"
            line += "".join(f"\n    {part}" for part in text.translate(_KEEP_NEWLINES).split("\n"))
        return line


class FloodFilter(logging.Filter):
    """Lets PER_SECOND records of each message a second through (per process) and counts the rest; the jobs' all."""

    def __init__(self, per_second=PER_SECOND):
        super().__init__()
        self.per_second = per_second
        self.windows = {}  # (logger, format string) -> [second, written, dropped]

    def filter(self, record):
        decided = getattr(record, "_flood_decided", None)
        if decided is not None:  # the same record on our other handler
            return decided
        if record.name in UNTHINNED_LOGGERS:
            return True
        key = (record.name, str(record.msg)[:MAX_VALUE_CHARS])
        second = int(record.created)
        window = self.windows.get(key)
        if window is None or window[0] != second:
            if len(self.windows) > 10_000:
                self.windows.clear()  # messages built with f-strings would otherwise grow this forever
            if window is not None and window[2]:
                record.dropped = window[2]
            window = self.windows[key] = [second, 0, 0]
        window[1] += 1
        allowed = window[1] <= self.per_second
        if not allowed:
            window[2] += 1
        record._flood_decided = allowed
        return allowed


def _message(record) -> str:
    """The record's message with each argument cut to MAX_VALUE_CHARS (numbers stay numbers for %d)."""
    args = record.args
    if not args:
        return str(record.msg)
    if isinstance(args, dict):
        args = {key: _cut_value(value) for key, value in args.items()}
    else:
        args = tuple(_cut_value(value) for value in args)
    try:
        return str(record.msg) % args
    except (TypeError, ValueError):
        return record.getMessage()  # raises as logging would, reported by the handler


def _cut_value(value):
    if isinstance(value, (int, float)):
        return value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return value if len(text) <= MAX_VALUE_CHARS else cut(text, MAX_VALUE_CHARS)


def configure_logging(settings, level=logging.INFO):
    """Send our loggers (and Flask's) to stdout and to settings.log_file when one is set.

    The file is never rotated here: with several processes writing it, each would rotate it on its
    own. logrotate (or whatever collects stdout) rotates; WatchedFileHandler reopens the file after.
    Calling it again with another log file moves the file handler there (an app per test does).
    """
    logger = logging.getLogger("bannerservice")
    formatter = LineFormatter(FORMAT)
    flood = next((f for h in logger.handlers for f in h.filters if isinstance(f, FloodFilter)), None) or FloodFilter()
    if not any(getattr(h, "_bannerservice", "") == "stdout" for h in logger.handlers):
        _add(logger, logging.StreamHandler(sys.stdout), formatter, flood, "stdout")
    current = next((h for h in logger.handlers if getattr(h, "_bannerservice", "") == "file"), None)
    wanted = str(Path(settings.log_file).resolve()) if settings.log_file else None
    if current is not None and current.baseFilename != wanted:
        logger.removeHandler(current)
        current.close()
        current = None
    if wanted and current is None:
        try:
            Path(wanted).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.WatchedFileHandler(wanted)
        except OSError as exc:
            logger.warning("cannot write the log file %s: %s", wanted, exc)
        else:
            _add(logger, handler, formatter, flood, "file")
    for name in LOGGER_NAMES:
        each = logging.getLogger(name)
        each.setLevel(level)
        each.propagate = False
        each.handlers = list(logger.handlers)
    return logger


def _add(logger, handler, formatter, flood, kind):
    handler.setFormatter(formatter)
    handler.addFilter(flood)
    handler._bannerservice = kind
    logger.addHandler(handler)
