"""The clock requests read the time from; tests set app.config["CLOCK"] to move it."""

from datetime import datetime, timezone

from flask import current_app


def utc_now() -> datetime:
    """Now, in UTC, from app.config["CLOCK"] when a test set one."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock else datetime.now(timezone.utc)
