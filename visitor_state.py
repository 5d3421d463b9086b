"""A visitor's id (vid) and where its rotations are kept: pure derivations from the secret, no framework.

A vid is random. The ones we mint end with a MAC, so that when one comes back with no stored state we
know what its first, unstored view showed: the first banner of a cycle whose seed is derived from
(secret, site, vid, campaign). That view then needs no Redis key, and the rotation goes on from it.
"""

import base64
import functools
import hashlib
import hmac
import re
import secrets

from rotation import permutation, set_key

COOKIE = "bs_vid"
_VID = re.compile(r"[A-Za-z0-9_-]{22,64}")
_RANDOM_BYTES, _MAC_BYTES = 16, 6  # 22 + 8 url-safe characters


def new_vid(secret: str, site: str = "") -> str:
    """A fresh random vid, marked as minted by us for `site` (its unstored first view was on that site only)."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(_RANDOM_BYTES)).decode().rstrip("=")
    return body + _vid_mac(secret, site, body)


def is_vid(value) -> bool:
    """A well-formed vid: 22 to 64 url-safe characters (ours, or one the tag or a publisher made)."""
    return isinstance(value, str) and _VID.fullmatch(value) is not None


def is_minted(secret: str, vid: str, site: str = "") -> bool:
    """True for a vid new_vid() made with this secret for `site`."""
    body, mac = vid[:-8], vid[-8:]
    return len(vid) == 30 and hmac.compare_digest(mac.encode(), _vid_mac(secret, site, body).encode())


def state_key(secret: str, site: str, vid: str) -> str:
    """The name (under the Redis prefix) of the rotations of `vid` on publisher `site` ('' for our own pages)."""
    digest = hashlib.blake2b(f"{site}\n{vid}".encode(), key=_key(secret, b"bs.vstate"), digest_size=16)
    return "visitor:" + digest.hexdigest()


def cycle_seed(secret: str, site: str, vid: str, campaign_id: int) -> int:
    """The seed of a minted vid's first cycle of a campaign (32 bits, as rotation's seeds)."""
    digest = hashlib.blake2b(f"{site}\n{vid}\n{campaign_id}".encode(), key=_key(secret, b"bs.vseed"), digest_size=4)
    return int.from_bytes(digest.digest(), "big")


def first_state(banner_ids, seed: int) -> list:
    """The rotation state right after the first banner of `seed`'s cycle was shown."""
    banner_set = set(banner_ids)
    return [set_key(banner_set), permutation(banner_set, seed)[0], seed, 1]


def site_of(origin) -> str:
    """The publisher's site named by an Origin (or a Referer's scheme://host[:port]); '' when there is none."""
    if not isinstance(origin, str) or not origin:
        return ""
    return origin.strip().lower()[:200]


def _vid_mac(secret: str, site: str, body: str) -> str:
    digest = hashlib.blake2b(f"{site}\n{body}".encode(), key=_key(secret, b"bs.vid"), digest_size=_MAC_BYTES).digest()
    return base64.urlsafe_b64encode(digest).decode()


@functools.lru_cache(maxsize=16)
def _key(secret: str, purpose: bytes) -> bytes:
    return hashlib.blake2b(secret.encode(), digest_size=32, person=purpose).digest()
