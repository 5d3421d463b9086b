"""A visitor's rotation over a campaign's banner set: each cycle a fresh random permutation,
never the same banner twice in a row; and the bounded set of rotations a session keeps.

Pure: the state is four ints (it lives in the visitor's session) and the randomness comes in
as an argument. A cycle is stored as the seed of its permutation, not as the banners still to
show, so a rotation costs the same few bytes whatever the size of the set.
"""

import zlib

# A session keeps the rotations of this many campaigns, the most recently seen ones.
MAX_ROTATIONS = 64
_MASK = (1 << 64) - 1


def set_key(banner_ids) -> int:
    """A short fingerprint of a banner set, so a stored rotation knows when its set changed."""
    return zlib.crc32(",".join(map(str, sorted(banner_ids))).encode())


def next_banner(banner_ids, state, rng):
    """The banner to show next and the new state.

    `banner_ids` is the campaign's current set (non-empty); `state` is what the previous
    call returned, or None for a new visitor: [set_key, last_shown, cycle_seed, position],
    where the cycle is permutation(set, cycle_seed) and `position` indexes the next banner.
    """
    banner_set = set(banner_ids)
    key = set_key(banner_set)
    last = None
    if _is_valid(state):
        last = state[1]
        # Only the rest of an intact cycle of this very set continues; anything else starts a new one.
        if len(state) == 4 and state[0] == key and 0 < state[3] < len(banner_set):
            seed, position = state[2], state[3]
            cycle = permutation(banner_set, seed)
            if cycle[position - 1] == last:
                return cycle[position], [key, cycle[position], seed, position + 1]
    seed = new_cycle_seed(banner_set, last, rng)
    banner = permutation(banner_set, seed)[0]
    return banner, [key, banner, seed, 1]


def new_cycle_seed(banner_set, last, rng) -> int:
    """A seed whose permutation of `banner_set` does not start with `last` (unless it must)."""
    while True:
        seed = rng.getrandbits(32)
        if len(banner_set) == 1 or permutation(banner_set, seed)[0] != last:
            return seed


def permutation(banner_set, seed) -> list[int]:
    """The cycle of `seed`: `banner_set` ordered by a keyed 64-bit mix (distinct keys, no ties)."""
    base = seed * 0x9E3779B97F4A7C15
    return sorted(banner_set, key=lambda banner: _mix((base + banner) & _MASK))


def _mix(x: int) -> int:
    # splitmix64's finaliser: a bijection on 64-bit ints, so distinct banners never tie.
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def remember(rotations: dict, campaign: str, state) -> dict:
    """`rotations` with `campaign`'s state as the most recently seen; past MAX_ROTATIONS campaigns
    the one seen longest ago is dropped (its next visit starts a new rotation)."""
    rotations.pop(campaign, None)
    rotations[campaign] = state  # dicts keep insertion order, and so does the session's msgpack
    while len(rotations) > MAX_ROTATIONS:
        del rotations[next(iter(rotations))]
    return rotations


def _is_valid(state) -> bool:
    return (
        isinstance(state, list)
        and len(state) >= 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in state)
    )
