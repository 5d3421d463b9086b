"""Rotation properties: never twice in a row, every cycle a permutation, set changes handled (tests/test_rotation_step.py
holds the script that runs the rule in Redis to the same choices)."""

import random

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rotation import next_banner, permutation, set_key

banner_sets = st.sets(st.integers(1, 10**12), min_size=1, max_size=12)


def serve(banner_set, views, state=None, seed=0):
    rng, shown = random.Random(seed), []
    for _ in range(views):
        banner, state = next_banner(banner_set, state, rng)
        shown.append(banner)
    return shown, state


@given(banner_sets, st.integers(1, 60), st.integers())
def test_next_banner_never_repeats_in_a_row_and_cycles_are_permutations(banner_set, views, seed):
    shown, _ = serve(banner_set, views, seed=seed)
    assert set(shown) <= banner_set
    if len(banner_set) > 1:
        assert all(a != b for a, b in zip(shown, shown[1:]))
    n = len(banner_set)
    for start in range(0, views - n + 1, n):
        assert sorted(shown[start:start + n]) == sorted(banner_set)


@given(banner_sets, banner_sets, st.integers(0, 30), st.integers(1, 30), st.integers())
@settings(max_examples=300)
def test_next_banner_set_change_restarts_without_repeating_the_last_banner(old, new, before, after, seed):
    assume(old != new)
    shown_before, state = serve(old, before, seed=seed)
    shown_after, _ = serve(new, after, state=state, seed=seed + 1)
    assert set(shown_after) <= new
    if shown_before and len(new) > 1:
        assert shown_after[0] != shown_before[-1]
    n = len(new)
    for start in range(0, after - n + 1, n):
        assert sorted(shown_after[start:start + n]) == sorted(new)


@given(banner_sets, st.sets(st.integers(1, 10**12), min_size=1, max_size=4), st.integers(1, 30), st.integers())
def test_next_banner_changed_set_that_keeps_the_last_banner_does_not_start_with_it(old, added, before, seed):
    shown_before, state = serve(old, before, seed=seed)
    new = {shown_before[-1]} | added  # the banner just shown stays; the set around it changes
    assume(new != old and len(new) > 1)
    shown_after, _ = serve(new, 1, state=state, seed=seed + 1)
    assert shown_after[0] != shown_before[-1]


def test_next_banner_single_banner_set_can_only_repeat():
    shown, _ = serve({7}, 4)
    assert shown == [7, 7, 7, 7]


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.one_of(st.integers(), st.text(), st.booleans()))), banner_sets)
def test_next_banner_survives_any_stored_state(state, banner_set):
    banner, new_state = next_banner(banner_set, state, random.Random(1))
    assert banner in banner_set
    assert new_state[0] == set_key(banner_set) and new_state[1] == banner


def test_next_banner_corrupt_state_that_would_repeat_starts_a_fresh_cycle():
    # A stored state whose last banner is not the one before its position (a forged or damaged
    # cookie) would continue with that very banner: it must start a fresh cycle instead.
    banner_set = {1, 2, 3}
    key = set_key(banner_set)
    for seed in range(20):
        cycle = permutation(banner_set, seed)
        for position in (1, 2):
            banner, _ = next_banner(banner_set, [key, cycle[position], seed, position], random.Random(seed))
            assert banner != cycle[position]
    banner, _ = next_banner(banner_set, [key, 2, 2, 3], random.Random(0))  # a position past the cycle's end
    assert banner != 2


def test_next_banner_state_holding_non_integers_is_not_trusted():
    # True == 1 and 1.0 == 1 in Python: without the type check they would pass for banner 1.
    key = set_key({1, 2})
    for stored in ([key, 2, True], [key, 2, 1.0]):
        banner, state = next_banner({1, 2}, stored, random.Random(0))
        assert type(banner) is int and all(type(v) is int for v in state)


def test_next_banner_new_cycles_are_random():
    firsts = {tuple(serve(set(range(6)), 6, seed=s)[0]) for s in range(20)}
    assert len(firsts) > 10


def test_set_key_ignores_order_and_tells_sets_apart():
    assert set_key([3, 1, 2]) == set_key({1, 2, 3})
    assert set_key({1, 2, 3}) != set_key({1, 2, 4})


def test_next_banner_state_is_four_ints_whatever_the_set_size():
    _, state = serve(set(range(10**12, 10**12 + 10)), 3)
    assert len(state) == 4


def test_new_cycle_seeds_fit_the_four_ints_of_the_state():
    from rotation import new_cycle_seed

    seeds = {new_cycle_seed({1, 2, 3}, None, random.Random(n)) for n in range(40)}
    assert len(seeds) == 40 and max(seeds) < 2**32


def test_next_banner_two_int_state_still_names_the_last_banner():
    # [set key, last shown]: too short to continue a cycle, but the last banner is still not repeated.
    for n in range(60):
        banner, _ = next_banner([1, 2, 3], [0, 2], random.Random(n))
        assert banner != 2


def test_next_banner_state_with_a_text_seed_for_this_set_is_not_trusted():
    # A stored state of this very set whose seed is text must start afresh, not multiply the text.
    banner, state = next_banner([1, 2, 3], [set_key({1, 2, 3}), 1, "x" * 8, 1], random.Random(3))
    assert banner in {1, 2, 3} and all(isinstance(v, int) for v in state)
