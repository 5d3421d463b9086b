"""Every setting of BannerService, read from the environment in one place."""

import functools
import os
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", ROOT / "instance"))
LOCAL_PROXY = -1  # trusted_proxy_count's default: trust one proxy on this machine


@dataclass(frozen=True)
class Settings:
    """Settings of one process; build with `load_settings()` or pass overrides in tests."""

    database_url: str = f"sqlite:///{INSTANCE_DIR / 'bannerservice.db'}"
    # A PostgreSQL that hangs (frozen, partitioned) fails a connect or a query after these many seconds
    # instead of holding the request: the slot and clicks go on from memory, the rest answers 503.
    database_connect_timeout: float = 3.0
    database_query_timeout: float = 5.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Sessions may live in a Redis of their own (bounded, evicting); empty: REDIS_URL.
    session_redis_url: str = ""
    # Proxies in front of the app whose X-Forwarded-For/-Proto are trusted (compose: 1). Unset
    # (LOCAL_PROXY): one for requests from this machine (the shipped nginx on a unix socket or
    # loopback, as the README runs it), none for others.
    trusted_proxy_count: int = LOCAL_PROXY
    # Secure session cookies even on plain HTTP requests (they are Secure on HTTPS ones anyway).
    session_cookie_secure: bool = False
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
    # A run's lock lives this long without a heartbeat (the heartbeat renews it every few seconds),
    # so a worker that died frees it within this time.
    ingest_lock_seconds: int = 60
    # A read that makes no progress for this long ends its run (failed, with the file named).
    ingest_stall_seconds: float = 120.0
    # A quarter whose files reject more than this share of their rows keeps its previous data.
    ingest_reject_limit_percent: float = 2.0
    # Images over either limit are rejected, not published.
    image_max_bytes: int = 5 * 1024 * 1024
    image_max_pixels: int = 16_000_000
    s3_endpoint_url: str = ""
    s3_max_attempts: int = 5
    queue_name: str = "bannerservice"
    # Live events (what visitors see and click), exported as CSV batches under <live_root>/live/.
    events_enabled: bool = True
    live_root: str = ""  # a directory or s3://bucket/prefix; empty: the ingest source
    export_cron: str = "*/5 * * * *"
    live_hours: int = 0  # scheduled ingests add the live batches of the last N hours (0: none)
    click_token_max_age: int = 86400
    default_landing_url: str = "/"
    currency: str = "USD"  # the currency of conversion revenue, as the dashboard labels it
    # Publishers' sites allowed to embed banners (comma-separated origins, e.g. https://news.example);
    # empty: any site. Sets the iframe's frame-ancestors and the JSON API's CORS origins.
    embed_allowed_sites: str = ""

    def allowed_sites(self) -> frozenset:
        """EMBED_ALLOWED_SITES as a set of lower-case origins without a trailing slash (empty: any site)."""
        return _origins(self.embed_allowed_sites)


@functools.lru_cache(maxsize=8)
def _origins(text: str) -> frozenset:
    # Asked on every embed request: parsed once per process.
    return frozenset(s.strip().lower().rstrip("/") for s in text.split(",") if s.strip())


def load_settings(env=None, **overrides) -> Settings:
    """Settings from `env` (default os.environ; each field's name in capitals), then `overrides`."""
    env = os.environ if env is None else env
    values = {}
    for f in fields(Settings):
        raw = env.get(f.name.upper())
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _parse(f.type, raw)
        except ValueError as exc:
            raise ValueError(f"{f.name.upper()}={raw!r} is not a valid {f.type.__name__}") from exc
    values.update(overrides)
    return Settings(**values)


def _parse(kind, raw: str):
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    return kind(raw)
