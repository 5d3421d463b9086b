"""What the embed ways share: the publisher's site and whether it may embed, a banner's size, alt text and
image path, and a campaign id read from a URL."""

import functools
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from flask import current_app, request

from visitor_state import site_of

DEFAULT_SIZE = (300, 250)  # the banner's size when its image's is not known
TOKEN_SLOT = "0clicktoken0"  # stands in a cached page or path where each view's token goes


def publisher_site(allowed: frozenset, req=None):
    """(site, may embed): the site asking `req` (default: the request; its Origin, else its Referer's origin, else
    ''), and whether it is one of the `allowed` sites (any, when none are listed).

    A request naming no site (a publisher's server, an app) is allowed: only browsers say where they are."""
    req = request if req is None else req
    environ = req.environ  # read directly: asked on every embed request
    origin = environ.get("HTTP_ORIGIN")
    site = site_of(origin) if origin else _site_of_referer(environ.get("HTTP_REFERER"))
    if not allowed or not site or site in allowed:
        return site, True
    return site, site == req.host_url.rstrip("/").lower()  # our own pages (the admin's preview)


def banner_alt(campaign_id, banner_id, image_name) -> str:
    """The banner's alt text, as the slot page gives it."""
    missing = "" if image_name else " (no image available)"
    return f"Banner {banner_id} of campaign {campaign_id}{missing}"


def banner_size(cache, image_name) -> tuple:
    """(width, height) of the banner's image, read once per process and data version; DEFAULT_SIZE when unknown."""
    if not image_name:
        return DEFAULT_SIZE
    key = ("size", image_name)
    size = cache.get(key)
    if size is None:
        try:
            with Image.open(Path(current_app.extensions["settings"].image_dir) / image_name) as image:
                size = image.size  # the header only: the pixels are not decoded
        except (OSError, UnidentifiedImageError, ValueError):
            size = DEFAULT_SIZE
        cache[key] = size
    return size


def image_path(cache, image_name, script_root: str) -> str:
    """The path of the banner's image (of the placeholder when it has none) under `script_root`, made once per
    process and data version."""
    key = ("image_path", script_root, image_name)
    path = cache.get(key)
    if path is None:
        path = cache[key] = (path_for("public.image", script_root, name=image_name) if image_name
                             else path_for("static", script_root, filename="placeholder.svg"))
    return path


@functools.lru_cache(maxsize=64)
def token_path(endpoint, script_root: str) -> str:
    """path_for(endpoint, script_root, token=TOKEN_SLOT): a path to put each view's token in, built once."""
    return path_for(endpoint, script_root, token=TOKEN_SLOT)


def path_for(endpoint, script_root: str, **values) -> str:
    """url_for(endpoint, **values) for a request under `script_root`, built without a request context (the views
    answered before Flask have none)."""
    return current_app.url_map.bind("localhost", script_name=script_root or "/").build(endpoint, values)


@functools.lru_cache(maxsize=4096)  # asked on every frame view, with the same few ids
def campaign_id_of(raw):
    """The campaign id a URL names, or None when it names none (not digits, or beyond a 64-bit id)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw.lstrip("0")) > 19:
        return None
    return int(raw)


@functools.lru_cache(maxsize=4096)  # a publisher's pages send the same few Referers over and over
def _site_of_referer(url):
    """The site of a Referer (its scheme://host[:port], as site_of has it); '' for none or another scheme."""
    if not url:
        return ""
    parts = urlsplit(url)
    return site_of(f"{parts.scheme}://{parts.netloc}") if parts.scheme in ("http", "https") and parts.netloc else ""
