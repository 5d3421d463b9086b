"""A visitor's rotation over a campaign's banner set: each cycle a fresh random permutation,
never the same banner twice in a row.

Pure: the state is four ints and the randomness comes in as an argument. A cycle is stored as the
seed of its permutation, not as the banners still to show, so a rotation costs the same few bytes
whatever the size of the set. The serving path runs this rule inside Redis
(webapp/rotation_step.lua, one call per view); every operation here is on 32-bit integers so that
Lua's doubles compute the same cycles, and tests hold the two to the same choices.
"""

import zlib

# A visitor's rotations are kept for this many campaigns, the most recently seen ones.
MAX_ROTATIONS = 64
# Candidate seeds a new cycle tries for a first banner that is not the last one shown: with two
# banners each fails with probability 1/2, so all of them fail with probability 2**-64.
SEED_TRIES = 64
_M32 = (1 << 32) - 1
_GOLDEN32 = 0x9E3779B9


def set_key(banner_ids) -> int:
    """A short fingerprint of a banner set, so a stored rotation knows when its set changed."""
    return zlib.crc32(",".join(map(str, sorted(banner_ids))).encode())


def code(banner_id: int) -> int:
    """The 32 bits of a banner id its place in a cycle is mixed from (ids are up to 63 bits)."""
    return (banner_id ^ (banner_id >> 32)) & _M32


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
    """A seed whose permutation of `banner_set` does not start with `last` (unless it must): the
    first of `rng`'s 32 random bits and the candidates derived from them that does."""
    seed = first = rng.getrandbits(32)
    for _ in range(SEED_TRIES):
        if len(banner_set) == 1 or permutation(banner_set, seed)[0] != last:
            return seed
        seed = next_seed(seed)
    return first  # all SEED_TRIES candidates started with `last`: less likely than 2**-64


def next_seed(seed: int) -> int:
    """The candidate tried after `seed`."""
    return mix((seed + _GOLDEN32) & _M32)


def permutation(banner_set, seed) -> list[int]:
    """The cycle of `seed`: `banner_set` ordered by a keyed 32-bit mix of each banner's code; banners
    whose codes tie keep their ascending order."""
    base = mix(seed & _M32)
    ranked = sorted((mix(code(banner) ^ base), index, banner) for index, banner in enumerate(sorted(banner_set)))
    return [banner for _, _, banner in ranked]


def mix(x: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection on 32-bit ints, so distinct codes never tie."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def _is_valid(state) -> bool:
    return (
        isinstance(state, list)
        and len(state) >= 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in state)
    )
