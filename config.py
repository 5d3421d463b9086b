"""Every setting of BannerService, read from the environment in one place."""

import os
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", ROOT / "instance"))


@dataclass(frozen=True)
class Settings:
    """Settings of one process; build with `load_settings()` or pass overrides in tests."""

    database_url: str = f"sqlite:///{INSTANCE_DIR / 'bannerservice.db'}"
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = ""
    # Where ingest copies banner images and where the web process (or nginx) serves them.
    image_dir: str = str(INSTANCE_DIR / "images")
    log_file: str = str(INSTANCE_DIR / "logs" / "bannerservice.log")
    # Namespace for every Redis key we write, so tests and deployments can share a server.
    redis_prefix: str = "bannerservice:"
    session_lifetime_minutes: int = 30
    # How stale a web process's plan cache may be before it checks the data version.
    plan_refresh_seconds: float = 1.0
    ingest_source: str = ""
    ingest_cron: str = "0 */12 * * *"
    ingest_lock_seconds: int = 600
    s3_endpoint_url: str = ""
    s3_max_attempts: int = 5
    queue_name: str = "bannerservice"


_ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "secret_key": "SECRET_KEY",
    "image_dir": "IMAGE_DIR",
    "log_file": "LOG_FILE",
    "redis_prefix": "REDIS_PREFIX",
    "session_lifetime_minutes": "SESSION_LIFETIME_MINUTES",
    "plan_refresh_seconds": "PLAN_REFRESH_SECONDS",
    "ingest_source": "INGEST_SOURCE",
    "ingest_cron": "INGEST_CRON",
    "ingest_lock_seconds": "INGEST_LOCK_SECONDS",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "s3_max_attempts": "S3_MAX_ATTEMPTS",
    "queue_name": "QUEUE_NAME",
}


def load_settings(env=None, **overrides) -> Settings:
    """Settings from `env` (default os.environ), then `overrides` on top."""
    env = os.environ if env is None else env
    values = {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, env_name in _ENV_NAMES.items():
        raw = env.get(env_name)
        if raw is None or raw == "":
            continue
        kind = types[name]
        try:
            values[name] = kind(raw)
        except ValueError as exc:
            raise ValueError(f"{env_name}={raw!r} is not a valid {kind}") from exc
    values.update(overrides)
    return Settings(**values)
