"""Logging: one line per event, to stdout and to a rotating file."""

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(settings, level=logging.INFO):
    """Send the `bannerservice` loggers to stdout and to settings.log_file (rotated at 10 MB × 5).

    Calling it again with another log file moves the file handler there (an app per test does).
    """
    logger = logging.getLogger("bannerservice")
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(FORMAT)
    if not any(getattr(h, "_bannerservice", "") == "stdout" for h in logger.handlers):
        _add(logger, logging.StreamHandler(sys.stdout), formatter, "stdout")
    current = next((h for h in logger.handlers if getattr(h, "_bannerservice", "") == "file"), None)
    wanted = str(Path(settings.log_file).resolve()) if settings.log_file else None
    if current is not None and current.baseFilename == wanted:
        return logger
    if current is not None:
        logger.removeHandler(current)
        current.close()
    if wanted:
        try:
            Path(wanted).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(wanted, maxBytes=10 << 20, backupCount=5)
        except OSError as exc:
            logger.warning("cannot write the log file %s: %s", wanted, exc)
        else:
            _add(logger, handler, formatter, "file")
    return logger


def _add(logger, handler, formatter, kind):
    handler.setFormatter(formatter)
    handler._bannerservice = kind
    logger.addHandler(handler)
