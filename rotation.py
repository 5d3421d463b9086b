"""A visitor's rotation over a campaign's banner set: each cycle a fresh random permutation,
never the same banner twice in a row.

Pure: the state is a small list of ints (it lives in the visitor's session) and the
randomness comes in as an argument.
"""

import zlib


def set_key(banner_ids) -> int:
    """A short fingerprint of a banner set, so a stored rotation knows when its set changed."""
    return zlib.crc32(",".join(map(str, sorted(banner_ids))).encode())


def next_banner(banner_ids, state, rng):
    """The banner to show next and the new state.

    `banner_ids` is the campaign's current set (non-empty); `state` is what the previous
    call returned, or None for a new visitor: [set_key, last_shown, *still_to_show].
    """
    banner_set = set(banner_ids)
    key = set_key(banner_set)
    last, remaining = None, []
    if _is_valid(state):
        last = state[1]
        rest = state[2:]
        # Anything but the rest of an intact cycle of this very set starts a new cycle.
        if state[0] == key and last not in rest and len(set(rest)) == len(rest) <= len(banner_set) and banner_set.issuperset(rest):
            remaining = rest
    if not remaining:
        remaining = new_cycle(banner_set, last, rng)
    banner, *rest = remaining
    return banner, [key, banner, *rest]


def new_cycle(banner_set, last, rng) -> list[int]:
    """A random permutation of `banner_set` whose first banner is not `last` (unless it must be)."""
    others = sorted(banner_set - {last})
    if not others:  # a set of one banner can only repeat
        return sorted(banner_set)
    first = rng.choice(others)
    rest = sorted(banner_set - {first})
    rng.shuffle(rest)
    return [first, *rest]


def _is_valid(state) -> bool:
    return (
        isinstance(state, list)
        and len(state) >= 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in state)
    )
