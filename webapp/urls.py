"""Which redirect targets are safe: the one check behind the login's `next` and the click landing URLs."""

from urllib.parse import urlsplit


def is_local_path(url) -> bool:
    """A path on this site: no scheme, no host, nothing a browser could read as another host.

    Control characters and whitespace are refused outright: browsers and Werkzeug drop some of them
    (`/\\t/evil.example` becomes `//evil.example`), and a header cannot carry others.
    """
    if not isinstance(url, str) or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return False
    if _has_space_or_control(url):
        return False
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


def page_of(url, host):
    """The dashboard page (path and query) of an absolute URL on `host`, as htmx reports it; else None."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.netloc != host:
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path if path.startswith("/admin") and is_local_path(path) else None


def is_safe_landing_url(url) -> bool:
    """An absolute http(s) URL with a host, or a path on this site."""
    if not isinstance(url, str) or _has_space_or_control(url):
        return False
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return bool(parts.netloc) and "\\" not in url
    return is_local_path(url)


def _has_space_or_control(url: str) -> bool:
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url)
