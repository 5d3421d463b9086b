"""Logging: one line per event, to stdout and to a rotating file."""

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(settings, level=logging.INFO):
    """Send the `bannerservice` loggers to stdout and to settings.log_file (rotated at 10 MB)."""
    logger = logging.getLogger("bannerservice")
    if logger.handlers:
        return logger
    logger.setLevel(level)
    formatter = logging.Formatter(FORMAT)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    if settings.log_file:
        try:
            Path(settings.log_file).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(settings.log_file, maxBytes=10 << 20, backupCount=5)
        except OSError as exc:
            logger.warning("cannot write the log file %s: %s", settings.log_file, exc)
        else:
            handler.setFormatter(formatter)
            logger.addHandler(handler)
    logger.propagate = False
    return logger
